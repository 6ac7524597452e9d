"""Binding a call's threads to CPUs (``ARRAYMEL_PIN_THREADS=1``) against leaving them to the OS.

    .venv/bin/python benchmarks/thread_binding.py [--scenario alone two-processes busy-core]
        [--workload keras-16x10s speech-16x10s] [--rounds 21] [--window 4] (also: --scenario beside-torch)

Three situations arraymel runs in, each on one input per workload (``arraymel.bench.workloads``), calls on
every CPU of the process (the default ``workers``, the only calls that bind):

- ``alone``: one process. Before each timed call comes one of three things a user's process does between
  calls: nothing; a 0.15 s pause (loading the next files), after which an idle virtual CPU may be halted; or
  a multi-threaded BLAS product like another library's, after which OpenBLAS's idle thread spins for about
  0.1 s. Every round times a bound and an unbound call after the same preparation, in alternating order,
  and checks that they agree byte for byte.
- ``two-processes``: two processes calling back to back at once, both bound or both unbound, in windows of
  ``--window`` seconds that alternate; calls per second of the two together.
- ``busy-core``: one process while another program keeps one CPU busy (a spinning process bound to the
  last CPU); bound and unbound calls alternate as in ``alone``, with nothing before them.
- ``beside-torch``: the same beside a small torch training loop in another process (torch's default threads).

Medians and quartiles (ms, or calls/s), then ``uptime``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

PIN_ENV = "ARRAYMEL_PIN_THREADS"


def _pause() -> None:
    time.sleep(0.15)


def _alternate(mel, x, prepare, rounds: int) -> dict[str, list[float]]:
    """Bound ("1") and unbound ("0") calls, alternating, each after ``prepare()``; seconds per call."""
    times: dict[str, list[float]] = {"1": [], "0": []}
    outs = {}
    for r in range(rounds):
        for pin in ("1", "0") if r % 2 == 0 else ("0", "1"):
            os.environ[PIN_ENV] = pin
            prepare()
            t0 = time.perf_counter()
            outs[pin] = mel(x)
            times[pin].append(time.perf_counter() - t0)
        np.testing.assert_array_equal(outs["1"], outs["0"])
    return times


def _line(label: str, times: dict[str, list[float]]) -> str:
    (b1, b, b3), (u1, u, u3) = (np.percentile(times[k], [25, 50, 75]) * 1e3 for k in ("1", "0"))
    return f"  {label:40s} bound {b:7.2f} [{b1:.2f}-{b3:.2f}]  unbound {u:7.2f} [{u1:.2f}-{u3:.2f}]  x{u / b:4.2f}"


def alone(workloads, rounds: int) -> None:
    import arraymel
    from arraymel.bench.workloads import WORKLOADS

    a = np.random.default_rng(0).random((600, 600), dtype=np.float32)
    before = {"nothing": lambda: None, "a 0.15 s pause": _pause, "a BLAS product": lambda: a @ a}
    print(f"alone: workers {arraymel.get_workers()}; {rounds} rounds; median [quartiles] ms")
    for name in workloads:
        w = WORKLOADS[name]
        x = w.make_batch()
        mel = arraymel.MelSpectrogram(**w.params)
        for label, prepare in before.items():
            print(_line(f"{name} after {label}", _alternate(mel, x, prepare, rounds)))


_TORCH_LOOP = """
import torch
model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(256, 512), torch.randint(0, 10, (256,))
while True:
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
"""


def busy_core(workloads, rounds: int, torch_loop: bool = False) -> None:
    import arraymel
    from arraymel.bench.workloads import WORKLOADS

    cpus = sorted(os.sched_getaffinity(0))
    if torch_loop:
        spin = subprocess.Popen([sys.executable, "-c", _TORCH_LOOP])
        what = "a torch training loop (torch's default threads) in another process"
    else:
        code = f"import os; os.sched_setaffinity(0, {{{cpus[-1]}}})\nwhile True: pass"
        spin = subprocess.Popen([sys.executable, "-c", code])
        what = f"a spinning process bound to CPU {cpus[-1]}"
    try:
        time.sleep(3.0 if torch_loop else 0.5)
        print(f"{'beside-torch' if torch_loop else 'busy-core'}: {what}; {rounds} rounds; median [quartiles] ms")
        for name in workloads:
            w = WORKLOADS[name]
            x = w.make_batch()
            mel = arraymel.MelSpectrogram(**w.params)
            mel(x)
            beside = "torch" if torch_loop else "a busy core"
            print(_line(f"{name} beside {beside}", _alternate(mel, x, lambda: None, rounds)))
    finally:
        spin.kill()
        spin.wait()


_CHILD = """
import json, os, sys, time, arraymel
from arraymel.bench.workloads import WORKLOADS
w = WORKLOADS[sys.argv[1]]
start, stop = float(sys.argv[2]), float(sys.argv[3])
x = w.make_batch()
mel = arraymel.MelSpectrogram(**w.params)
mel(x)
n = 0
while time.time() < start:
    mel(x)
while time.time() < stop:
    mel(x)
    n += 1
print(json.dumps(n / (time.time() - start)))
"""


def two_processes(workloads, rounds: int, window: float) -> None:
    print(f"two-processes: two processes at once, both bound or both unbound, {rounds} windows of {window} s each; "
          "calls/s of the two together, median [min-max]")
    for name in workloads:
        rates: dict[str, list[float]] = {"1": [], "0": []}
        for r in range(rounds):
            for pin in ("1", "0") if r % 2 == 0 else ("0", "1"):
                env = {**os.environ, PIN_ENV: pin}
                start = time.time() + 3.0  # both children imported and warm by then
                procs = [subprocess.Popen([sys.executable, "-c", _CHILD, name, str(start), str(start + window)],
                                          env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
                rates[pin].append(sum(json.loads(p.communicate()[0]) for p in procs))
        (b, u) = (np.median(rates[k]) for k in ("1", "0"))
        wins = sum(rates["0"][i] > rates["1"][i] for i in range(rounds))
        print(f"  {name:14s} bound {b:6.1f} [{min(rates['1']):.1f}-{max(rates['1']):.1f}]  "
              f"unbound {u:6.1f} [{min(rates['0']):.1f}-{max(rates['0']):.1f}]  unbound faster in {wins} of {rounds}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", nargs="+", default=["alone", "two-processes", "busy-core"],
                    choices=["alone", "two-processes", "busy-core", "beside-torch"])
    ap.add_argument("--workload", nargs="+", default=["keras-16x10s", "speech-16x10s"])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--window", type=float, default=4.0)
    args = ap.parse_args(argv)
    saved = os.environ.get(PIN_ENV)
    try:
        for scenario in args.scenario:
            if scenario == "alone":
                alone(args.workload, args.rounds)
            elif scenario in ("busy-core", "beside-torch"):
                busy_core(args.workload, args.rounds, torch_loop=scenario == "beside-torch")
            else:
                two_processes(args.workload, max(2, args.rounds // 5), args.window)
    finally:
        if saved is None:
            os.environ.pop(PIN_ENV, None)
        else:
            os.environ[PIN_ENV] = saved
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
