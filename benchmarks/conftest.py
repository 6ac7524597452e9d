"""Shared pieces of the pytest-benchmark suites: the ``bench_peer`` fixture and a ratio summary.

The suites time the same adapters and workloads as ``arraymel bench`` (``arraymel.bench.peers``
and ``arraymel.bench.workloads``), so the two sets of numbers can be compared. At the end of a
run, a summary prints each group's medians and their ratio to arraymel's.

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


@pytest.fixture
def bench_peer(benchmark):
    """``bench_peer(peer_name, workload, device="cpu")``: skip when the peer cannot run, else time it.

    Builds the peer's callable and input once (outside the timing), warms it up, and benchmarks
    it in the group ``"{device} {workload.name}"``; returns the median in seconds (None when
    benchmarking is disabled).
    """
    from arraymel.bench import devices, peers

    def run(peer_name: str, workload: Any, device: str = "cpu", x_host: Any = None) -> float | None:
        peer = peers.get(peer_name)
        dev = devices.resolve([device])[0]
        why = dev.reason or peer.unavailable() or peer.unsupported(dev, workload.params)
        if why:
            pytest.skip(f"{peer_name} on {device}: {why}")
        if x_host is None:
            x_host = workload.make_batch()
        runner = peer.build(workload.params, dev, x_host)
        fn = _synchronised(runner)
        fn(runner.x)  # warm-up: plans, caches, JIT, lazy imports
        group = f"{dev.id} {workload.name}"
        benchmark.group = group
        benchmark.name = peer_name
        benchmark.extra_info.update({"library": peer_name, "device": dev.label, "workload": workload.name,
                                     "audio_hours": workload.audio_hours})
        benchmark(fn, runner.x)
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
