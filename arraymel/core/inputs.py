"""Input checks shared by every path: shape, dtype, and the compute dtype (SPEC.md step 1)."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace


def as_array(x: Any) -> tuple[Any, Any]:
    """``(x, xp)``: an Array API array and its namespace; lists and scalars become NumPy arrays."""
    try:
        return x, array_namespace(x)
    except TypeError:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise TypeError(f"x of type {type(x).__name__} is not allowed: x must be a real array of shape (..., samples).") from None
        return arr, array_namespace(arr)


def compute_dtype_name(x: Any, xp: Any, requested: str | None) -> str:
    """Check ``x`` (shape and dtype) and return the compute dtype, ``"float32"`` or ``"float64"``.

    Float32/float64 input keeps its dtype; integer and half input computes in float32; an
    explicit ``dtype`` wins. Complex, boolean, 0-d and empty-signal input is refused.
    """
    dt = x.dtype
    if isinstance(dt, np.dtype) and not dt.isnative:  # big-endian float64 computes (and returns) native float64
        dt = dt.newbyteorder("=")
    if xp.isdtype(dt, "complex floating"):
        raise TypeError(f"x has dtype {dt}: complex input is not allowed; x must be real (float or integer) audio.")
    if xp.isdtype(dt, "bool"):
        raise TypeError(f"x has dtype {dt}: boolean input is not allowed; x must be real (float or integer) audio.")
    if not (xp.isdtype(dt, "real floating") or xp.isdtype(dt, "integral")):
        raise TypeError(f"x has dtype {dt}: x must be a real float or integer array.")
    if x.ndim == 0:
        raise ValueError("x is 0-d: x must have shape (..., samples) with at least one dimension.")
    if x.shape[-1] == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}: the last axis (samples) must hold at least 1 sample.")
    if requested is not None:
        return requested
    if dt == xp.float64:
        return "float64"
    return "float32"
