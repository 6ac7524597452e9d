"""Power to decibels with Keras's floor, reference and ``top_db`` clipping (docs/semantics.md step 9)."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as xp_device

from arraymel._config import TOP_DB_SCOPES, _check_real
from arraymel.core.inputs import as_array


def reference_db(ref_power: float, min_power: float) -> float:
    """``10 * log10(max(|ref_power|, min_power))``."""
    return 10.0 * math.log10(max(abs(ref_power), min_power))


def db_unclipped(power: Any, xp: Any, *, min_power: float, ref_power: float) -> Any:
    """``10 * log10(max(power, min_power)) - 10 * log10(max(|ref_power|, min_power))``; NaN stays NaN."""
    floor = xp.asarray(min_power, dtype=power.dtype, device=xp_device(power))
    floored = xp.where(power < floor, floor, power)
    db = 10.0 * xp.log10(floored)
    ref = reference_db(ref_power, min_power)
    return db - ref if ref != 0.0 else db


def clip_top_db(db: Any, xp: Any, *, top_db: float | None, scope: str, example_axes: tuple[int, ...] = (-2, -1)) -> Any:
    """``max(db, m - top_db)`` with ``m`` the maximum over everything (``"batch"``) or per example."""
    if top_db is None or math.prod(db.shape) == 0:
        return db
    if scope == "batch" or db.ndim <= len(example_axes):
        m = xp.max(db)
    else:
        m = xp.max(db, axis=example_axes, keepdims=True)
    return xp.maximum(db, m - top_db)


def power_to_db(
    power: Any,
    *,
    min_power: float = 1e-10,
    ref_power: float = 1.0,
    top_db: float | None = 80.0,
    top_db_scope: str = "batch",
) -> Any:
    """Convert a power (or ``mag_exp``-magnitude) spectrogram to decibels, as Keras's layer does.

    ``10 * log10(max(power, min_power)) - 10 * log10(max(|ref_power|, min_power))``, then values
    more than ``top_db`` below the maximum are raised to it. The maximum is taken over the whole
    array (``top_db_scope="batch"``, Keras) or over the last two axes of each spectrogram
    (``"example"``). ``top_db=None`` clips nothing. Namespace, device and dtype are kept.

    Examples
    --------
    >>> import numpy as np, arraymel
    >>> p = np.array([[1.0, 1e-3, 1e-12]], dtype=np.float32)
    >>> arraymel.power_to_db(p, top_db=50.0).round(4).tolist()
    [[0.0, -30.0, -50.0]]
    """
    power, xp = as_array(power)
    min_power = _check_real("min_power", min_power, "a finite number > 0")
    if min_power <= 0:
        raise ValueError(f"min_power={min_power!r} is not allowed: min_power must be a finite number > 0.")
    ref_power = _check_real("ref_power", ref_power, "a finite number (its absolute value is used)")
    if top_db is not None:
        top_db = _check_real("top_db", top_db, "None or a finite number >= 0")
        if top_db < 0:
            raise ValueError(f"top_db={top_db!r} is not allowed: top_db must be None (no clipping) or a finite number >= 0.")
    if top_db_scope not in TOP_DB_SCOPES:
        raise ValueError(f"top_db_scope={top_db_scope!r} is not allowed: top_db_scope must be one of {TOP_DB_SCOPES!r}.")
    if not xp.isdtype(power.dtype, "real floating"):
        power = xp.astype(power, xp.float32)
    db = db_unclipped(power, xp, min_power=min_power, ref_power=ref_power)
    if math.prod(db.shape) == 0:
        return db
    return clip_top_db(db, xp, top_db=top_db, scope=top_db_scope)
