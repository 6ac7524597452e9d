"""Binding a call's threads to CPUs (``ARRAYMEL_PIN_THREADS``), bound against unbound, interleaved.

    .venv/bin/python benchmarks/thread_binding.py [--workload keras-16x10s speech-16x10s] [--rounds 21]

One process, one input per workload (``arraymel.bench.workloads``). Before each timed call comes one
of three things a user's process does between calls: nothing; a 0.15 s pause (loading the next files),
after which an idle virtual CPU may be halted; or a multi-threaded BLAS product like another library's
mel product, after which OpenBLAS's idle thread spins for about 0.1 s. Every round times the bound and
the unbound call once each after the same preparation, in an order that alternates, and checks that
they agree byte for byte; medians and quartiles are printed, then ``uptime``. Binding applies only
when a call uses every CPU of the calling thread's mask (the default ``workers``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import numpy as np


def _pause() -> None:
    time.sleep(0.15)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", nargs="+", default=["keras-16x10s", "speech-16x10s"])
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args(argv)

    import arraymel
    from arraymel._numpy import workers
    from arraymel.bench.workloads import WORKLOADS

    a = np.random.default_rng(0).random((600, 600), dtype=np.float32)
    before = {"nothing": lambda: None, "a 0.15 s pause": _pause, "a BLAS product": lambda: a @ a}
    saved = os.environ.get(workers.PIN_ENV)
    print(f"workers {arraymel.get_workers()} of {workers.cpu_count()} CPUs; {args.rounds} rounds; "
          "median [quartiles] ms, bound and unbound")
    try:
        for name in args.workload:
            w = WORKLOADS[name]
            x = w.make_batch()
            mel = arraymel.MelSpectrogram(**w.params)
            for label, prepare in before.items():
                times: dict[str, list[float]] = {"1": [], "0": []}
                outs = {}
                for r in range(args.rounds):
                    for pin in ("1", "0") if r % 2 == 0 else ("0", "1"):
                        os.environ[workers.PIN_ENV] = pin
                        prepare()
                        t0 = time.perf_counter()
                        outs[pin] = mel(x)
                        times[pin].append(time.perf_counter() - t0)
                    np.testing.assert_array_equal(outs["1"], outs["0"])
                (b1, b, b3), (u1, u, u3) = (np.percentile(times[k], [25, 50, 75]) * 1e3 for k in ("1", "0"))
                print(f"  {name:14s} after {label:15s} bound {b:7.2f} [{b1:.2f}-{b3:.2f}]  "
                      f"unbound {u:7.2f} [{u1:.2f}-{u3:.2f}]  x{u / b:4.2f}")
    finally:
        if saved is None:
            os.environ.pop(workers.PIN_ENV, None)
        else:
            os.environ[workers.PIN_ENV] = saved
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
