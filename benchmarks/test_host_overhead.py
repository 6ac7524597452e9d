"""Host (Python) cost of one GPU call, measured on the CPU with CuPy mocked out.

A stand-in ``cupy`` whose allocations are bare ``numpy.empty`` arrays, whose kernel launches and
cuFFT plans do nothing, and whose streams and events are no-ops, is put in ``sys.modules``; then
``arraymel._cupy.pipeline.CupyState`` runs its real per-call code: input checks, the stream's wait
on the constants, chunk planning (cuFFT path), argument packing and pointer conversion, the launch
calls. What it leaves out: CuPy's own cost per launch and per allocation (a few microseconds each
on a real device, which this does not measure), and the public dispatch of ``arraymel.mel_spectrogram``.

Workloads: one 10 s clip (batch-1 latency is where host cost matters), Keras defaults and speech,
for the cuFFT path (the default) and the fused kernel (``fft="fused"``). ``extra_info`` records the
GPU operations per call (launches, FFTs, allocations). Goal of issue 14: under 50 us per call.

    pytest benchmarks/test_host_overhead.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest

from arraymel._config import MelConfig
from arraymel.bench.workloads import CONFIGS

#: What the mocked device did: counts per kind of operation.
COUNTS: dict[str, int] = {}


def _count(kind: str) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + 1


class MockArray(np.ndarray):
    """A host array that answers the CuPy attributes the pipeline reads (``device.id``, ``data.ptr``)."""

    _device = types.SimpleNamespace(id=0)

    @property
    def device(self):  # NumPy 2 arrays have a read-only .device: shadow it
        return self._device

    @property
    def data(self):
        return types.SimpleNamespace(ptr=0)


def _mock_cupy() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    cufft = types.ModuleType("cupy.cuda.cufft")
    cupy.cuda, cuda.cufft, cupy.ndarray = cuda, cufft, MockArray

    def empty(shape, dtype="float32"):
        _count("allocations")
        return np.empty(shape, dtype=dtype).view(MockArray)

    def zeros(shape, dtype="float32"):
        _count("allocations")
        _count("memsets")
        return np.zeros(shape, dtype=dtype).view(MockArray)

    cupy.empty, cupy.zeros = empty, zeros
    cupy.asarray = lambda a, dtype=None: np.asarray(a, dtype=dtype).view(MockArray)

    class Device:
        attributes = {"L2CacheSize": 50 * 2**20, "MultiProcessorCount": 132}

        def __init__(self, i=None):
            self.id = 0

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    class Event:
        def __init__(self, block=False, disable_timing=False):
            pass

        def record(self, stream=None):
            pass

    stream = types.SimpleNamespace(ptr=0, wait_event=lambda e: None)
    cuda.Device, cuda.Event = Device, Event
    cuda.get_current_stream = lambda: stream
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                         memGetInfo=lambda: (80 * 2**30, 80 * 2**30), CUDARuntimeError=RuntimeError)
    cuda.memory = types.SimpleNamespace(OutOfMemoryError=MemoryError)
    pool = types.SimpleNamespace(free_bytes=lambda: 0, free_all_blocks=lambda: None)
    cupy.get_default_memory_pool = lambda: pool
    cufft.CUFFT_R2C, cufft.CUFFT_D2Z, cufft.CUFFT_FORWARD, cufft.CuFFTError = 0x2A, 0x6A, -1, RuntimeError

    class PlanNd:
        def __init__(self, *a, **k):
            self.work_area = None

        def fft(self, a, out, direction):
            _count("ffts")

    cufft.PlanNd = PlanNd
    return cupy


class NullKernels:
    """A kernel cache whose functions only count their launches."""

    def function(self, device_id, kernel, dtype_name, in_dtype_name=None):
        def call(grid, block, args, shared_mem=0):
            _count("launches")

        return call


@pytest.fixture
def mocked_pipeline(monkeypatch):
    fake = _mock_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupy.cuda", fake.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.cufft", fake.cuda.cufft)
    monkeypatch.delitem(sys.modules, "arraymel._cupy.pipeline", raising=False)
    pipeline = importlib.import_module("arraymel._cupy.pipeline")
    monkeypatch.setattr(pipeline, "KERNELS", NullKernels())
    monkeypatch.setattr(pipeline, "FUSED_KERNEL_CACHE", NullKernels())
    yield pipeline, fake
    sys.modules.pop("arraymel._cupy.pipeline", None)


@pytest.mark.parametrize("fft", ["cufft", "fused"])
@pytest.mark.parametrize("config", ["keras", "speech"])
def test_host_cost_per_call_batch1(benchmark, mocked_pipeline, config, fft):
    pipeline, cupy = mocked_pipeline
    state = pipeline.CupyState(MelConfig.create(**CONFIGS[config]), "float32", 0, fft=fft)
    assert state.fft_path == fft
    x = cupy.asarray(np.zeros((1, 160_000), np.float32))
    state(x)  # warm: plans, prepared arguments
    COUNTS.clear()
    state(x)
    per_call = dict(COUNTS)
    benchmark.group = "host cost per call, 1 x 10 s (CuPy mocked)"
    benchmark.name = f"{config} {fft}"
    benchmark.extra_info.update(per_call)
    benchmark(state, x)
    # the fused path: the key reset, one kernel, the clip; the cuFFT path: three per chunk, plus those two
    assert per_call.get("ffts", 0) == (0 if fft == "fused" else state.last_call.chunks)
    assert per_call["launches"] == (2 if fft == "fused" else 2 * state.last_call.chunks + 1)
