"""The glue of the CuPy path (``to_device``, ``CupyState``, ``CupyOps``, the plan and kernel caches) run
on the CPU against a NumPy stand-in for CuPy.

The stand-in gives arrays a ``device`` and a ``data.ptr`` (their real host address), a plan class
with CuPy's ``PlanNd`` signature whose ``fft`` replays the layout with NumPy, and kernels that map
the raw addresses the pipeline passes back to the allocations they point into and run the kernel
text on the CUDA emulator (``tests/cuda_cpu``). So the code that only runs with CuPy is executed
here: argument conversion to device addresses, plan keys and reuse, the compile cache's keys, the
default budget, the out-of-memory path. CuPy itself, NVRTC and cuFFT are not involved.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import oracle
import pytest
from _helpers import assert_db_close
from kernel_sources import force_layout

from arraymel._config import MelConfig

pytestmark = pytest.mark.filterwarnings("ignore:.*mel bands receive no FFT bin:UserWarning")


# ------------------------------------------------------------------------------------ the stand-in
class _Mem:
    def __init__(self, a: np.ndarray):
        self.ptr = a.__array_interface__["data"][0]


class FakeArray(np.ndarray):
    """A NumPy array that looks enough like a CuPy one: ``device.id``, ``data.ptr``, ``get()``."""

    registry: list = []

    def __array_finalize__(self, obj):
        self._dev = getattr(obj, "_dev", None) or types.SimpleNamespace(id=0)
        if self.base is None:
            FakeArray.registry.append(self)

    @property
    def device(self):  # NumPy 2 arrays have a read-only .device ("cpu"): shadow it
        return self._dev

    @device.setter
    def device(self, value):
        self._dev = value

    @property
    def data(self):
        return _Mem(self)

    def get(self):
        return np.asarray(self).copy()


def _fake(a: np.ndarray) -> FakeArray:
    out = np.array(a, copy=True).view(FakeArray)  # a view of a fresh copy: register the copy's owner
    FakeArray.registry.append(out)
    return out


def _owner(address: int) -> tuple[np.ndarray, int]:
    """The registered allocation holding ``address``, and the element offset of it."""
    for a in FakeArray.registry:
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        start = root.__array_interface__["data"][0]
        if start <= address < start + max(root.nbytes, 1):
            flat = np.lib.stride_tricks.as_strided(root.view(np.ndarray), shape=(root.nbytes // root.itemsize,),
                                                   strides=(root.itemsize,))
            assert (address - start) % root.itemsize == 0
            return flat, (address - start) // root.itemsize
    raise AssertionError(f"address {address:#x} is in no allocation")


class FakeOOM(MemoryError):
    pass


class FakeCuFFTError(RuntimeError):
    pass


class FakeRuntimeError(RuntimeError):
    pass


def make_fake_cupy(limit_bytes: list) -> types.ModuleType:
    from cuda_cpu import EmuOps

    from arraymel._cupy.engine import FftLayout

    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    cufft = types.ModuleType("cupy.cuda.cufft")
    cupy.cuda, cuda.cufft = cuda, cufft
    cupy.ndarray = FakeArray

    def empty(shape, dtype="float32"):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if limit_bytes and n > limit_bytes[0]:
            raise FakeOOM(f"out of memory allocating {n} bytes")
        a = np.empty(shape, dtype=dtype).view(FakeArray)
        FakeArray.registry.append(a)
        a.fill(np.nan if np.dtype(dtype).kind == "f" else 7)
        return a

    def zeros(shape, dtype="float32"):
        a = empty(shape, dtype)
        a.fill(0)
        return a

    cupy.empty, cupy.zeros = empty, zeros
    cupy.asarray = lambda a, dtype=None: _fake(np.asarray(a, dtype=dtype))
    cupy.array = lambda a, copy=True: _fake(np.asarray(a))

    class Device:
        def __init__(self, i=None):
            self.id = 0 if i is None else int(i)
            self.attributes = {"L2CacheSize": 50 * 2**20}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def synchronize(self):
            pass

    waited = []
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None, done=True, wait_event=waited.append)
    cuda.waited = waited

    class Event:
        def __init__(self, block=False, disable_timing=False):
            self.recorded = False

        def record(self, stream=None):
            self.recorded = True

    cuda.Event = Event
    cuda.Device = Device
    cuda.get_current_stream = lambda: stream
    cuda.runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, getDevice=lambda: 0, memGetInfo=lambda: (80 * 2**30, 80 * 2**30),
        CUDARuntimeError=FakeRuntimeError)
    cuda.memory = types.SimpleNamespace(OutOfMemoryError=FakeOOM)
    pool = types.SimpleNamespace(free_bytes=lambda: 0, free_all_blocks=lambda: None)
    cupy.get_default_memory_pool = lambda: pool

    cufft.CUFFT_R2C, cufft.CUFFT_D2Z, cufft.CUFFT_FORWARD = 0x2A, 0x6A, -1
    cufft.CuFFTError = FakeCuFFTError
    cufft.made = []

    class PlanNd:
        def __init__(self, shape, inembed, istride, idist, onembed, ostride, odist, fft_type, batch, order,
                     last_axis, last_size):
            assert len(shape) == 1 and istride == 1 and ostride == 1 and list(onembed) == [shape[0] // 2 + 1]
            assert fft_type in (cufft.CUFFT_R2C, cufft.CUFFT_D2Z) and order == "C"
            self.layout = (shape[0], idist, batch, odist, "float32" if fft_type == cufft.CUFFT_R2C else "float64")
            self.work_area = types.SimpleNamespace(mem=types.SimpleNamespace(size=1024))
            cufft.made.append(self.layout)

        def fft(self, a, out, direction):
            assert direction == cufft.CUFFT_FORWARD
            EmuOps().rfft(FftLayout(*self.layout), a.view(np.ndarray), out.view(np.ndarray))

    cufft.PlanNd = PlanNd
    return cupy


class FakeKernels:
    """``KERNELS`` of the pipeline: each launch maps raw addresses back to arrays and runs the kernel text on the
    CUDA emulator (tests/cuda_cpu)."""

    def __init__(self):
        self.compiled = 0
        self.keys = set()
        self.launches = []

    def function(self, device_id, kernel, dtype_name, in_dtype_name=None):
        from cuda_cpu import EmuOps

        from arraymel._cupy import kernels

        key = (device_id, kernel, dtype_name, in_dtype_name if kernel in kernels.INPUT_KERNELS else None)
        if key not in self.keys:
            self.keys.add(key)
            self.compiled += 1

        def call(grid, block, args, shared_mem=0):
            spec = kernels.KERNEL_PARAMS[kernel]
            assert len(args) == len(spec)
            conv = []
            for (ctype, _name), a in zip(spec, args):
                if ctype.endswith("*"):
                    if isinstance(a, np.uint64):  # a raw device address, as CupyOps passes a Ptr
                        flat, off = _owner(int(a))
                        conv.append(kernels.Ptr(flat, off))
                    else:  # a whole array
                        conv.append(a.view(np.ndarray))
                else:
                    conv.append(a)
            self.launches.append(kernel)
            EmuOps().launch(kernel, dtype_name, in_dtype_name, grid, block, shared_mem, tuple(conv))

        return call


@pytest.fixture
def fake_pipeline(monkeypatch):
    limit: list = []
    fake = make_fake_cupy(limit)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupy.cuda", fake.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.cufft", fake.cuda.cufft)
    monkeypatch.delitem(sys.modules, "arraymel._cupy.pipeline", raising=False)
    pipeline = importlib.import_module("arraymel._cupy.pipeline")
    kern = FakeKernels()
    monkeypatch.setattr(pipeline, "KERNELS", kern)
    from arraymel._cupy.plans import PlanCache

    monkeypatch.setattr(pipeline, "PLANS", PlanCache(maxsize=8))
    FakeArray.registry.clear()
    yield types.SimpleNamespace(pipeline=pipeline, cupy=fake, kernels=kern, limit=limit)
    sys.modules.pop("arraymel._cupy.pipeline", None)
    FakeArray.registry.clear()


def _signal(shape, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-1]) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(shape)
    return x


# ------------------------------------------------------------------------------------ tests
def test_to_device(fake_pipeline):
    pl = fake_pipeline.pipeline
    xh = np.ones(10, np.float32)
    xd, dev = pl.to_device(xh, None)
    assert isinstance(xd, FakeArray) and dev == 0
    same, dev = pl.to_device(xd, 0)
    assert same is xd and dev == 0
    with pytest.raises(ValueError, match="cuda:3"):
        pl.to_device(xh, 3)


@pytest.mark.parametrize("params", [
    {},
    dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db_scope="example"),
    dict(fft_length=512, sequence_stride=128, sequence_length=300, window="hamming"),
    dict(fft_length=256, sequence_stride=64, num_mel_bins=32, power_to_db=False, mag_exp=1.0),
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_through_raw_addresses(fake_pipeline, params, dtype):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    x = _signal((3, 20000), seed=1).astype(dtype)
    st = pl.CupyState(MelConfig.create(**params), dtype, 0)
    ref = oracle.mel_spectrogram(x.astype(np.float64), **params)
    for layout in (["gather", "inplace"] if st.params.inplace_ok else ["gather"]):
        force_layout(st, layout)
        for budget in (None, 200_000):
            out = st(cp.asarray(x), max_memory=budget)
            assert isinstance(out, FakeArray) and out.dtype == np.dtype(dtype) and out.shape == ref.shape
            assert st.last_call.path == layout
            if params.get("power_to_db", True):
                assert_db_close(np.asarray(out), ref, 1e-9 if dtype == "float64" else 1e-3)
            else:
                rel = np.abs(np.asarray(out) - ref) / (np.abs(ref) + 1e-6 * np.abs(ref).max())
                assert rel.max() < (1e-9 if dtype == "float64" else 1e-4)


def test_calls_wait_for_the_constants_on_the_device(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    st = pl.CupyState(MelConfig.create(), "float32", 0)
    st(cp.asarray(np.ones((1, 4000), np.float32)))
    assert cp.cuda.waited and cp.cuda.waited[-1] is st._ready and st._ready.recorded


def test_plans_and_kernels_are_reused(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    st = pl.CupyState(MelConfig.create(), "float32", 0)
    x = cp.asarray(_signal((4, 16000)).astype(np.float32))
    st(x)
    made, compiled = len(cp.cuda.cufft.made), fake_pipeline.kernels.compiled
    assert made >= 1 and compiled >= 2
    st(x)
    st(x)
    assert len(cp.cuda.cufft.made) == made and fake_pipeline.kernels.compiled == compiled
    assert pl.PLANS.hits >= 2


def test_default_budget_is_kept_between_calls(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    st = pl.CupyState(MelConfig.create(), "float32", 0)
    b = st.default_budget()
    assert b == 100 * 2**20  # twice the (fake) 50 MB L2
    cp.cuda.runtime.memGetInfo = lambda: (1 * 2**20, 80 * 2**30)
    assert st.default_budget() == b
    st._free_caches()
    assert st.default_budget() == 2**18


def test_out_of_memory_is_retried(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    params = dict(fft_length=512, sequence_stride=128, num_mel_bins=40)
    st = pl.CupyState(MelConfig.create(**params), "float32", 0)
    x_host = _signal((4, 20000)).astype(np.float32)
    x = cp.asarray(x_host)
    fake_pipeline.limit.append(400_000)  # buffers above 400 kB fail, like an exhausted pool
    out = st(x, max_memory=64 * 2**20)
    assert st.last_call.retries >= 1 and st.last_call.budget < 64 * 2**20
    assert_db_close(np.asarray(out), oracle.mel_spectrogram(x_host.astype(np.float64), **params), 1e-3)


def test_state_checks_its_input(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    st = pl.CupyState(MelConfig.create(), "float32", 0)
    with pytest.raises(TypeError, match="CuPy array"):
        st(np.ones(100, np.float32))
    other = cp.asarray(np.ones(100, np.float32))
    other.device = types.SimpleNamespace(id=1)
    with pytest.raises(ValueError, match="cuda:1"):
        st(other)


def test_float16_and_int16_inputs(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    params = dict(fft_length=256, sequence_stride=100, num_mel_bins=32)
    st = pl.CupyState(MelConfig.create(**params), "float32", 0)
    base = _signal((2, 3000))
    for x in (base.astype(np.float16), np.round(base * 1000).astype(np.int16)):
        out = st(cp.asarray(x))
        assert_db_close(np.asarray(out), oracle.mel_spectrogram(x.astype(np.float64), **params), 1e-3)


def test_fft_length_one_skips_cufft(fake_pipeline):
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    params = dict(fft_length=1, sequence_stride=1, num_mel_bins=1, min_freq=0.0, power_to_db=False)
    with pytest.warns(UserWarning, match="no FFT bin"):
        st = pl.CupyState(MelConfig.create(**params), "float64", 0)
    x = _signal((2, 50))
    out = st(cp.asarray(x))
    assert out.shape == (2, 1, 50) and cp.cuda.cufft.made == []
    np.testing.assert_allclose(np.asarray(out), oracle.mel_spectrogram(x, **params), atol=0)
