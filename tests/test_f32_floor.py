"""The float32 input floor (docs/semantics.md, tests/f32_floor.py): what it computes, and that it binds."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from f32_floor import assert_float32_floor, float32_bounds, float32_floor, frames_rounded_mel
from spec_bands import F32_BANDS, db_band_errors

DC_TONE = (1.0 + 1e-3 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000))[None, :].astype(np.float32)


def test_no_rounding_no_floor():
    """Without a window, float32 frames of float32 input are exact: the floor is 0 and the table's bounds hold."""
    params = dict(fft_length=512, sequence_stride=128, num_mel_bins=64, window=None, mag_exp=0.5)
    ref = oracle.mel_spectrogram(DC_TONE.astype(np.float64), **params)
    assert np.array_equal(frames_rounded_mel(DC_TONE, params), ref)
    assert float32_bounds(DC_TONE, params) == {band: tol for band, (_, tol) in
                                               zip(["0-60", "60-80", "80-100"], F32_BANDS)}


def test_floor_of_a_dc_with_mag_exp_half():
    """A DC of 1.0 and a tone 60 dB below, mag_exp 0.5: the windowed frames' rounding alone is over the table's
    1e-3 dB within 60 dB (this is what the gather layout showed), and the floor is per case, not a constant."""
    params = dict(fft_length=512, sequence_stride=128, num_mel_bins=64, mag_exp=0.5)
    floor = float32_floor(DC_TONE, params)
    assert 1e-3 < floor["0-60"] < 2e-2
    assert float32_floor(DC_TONE, dict(params, mag_exp=2.0))["0-60"] < floor["0-60"] / 10


def test_the_bound_binds():
    """A result off by three times the floor in the 0-60 dB band fails; one exactly at the floor passes."""
    params = dict(fft_length=512, sequence_stride=128, num_mel_bins=64, mag_exp=0.5)
    ref = oracle.mel_spectrogram(DC_TONE.astype(np.float64), **params)
    floor = float32_floor(DC_TONE, params, ref)
    assert_float32_floor(frames_rounded_mel(DC_TONE, params), ref, DC_TONE, params)  # exactly the floor: 1x
    bad = ref.copy()
    bad[0, 21, 5] += 3 * floor["0-60"]  # the tone's band: 10 dB below the maximum, 39 power-equivalent
    assert db_band_errors(bad, ref, 0.5)["0-60"] == pytest.approx(3 * floor["0-60"])
    with pytest.raises(AssertionError, match="0-60"):
        assert_float32_floor(bad, ref, DC_TONE, params)
