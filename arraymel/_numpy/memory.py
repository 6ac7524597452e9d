"""Output allocation of the NumPy path."""

from __future__ import annotations

import math

import numpy as np

#: XLA (JAX) adopts a host buffer through DLPack only when it is 64-byte aligned; otherwise it copies.
ALIGNMENT = 64


def empty_aligned(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts on an :data:`ALIGNMENT`-byte boundary."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    raw = np.empty(count + ALIGNMENT // dtype.itemsize, dtype=dtype)
    start = (-raw.ctypes.data % ALIGNMENT) // dtype.itemsize
    return raw[start:start + count].reshape(shape)
