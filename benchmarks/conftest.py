"""Shared pieces of the pytest-benchmark suites: the ``bench_peer`` fixture and a ratio summary.

The suites time the same adapters and workloads as ``arraymel bench`` (``arraymel.bench.peers``
and ``arraymel.bench.workloads``), so the two sets of numbers can be compared, and, like it, time
the libraries of a group interleaved in one process. At the end of a run, a summary prints each
group's medians and their ratio to arraymel's.

GPU peers: pytest-benchmark times with a host clock, so ``bench_peer`` makes every call of a
GPU peer wait for its device (a stream synchronisation after the call); the time is then the
whole call, never just the launch. (``arraymel bench`` uses CUDA events instead.)
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "numpy")  # before anything imports Keras

#: group -> library -> median seconds, filled by ``bench_peer`` as the benchmarks run.
MEDIANS: dict[str, dict[str, float]] = defaultdict(dict)


def _synchronised(runner: Any) -> Any:
    """``runner.fn`` made to wait for its GPU work (identity for CPU peers)."""
    fn = runner.fn
    if runner.timer == "cupy":
        import cupy

        def call(x: Any) -> Any:
            out = fn(x)
            cupy.cuda.get_current_stream().synchronize()
            return out

        return call
    if runner.timer == "torch":
        import torch

        def call(x: Any) -> Any:
            out = fn(x)
            torch.cuda.synchronize()
            return out

        return call
    return fn


#: Timed rounds per library: each round calls every other library of the group once first (untimed).
ROUNDS = 11

#: The built callables of the group being measured: ``(device, workload, libraries) -> {library: runner}``.
_GROUP: dict[tuple, dict[str, Any]] = {}


def _group_runners(names: list[str], workload: Any, dev: Any, x_host: Any) -> dict[str, Any]:
    """Every library of ``names`` that can run, built once per (device, workload); the previous group is freed."""
    from arraymel.bench import peers

    key = (dev.id, workload.name, tuple(names))
    if key not in _GROUP:
        _GROUP.clear()
        runners = {}
        for name in names:
            peer = peers.get(name)
            if dev.reason or peer.unavailable() or peer.unsupported(dev, workload.params):
                continue
            runner = peer.build(workload.params, dev, x_host)
            runner.fn = _synchronised(runner)
            runner.fn(runner.x)  # warm-up: plans, caches, JIT, lazy imports
            runners[name] = runner
        _GROUP[key] = runners
    return _GROUP[key]


@pytest.fixture
def bench_peer(benchmark):
    """``bench_peer(peer_name, workload, device="cpu", x_host=None, interleave=())``: skip when the peer cannot
    run, else time it.

    Builds the callables of the peer and of every library in ``interleave`` once (outside the
    timing) and benchmarks the peer in the group ``"{device} {workload.name}"``, interleaved: each
    of its ``ROUNDS`` timed calls follows one untimed call of every other library of the group,
    in this process (pytest-benchmark's ``pedantic`` with a ``setup``), as a program that uses
    them all runs them. With benchmarking disabled (the smoke run of ``make test``) only the peer
    itself is built and called. Returns the median in seconds (None when benchmarking is disabled).
    """
    from arraymel.bench import devices, peers

    def run(peer_name: str, workload: Any, device: str = "cpu", x_host: Any = None,
            interleave: tuple[str, ...] | list[str] = ()) -> float | None:
        peer = peers.get(peer_name)
        dev = devices.resolve([device])[0]
        why = dev.reason or peer.unavailable() or peer.unsupported(dev, workload.params)
        if why:
            pytest.skip(f"{peer_name} on {device}: {why}")
        if x_host is None:
            x_host = workload.make_batch()
        group_names = [peer_name] if benchmark.disabled else list(dict.fromkeys([peer_name, *interleave]))
        runners = _group_runners(group_names, workload, dev, x_host)
        runner = runners[peer_name]
        others = [r for name, r in runners.items() if name != peer_name]

        def others_first() -> tuple[tuple[Any], dict]:
            for other in others:
                other.fn(other.x)
            return (runner.x,), {}

        group = f"{dev.id} {workload.name}"
        benchmark.group = group
        benchmark.name = peer_name
        benchmark.extra_info.update({"library": peer_name, "device": dev.label, "workload": workload.name,
                                     "audio_hours": workload.audio_hours,
                                     "interleaved_with": [n for n in runners if n != peer_name]})
        benchmark.pedantic(runner.fn, setup=others_first, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        stats = getattr(benchmark, "stats", None)
        if stats is None or getattr(stats, "stats", None) is None:
            return None
        median = float(stats.stats.median)
        MEDIANS[group][peer_name] = median
        benchmark.extra_info["audio_hours_per_s"] = workload.audio_hours / median
        return median

    return run


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not MEDIANS:
        return
    tr = terminalreporter
    tr.section("median time relative to arraymel (same group, same run)")
    for group, libs in MEDIANS.items():
        ref = libs.get("arraymel")
        tr.write_line(group)
        for lib, med in sorted(libs.items(), key=lambda kv: kv[1]):
            rel = f"{med / ref:6.2f}x arraymel's time" if ref else "(arraymel did not run)"
            tr.write_line(f"  {lib:<18} {med * 1e3:9.2f} ms  {rel}")
