"""A torch DataLoader whose workers compute mel spectrograms: clips per second by worker count and thread rule.

    .venv/bin/python benchmarks/dataloader_workers.py [--workers 2 8] [--clips 512] [--rounds 3]
        [--variants default all-cpus] [--config keras]

A map-style dataset of ``--clips`` clips of 30 s (views into one shared noise signal, so that making an item
costs nothing); each item is one clip's mel spectrogram, a call large enough to run on several threads. One
epoch (batches of 16, ``fork`` workers, new workers each epoch) is timed per variant and round, the variants
alternating in one process:

- ``default``: arraymel's default inside a DataLoader worker (one thread per worker);
- ``all-cpus``: ``ARRAYMEL_NUM_THREADS=-1`` in the workers: each worker on every CPU, the default before
  worker processes got one thread.

Prints the median, minimum and maximum clips per second of each (workers, variant), the median CPU time the
workers used per clip, and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np

SECONDS = 30
VARIANTS = {"default": None, "all-cpus": "-1"}


class Clips:
    """``n`` clips of 30 s at 16 kHz: overlapping views into one 2-minute noise signal."""

    def __init__(self, n: int, params: dict):
        import arraymel

        self.n = n
        self.signal = np.random.default_rng(0).standard_normal(16000 * 120).astype(np.float32)
        self.mel = arraymel.MelSpectrogram(**params)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        start = (i * 7919) % (self.signal.size - 16000 * SECONDS)
        return self.mel(self.signal[start : start + 16000 * SECONDS])


def epoch(dataset: Clips, workers: int, variant: str) -> tuple[float, float]:
    """Seconds for one pass over ``dataset`` with ``workers`` fork workers under ``variant``'s setting, and the
    CPU seconds the workers used (they are joined at the end of the pass, so the OS has counted them)."""
    from torch.utils.data import DataLoader

    saved = os.environ.pop("ARRAYMEL_NUM_THREADS", None)
    if VARIANTS[variant] is not None:
        os.environ["ARRAYMEL_NUM_THREADS"] = VARIANTS[variant]  # inherited by the forked workers
    try:
        loader = DataLoader(dataset, batch_size=16, num_workers=workers, multiprocessing_context="fork")
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        seconds = time.perf_counter() - t0
        del loader  # its workers exit and are joined
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return seconds, (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    finally:
        os.environ.pop("ARRAYMEL_NUM_THREADS", None)
        if saved is not None:
            os.environ["ARRAYMEL_NUM_THREADS"] = saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--config", default="keras", choices=["keras", "speech"])
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # more workers than CPUs, on purpose

    from arraymel.bench.workloads import WORKLOADS

    params = WORKLOADS[f"{args.config}-16x10s"].params
    dataset = Clips(args.clips, params)
    print(f"{args.clips} clips of {SECONDS} s, {args.config} settings, {os.cpu_count()} CPUs; "
          f"clips/s median [min-max] of {args.rounds} epochs; load before {open('/proc/loadavg').read().split()[:3]}")
    for workers in args.workers:
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
        for r in range(args.rounds):
            order = args.variants if r % 2 == 0 else args.variants[::-1]
            for v in order:
                times[v].append(epoch(dataset, workers, v))
        for v, ts in times.items():
            rates = sorted(args.clips / t for t, _ in ts)
            cpu = np.median([c / args.clips * 1e3 for _, c in ts])
            print(f"  {workers} workers  {v:9s} {np.median(rates):7.1f} [{rates[0]:.1f}-{rates[-1]:.1f}] clips/s, "
                  f"workers' CPU {cpu:.1f} ms per clip")
    print("load after", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
