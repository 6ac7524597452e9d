"""GPU benchmarks: arraymel's CuPy path (cuFFT, the default) and its fused kernel (``arraymel-fused``,
``backend="cupy-fused"``) against the naive CuPy pipeline, torchaudio (MelSpectrogram +
amplitude_to_DB) and a torch.stft pipeline, on the same inputs in one process.

Workloads (``arraymel.bench.workloads``): Keras defaults and the speech configuration (fft 400,
hop 160, 80 mels) at 512 clips x 10 s, and one 10 s clip (latency). Every test is marked ``gpu``
and skips without a CUDA device; peers that are not installed (torch, torchaudio) skip with the
reason.

- ``pytest benchmarks/test_gpu.py --benchmark-only``: pytest-benchmark's host timer around calls
  that wait for their stream (``bench_peer`` in benchmarks/conftest.py), ratios to arraymel.
- ``pytest benchmarks/test_gpu.py -k table -s``: CUDA-event medians (warm-up first, then the
  median of at least 20 calls), audio-hours per second, peak pool growth, the work-area sweep
  and the per-kernel stage costs. ``ARRAYMEL_GPU_BENCH_JSON=path`` also writes them as JSON.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest

from arraymel.bench.workloads import WORKLOADS, workload

pytestmark = pytest.mark.gpu

GPU_PEERS = ["arraymel", "arraymel-fused", "naive-cupy", "torchaudio", "torch-stft"]
GPU_WORKLOADS = {
    "keras-512x10s": WORKLOADS["keras-512x10s"],
    "speech-512x10s": WORKLOADS["speech-512x10s"],
    "keras-1x10s": WORKLOADS["keras-1x10s"],
    "speech-1x10s": workload("speech", 1),
}
#: Work-area budgets swept for arraymel (MiB; None: the automatic default).
SWEEP_MIB = [None, 8, 16, 32, 64, 128, 256, 1024]

_HOST: dict[str, np.ndarray] = {}


def _gpu_or_skip() -> Any:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"needs a CUDA device and CuPy ({type(e).__name__})")
    return cupy


def _batch(name: str) -> np.ndarray:
    if name not in _HOST:
        _HOST[name] = GPU_WORKLOADS[name].make_batch()
    return _HOST[name]


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("peer", GPU_PEERS)
@pytest.mark.parametrize("name", list(GPU_WORKLOADS))
def test_gpu(bench_peer, name, peer):
    _gpu_or_skip()
    median = bench_peer(peer, GPU_WORKLOADS[name], "cuda", x_host=_batch(name), interleave=GPU_PEERS)
    assert median is None or median > 0


# ------------------------------------------------------------------------------------ CUDA-event table
def _event_rows(cupy: Any) -> list[dict]:
    from arraymel.bench import devices, peers
    from arraymel.bench.timing import measure, peak_memory

    dev = devices.resolve(["cuda"])[0]
    rows = []
    for name, w in GPU_WORKLOADS.items():
        x_host = _batch(name)
        for peer_name in GPU_PEERS:
            peer = peers.get(peer_name)
            why = peer.unavailable() or peer.unsupported(dev, w.params)
            if why:
                rows.append({"workload": name, "library": peer_name, "skipped": why})
                continue
            runner = peer.build(w.params, dev, x_host)
            t = measure(runner.fn, runner.x, timer=runner.timer, device=runner.cuda_index, warmup=3,
                        min_repeat=20, max_repeat=200, budget_s=2.0)
            mem = peak_memory(runner.fn, runner.x, method=runner.memory, device=runner.cuda_index)
            rows.append({"workload": name, "library": peer_name, "median_ms": t.median * 1e3,
                         "iqr_ms": t.iqr * 1e3, "calls": len(t.times),
                         "audio_hours_per_s": w.audio_hours / t.median, "peak_bytes": mem})
            del runner
            cupy.get_default_memory_pool().free_all_blocks()
    return rows


def _sweep_rows(cupy: Any) -> list[dict]:
    import arraymel
    from arraymel.bench.timing import measure, peak_memory

    rows = []
    for name in ("keras-512x10s", "speech-512x10s"):
        w = GPU_WORKLOADS[name]
        x = cupy.asarray(_batch(name))
        mel = arraymel.MelSpectrogram(**w.params)
        for mib in SWEEP_MIB:
            budget = None if mib is None else mib * 2**20

            def fn(v: Any, b: Any = budget, m: Any = mel) -> Any:
                return m(v, max_memory=b)

            t = measure(fn, x, timer="cupy", device=x.device.id, warmup=3, min_repeat=20, max_repeat=200, budget_s=1.0)
            mem = peak_memory(fn, x, method="cupy-pool", device=x.device.id)
            state = next(iter(mel._cache._d.values()))
            lc = state.last_call
            rows.append({"workload": name, "max_memory_mib": mib, "median_ms": t.median * 1e3,
                         "audio_hours_per_s": w.audio_hours / t.median, "peak_bytes": mem, "path": lc.path,
                         "rows_per_chunk": lc.rows, "frames_per_chunk": lc.frames, "chunks": lc.chunks,
                         "work_bytes_estimate": lc.work_bytes})
    return rows


def _stage_rows(cupy: Any) -> list[dict]:
    """CUDA events around every launch of one warm call: where the time goes, per kernel."""
    import arraymel

    rows = []
    for name, backend in [(n, b) for n in ("keras-512x10s", "speech-512x10s", "keras-1x10s", "speech-1x10s")
                          for b in ("cupy", "cupy-fused")]:
        w = GPU_WORKLOADS[name]
        x = cupy.asarray(_batch(name))
        mel = arraymel.MelSpectrogram(**w.params)
        mel(x, backend=backend)
        state = next(iter(mel._cache._d.values()))
        ops = state.ops
        marks: list[tuple[str, Any, Any]] = []
        launch, rfft = ops.launch, ops.rfft

        def timed(label: str, call: Any, *a: Any, _marks: list = marks) -> None:
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record()
            call(*a)
            e1.record()
            _marks.append((label, e0, e1))

        ops.launch = lambda k, *a, _f=launch: timed(k, _f, k, *a)
        ops.rfft = lambda *a, _f=rfft: timed("cufft", _f, *a)
        try:
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            mel(x, backend=backend)
            end.record()
            end.synchronize()
        finally:
            del ops.launch, ops.rfft
        total = cupy.cuda.get_elapsed_time(start, end)
        per: dict[str, float] = {}
        for label, e0, e1 in marks:
            per[label] = per.get(label, 0.0) + cupy.cuda.get_elapsed_time(e0, e1)
        rows.append({"workload": name, "backend": backend, "total_ms": total, "stages_ms": per, "launches": len(marks),
                     "path": state.last_call.path, "chunks": state.last_call.chunks})
    return rows


def test_gpu_table():
    """The figures of docs/gpu.md: run with ``-s`` to see them."""
    cupy = _gpu_or_skip()
    from arraymel.bench import devices

    dev = devices.resolve(["cuda"])[0]
    events, sweep, stages = _event_rows(cupy), _sweep_rows(cupy), _stage_rows(cupy)
    print(f"\n{dev.label}")
    print(f"{'workload':16s} {'library':12s} {'median ms':>10s} {'IQR ms':>8s} {'audio-h/s':>10s} {'peak MiB':>9s}")
    for r in events:
        if "skipped" in r:
            print(f"{r['workload']:16s} {r['library']:12s}  skipped: {r['skipped']}")
            continue
        peak = f"{r['peak_bytes'] / 2**20:9.1f}" if r["peak_bytes"] is not None else f"{'-':>9s}"
        print(f"{r['workload']:16s} {r['library']:12s} {r['median_ms']:10.3f} {r['iqr_ms']:8.3f} "
              f"{r['audio_hours_per_s']:10.0f} {peak}")
    print("\nwork-area sweep (arraymel)")
    for r in sweep:
        print(f"{r['workload']:16s} max_memory={str(r['max_memory_mib']):>5s} MiB  {r['median_ms']:8.3f} ms "
              f"{r['audio_hours_per_s']:8.0f} h/s  peak {r['peak_bytes'] / 2**20:8.1f} MiB  {r['path']} "
              f"{r['rows_per_chunk']}x{r['frames_per_chunk']} ({r['chunks']} chunks)")
    print("\nstage costs of one call (CUDA events around each launch)")
    for r in stages:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["stages_ms"].items()))
        print(f"{r['workload']:16s} {r['backend']:10s} total {r['total_ms']:.3f} ms over {r['launches']} launches "
              f"({r['path']}, {r['chunks']} chunks): {parts}")
    path = os.environ.get("ARRAYMEL_GPU_BENCH_JSON")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"device": dev.to_json(), "events": events, "sweep": sweep, "stages": stages}, f, indent=1,
                      default=str)
