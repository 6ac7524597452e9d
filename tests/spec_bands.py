"""docs/semantics.md's tolerances with the float32 bands measured in power-equivalent dB below the maximum.

A value ``L`` dB below the maximum of its spectrogram (each example of a batch is one spectrogram)
lies ``L * 2 / mag_exp`` dB below it in power terms. float32 dB output: <= 1e-3 dB within 60 dB
(power-equivalent), <= 3e-3 dB from 60 to 80, <= 2e-2 dB from 80 to 100, no bound further below.
float64: <= 1e-9 dB everywhere. Power/magnitude output: ``|a - b| <= rtol |b| + frac max|b|``.
"""

from __future__ import annotations

import numpy as np
from _helpers import assert_power_close, to_numpy

#: (upper edge of the band in power-equivalent dB below the maximum, float32 bound in dB)
F32_BANDS = ((60.0, 1e-3), (80.0, 3e-3), (100.0, 2e-2))
F64_DB = 1e-9
POWER_TOL = {"float32": (1e-4, 1e-6), "float64": (1e-10, 1e-13)}


def db_band_errors(actual, expected, mag_exp: float = 2.0) -> dict[str, float]:
    """Max |actual - expected| (dB) per band of power-equivalent distance below each example's maximum.

    ``expected`` (the float64 oracle) defines the maximum and the bands; NaN must sit in the same places.
    Keys: ``"0-60"``, ``"60-80"``, ``"80-100"``, ``">100"``.
    """
    a = to_numpy(actual).astype(np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN in different places"
    lead = b.shape[:-2]
    a2 = a.reshape(-1, b.shape[-2] * b.shape[-1]) if lead else a.reshape(1, -1)
    b2 = b.reshape(a2.shape)
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.where(np.isnan(b2), -np.inf, b2), axis=1, keepdims=True) if b2.size else b2
    below = (peak - b2) * 2.0 / mag_exp
    diff = np.abs(a2 - b2)
    out = {}
    lo = -np.inf
    for hi, _ in F32_BANDS:
        sel = ~np.isnan(b2) & (below > lo) & (below <= hi)
        out[f"{0 if lo == -np.inf else int(lo)}-{int(hi)}"] = float(diff[sel].max()) if sel.any() else 0.0
        lo = hi
    sel = ~np.isnan(b2) & (below > lo)
    out[f">{int(lo)}"] = float(diff[sel].max()) if sel.any() else 0.0
    return out


def assert_spec_close(actual, expected, *, dtype: str, power_to_db: bool = True, mag_exp: float = 2.0) -> dict:
    """docs/semantics.md's bound for ``dtype`` output; returns the band errors (dB) or ``{"power": rel}``."""
    if not power_to_db:
        rtol, frac = POWER_TOL[dtype]
        b = np.asarray(expected, dtype=np.float64)
        a = to_numpy(actual).astype(np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN in different places"
        fin = ~np.isnan(b)
        return {"power": assert_power_close(a[fin], b[fin], rtol=rtol, atol_frac=frac) if fin.any() else 0.0}
    errs = db_band_errors(actual, expected, mag_exp)
    if dtype == "float64":
        worst = max(errs.values())
        assert worst <= F64_DB, f"float64: max |dB difference| {worst:.3g} > {F64_DB:g} ({errs})"
        return errs
    for (_hi, tol), (band, err) in zip(F32_BANDS, errs.items()):
        assert err <= tol, f"float32: {err:.3g} dB in the band {band} dB below the maximum (power-equivalent) > {tol:g} ({errs})"
    return errs
