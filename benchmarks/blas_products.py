"""Why arraymel sets no BLAS limit: its mel products split under OpenBLAS's threading threshold, against whole.

    .venv/bin/python benchmarks/blas_products.py [--workload keras-16x10s speech-16x10s] [--rounds 15]

Three ways to run the NumPy path's mel products, alternating in one process on two workers:

- ``split``: as shipped, each product under ``arraymel._numpy.pipeline.MAX_PRODUCT`` multiply-adds, BLAS left
  as the process set it;
- ``whole, BLAS free``: whole products, BLAS left as set (OpenBLAS wakes its own threads for the large ones);
- ``whole, BLAS held to 1``: whole products inside ``threadpoolctl``'s ``limit(limits=1)``, what a
  process-wide limit per call gave.

For each: the call's wall time, the CPU time that threads other than the call's own took during it (after a
0.3 s rest, so that no OpenBLAS thread still spins from before), and the calling thread's CPU time with
``workers=1``. Medians [min-max], then the load average.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np


def _thread_cpu_ns() -> dict[int, int]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except OSError:
            pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", nargs="+", default=["keras-16x10s", "speech-16x10s"])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)

    import threadpoolctl

    import arraymel
    from arraymel._numpy import pipeline
    from arraymel._threads import pool
    from arraymel.bench.workloads import WORKLOADS

    ctl = threadpoolctl.ThreadpoolController()
    shipped = pipeline.MAX_PRODUCT
    ways = {"split": (shipped, False), "whole, BLAS free": (1 << 62, False), "whole, BLAS held to 1": (1 << 62, True)}

    def call(mel, x, way, workers):
        pipeline.MAX_PRODUCT, held = ways[way]
        if held:
            with ctl.limit(limits=1):
                return mel(x, workers=workers)
        return mel(x, workers=workers)

    print(f"BLAS: {[(i['internal_api'], i['version'], i['num_threads']) for i in threadpoolctl.threadpool_info()]}; "
          f"{args.rounds} rounds; load {open('/proc/loadavg').read().split()[:3]}")
    try:
        for name in args.workload:
            w = WORKLOADS[name]
            x = w.make_batch()
            mel = arraymel.MelSpectrogram(**w.params)
            mel(x, workers=2)
            wall = {k: [] for k in ways}
            others = {k: [] for k in ways}
            cpu1 = {k: [] for k in ways}
            for r in range(args.rounds):
                order = list(ways)[r % 3:] + list(ways)[: r % 3]
                for way in order:
                    time.sleep(0.3)
                    ours = {threading.get_native_id()} | {h.native_id for h in pool._HELPERS}
                    before = _thread_cpu_ns()
                    t0 = time.perf_counter()
                    call(mel, x, way, 2)
                    wall[way].append(time.perf_counter() - t0)
                    after = _thread_cpu_ns()
                    others[way].append(sum(after[t] - before.get(t, 0) for t in after if t not in ours) / 1e9)
                    c0 = time.thread_time()
                    call(mel, x, way, 1)
                    cpu1[way].append(time.thread_time() - c0)
            for way in ways:
                f = lambda v: f"{np.median(v) * 1e3:7.2f} [{min(v) * 1e3:.2f}-{max(v) * 1e3:.2f}]"  # noqa: E731
                print(f"  {name:14s} {way:22s} wall {f(wall[way])} ms  other threads' CPU {f(others[way])} ms  "
                      f"CPU of one thread {f(cpu1[way])} ms")
    finally:
        pipeline.MAX_PRODUCT = shipped
    print("load", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
