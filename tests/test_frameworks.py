"""torch and JAX tensors: the fast paths through DLPack, no copies, the output's framework, device and dtype.

CPU tensors run here for real (torch and JAX are in the test extra). The CUDA-tensor glue
(:func:`arraymel._dlpack.run_on_cuda`) runs against stand-ins for CuPy and torch.cuda that record the
device, the stream and every conversion: it has not run on a GPU.
"""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

import arraymel
from arraymel import _backend, _dlpack, functional
from arraymel._numpy.pipeline import NumpyState

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

KW = dict(num_mel_bins=40, fft_length=512, sequence_stride=128)
X = np.random.default_rng(11).standard_normal((3, 8000)).astype(np.float32)


def address(a) -> int:
    if isinstance(a, np.ndarray):
        return a.ctypes.data
    if isinstance(a, torch.Tensor):
        return a.data_ptr()
    return a.unsafe_buffer_pointer()


@pytest.fixture
def numpy_calls(monkeypatch):
    """Every array the NumPy path receives and returns: ``[(input, output), ...]``."""
    calls = []
    real = NumpyState.__call__

    def spy(self, x, **kw):
        out = real(self, x, **kw)
        calls.append((x, out))
        return out

    monkeypatch.setattr(NumpyState, "__call__", spy)
    return calls


# ------------------------------------------------------------------ CPU tensors: the NumPy path, no copies
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_cpu_tensor_round_trip_shares_memory_both_ways(framework, numpy_calls):
    x = torch.from_numpy(X.copy()) if framework == "torch" else jnp.asarray(X)
    out = arraymel.mel_spectrogram(x, **KW)
    (seen_in, made), = numpy_calls
    assert address(seen_in) == address(x)  # the NumPy path read the tensor's own memory
    assert address(out) == address(made)  # and the tensor returned is the NumPy path's output buffer
    assert _dlpack.framework_of(out) == framework
    np.testing.assert_array_equal(np.asarray(out), arraymel.mel_spectrogram(X, **KW))


def test_torch_output_keeps_dtype_and_device_and_is_not_differentiable():
    x = torch.from_numpy(X.copy())
    for dtype, expected in [(torch.float32, torch.float32), (torch.float64, torch.float64),
                            (torch.int16, torch.float32), (torch.bfloat16, torch.float32)]:
        out = arraymel.mel_spectrogram((x * 1000).to(dtype) if dtype == torch.int16 else x.to(dtype), **KW)
        assert out.dtype == expected and out.device == x.device and out.shape == (3, 40, 63)
    g = x.clone().requires_grad_(True)
    out = arraymel.mel_spectrogram(g, **KW)
    assert not out.requires_grad and out.grad_fn is None
    np.testing.assert_array_equal(out.numpy(), arraymel.mel_spectrogram(X, **KW))


def test_non_contiguous_tensor_is_read_through_its_strides():
    base = torch.from_numpy(np.ascontiguousarray(X.T))  # (8000, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the (samples, channels) notice for base itself is not the point
        out = arraymel.mel_spectrogram(base.T, **KW)
    np.testing.assert_array_equal(out.numpy(), arraymel.mel_spectrogram(X, **KW))


def test_jax_float64_without_x64_is_refused_rather_than_truncated():
    with pytest.raises(ValueError, match=r"dtype='float64' is not allowed for JAX input while jax_enable_x64 is off"):
        arraymel.mel_spectrogram(jnp.asarray(X), dtype="float64", **KW)
    assert arraymel.mel_spectrogram(jnp.asarray(X), dtype="float64", output="numpy", **KW).dtype == np.float64


def test_output_numpy_returns_the_numpy_array():
    out = arraymel.mel_spectrogram(torch.from_numpy(X.copy()), output="numpy", **KW)
    assert isinstance(out, np.ndarray)


def test_jax_tracer_takes_the_generic_path_and_leaves_nothing_in_the_cache():
    ref = arraymel.mel_spectrogram(X, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no index dtype JAX would have to truncate (without x64: int32)
        for _ in range(2):  # a second trace must not meet the first trace's constants
            out = jax.jit(lambda a: arraymel.mel_spectrogram(a, **KW))(jnp.asarray(X))
            np.testing.assert_allclose(np.asarray(out), ref, atol=2e-3)


def test_other_array_api_namespaces_stay_generic():
    strict = pytest.importorskip("array_api_strict")
    assert _backend.choose(strict.asarray(X)).path == "generic"
    assert _backend.choose(torch.from_numpy(X)).path == "numpy"
    assert _backend.choose(jnp.asarray(X)).path == "numpy"
    assert _backend.choose(torch.from_numpy(X), backend="generic").path == "generic"


def test_bad_options_for_a_tensor_name_them():
    t = torch.from_numpy(X)
    with pytest.raises(ValueError, match=r"device='cuda' is not allowed for a torch tensor on cpu"):
        arraymel.mel_spectrogram(t, device="cuda", **KW)
    with pytest.raises(ValueError, match=r"backend='cupy' is not allowed for a torch tensor on cpu"):
        arraymel.mel_spectrogram(t, backend="cupy", **KW)


# ------------------------------------------------------------------ empty batch, every namespace
def _namespaces():
    strict = pytest.importorskip("array_api_strict")
    return [("numpy", np.zeros, np.float32), ("array_api_strict", strict.zeros, strict.float32),
            ("torch", torch.zeros, torch.float32), ("jax", jnp.zeros, jnp.float32)]


@pytest.mark.parametrize("backend", ["auto", "generic"])
def test_empty_batch_works_for_every_namespace(backend):
    for name, zeros, float32 in _namespaces():
        out = arraymel.mel_spectrogram(zeros((0, 4000), dtype=float32), backend=backend, **KW)
        assert tuple(out.shape) == (0, 40, 1 + 4000 // 128), name
        assert str(out.dtype).endswith("float32"), (name, out.dtype)
    assert tuple(arraymel.stft(torch.zeros((0, 4000)), fft_length=512).shape) == (0, 1 + 4000 // 512, 257)


# ------------------------------------------------------------------ CUDA tensors: the glue, with stand-ins
class FakeStream:
    def __init__(self, log, ptr, device_id=None):
        self.log, self.ptr, self.device_id = log, ptr, device_id

    def __enter__(self):
        self.log.current.append(self)
        return self

    def __exit__(self, *exc):
        self.log.current.pop()

    def synchronize(self):
        raise AssertionError("the host waited for the stream")


class FakeCupyArray:
    def __init__(self, log, source):
        self.log, self.source = log, source

    def get(self):
        self.log.events.append(("get", self.source))
        return np.zeros(1, np.float32)


def fake_cupy(log):
    """A CuPy stand-in that records the device, the stream and the DLPack imports."""
    mod = types.ModuleType("cupy")
    mod.ndarray = FakeCupyArray  # what array_api_compat looks for
    null = FakeStream(log, 0)
    log.current = [null]

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            log.devices.append(self.index)

        def __exit__(self, *exc):
            log.devices.pop()

    mod.cuda = types.SimpleNamespace(
        Device=Device,
        ExternalStream=lambda ptr, device_id=None: FakeStream(log, ptr, device_id),
        get_current_stream=lambda: log.current[-1],
    )

    def from_dlpack(x):
        log.events.append(("cupy.from_dlpack", x, log.current[-1].ptr, list(log.devices)))
        return FakeCupyArray(log, x)

    mod.from_dlpack = from_dlpack
    return mod


class CudaTensor(torch.Tensor):
    """A CPU tensor that reports itself (through DLPack) as living on cuda:1."""

    def __dlpack_device__(self):
        return (2, 1)


@pytest.fixture
def cuda_world(monkeypatch):
    log = types.SimpleNamespace(events=[], devices=[], current=[])
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(log))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda index: types.SimpleNamespace(cuda_stream=0xBEEF + index))

    def torch_from_dlpack(a):
        log.events.append(("torch.from_dlpack", a, log.current[-1].ptr, list(log.devices)))
        return "tensor-from-" + type(a).__name__

    monkeypatch.setattr(torch, "from_dlpack", torch_from_dlpack)

    def state(cfg, plan, xp, device, dtype_name, cache):
        def run(a, max_memory=None):
            log.events.append(("kernels", a, dtype_name, device, log.current[-1].ptr, list(log.devices)))
            return FakeCupyArray(log, "out")

        return run

    monkeypatch.setattr(functional, "_state", state)
    return log


def test_cuda_tensor_runs_on_its_device_in_torchs_stream_without_host_copies(cuda_world):
    x = torch.from_numpy(X.copy()).as_subclass(CudaTensor).requires_grad_(True)
    out = arraymel.mel_spectrogram(x, **KW)
    stream = 0xBEEF + 1  # torch.cuda.current_stream(1)
    (imp, inp, ptr, devs), (kern, arr, dtype_name, dev, kptr, kdevs), (back, res, bptr, bdevs) = cuda_world.events
    assert imp == "cupy.from_dlpack" and inp is not x and not inp.requires_grad  # detached (a view), then imported
    assert inp.data_ptr() == x.data_ptr()
    assert (ptr, devs) == (stream, [1])
    assert kern == "kernels" and arr.source is inp and (dtype_name, dev, kptr, kdevs) == ("float32", 1, stream, [1])
    assert back == "torch.from_dlpack" and res.source == "out" and (bptr, bdevs) == (stream, [1])
    assert out == "tensor-from-FakeCupyArray"
    assert not any(e[0] == "get" for e in cuda_world.events)  # nothing copied to the host


def test_cuda_tensor_with_output_numpy_copies_to_the_host_as_asked(cuda_world):
    x = torch.from_numpy(X.copy()).as_subclass(CudaTensor)
    arraymel.mel_spectrogram(x, output="numpy", **KW)
    assert [e[0] for e in cuda_world.events] == ["cupy.from_dlpack", "kernels", "get"]


def test_cuda_tensor_plan_and_device_checks():
    x = torch.from_numpy(X).as_subclass(CudaTensor)
    assert _backend.choose(x) == _backend.Plan("cupy", 1, "torch", None)
    assert _backend.choose(x, device="cuda:1").path == "cupy"
    with pytest.raises(ValueError, match=r"device='cuda:0' is not allowed for a torch tensor on cuda:1"):
        _backend.choose(x, device="cuda:0")
    with pytest.raises(ValueError, match=r"device='cpu' is not allowed"):
        _backend.choose(x, device="cpu")


def test_cuda_tensor_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    x = torch.from_numpy(X).as_subclass(CudaTensor)
    with pytest.raises(ImportError,
                       match=r"CUDA torch tensor .* needs CuPy: pip install 'arraymel\[cuda12\]'.*backend='generic'"):
        arraymel.mel_spectrogram(x, **KW)


def test_jax_cuda_glue_uses_cupys_current_stream_and_jax_dlpack(cuda_world, monkeypatch):
    import jax.dlpack

    monkeypatch.setattr(jax.dlpack, "from_dlpack",
                        lambda a: cuda_world.events.append(("jax.from_dlpack", a, cuda_world.current[-1].ptr)) or "jax-out")
    x = jnp.asarray(X)
    out = _dlpack.run_on_cuda(x, "jax", 0, "float32", lambda a: FakeCupyArray(cuda_world, "out"), None)
    (imp, inp, ptr, devs), (back, res, bptr) = cuda_world.events
    assert (imp, inp, ptr, devs) == ("cupy.from_dlpack", x, 0, [0]) and (back, bptr) == ("jax.from_dlpack", 0)
    assert out == "jax-out"


# ------------------------------------------------------------------ arraymel.torch.MelSpectrogram
def test_torch_module_computes_like_the_function_and_moves_its_buffers():
    import arraymel.torch as amt

    mel = amt.MelSpectrogram(**KW)
    x = torch.from_numpy(X.copy())
    np.testing.assert_array_equal(mel(x).numpy(), arraymel.mel_spectrogram(X, **KW))
    assert mel.window.shape == (512,) and mel.filterbank.shape == (257, 40)
    fb = arraymel.mel_filterbank(**{k: KW[k] for k in ("num_mel_bins", "fft_length")})
    np.testing.assert_array_equal(mel.filterbank.numpy(), fb.astype(np.float32))
    assert mel.state_dict() == {}  # constants follow from the parameters
    moved = mel.to("meta")
    assert moved.window.device.type == "meta" and moved.filterbank.device.type == "meta"
    assert "num_mel_bins=40" in repr(mel)
    assert amt.MelSpectrogram.from_config(mel.get_config()).get_config() == mel.get_config()


def test_torch_module_window_buffer_is_the_window_the_pipeline_applies():
    import arraymel.torch as amt

    hann400 = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic (DFT-even)
    centred, first = np.zeros(512), np.zeros(512)
    centred[56:456], first[:400] = hann400, hann400  # SPEC step 4; without centring (Kaldi) the window comes first
    for params, want in (({"sequence_length": 400}, centred), ({"sequence_length": 400, "center": False}, first),
                         ({"window": None}, np.ones(512))):
        mel = amt.MelSpectrogram(num_mel_bins=40, fft_length=512, **params)
        np.testing.assert_allclose(mel.window.numpy(), want, atol=1e-7, err_msg=str(params))



DATALOADER_SCRIPT = """
import pickle, numpy as np, torch, arraymel.torch as amt
from torch.utils.data import DataLoader
mel = amt.MelSpectrogram(num_mel_bins=40, fft_length=512, sequence_stride=128)
x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 200000)).astype(np.float32))
ref = mel(x)  # many blocks: the parent's thread pool runs
mel = pickle.loads(pickle.dumps(mel))  # picklable after use (what a spawn worker needs)
dl = DataLoader([x[i : i + 1] for i in range(2)], batch_size=None, num_workers=1, multiprocessing_context="fork",
                timeout=60, collate_fn=lambda r: mel(r)[0])
assert torch.equal(torch.stack(list(dl)), ref)
print("ok")
"""


def test_torch_module_works_in_a_forked_dataloader_worker_after_the_parent_used_the_pool():
    """A worker forked after the parent's NumPy path started its threads must not inherit the dead pool (it hung).
    In a fresh interpreter: this one has JAX loaded, and JAX's threads make any fork unsafe."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", DATALOADER_SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
