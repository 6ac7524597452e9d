"""torch and JAX CPU tensors on arraymel's fast path, against NumPy input and plain torch, interleaved.

    .venv/bin/python benchmarks/torch_input.py [--workload keras-16x10s] [--rounds 11]

One process, one input (``arraymel.bench.workloads``: 16 clips of 10 s at 16 kHz, float32, Keras
defaults). Each round calls every contender once, in an order rotated every round, so that a shared,
noisy machine slows them alike; the medians and quartiles of the rounds are printed, then ``uptime``.

Contenders: arraymel with the NumPy array; with a torch CPU tensor (through DLPack, no copies); with a
JAX CPU array; with the torch tensor forced onto the generic path (``backend="generic"``, what torch
input took before DLPack); and plain torch, ``arraymel bench``'s ``torch-stft`` peer (``torch.stft``,
power, matmul with the filterbank, ``log10``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import numpy as np


def contenders(workload: str) -> tuple[dict, dict]:
    import jax.numpy as jnp
    import torch

    import arraymel
    from arraymel.bench.devices import cpu_device
    from arraymel.bench.peers import PEERS
    from arraymel.bench.workloads import WORKLOADS

    w = WORKLOADS[workload]
    x = w.make_batch()
    params = dict(w.params)
    mel = arraymel.MelSpectrogram(**params)
    plain = PEERS["torch-stft"].build(params, cpu_device(), x)
    t = torch.from_numpy(x)
    calls = {
        "arraymel, NumPy input": (lambda: mel(x)),
        "arraymel, torch CPU tensor": (lambda: mel(t)),
        "arraymel, JAX CPU array": (lambda j=jnp.asarray(x): mel(j).block_until_ready()),  # noqa: B008 - made once
        "arraymel generic path, torch tensor (before)": (lambda: mel(t, backend="generic")),
        "plain torch (stft + matmul + log10)": (lambda: plain.fn(plain.x)),
    }
    outputs = {name: np.asarray(fn()) for name, fn in calls.items()}  # warm-up, and the agreement check
    return calls, outputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="keras-16x10s")
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args(argv)
    calls, outputs = contenders(args.workload)
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    ref = outputs[names[0]]
    base = statistics.median(times[names[0]])
    print(f"{args.workload}, {args.rounds} interleaved rounds: median [quartiles] ms, ratio to NumPy input, "
          "max |dB - NumPy input's|")
    for name in names:
        q1, med, q3 = np.percentile(times[name], [25, 50, 75]) * 1e3
        print(f"  {name:46s} {med:8.1f} [{q1:.1f}-{q3:.1f}]  x{med / 1e3 / base:5.2f}  {np.abs(outputs[name] - ref).max():.1e}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
