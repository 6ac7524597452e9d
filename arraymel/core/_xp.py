"""Small helpers for moving host constants into an Array API namespace."""

from __future__ import annotations

from typing import Any

import numpy as np


def namespace_name(xp: Any) -> str:
    """``numpy``, ``cupy``, ``array_api_strict``, ... (the wrapped library's name)."""
    return xp.__name__.replace("array_api_compat.", "").split(".")[0]


def from_host(a: np.ndarray, xp: Any, *, device: Any = None, dtype: Any = None) -> Any:
    """A host constant as an array of ``xp`` on ``device`` with ``dtype`` (a copy for non-NumPy)."""
    if namespace_name(xp) == "numpy":
        return np.asarray(a, dtype=dtype)
    kw = {"dtype": dtype}
    if device is not None:
        kw["device"] = device
    return xp.asarray(a, **kw)
