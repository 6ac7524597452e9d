"""The fused GPU path (``backend="cupy-fused"``, :mod:`arraymel._cupy.fused`) on the CPU.

- The decomposition: the radix plans of every supported size, and the NumPy model of the kernel's
  stages (tests/fused_model.py: the kernel's index maps and twiddle-table indices) against
  ``numpy.fft``; the twiddle table; the launch shape's limits; which sizes fall back to cuFFT.
- The kernel text itself on the CPU emulator of tests/cuda_cpu (guarded buffers, fibers, barriers):
  the engine (:class:`~arraymel._cupy.fused.FusedEngine`) launching ``am_fused_mel`` and the clip,
  against the float64 oracle (docs/semantics.md's tolerances by power-equivalent band) on every case of
  tests/test_parity_oracle.py whose size the kernel covers, on every supported size in float32 and
  float64 (and against the cuFFT path's kernels on the same emulator), every input type, strided,
  short and empty input, NaN, a schedule-shuffled run; planted bugs (a wrong twiddle, a missing
  barrier) that the emulator must catch.
- The plumbing: ``backend="cupy-fused"`` picks the fused kernel, an unsupported size runs cuFFT.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import oracle
import pytest
import spec_bands
from _helpers import assert_db_close, max_abs_diff
from cuda_cpu import EmuOps, KernelError, build_many, emulated_engine
from cuda_cpu.scale import ScaleOps
from fused_model import power_rows, stockham, unpack_radices
from kernel_sources import decode_key
from test_cupy_emulated import GRID, _signal
from test_cupy_fake import fake_pipeline  # noqa: F401 - the fixture (a NumPy stand-in for CuPy)
from test_cupy_scale import frame_oracle, sampled_signal, scale_setup
from test_parity_oracle import CASE_NAMES, CASES, input_as, oracle_output

import arraymel
from arraymel import _backend
from arraymel._config import MelConfig
from arraymel._cupy.engine import Constants, consts_host
from arraymel._cupy.fused import (
    FusedEngine,
    fused_launch,
    fused_unsupported,
    pack_radices,
    radix_plan,
    twiddle_table,
    twiddles_host,
)
from arraymel._cupy.fused_kernels import (
    FUSED_KERNELS,
    FUSED_MAX_BUTTERFLIES,
    FUSED_PARAMS,
    FUSED_SOURCE,
    fused_name_expression,
)
from arraymel._cupy.kernels import BLOCK, COMPUTE_CTYPES, INPUT_CTYPES, SMEM_LIMIT, pack_args
from arraymel._cupy.params import mel_params

#: The sizes the issue asks for, and two more that need radix 3 and a lone radix 5.
SIZES = [256, 320, 400, 512, 1024, 2048, 4096]
EXTRA_SIZES = [384, 600, 20]


def assert_spec_close(out, expected, dtype: str, params: dict) -> dict:
    """docs/semantics.md's tolerances (tests/spec_bands.py) for a config's output."""
    return spec_bands.assert_spec_close(out, expected, dtype=dtype, power_to_db=params.get("power_to_db", True),
                                        mag_exp=params.get("mag_exp", 2.0))


def fused_modules(source: str = FUSED_SOURCE, dtypes=tuple(COMPUTE_CTYPES), inputs=tuple(INPUT_CTYPES)) -> dict:
    """``{compute dtype: module}``: one emulator module per compute dtype, every input type (built in parallel)."""
    jobs = [(source, [fused_name_expression(k, dt, it) for k in FUSED_KERNELS for it in inputs]) for dt in dtypes]
    return dict(zip(dtypes, build_many(jobs)))


class FusedEmuOps(EmuOps):
    """The emulator's ops, plus the fused kernel's text (``source``; a planted bug replaces it)."""

    def __init__(self, source: str = FUSED_SOURCE, **options):
        super().__init__(**options)
        self.source = source

    def launch(self, kernel, dtype_name, in_dtype_name, grid, block, smem, args):
        if kernel not in FUSED_KERNELS:
            return super().launch(kernel, dtype_name, in_dtype_name, grid, block, smem, args)
        spec = FUSED_PARAMS[kernel]  # the packed arguments are exactly what their declared C types need
        ref = pack_args(kernel, dtype_name, in_dtype_name, {n: v for (_, n), v in zip(spec, args)}, FUSED_PARAMS)
        assert [type(a) for a in args] == [type(r) for r in ref], kernel
        inputs = tuple(INPUT_CTYPES) if self.source == FUSED_SOURCE else (in_dtype_name,)
        mod = fused_modules(self.source, (dtype_name,), inputs)[dtype_name]
        self.launches.append((kernel, tuple(int(g) for g in grid), int(smem)))
        self.launch_expr(mod, fused_name_expression(kernel, dtype_name, in_dtype_name), grid, block, smem, args)


def fused_engine(params: dict, dtype: str, **options) -> FusedEngine:
    """The fused engine for ``params`` with its kernels run by the emulator (options: ``source``, ``shuffle``...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-band notices of the small configurations
        p = mel_params(MelConfig.create(**params), dtype)
    ops = FusedEmuOps(**options)
    consts = {k: (ops.to_device(v) if isinstance(v, np.ndarray) else v) for k, v in consts_host(p).items()}
    return FusedEngine(p, ops, Constants(**consts), ops.to_device(twiddles_host(p)))


def cufft_engine(params: dict, dtype: str):
    """The cuFFT path's engine on the emulator, its FFT in the compute dtype (float32: a stand-in for cuFFT)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return emulated_engine(MelConfig.create(**params), dtype, fft="float32")


@pytest.fixture(scope="module", autouse=True)
def _modules():
    """Build both compute dtypes' modules at once (two g++ in parallel) before the first launch."""
    fused_modules()


# ------------------------------------------------------------------------------------ decomposition
@pytest.mark.parametrize("n_fft", SIZES + EXTRA_SIZES)
def test_model_of_the_stages_is_the_fft(n_fft):
    """The kernel's stage index maps and twiddle indices compute the DFT; the pair post-processing the real one."""
    half = n_fft // 2
    radices = radix_plan(half)
    assert int(np.prod(radices)) == half and set(radices) <= {2, 3, 4, 5} and radices.count(2) <= 1
    assert unpack_radices(pack_radices(radices), len(radices)) == list(radices)
    tw = twiddle_table(n_fft)
    twc = tw[0::2] + 1j * tw[1::2]
    x = np.random.default_rng(n_fft).standard_normal((3, n_fft))
    z = x[:, 0::2] + 1j * x[:, 1::2]
    Z = stockham(z, list(radices), twc)
    np.testing.assert_allclose(Z, np.fft.fft(z, axis=-1), rtol=0, atol=1e-12 * np.abs(Z).max())
    rows = power_rows(Z, twc, 0, 1.0)
    P = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    np.testing.assert_allclose(rows[:, 0:n_fft + 2:2], P, rtol=0, atol=1e-12 * P.max())
    np.testing.assert_allclose(power_rows(Z, twc, 1, 0.5)[:, 0:n_fft + 2:2], np.sqrt(P), rtol=1e-12, atol=1e-12)


def test_twiddle_table():
    for n in (20, 256, 400, 4096):
        tw = twiddle_table(n)
        np.testing.assert_allclose(tw[0::2] + 1j * tw[1::2], np.exp(-2j * np.pi * np.arange(n) / n), atol=1e-15)
        assert tuple(tw[0:2]) == (1.0, 0.0) and tuple(tw[n:n + 2]) == (-1.0, 0.0)
        if n % 4 == 0:
            assert tuple(tw[n // 2:n // 2 + 2]) == (0.0, -1.0)


def test_which_sizes_the_fused_kernel_covers():
    for n in SIZES + EXTRA_SIZES:
        for dt in ("float32", "float64"):
            assert fused_unsupported(n, dt) is None, n
    assert "odd" in fused_unsupported(511, "float32")
    assert "prime factor" in fused_unsupported(448, "float32")  # 224 = 32 * 7
    assert "outside" in fused_unsupported(8192, "float32")
    assert "outside" in fused_unsupported(2, "float32")


@pytest.mark.parametrize("n_fft", SIZES)
@pytest.mark.parametrize("itemsize", [4, 8])
def test_launch_shape_limits(n_fft, itemsize):
    half = n_fft // 2
    radices = radix_plan(half)
    for frames, rows, min_blocks in [(1, 1, 0), (313, 512, 264), (313, 1, 264), (100_000, 1, 0)]:
        ml = fused_launch(half, radices, itemsize, frames, rows, min_blocks)
        assert ml.fpb >= 1 and BLOCK % ml.fpb == 0 and ml.fpb <= max(1, 2 ** int(np.ceil(np.log2(frames))))
        assert ml.smem == ml.fpb * (2 * half + 2) * itemsize <= SMEM_LIMIT
        assert ml.fpb * (half // min(radices)) <= BLOCK * FUSED_MAX_BUTTERFLIES
    keras = fused_launch(1024, radix_plan(1024), 4, 313, 512, 264)
    speech = fused_launch(200, radix_plan(200), 4, 1001, 512, 264)
    assert (keras.fpb, speech.fpb) == (4, 8)
    assert fused_launch(1024, radix_plan(1024), 4, 313, 1, 264).fpb == 1  # one clip: narrow blocks, more of them


# ------------------------------------------------------------------------------------ the oracle grid
FUSED_CASES = [n for n in CASE_NAMES if fused_unsupported(CASES[n]["params"].get("fft_length", 2048), "float32") is None]


def test_the_grid_covers_most_cases():
    sizes = {CASES[n]["params"].get("fft_length", 2048) for n in FUSED_CASES}
    assert len(FUSED_CASES) >= 70 and sizes >= {256, 400, 512, 1024, 2048}


@pytest.mark.parametrize("name", FUSED_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_engine_matches_oracle(name, dtype):
    eng = fused_engine(CASES[name]["params"], dtype)
    out, plan, _ = eng.compute(input_as(name, dtype))
    assert out.dtype == np.dtype(dtype)
    assert_spec_close(out, oracle_output(name, dtype), dtype, CASES[name]["params"])
    if plan is not None:
        assert plan.path == "fused" and plan.n_chunks == 1


@pytest.mark.parametrize("n_fft", SIZES + EXTRA_SIZES[:2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_size_matches_oracle_and_the_cufft_engine(n_fft, dtype):
    """Every supported size, against the oracle and against the cuFFT path's kernels (same emulator)."""

    params = dict(fft_length=n_fft, sequence_stride=n_fft // 4 + 1, num_mel_bins=min(64, n_fft // 8),
                  window="hann", top_db_scope="example")
    x = _signal((2, 6000), seed=n_fft, gain_db=[0.0, -30.0]).astype(dtype)
    out, _, _ = fused_engine(params, dtype).compute(x)
    assert_spec_close(out, oracle.mel_spectrogram(x.astype(np.float64), **params), dtype, params)
    cufft, _, _ = cufft_engine(params, dtype).compute(x, 2**40)
    assert max_abs_diff(out, cufft) <= (2e-9 if dtype == "float64" else 2e-3)


@pytest.mark.parametrize("i", [i for i, (p, _) in enumerate(GRID) if fused_unsupported(p["fft_length"], "float32") is None])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_engine_on_the_emulated_grid(i, dtype):

    params, shape = GRID[i]
    x = _signal(shape, seed=i).astype(dtype)
    out, _, _ = fused_engine(params, dtype).compute(x)
    assert_spec_close(out, oracle.mel_spectrogram(x.astype(np.float64), **params), dtype, params)


# ------------------------------------------------------------------------------------ inputs and edges
@pytest.mark.parametrize("in_dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                                      "float32", "float64"])
def test_input_dtypes_are_read_natively(in_dtype):

    params = dict(fft_length=256, sequence_stride=100, num_mel_bins=32)
    x = (np.abs(_signal((2, 3000))) * 100).astype(in_dtype)
    eng = fused_engine(params, "float32")
    out, _, _ = eng.compute(x)
    assert out.dtype == np.float32
    assert_db_close(out, oracle.mel_spectrogram(x.astype(np.float64), **params), 1e-3)


def test_strided_reversed_short_and_empty_inputs():

    params = dict(fft_length=512, sequence_stride=160, num_mel_bins=40, window=np.hanning(300), sequence_length=300)
    eng = fused_engine(params, "float64")
    base = _signal((3, 5000))
    x = base[::-1, ::-2]
    out, _, _ = eng.compute(x)
    assert_db_close(out, oracle.mel_spectrogram(np.ascontiguousarray(x), **params), 1e-9)
    for n in (1, 3, 700):  # shorter than the pad: reflected repeatedly
        out, _, _ = eng.compute(base[:, :n])
        assert_db_close(out, oracle.mel_spectrogram(base[:, :n], **params), 1e-9)
    out, plan, _ = eng.compute(np.zeros((0, 4000)))
    assert out.shape == (0, 40, 26) and plan is None
    with pytest.raises(ValueError, match="0 samples"):
        eng.compute(np.zeros((2, 0)))


@pytest.mark.parametrize("scope", ["batch", "example"])
def test_nan_propagates(scope):
    x = _signal((3, 4000)).astype(np.float32)
    x[1, 2000] = np.nan
    out, _, _ = fused_engine(dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db_scope=scope),
                             "float32").compute(x)
    if scope == "batch":
        assert np.isnan(out).all()
    else:
        assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


def test_launches_of_one_call():
    """One fused launch (grid: rows x tiles of fpb frames) and the clip; nothing else, whatever the batch."""
    eng = fused_engine(dict(fft_length=2048, sequence_stride=512), "float32")
    out, plan, _ = eng.compute(_signal((4, 16000)).astype(np.float32))
    assert [k for k, _, _ in eng.ops.launches] == ["am_fused_mel", "am_clip_top_db"]
    assert plan.fpb == 4 and eng.ops.launches[0][1] == (4 * 8, 1, 1) and eng.ops.launches[0][2] == 4 * 2050 * 4


def test_schedule_shuffled_run_is_identical():
    """Randomised block and thread order (the emulator's shuffle mode) gives bit-identical output."""
    params = dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db_scope="example")
    x = _signal((2, 5000)).astype(np.float32)
    base, _, _ = fused_engine(params, "float32").compute(x)
    for seed in (1, 2):
        out, _, _ = fused_engine(params, "float32", shuffle=True, seed=seed).compute(x)
        np.testing.assert_array_equal(out, base)


# ------------------------------------------------------------------------------------ planted bugs
def _plant(old: str, new: str) -> str:
    assert FUSED_SOURCE.count(old) == 1, old
    return FUSED_SOURCE.replace(old, new)


PLANTED = {
    # the stage twiddle conjugated (the inverse transform's)
    "stage twiddle": _plant("vi[b][r] = ar * w.im + ai * w.re;", "vi[b][r] = -ar * w.im + ai * w.re;"),
    # the post-processing twiddle off by one bin
    "post twiddle": _plant("const am_cplx<T> w = tw[k];", "const am_cplx<T> w = tw[k + 1];"),
    # the barrier between a stage's loads and its stores removed: the in-place stage races
    "missing barrier": _plant("""                am_dft<T>(R, vr[b], vi[b]);
            }
        }
        __syncthreads();""", """                am_dft<T>(R, vr[b], vi[b]);
            }
        }"""),
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_emulator_catches_planted_bugs(bug):
    params = dict(fft_length=512, sequence_stride=160, num_mel_bins=64)
    x = _signal((2, 4000)).astype(np.float32)
    expected = oracle.mel_spectrogram(x.astype(np.float64), **params)
    assert_spec_close(fused_engine(params, "float32").compute(x)[0], expected, "float32", params)
    with pytest.raises((AssertionError, KernelError)):
        out, _, _ = fused_engine(params, "float32", source=PLANTED[bug]).compute(x)
        assert_spec_close(out, expected, "float32", params)


# ------------------------------------------------------------------------------------ plumbing
def test_backend_cupy_fused_asks_for_the_fused_transform():
    x = np.zeros(100, np.float32)
    assert _backend.choose(x, backend="cupy-fused").fft == "fused"
    assert _backend.choose(x, backend="cupy").fft == "cufft"
    assert _backend.choose(x, device="cuda", backend="cupy-fused") == _backend.Plan("cupy", None, "numpy", None, "fused")
    with pytest.raises(ValueError, match="cupy-fused"):
        _backend.choose(x, device="cpu", backend="cupy-fused")


# ------------------------------------------------------------------------------------ the CuPy glue, CuPy faked
class FusedFakeKernels:
    """``FUSED_KERNEL_CACHE`` of the pipeline on the fake CuPy of tests/test_cupy_fake.py: raw device addresses
    are mapped back to the arrays they point into and the kernel text runs on the emulator."""

    def __init__(self):
        self.launches = []

    def function(self, device_id, kernel, dtype_name, in_dtype_name=None):
        from test_cupy_fake import _owner

        from arraymel._cupy.kernels import Ptr

        def call(grid, block, args, shared_mem=0):
            conv = []
            for (ctype, _), a in zip(FUSED_PARAMS[kernel], args):
                if ctype.endswith("*"):  # a raw address (a Ptr, as CupyOps passes it) or a whole array
                    a = Ptr(*_owner(int(a))) if isinstance(a, np.uint64) else a.view(np.ndarray)
                conv.append(a)
            self.launches.append(kernel)
            FusedEmuOps().launch(kernel, dtype_name, in_dtype_name, grid, block, shared_mem, tuple(conv))

        return call


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_state_runs_the_fused_kernel_through_raw_addresses(fake_pipeline, monkeypatch, dtype):  # noqa: F811
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    fused = FusedFakeKernels()
    monkeypatch.setattr(pl, "FUSED_KERNEL_CACHE", fused)
    params = dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db_scope="example")
    st = pl.CupyState(MelConfig.create(**params), dtype, 0, fft="fused")
    assert st.fft_path == "fused" and st.fallback_reason is None
    x = _signal((3, 9000), seed=2).astype(dtype)
    out = st(cp.asarray(x), max_memory=1)  # no work area: the budget is not used
    assert fused.launches == ["am_fused_mel"] and fake_pipeline.kernels.launches == ["am_clip_top_db"]
    assert st.last_call.path == "fused" and st.last_call.chunks == 1 and cp.cuda.cufft.made == []
    assert_spec_close(np.asarray(out), oracle.mel_spectrogram(x.astype(np.float64), **params), dtype, params)


def test_cupy_state_falls_back_to_cufft_for_other_sizes(fake_pipeline):  # noqa: F811 - the fixture
    pl, cp = fake_pipeline.pipeline, fake_pipeline.cupy
    st = pl.CupyState(MelConfig.create(fft_length=511, sequence_stride=128, num_mel_bins=40), "float32", 0, fft="fused")
    assert st.fft_path == "cufft" and "odd" in st.fallback_reason
    st(cp.asarray(np.ones((1, 3000), np.float32)))
    assert st.last_call.path in ("inplace", "gather") and cp.cuda.cufft.made
    with pytest.raises(ValueError, match="fft='vkfft'"):
        pl.CupyState(MelConfig.create(), "float32", 0, fft="vkfft")


# ------------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("name", FUSED_CASES)
def test_gpu_fused_matches_oracle(name):
    import cupy

    x = input_as(name, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = arraymel.mel_spectrogram(cupy.asarray(x), backend="cupy-fused", **CASES[name]["params"])
    assert isinstance(out, cupy.ndarray) and out.dtype == np.float32
    assert_spec_close(out.get(), oracle_output(name, "float32"), "float32", CASES[name]["params"])


@pytest.mark.gpu
@pytest.mark.parametrize("n_fft", SIZES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_fused_equals_cufft_path_and_allocates_nothing_new(n_fft, dtype):
    import cupy

    params = dict(fft_length=n_fft, sequence_stride=n_fft // 4, num_mel_bins=64)
    x = cupy.asarray(_signal((4, 32000), seed=n_fft).astype(dtype))
    mel = arraymel.MelSpectrogram(**params)
    a, b = mel(x, backend="cupy-fused"), mel(x, backend="cupy")
    cupy.cuda.get_current_stream().synchronize()
    assert max_abs_diff(a.get(), b.get()) <= (2e-9 if dtype == "float64" else 2e-3)
    pool = cupy.get_default_memory_pool()
    del a
    total = pool.total_bytes()
    for _ in range(3):
        mel(x, backend="cupy-fused")
    assert pool.total_bytes() == total


# ------------------------------------------------------------------------------------ scale mode
class FusedScaleOps(ScaleOps):
    """The emulator's scale mode (sparse buffers, sampled blocks) with the fused kernel: a launch runs its
    corner blocks, a few random ones and the blocks of the sampled ``(row, frame)`` outputs."""

    source = FUSED_SOURCE

    def begin_fused(self, engine: FusedEngine, frames: int, samples: set) -> None:
        self.p, self.samples = engine.p, samples
        self.plan = types.SimpleNamespace(problem=types.SimpleNamespace(frames=frames))

    def launch(self, kernel, dtype_name, in_dtype_name, grid, block, smem, args):
        if kernel not in FUSED_KERNELS:
            return super().launch(kernel, dtype_name, in_dtype_name, grid, block, smem, args)
        a = {name: v for (_, name), v in zip(FUSED_PARAMS[kernel], args)}
        grid = tuple(int(g) for g in grid)
        self.grids.setdefault(kernel, set()).add(grid)
        tiles, fpb = int(a["tiles"]), int(a["fpb"])
        ids = self._corners_and_random(grid) | {b * tiles + f // fpb for b, f in self.samples}
        self.sample = lambda expression, g, chosen=sorted(ids): chosen  # noqa: B008 - sorted once, here
        self.blocks_run[kernel] = self.blocks_run.get(kernel, 0) + len(ids)
        try:
            FusedEmuOps.launch(self, kernel, dtype_name, in_dtype_name, grid, block, smem, args)
        finally:
            self.sample = None


def run_fused_scale(batch: int, samples: int, in_dtype: str, params: dict):
    ops = FusedScaleOps(seed=1)
    rng, mp, consts = scale_setup(batch, samples, params, ops)
    eng = FusedEngine(mp, ops, consts, ops.to_device(twiddles_host(mp)))
    frames = mp.frames(samples)
    rows = sorted({0, batch - 1, int(rng.integers(0, batch))})
    fs = sorted({0, 1, frames - 2, frames - 1, *(int(v) for v in rng.integers(0, frames, 3))})
    x = sampled_signal(ops, (batch, samples), in_dtype, rows, fs, params, rng)
    out = ops.sparse((batch, mp.n_mels, frames), "float32")
    keys = []
    zeros = ops.zeros
    ops.zeros = lambda n, dt: keys.append(zeros(n, dt)) or keys[-1]
    ops.begin_fused(eng, frames, {(b, f) for b in rows for f in fs})
    plan = eng.run(x, out)
    got = np.stack([out[b][:, fs] for b in rows])
    want = np.stack([np.stack([frame_oracle(x[b], f, params) for f in fs], axis=1) for b in rows])
    if params.get("top_db") is not None:  # the clip against the maximum the sampled blocks found
        floor = decode_key(keys[-1][0], "float32") - params["top_db"]
        want = np.maximum(want, floor)
    spec_bands.assert_spec_close(got, want, dtype="float32")
    return plan, ops


@pytest.mark.slow
@pytest.mark.parametrize("case", ["1 hour", "70,000 rows", "2^31 + 3 samples", "2^31 output elements"])
def test_fused_kernel_at_gpu_sizes(case):
    """The fused launch's real geometry at GPU sizes, sampled blocks checked against the oracle."""
    batch, samples, in_dtype, params = {
        "1 hour": (1, 3600 * 16000, "float32", dict(fft_length=2048, sequence_stride=512, num_mel_bins=128)),
        "70,000 rows": (70_000, 2000, "int16", dict(fft_length=512, sequence_stride=128, num_mel_bins=64,
                                                    top_db=None)),
        "2^31 + 3 samples": (1, 2**31 + 3, "float32", dict(fft_length=1024, sequence_stride=256, num_mel_bins=64,
                                                           top_db=None)),
        "2^31 output elements": (2, 2**30, "float32", dict(fft_length=256, sequence_stride=64, num_mel_bins=128)),
    }[case]
    plan, ops = run_fused_scale(batch, samples, in_dtype, params)
    (grid,) = ops.grids["am_fused_mel"]
    assert grid[0] == batch * -(-plan.frames // plan.fpb) <= 2**31 - 1 and plan.n_chunks == 1
