"""The float32 input floor of docs/semantics.md ("The float32 input floor").

A float32 path can be no closer to the float64 evaluation than the float32 rounding of its own
windowed frames allows: ``window * frame`` rounded to float32 is the input of a float32 FFT, and
that rounding alone moves a strong DC's energy into every bin. The floor of a case is that error,
computed here: the float64 oracle with the windowed frames rounded once to float32, against the
float64 oracle itself, per band of power-equivalent dB below the maximum. A float32 result is
held, per band, to the larger of the tolerance table's bound and twice the floor.
"""

from __future__ import annotations

import numpy as np
import oracle
from spec_bands import F32_BANDS, db_band_errors


def frames_rounded_mel(x, params: dict) -> np.ndarray:
    """The float64 oracle of ``x`` with each windowed frame rounded once to float32 (nothing else)."""
    p = dict(fft_length=2048, sequence_stride=512, sequence_length=None, window="hann", sampling_rate=16000,
             num_mel_bins=128, min_freq=20.0, max_freq=None, power_to_db=True, top_db=80.0, mag_exp=2.0,
             min_power=1e-10, ref_power=1.0, top_db_scope="batch")
    p.update(params)
    x = np.asarray(x).astype(np.float64)
    fr = oracle.frames(x, p["fft_length"], p["sequence_stride"])
    w = oracle.window_vector(p["window"], p["fft_length"], p["sequence_length"])
    windowed = (fr * w).astype(np.float32).astype(np.float64)
    spec = np.fft.rfft(windowed, n=p["fft_length"], axis=-1)
    power = spec.real**2 + spec.imag**2 if p["mag_exp"] == 2 else np.abs(spec) ** p["mag_exp"]
    fb = oracle.mel_filterbank(p["fft_length"], p["sampling_rate"], p["num_mel_bins"], p["min_freq"],
                               oracle.default_max_freq(p["sampling_rate"], p["max_freq"]))
    mel = np.swapaxes(power @ fb, -1, -2)
    if p["power_to_db"]:
        mel = oracle.to_db(mel, top_db=p["top_db"], min_power=p["min_power"], ref_power=p["ref_power"],
                           top_db_scope=p["top_db_scope"])
    return mel


def float32_floor(x, params: dict, reference: np.ndarray | None = None) -> dict[str, float]:
    """Per band (``"0-60"``, ``"60-80"``, ``"80-100"``), the dB error of the frames' float32 rounding alone."""
    ref = oracle.mel_spectrogram(np.asarray(x).astype(np.float64), **params) if reference is None else reference
    errs = db_band_errors(frames_rounded_mel(x, params), ref, params.get("mag_exp", 2.0))
    return {band: errs[band] for band in list(errs)[: len(F32_BANDS)]}


def float32_bounds(x, params: dict, reference: np.ndarray | None = None) -> dict[str, float]:
    """Per band, what a float32 path is held to: max(the table's bound, 2 x the floor)."""
    floor = float32_floor(x, params, reference)
    return {band: max(tol, 2.0 * floor[band]) for (_, tol), band in zip(F32_BANDS, floor)}


def assert_float32_floor(out, reference, x, params: dict) -> dict[str, float]:
    """``out`` (float32 dB) within :func:`float32_bounds` of ``reference`` in every band; returns the errors."""
    bounds = float32_bounds(x, params, reference)
    errs = db_band_errors(out, reference, params.get("mag_exp", 2.0))
    for band, bound in bounds.items():
        assert errs[band] <= bound, (f"float32: {errs[band]:.3g} dB in the band {band} dB below the maximum > "
                                     f"{bound:.3g} (max of the table's bound and twice the frames' rounding floor; {errs})")
    return errs
