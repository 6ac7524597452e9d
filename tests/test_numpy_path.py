"""The tuned NumPy path gives the generic path's answer (docs/semantics.md tolerances) over a grid of cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import arraymel
from arraymel._config import MelConfig
from arraymel._numpy import pipeline
from tests._helpers import assert_db_close, assert_power_close

RNG = np.random.default_rng(7)

CONFIGS = {
    "keras-defaults": {},
    "speech": dict(fft_length=400, sequence_stride=160, num_mel_bins=80),
    "odd-fft": dict(fft_length=511, sequence_stride=128, num_mel_bins=40),
    "short-window": dict(fft_length=1024, sequence_length=600, sequence_stride=256, num_mel_bins=64),
    "hamming": dict(window="hamming", fft_length=512, sequence_stride=100, num_mel_bins=48),
    "array-window": dict(window=np.kaiser(300, 8.0), sequence_length=300, fft_length=512, sequence_stride=64, num_mel_bins=32),
    "no-window": dict(window=None, fft_length=256, sequence_stride=256, num_mel_bins=24, sampling_rate=8000),
    "magnitude": dict(mag_exp=1.0, fft_length=512, num_mel_bins=40),
    "root-magnitude": dict(mag_exp=0.5, fft_length=512, num_mel_bins=40),
    "power-out": dict(power_to_db=False, fft_length=512, num_mel_bins=40),
    "ref-topdb": dict(ref_power=-3.0, top_db=40.0, fft_length=512, num_mel_bins=40),
    "no-clip-example": dict(top_db=None, top_db_scope="example", fft_length=512, num_mel_bins=40),
    "band-limited": dict(min_freq=300.0, max_freq=3400.0, fft_length=512, num_mel_bins=30),
    "above-nyquist": dict(max_freq=9000.0, sampling_rate=16000, fft_length=1024, num_mel_bins=20),
    "tiny-hop": dict(fft_length=64, sequence_stride=1, num_mel_bins=8, sampling_rate=8000),
    "hop-over-fft": dict(fft_length=256, sequence_stride=300, num_mel_bins=16),
}


def _signal(shape, dtype=np.float32):
    x = RNG.standard_normal(shape)
    if len(shape) > 1:
        x *= np.logspace(0, -3, shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
    return x.astype(dtype)


def _compare(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-band warnings of small configs
        fast = arraymel.mel_spectrogram(x, backend="numpy", **kw)
        ref = arraymel.mel_spectrogram(x, backend="generic", **kw)
    assert type(fast) is np.ndarray
    if kw.get("power_to_db", True):
        tol = 1e-9 if ref.dtype == np.float64 else 1e-3
        return assert_db_close(fast, ref, tol, like=ref)
    return assert_power_close(fast, ref, like=ref, rtol=1e-10 if ref.dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_path_matches_generic(name, dtype):
    _compare(_signal((3, 5000), dtype), **CONFIGS[name])


@pytest.mark.parametrize("samples", [1, 2, 3, 255, 256, 257, 1024, 4097])
def test_short_and_boundary_lengths(samples):
    kw = dict(fft_length=512, sequence_stride=128, num_mel_bins=32)
    if samples == 1:  # a constant frame: every band holds only FFT rounding noise; keep it under the floor
        kw["min_power"] = 1e-4
    _compare(_signal((2, samples)), **kw)


@pytest.mark.parametrize("shape", [(4000,), (2, 4000), (2, 3, 4000), (1, 1, 1, 700)])
def test_leading_dimensions(shape):
    _compare(_signal(shape), fft_length=256, sequence_stride=64, num_mel_bins=20)


def test_integer_input_is_cast_not_scaled():
    x = (RNG.standard_normal((2, 3000)) * 3000).astype(np.int16)
    _compare(x, fft_length=512, num_mel_bins=32)
    a = arraymel.mel_spectrogram(x, fft_length=512, num_mel_bins=32, top_db=None)
    b = arraymel.mel_spectrogram(x.astype(np.float32), fft_length=512, num_mel_bins=32, top_db=None)
    np.testing.assert_array_equal(a, b)


def test_non_contiguous_input():
    base = _signal((4, 12000))
    x = base[::2, ::3]
    assert not x.flags.c_contiguous
    _compare(x, fft_length=256, sequence_stride=100, num_mel_bins=20)
    np.testing.assert_array_equal(arraymel.mel_spectrogram(x, fft_length=256, sequence_stride=100, num_mel_bins=20),
                                  arraymel.mel_spectrogram(np.ascontiguousarray(x), fft_length=256, sequence_stride=100,
                                                           num_mel_bins=20))
    _compare(np.asfortranarray(base), fft_length=256, num_mel_bins=20)


def test_result_does_not_depend_on_threads_or_block_size(monkeypatch):
    x = _signal((5, 20000))
    monkeypatch.setenv("ARRAYMEL_NUM_THREADS", "1")
    one = arraymel.mel_spectrogram(x)
    monkeypatch.setenv("ARRAYMEL_NUM_THREADS", "3")
    three = arraymel.mel_spectrogram(x)
    small_blocks = arraymel.mel_spectrogram(x, max_memory=64 * 1024)
    np.testing.assert_array_equal(one, three)  # same blocks, whichever thread runs them
    assert_db_close(small_blocks, one, 1e-4, like=one)  # other block sizes: BLAS may round differently


def test_numpy_fft_fallback_without_scipy(monkeypatch):
    from arraymel._numpy import fft as npfft

    monkeypatch.setattr(npfft, "rfft_impl", lambda: ("numpy.fft", npfft._numpy_rfft))
    monkeypatch.setattr(pipeline, "rfft_impl", lambda: ("numpy.fft", npfft._numpy_rfft))
    arraymel.functional._CACHE.clear()
    _compare(_signal((2, 6000)), fft_length=512, num_mel_bins=40)


def test_float32_input_is_transformed_in_float32(monkeypatch):
    """float32 in: every buffer, the FFT's input and output (complex64), and the result are float32."""
    from arraymel._numpy import fft as npfft

    name, real_rfft = npfft.rfft_impl()
    fft_dtypes, empties = [], []

    def spy_rfft(frames):
        out = real_rfft(frames)
        fft_dtypes.append((frames.dtype, out.dtype))
        return out

    real_empty = np.empty

    def spy_empty(shape, dtype=float, *a, **k):
        empties.append(np.dtype(dtype))
        return real_empty(shape, dtype, *a, **k)

    x = _signal((2, 60000))
    st = pipeline.NumpyState(arraymel.MelConfig.create(fft_length=512, num_mel_bins=40), "float32")
    monkeypatch.setattr(pipeline, "rfft_impl", lambda: (name, spy_rfft))
    monkeypatch.setattr(pipeline.np, "empty", spy_empty)
    out = st(x)
    assert out.dtype == np.float32
    assert fft_dtypes and set(fft_dtypes) == {(np.dtype(np.float32), np.dtype(np.complex64))}
    assert empties and set(empties) == {np.dtype(np.float32)}


def test_float32_fft_is_within_spec_bands_far_below_the_maximum():
    """A quiet clip beside a loud one (top_db=None): every band of docs/semantics.md's float32 tolerances holds
    against the float64 oracle, down to 100 dB below the maximum."""
    from tests import oracle
    from tests._helpers import assert_db_banded

    x = _signal((2, 32000))
    x[1] *= 1e-3
    kw = dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db=None)
    fast = arraymel.mel_spectrogram(x, **kw)
    assert fast.dtype == np.float32
    errors = assert_db_banded(fast, oracle.mel_spectrogram(x, **kw))
    assert errors["0-60"] > 0  # float32 rounding is seen: the float64 path would pass trivially


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin:UserWarning")
def test_banded_filterbank_equals_dense():
    from arraymel._numpy.banded import banded
    from arraymel.core.filterbank import filterbank_host

    for args in [(128, 2048, 16000.0, 20.0, 8000.0), (80, 400, 16000.0, 0.0, 8000.0), (40, 512, 8000.0, 300.0, 9000.0)]:
        fb = filterbank_host(*args)
        bf = banded(fb, np.float64)
        p = RNG.random((7, fb.shape[0]))
        dense = p @ fb
        got = np.zeros_like(dense)
        for g in bf.groups:
            if g.bin_hi > g.bin_lo:
                got[:, g.band_lo:g.band_hi] = p[:, g.bin_lo:g.bin_hi] @ g.weights_t.T
        np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-14)
        assert [g.band_lo for g in bf.groups][0] == 0 and bf.groups[-1].band_hi == fb.shape[1]
        assert all(a.band_hi == b.band_lo for a, b in zip(bf.groups, bf.groups[1:]))
    groups = banded(filterbank_host(128, 2048, 16000.0, 20.0, 8000.0), np.float32).groups
    assert sum((g.band_hi - g.band_lo) * (g.bin_hi - g.bin_lo) for g in groups) < 1025 * 128 / 10  # multiply-adds per frame


def _same_as_generic(x, **kw):
    """The NumPy path gives the generic (dense) path's NaN, +inf and -inf in the same places, and its finite values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty bands, by design in some cases below
        fast = arraymel.mel_spectrogram(x, backend="numpy", **kw)
        with np.errstate(all="ignore"):  # NumPy's warnings of inf - inf and overflow in the generic path
            ref = arraymel.mel_spectrogram(x, backend="generic", **kw)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape
    for kind in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(kind(fast), kind(ref), err_msg=kind.__name__)
    finite = np.isfinite(ref)
    if finite.any():
        assert_db_close(fast[finite], ref[finite], 1e-3 if kw.get("power_to_db", True) else np.inf)
    return fast


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_sample_in_an_empty_band_configuration(value):
    """issue 10: with the only band empty, a NaN gave finite output (0 * NaN was never computed)."""
    x = _signal((1600,))
    x[800] = value
    out = _same_as_generic(x, fft_length=16, sequence_stride=8, num_mel_bins=1, min_freq=3000.0, max_freq=3100.0,
                           top_db=None)
    assert np.isnan(out).any()


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("kw", [dict(), dict(top_db_scope="example"), dict(power_to_db=False), dict(top_db=None)],
                         ids=["batch", "example", "power", "no-clip"])
def test_non_finite_sample_gives_the_dense_products_nan(value, kw):
    """issue 10: a +inf sample gave +inf (the dense product gives 0 * inf = NaN in every band)."""
    x = _signal((3, 6000))
    x[1, 3000] = value
    out = _same_as_generic(x, fft_length=512, sequence_stride=128, num_mel_bins=40, **kw)
    assert np.isnan(out[1]).any() and (np.isfinite(out[0]).all() or kw.get("top_db_scope", "batch") == "batch")


@pytest.mark.parametrize("dtype, finite", [(np.float32, False), (np.float64, True)])
def test_overflowing_dc_gives_the_dense_products_nan(dtype, finite):
    """issue 10: DC at 1e19 with min_freq=2000: its power overflows float32 in the DC bin, which no band uses;
    the dense product gives 0 * inf = NaN. In float64 nothing overflows and the values are finite."""
    x = np.full((2, 4000), 1e19, dtype=dtype)
    out = _same_as_generic(x, fft_length=256, num_mel_bins=20, min_freq=2000.0, top_db=None)
    assert np.isfinite(out).all() == finite


def test_big_endian_input_keeps_its_dtype_natively():
    """issue 10: big-endian float64 in -> native float64 out (it computed in float32), on both paths."""
    x = _signal((2, 5000), np.float64)
    for backend in ("numpy", "generic"):
        native = arraymel.mel_spectrogram(x, backend=backend, fft_length=512, num_mel_bins=40)
        swapped = arraymel.mel_spectrogram(x.astype(">f8"), backend=backend, fft_length=512, num_mel_bins=40)
        assert swapped.dtype == np.dtype(np.float64) and swapped.dtype.isnative
        np.testing.assert_array_equal(swapped, native)
        assert arraymel.mel_spectrogram(x.astype(">f4"), backend=backend).dtype == np.dtype(np.float32)


@pytest.mark.parametrize("clips, samples", [(37, 400), (37, 1024), (37, 3000), (5, 200000), (8, 100000)])
def test_a_clip_gives_the_same_bytes_alone_and_in_any_batch(clips, samples):
    """A clip's numbers depend on nothing but itself (arraymel corpus relies on it): short clips are grouped
    into blocks, long ones cut into tiles, and neither depends on the batch (nor on the thread count)."""
    kw = dict(top_db=None)
    x = _signal((clips, samples))
    batch = arraymel.mel_spectrogram(x, workers=2, **kw)  # more blocks than threads: whole-block transforms
    for i in (0, clips // 2, clips - 1):
        np.testing.assert_array_equal(arraymel.mel_spectrogram(x[i], workers=1, **kw), batch[i])
    np.testing.assert_array_equal(arraymel.mel_spectrogram(x[1:4], **kw), batch[1:4])


@pytest.mark.parametrize("kw", [{}, dict(fft_length=400, sequence_stride=160, num_mel_bins=80), dict(mag_exp=1.0)])
@pytest.mark.parametrize("dense", [False, True])
def test_fft_batches_change_no_number(kw, dense):
    """A call with one block per thread transforms it in cache-sized FFT batches (pipeline.FFT_BATCH_BYTES):
    whole clips when they are short, even slices of one clip when it is long. Either way every frame's power
    is what the whole block gives, byte for byte."""
    cfg = MelConfig.create(**kw)
    state = pipeline.NumpyState(cfg, "float32")
    assert state.fft_batch < state.block
    x = _signal((12, 40000))
    long = state._tile_frames(x[0], 0, state.block)[None]  # one block of one clip: sliced
    short = state._clip_frames(x[:, :4000], cfg.n_frames(4000))  # short clips: grouped
    for frames in (long, short):
        whole = state._power(frames, dense, state.block).copy()
        for batch in (state.fft_batch, 7, 1):
            np.testing.assert_array_equal(state._power(frames, dense, batch), whole)


def test_a_users_scipy_fft_backend_does_not_reach_the_numpy_path():
    """A scipy.fft backend set by the user (pyFFTW, mkl_fft) may round a frame by its batch: the NumPy path keeps
    SciPy's own pocketfft, whose per-frame bytes are batch-independent (tested above). A backend that returns
    zeros for every transform stands for any other."""
    sfft = pytest.importorskip("scipy.fft")
    x = _signal((3, 40000))
    expected = arraymel.mel_spectrogram(x, top_db=None)

    class Zeros:
        __ua_domain__ = "numpy.scipy.fft"

        @staticmethod
        def __ua_function__(method, args, kwargs):
            if method.__name__ != "rfft":
                return NotImplemented
            a = np.asarray(args[0])
            return np.zeros(a.shape[:-1] + (a.shape[-1] // 2 + 1,), np.complex64)

    sfft.set_global_backend(Zeros)
    try:
        assert not sfft.rfft(np.ones(8, np.float32)).any()  # the backend is in force here
        got = arraymel.mel_spectrogram(x, top_db=None)
    finally:
        sfft.set_global_backend("scipy")
    np.testing.assert_array_equal(got, expected)


def test_a_non_finite_sample_reaches_exactly_the_frames_the_dense_product_gives_and_no_other_clip():
    """Each block decides dense or banded from the samples it reads (reflections included): wherever a NaN sits
    (at an end, in a reflected sample, across a block boundary), the NaN frames are the generic (dense) path's,
    and the other clips keep the bytes they have without it."""
    kw = dict(top_db=None)
    state = pipeline.NumpyState(MelConfig.create(), "float32")
    n = 3 * state.block * 512 - 1000  # three tiles of one clip
    base = _signal((2, n))
    clean = arraymel.mel_spectrogram(base, workers=1, **kw)
    tiles = [u for u in state._blocks(2, MelConfig.create().n_frames(n), None) if u[1] == 0]
    assert len(tiles) == 3
    cuts = [u[2] * 512 - 1024 for u in tiles[1:]]  # first sample of the second and third tiles' first frames
    # +inf: the banded product would give +inf where the dense one gives NaN (0 * inf), so a block that
    # missed the sample shows; NaN: the same frames either way
    positions = {0, 1, 1023, 1024, 1025, n - 1025, n - 1024, n - 2, n - 1} | {c + d for c in cuts for d in (-2049, -1, 0, 2047)}
    for value in (np.inf, np.nan):
        for p in sorted(positions):
            x = base.copy()
            x[0, p] = value
            got = arraymel.mel_spectrogram(x, workers=1, **kw)
            with np.errstate(all="ignore"):  # NumPy's warnings of inf * 0 in the generic path
                want = arraymel.mel_spectrogram(x, backend="generic", **kw)
            np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(want[0]), err_msg=f"{value} at sample {p}")
            np.testing.assert_array_equal(np.isinf(got[0]), np.isinf(want[0]), err_msg=f"{value} at sample {p}")
            assert np.isnan(got[0]).any()
            np.testing.assert_array_equal(got[1], clean[1])  # the other clip: untouched, byte for byte
