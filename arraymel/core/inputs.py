"""Input checks shared by every path: shape, dtype, and the compute dtype (docs/semantics.md step 1)."""

from __future__ import annotations

import os
import sys
import warnings
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
            raise TypeError(f"x of type {type(x).__name__} is not allowed: "
                            "x must be a real array of shape (..., samples).") from None
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


def warn_user(message: str) -> None:
    """Warn (UserWarning) with the location of the first caller outside arraymel, whatever the call depth."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


#: The axis before the samples must be this many times longer than them to look like ``(samples, channels)``.
CHANNELS_LAST_RATIO = 100
_channels_last_warned = False


def warn_if_channels_last(shape: tuple, fft_length: int) -> None:
    """Warn once per process when ``shape`` looks like ``(..., samples, channels)``: the last axis is shorter
    than a frame and the one before it at least :data:`CHANNELS_LAST_RATIO` times longer (e.g. ``(16000, 2)``)."""
    global _channels_last_warned
    if _channels_last_warned or len(shape) < 2:
        return
    n, before = int(shape[-1]), int(shape[-2])
    if n < fft_length and before >= CHANNELS_LAST_RATIO * n:
        _channels_last_warned = True
        warn_user(
            f"x has shape {tuple(shape)}: the last axis is taken as the samples, so this computes {before} spectrograms "
            f"of {n} sample(s) each. If the layout is (..., samples, channels), put the samples last first: "
            "np.moveaxis(x, -1, -2) (x.T for a 2-D array). (This warning is shown once.)"
        )
