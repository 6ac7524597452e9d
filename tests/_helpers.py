"""Assertions shared by the tests: closeness that also checks namespace, dtype, shape and device."""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, is_cupy_array
from array_api_compat import device as xp_device


def to_numpy(a) -> np.ndarray:
    """A host copy of any array, for comparison only."""
    if isinstance(a, np.ndarray):
        return a
    if is_cupy_array(a):
        return a.get()
    try:
        return np.asarray(a)
    except Exception:
        return np.from_dlpack(a)


def assert_meta(actual, like=None, *, xp=None, dtype=None, shape=None, device=None) -> None:
    """Check namespace, dtype, shape and device of ``actual`` against ``like`` and/or explicit values."""
    if like is not None:
        xp = xp or array_namespace(like)
        dtype = dtype if dtype is not None else like.dtype
        shape = shape if shape is not None else tuple(like.shape)
        device = device if device is not None else xp_device(like)
    if xp is not None:
        got = array_namespace(actual)
        assert got.__name__.replace("array_api_compat.", "") == xp.__name__.replace("array_api_compat.", ""), (
            f"namespace {got.__name__} != {xp.__name__}"
        )
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    if shape is not None:
        assert tuple(actual.shape) == tuple(shape), f"shape {tuple(actual.shape)} != {tuple(shape)}"
    if device is not None:
        assert xp_device(actual) == device, f"device {xp_device(actual)} != {device}"


def max_abs_diff(a, b) -> float:
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), "NaN in different places"
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(np.where(nan_a, 0.0, a - b))))


def assert_db_close(actual, expected, atol: float, *, like=None, **meta) -> float:
    """dB outputs: max absolute difference <= atol (docs/semantics.md's tolerances); returns the difference."""
    if like is not None or meta:
        assert_meta(actual, like, **meta)
    d = max_abs_diff(actual, expected)
    assert d <= atol, f"max |dB difference| {d:.3g} > {atol:g}"
    return d


def assert_power_close(actual, expected, *, rtol: float = 1e-4, atol_frac: float = 1e-6, like=None, **meta) -> float:
    """Power/magnitude outputs: |a - b| <= rtol*|b| + atol_frac*max|b| elementwise (docs/semantics.md)."""
    if like is not None or meta:
        assert_meta(actual, like, **meta)
    a, b = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    assert a.shape == b.shape
    if b.size == 0:
        return 0.0
    tol = rtol * np.abs(b) + atol_frac * np.max(np.abs(b))
    excess = np.abs(a - b) - tol
    worst = float(np.max(excess))
    assert worst <= 0, f"power differs beyond tolerance by {worst:.3g} (max |b| {np.max(np.abs(b)):.3g})"
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-30 + atol_frac * np.max(np.abs(b)))))


#: docs/semantics.md's float32 dB bounds, by a value's power-equivalent distance below the maximum of its
#: spectrogram: (upper edge of the band in dB, bound in dB). Below the last edge no bound applies.
F32_DB_BANDS = ((60.0, 1e-3), (80.0, 3e-3), (100.0, 2e-2))


def db_band_errors(actual, expected, *, mag_exp: float = 2.0, bands=F32_DB_BANDS) -> dict[str, float]:
    """Max |actual - expected| (dB) per docs/semantics.md tolerance band, keyed ``"0-60"``, ``"60-80"``, ..., ``">100"``.

    ``expected`` is a float64 evaluation; a value's distance is measured on it, below the maximum
    of its own spectrogram (the last two axes), times ``2 / mag_exp`` (power-equivalent dB).
    NaN must sit in the same places in both; NaN values are left out.
    """
    a, b = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN in different places"
    finite = ~np.isnan(b)
    peak = np.max(np.where(finite, b, -np.inf), axis=(-2, -1), keepdims=True)
    below = (peak - b) * (2.0 / mag_exp)
    diff = np.abs(np.where(finite, a - b, 0.0))
    out, lo = {}, 0.0
    for hi, _ in bands:
        sel = finite & (below >= lo) & (below <= hi) if lo == 0.0 else finite & (below > lo) & (below <= hi)
        out[f"{lo:g}-{hi:g}"] = float(diff[sel].max()) if sel.any() else 0.0
        lo = hi
    rest = finite & (below > lo)
    out[f">{lo:g}"] = float(diff[rest].max()) if rest.any() else 0.0
    return out


def assert_db_banded(actual, expected, *, mag_exp: float = 2.0, bands=F32_DB_BANDS) -> dict[str, float]:
    """float32 dB output within docs/semantics.md's band-by-band bounds of a float64 evaluation; returns the figures."""
    errors = db_band_errors(actual, expected, mag_exp=mag_exp, bands=bands)
    for (label, err), (_, bound) in zip(errors.items(), bands):
        assert err <= bound, f"max |dB difference| {err:.3g} > {bound:g} at {label} dB below the maximum ({errors})"
    return errors
