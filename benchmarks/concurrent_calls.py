"""Calls from several threads at once: total calls per second against one caller's.

    .venv/bin/python benchmarks/concurrent_calls.py [--threads 1 2 4 8] [--calls 16] [--rounds 5]
        [--workload keras-16x10s speech-16x10s]

Each round runs ``--calls`` calls of one workload (``arraymel.bench.workloads``, default ``workers``) split
evenly over N threads that start together, for every N in turn (the order of the N rotating from round to
round), and checks every result against a sequential one. Prints calls per second, median [min-max], per N.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--calls", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workload", nargs="+", default=["keras-16x10s", "speech-16x10s"])
    args = ap.parse_args(argv)

    import arraymel
    from arraymel.bench.workloads import WORKLOADS

    print(f"{args.calls} calls per round, {args.rounds} rounds, workers {arraymel.get_workers()}; "
          f"load {open('/proc/loadavg').read().split()[:3]}")
    for name in args.workload:
        w = WORKLOADS[name]
        x = w.make_batch()
        mel = arraymel.MelSpectrogram(**w.params)
        expected = mel(x)
        rates: dict[int, list[float]] = {n: [] for n in args.threads}
        for r in range(args.rounds):
            order = args.threads[r % len(args.threads):] + args.threads[: r % len(args.threads)]
            for n in order:
                start = threading.Barrier(n + 1)
                bad = []

                def caller(k: int, n=n, start=start, bad=bad) -> None:
                    start.wait()
                    for _ in range(args.calls // n):
                        if not np.array_equal(mel(x), expected):
                            bad.append(k)

                threads = [threading.Thread(target=caller, args=(k,)) for k in range(n)]
                for t in threads:
                    t.start()
                start.wait()
                t0 = time.perf_counter()
                for t in threads:
                    t.join()
                rates[n].append(n * (args.calls // n) / (time.perf_counter() - t0))
                assert not bad, f"{name}: threads {bad} computed other numbers than a sequential call"
        line = "  ".join(f"{n} threads {np.median(v):6.1f} [{min(v):.1f}-{max(v):.1f}]" for n, v in rates.items())
        print(f"  {name:14s} calls/s: {line}")
    print("load", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
