"""The GPU path's engine on the CPU: every launch it makes runs the CUDA kernel text on the emulator
(tests/cuda_cpu: g++, guarded and poisoned buffers), against the float64 oracle.

The parity grids (every oracle case, this module's GRID, short inputs, input dtypes, strides, NaN)
run in tests/test_cupy_parity.py on every target (the emulator here, CUDA where there is a GPU).
This module holds the engine's own behaviour (chunking, narrow blocks, the direct mel kernel, the
retry, every output element written, empty rows rejected), the schedule-shuffling mode, and the
cross-check with the independent NumPy model of the kernels (tests/kernel_model.py).
"""

from __future__ import annotations

import warnings

import kernel_sources
import numpy as np
import oracle
import pytest
from _helpers import assert_db_close, assert_power_close
from cuda_cpu import EmuOps, emulated_engine
from kernel_model import NumpyOps, OutOfBounds
from kernel_model import emulated_engine as model_engine
from kernel_sources import decode_key, encode_keys, with_layout

from arraymel._config import MelConfig
from arraymel._cupy import kernels
from arraymel._cupy.chunking import work_bytes

BIG = 2**40


def engine_for(params: dict, dtype: str, **ops_options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-band notices of the small configurations
        return emulated_engine(MelConfig.create(**params), dtype, **ops_options)


def small_budget(eng, x) -> int:
    """A budget that forces about three time chunks per row."""
    prob = eng.problem(int(np.prod(x.shape[:-1], dtype=int)), x.shape[-1])
    return work_bytes(prob, "gather", 1, max(1, -(-prob.frames // 3)))


# ------------------------------------------------------------------------------------ sources vs Python
def test_kernel_signatures_match_the_declared_parameters():
    assert kernel_sources.parse_signatures() == kernels.KERNEL_PARAMS
    assert set(kernels.KERNEL_PARAMS) == set(kernels.CORE_KERNELS) | set(kernels.INPUT_KERNELS)


def test_pack_args_types_and_errors():
    spec = np.zeros(8, np.float32)
    vals = dict(out=spec, row_elems=8, tiles=1, max_keys=np.zeros(1, np.uint32), per_row=0, top_db=80.0)
    packed = kernels.pack_args("am_clip_top_db", "float32", None, vals)
    assert [type(v) for v in packed] == [np.ndarray, np.int64, np.int32, np.ndarray, np.int32, np.float32]
    with pytest.raises(TypeError, match="max_keys"):
        kernels.pack_args("am_clip_top_db", "float32", None, {**vals, "max_keys": np.zeros(1, np.uint64)})
    with pytest.raises(TypeError, match="out"):
        kernels.pack_args("am_clip_top_db", "float64", None, vals)
    with pytest.raises(TypeError, match="missing"):
        kernels.pack_args("am_clip_top_db", "float32", None, {k: v for k, v in vals.items() if k != "tiles"})
    with pytest.raises(TypeError, match="unknown"):
        kernels.pack_args("am_clip_top_db", "float32", None, {**vals, "bogus": 1})
    with pytest.raises(OverflowError, match="tiles"):
        kernels.pack_args("am_clip_top_db", "float32", None, {**vals, "tiles": 2**31})
    with pytest.raises(TypeError, match="integer"):
        kernels.pack_args("am_clip_top_db", "float32", None, {**vals, "tiles": 1.5})


def test_name_expressions_cover_both_dtypes_and_every_input_type():
    exprs = kernel_sources.all_name_expressions()
    assert len(exprs) == len(set(exprs)) == 2 * (3 + 2 * len(kernels.INPUT_CTYPES))
    assert "am_pad_reflect<short, float>" in exprs and "am_mel_smem<double>" in exprs


# ------------------------------------------------------------------------------------ max keys
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ordered_keys(dtype):
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.standard_normal(200) * 10.0 ** rng.integers(-40, 38, 200),
                        [0.0, -0.0, np.inf, -np.inf, np.finfo(dtype).max, -np.finfo(dtype).max,
                         np.finfo(dtype).tiny, -np.finfo(dtype).tiny, 1e-45]]).astype(dtype)
    k = encode_keys(v)
    by_key = v[np.argsort(k, kind="stable")]
    assert np.all(np.diff(by_key.astype(np.float64)) >= 0)  # key order is float order (-0.0 == 0.0 ties)
    assert len(np.unique(k)) == len(np.unique(v.view(k.dtype)))  # distinct floats, distinct keys
    for x in v:
        assert decode_key(encode_keys(np.array([x], dtype))[0], np.dtype(dtype).name) == x
    nan = encode_keys(np.array([np.nan, -np.nan, 1.0], dtype))
    assert nan[0] == nan[1] == np.iinfo(nan.dtype).max > nan[2]
    assert np.isnan(decode_key(nan[0], np.dtype(dtype).name))
    assert encode_keys(np.array([-np.inf], dtype))[0] > 0  # key 0 means "nothing seen"


# ------------------------------------------------------------------------------------ the grid
def _signal(shape, seed=0, gain_db=None):
    rng = np.random.default_rng(seed)
    n = shape[-1]
    t = np.arange(n) / 16000.0
    rows = int(np.prod(shape[:-1], dtype=int))
    out = np.empty((rows, n))
    for i in range(rows):
        f = rng.uniform(100, 7000, 3)
        out[i] = sum(a * np.sin(2 * np.pi * fi * t + rng.uniform(0, 6)) for a, fi in zip((0.5, 0.3, 0.1), f))
        out[i] += 0.01 * rng.standard_normal(n)
        if gain_db is not None:
            out[i] *= 10 ** (gain_db[i % len(gain_db)] / 20)
    return out.reshape(shape)


GRID = [
    # (params, input shape) -- odd/even fft, sequence_length < fft, every window kind, mag_exp,
    # power output, ref_power, top_db None/values, both scopes, 1-D/2-D/3-D
    (dict(fft_length=512, sequence_stride=128, num_mel_bins=64), (2, 4000)),
    (dict(fft_length=511, sequence_stride=100, num_mel_bins=40, window="hamming"), (3, 3001)),
    (dict(fft_length=400, sequence_stride=160, num_mel_bins=80, sequence_length=300), (4000,)),
    (dict(fft_length=256, sequence_stride=64, num_mel_bins=32, window=None, mag_exp=1.0), (2, 2, 1500)),
    (dict(fft_length=255, sequence_stride=37, num_mel_bins=24, window=np.linspace(0.2, 1.0, 200),
          sequence_length=200), (2, 2000)),
    (dict(fft_length=128, sequence_stride=32, num_mel_bins=20, mag_exp=0.5, power_to_db=False), (3, 900)),
    (dict(fft_length=256, sequence_stride=80, num_mel_bins=30, ref_power=10.0, top_db=40.0), (2, 2500)),
    (dict(fft_length=256, sequence_stride=80, num_mel_bins=30, top_db=None, min_power=1e-6), (2, 2500)),
    (dict(fft_length=256, sequence_stride=80, num_mel_bins=30, top_db=20.0, top_db_scope="example"), (3, 2500)),
    (dict(fft_length=64, sequence_stride=7, num_mel_bins=12, window="hamming", mag_exp=1.5), (2, 1, 700)),
    (dict(fft_length=2048, sequence_stride=512, num_mel_bins=128), (2, 16000)),
]


def test_emulated_small_chunks_use_narrow_blocks():
    x = _signal((1, 16000), seed=12).astype(np.float32)
    eng = engine_for({}, "float32")
    eng.min_blocks = 264
    out, _, _ = eng.compute(x, BIG)
    mel = [(g, s) for k, g, s in eng.ops.launches if k == "am_mel_smem"]
    assert mel and mel[0][0][0] == 32  # 32 frames, one per block
    assert_db_close(out, oracle.mel_spectrogram(x.astype(np.float64)), 1e-3)


def test_emulated_empty_batch():
    eng = engine_for({}, "float32")
    out, plan, _ = eng.compute(np.zeros((0, 16000), np.float32), BIG)
    assert out.shape == (0, 128, 32) and plan is None and eng.ops.launches == []


@pytest.mark.parametrize("layout", ["gather", "inplace"])
def test_emulated_nan_reaches_empty_bands_as_in_keras(layout):
    """Keras's dense product gives an all-zero band NaN (0 * NaN) in a NaN frame; so does the sparse one."""
    x = _signal((1, 3000), seed=3)
    x[0, 1500] = np.nan
    params = dict(fft_length=64, sequence_stride=16, num_mel_bins=40, top_db=None)  # bands with no bin
    ref = oracle.mel_spectrogram(x, **params)
    out, _, _ = with_layout(engine_for(params, "float64"), layout).compute(x, BIG)
    fb = oracle.mel_filterbank(64, 16000, 40, 20.0, 8000)
    assert not fb.any(axis=0).all()
    assert np.array_equal(np.isnan(out), np.isnan(ref)) and np.isnan(out).any()
    assert_db_close(out, ref, 1e-9)


def test_emulated_chunked_equals_whole_on_a_long_clip():
    x = _signal((1, 160_000), seed=8, gain_db=[-10]).astype(np.float32)
    params = dict(fft_length=1024, sequence_stride=256, num_mel_bins=64)
    eng = engine_for(params, "float32")
    whole, p1, _ = eng.compute(x, BIG)
    for budget in (2**21, 2**19, 50_000):
        part, plan, _ = eng.compute(x, budget)
        assert plan.n_chunks > 1 and plan.work_bytes <= budget
        assert_db_close(part, whole, 1e-4)
    assert p1.n_chunks == 1


def test_emulated_batch_of_many_clips_in_row_chunks():
    x = _signal((40, 2000), seed=9, gain_db=[0, -30, -60, -85]).astype(np.float32)
    for scope in ("batch", "example"):
        params = dict(fft_length=256, sequence_stride=64, num_mel_bins=32, top_db_scope=scope)
        eng = engine_for(params, "float32")
        prob = eng.problem(40, 2000)
        out, plan, _ = eng.compute(x, work_bytes(prob, "inplace", 7, prob.frames))
        assert plan.n_row_chunks >= 6 and plan.n_time_chunks == 1
        assert_db_close(out, oracle.mel_spectrogram(x.astype(np.float64), **params), 1e-3)


def test_emulated_writes_every_output_element():
    """Buffers come back poisoned with NaN: a missed store would stay NaN."""
    x = _signal((3, 5000), seed=4).astype(np.float32)
    for params in (dict(fft_length=256, sequence_stride=64, num_mel_bins=32, power_to_db=False),
                   dict(fft_length=256, sequence_stride=64, num_mel_bins=32, top_db=None)):
        eng = engine_for(params, "float32")
        for budget in (BIG, 20_000):
            out, _, _ = eng.compute(x, budget)
            assert not np.isnan(out).any()


def test_emulated_large_fft_uses_the_direct_mel_kernel():
    params = dict(fft_length=32768, sequence_stride=8192, num_mel_bins=40)
    x = _signal((1, 50_000), seed=6)
    eng = engine_for(params, "float64")
    out, _, _ = eng.compute(x, BIG)
    assert {k for k, _, _ in eng.ops.launches} >= {"am_mel_direct"}
    assert_db_close(out, oracle.mel_spectrogram(x, **params), 1e-9)


def test_emulated_retry_after_out_of_memory():
    class Oom(MemoryError):
        pass

    class TightOps(EmuOps):
        def empty(self, shape, dtype_name):
            if isinstance(shape, int) and shape * np.dtype(dtype_name).itemsize > 200_000:
                raise Oom("out of memory")
            return super().empty(shape, dtype_name)

    params = dict(fft_length=512, sequence_stride=128, num_mel_bins=40)
    x = _signal((4, 20_000), seed=7).astype(np.float32)
    eng = engine_for(params, "float32")
    eng.ops = TightOps()
    freed = []
    out, plan, log = eng.compute(x, 64 * 2**20, is_oom=lambda e: isinstance(e, Oom), on_oom=lambda: freed.append(1))
    assert log.retries >= 1 and len(freed) == log.retries and log.budgets[-1] < log.budgets[0]
    assert_db_close(out, oracle.mel_spectrogram(x.astype(np.float64), **params), 1e-3)


def test_numpy_model_catches_out_of_bounds():
    """The NumPy model itself: a pointer past its allocation is an error, not a silent read."""
    ops = NumpyOps()
    buf = ops.empty(10, "float32")
    args = kernels.pack_args("am_clip_top_db", "float32", None, dict(
        out=buf, row_elems=11, tiles=1, max_keys=np.zeros(1, np.uint32), per_row=0, top_db=80.0))
    with pytest.raises(OutOfBounds):
        ops.launch("am_clip_top_db", "float32", None, (1, 1, 1), (256, 1, 1), 0, args)
    shifted = kernels.pack_args("am_clip_top_db", "float32", None, dict(
        out=kernels.Ptr(buf, 5), row_elems=6, tiles=1, max_keys=np.zeros(1, np.uint32), per_row=0, top_db=80.0))
    with pytest.raises(OutOfBounds):
        ops.launch("am_clip_top_db", "float32", None, (1, 1, 1), (256, 1, 1), 0, shifted)
    with pytest.raises(AssertionError, match="passed as"):  # a Python int where the kernel wants an int32
        ops.launch("am_clip_top_db", "float32", None, (1, 1, 1), (256, 1, 1), 0, args[:2] + (1,) + args[3:])


def test_prepared_arguments():
    vals = dict(out=np.zeros(8, np.float32), row_elems=8, tiles=1, max_keys=np.zeros(1, np.uint32), per_row=0,
                top_db=80.0)
    prep = kernels.Prepared("am_clip_top_db", "float32", None, vals)
    a = prep.args(row_elems=2**40, tiles=3, top_db=40, out=kernels.Ptr(np.zeros(4, np.float32), 2))
    assert type(a[1]) is np.int64 and a[1] == 2**40 and type(a[2]) is np.int32 and type(a[5]) is np.float32
    assert a == tuple(a) and isinstance(a[0], kernels.Ptr) and a[0].offset == 2
    with pytest.raises(OverflowError):
        prep.args(tiles=2**31)
    with pytest.raises(TypeError, match="changed dtype"):
        prep.args(out=np.zeros(4, np.float64))


# ------------------------------------------------------------------------------------ found by the emulator
@pytest.mark.parametrize("layout", ["gather", "inplace"])
def test_zero_length_rows_are_rejected(layout):
    """am_reflect has no index for n == 0 (it returned -2 or -3, a read before the row: a heap overflow in
    am_frames_window under ASan, NaN from the guard zone here); the engine must refuse such input."""
    eng = engine_for(dict(fft_length=256, sequence_stride=64, num_mel_bins=32), "float32")
    with pytest.raises(ValueError, match=r"shape \(2, 0\).*at least 1 sample"):
        with_layout(eng, layout).compute(np.zeros((2, 0), np.float32), BIG)
    assert eng.ops.launches == []


# ------------------------------------------------------------------------------------ schedules
SHUFFLE_GRID = [GRID[0], GRID[3], GRID[8], GRID[9]]


@pytest.mark.parametrize("i", range(len(SHUFFLE_GRID)))
def test_shuffled_schedules_give_identical_results(i):
    """Block order and the order of threads within every round randomised (three seeds): the output is
    bit-identical to the deterministic schedule, so no result depends on an order CUDA does not promise."""
    params, shape = SHUFFLE_GRID[i]
    x = _signal(shape, seed=i, gain_db=[0, -20, -45]).astype(np.float32)
    base = engine_for(params, "float32")
    for layout in (["gather", "inplace"] if base.p.inplace_ok else ["gather"]):
        for budget in (BIG, small_budget(base, x)):
            want, _, _ = with_layout(base, layout).compute(x, budget)
            for seed in (1, 2, 3):
                eng = engine_for(params, "float32", shuffle=True, seed=seed)
                got, _, _ = with_layout(eng, layout).compute(x, budget)
                np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------ the second model
@pytest.mark.parametrize("i", range(len(GRID)))
def test_numpy_model_agrees_with_the_emulator(i):
    """float64: the emulator (the CUDA text) and the independent NumPy model (tests/kernel_model.py) make the
    same launches and agree to 1e-11 dB (power: 1e-12 relative), each layout, one and several chunks."""
    params, shape = GRID[i]
    x = _signal(shape, seed=i, gain_db=[0, -20, -45])
    emu = engine_for(params, "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = model_engine(MelConfig.create(**params), "float64")
    for layout in (["gather", "inplace"] if emu.p.inplace_ok else ["gather"]):
        for budget in (BIG, small_budget(emu, x)):
            emu.ops.launches.clear()
            model.ops.launches.clear()
            a, _, _ = with_layout(emu, layout).compute(x, budget)
            b, _, _ = with_layout(model, layout).compute(x, budget)
            assert emu.ops.launches == model.ops.launches
            if params.get("power_to_db", True):
                assert_db_close(a, b, 1e-11)
            else:
                assert_power_close(a, b, rtol=1e-12, atol_frac=1e-15)
