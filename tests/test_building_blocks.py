"""The public building blocks on their own: get_window, mel_filterbank, stft, power_to_db."""

from __future__ import annotations

import numpy as np
import pytest

import arraymel
from tests._helpers import assert_meta


def test_stft_equals_explicit_reflect_pad_frames_and_rfft():
    x = np.random.default_rng(0).standard_normal((2, 3001))
    X = arraymel.stft(x, fft_length=512, sequence_stride=160, sequence_length=400, window="hann")
    padded = np.pad(x, [(0, 0), (256, 256)], mode="reflect")
    n_frames = 1 + (padded.shape[-1] - 512) // 160
    frames = np.stack([padded[:, t * 160 : t * 160 + 512] for t in range(n_frames)], axis=1)
    w = np.zeros(512)
    w[56:456] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    np.testing.assert_allclose(X, np.fft.rfft(frames * w, axis=-1), rtol=1e-12, atol=1e-10)
    assert X.dtype == np.complex128 and X.shape == (2, n_frames, 257)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_reflect_padding_of_short_signals_equals_numpy_pad(n):
    from arraymel.core.framing import reflect_index

    pad = 300
    x = np.arange(n, dtype=np.float64)
    expected = np.pad(x, pad, mode="reflect")
    got = x[reflect_index(np, np.arange(-pad, n + pad), n)]
    np.testing.assert_array_equal(got, expected)


def test_stft_runs_on_any_namespace(xp):
    x = xp.asarray(np.random.default_rng(1).standard_normal((3, 1000)).astype(np.float32))
    X = arraymel.stft(x, fft_length=128, sequence_stride=64)
    assert_meta(X, xp=xp, dtype=xp.complex64, shape=(3, 1 + 1000 // 64, 65))


def test_mel_filterbank_follows_spec_step_7():
    fb = arraymel.mel_filterbank(num_mel_bins=10, fft_length=256, sampling_rate=8000, min_freq=100, max_freq=3000)
    assert fb.shape == (129, 10) and fb.dtype == np.float64
    np.testing.assert_array_equal(fb[0], 0)
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    edges = np.linspace(mel(100), mel(3000), 12)
    bins = mel(np.linspace(0, 4000, 129))
    for m in range(10):
        for k in range(1, 129):
            up = (bins[k] - edges[m]) / (edges[m + 1] - edges[m])
            down = (edges[m + 2] - bins[k]) / (edges[m + 2] - edges[m + 1])
            assert fb[k, m] == pytest.approx(max(0.0, min(up, down)), abs=1e-12)
    assert fb.max() <= 1.0 and (fb > 0).sum(axis=1).max() <= 2  # each bin feeds at most two bands


def test_building_blocks_return_the_requested_namespace_and_dtype(xp):
    fb = arraymel.mel_filterbank(num_mel_bins=8, fft_length=64, sampling_rate=8000, xp=xp, dtype=xp.float32)
    assert_meta(fb, xp=xp, dtype=xp.float32, shape=(33, 8))
    w = arraymel.get_window("hamming", 50, fft_length=64, xp=xp)
    assert_meta(w, xp=xp, dtype=xp.float64, shape=(64,))


def test_power_to_db_matches_its_formula_and_scopes(xp):
    p = np.array([[[1.0, 1e-3], [1e-6, 1e-12]], [[1e-4, 1e-5], [1e-8, 1e-9]]], dtype=np.float32)
    got = arraymel.power_to_db(xp.asarray(p), ref_power=0.1, top_db=50.0)
    db = 10 * np.log10(np.maximum(p, 1e-10)) + 10.0
    np.testing.assert_allclose(np.asarray(got), np.maximum(db, db.max() - 50.0), atol=1e-5)
    ex = arraymel.power_to_db(xp.asarray(p), top_db=30.0, top_db_scope="example")
    db0 = 10 * np.log10(np.maximum(p, 1e-10))
    m = db0.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.asarray(ex), np.maximum(db0, m - 30.0), atol=1e-5)
    assert_meta(ex, xp=xp, dtype=xp.float32, shape=p.shape)
    with pytest.raises(ValueError, match="top_db_scope='file'"):
        arraymel.power_to_db(p, top_db_scope="file")


def test_power_to_db_uses_the_absolute_value_of_ref_power(xp):
    """Called directly (not through MelConfig, which takes abs itself): ref_power=-1 is a reference of 1."""
    got = arraymel.power_to_db(xp.asarray([[1.0, 1e-3]]), ref_power=-1, top_db=None)
    np.testing.assert_allclose(np.asarray(got), [[0.0, -30.0]], atol=1e-5)
    got = arraymel.power_to_db(xp.asarray([[1.0, 1e-3]]), ref_power=-10.0, top_db=None)
    np.testing.assert_allclose(np.asarray(got), [[-10.0, -40.0]], atol=1e-5)
