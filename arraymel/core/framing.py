"""Centred, reflect-padded framing expressed with standard Array API operations."""

from __future__ import annotations

from typing import Any

from array_api_compat import device as xp_device


def reflect_index(xp: Any, positions: Any, n: int) -> Any:
    """Map positions in the signal extended by reflection (NumPy ``mode="reflect"``) into ``[0, n)``.

    The reflected extension is periodic with period ``2 * (n - 1)``, which is also what
    ``np.pad(mode="reflect")`` produces when the pad is longer than the signal (it reflects
    repeatedly); a 1-sample signal extends to a constant.
    """
    if n == 1:
        return xp.zeros_like(positions)
    period = 2 * (n - 1)
    p = xp.remainder(xp.abs(positions), period)
    return xp.where(p >= n, period - p, p)


def index_dtype(xp: Any, device: Any = None) -> Any:
    """The namespace's default index dtype on ``device`` (int64 on NumPy, CuPy and torch; int32 for JAX
    without x64, which would otherwise truncate an int64 request with a warning)."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.int64
    return info().default_dtypes(device=device)["indexing"]


def frame_indices(xp: Any, n: int, *, fft_length: int, stride: int, pad: int, t0: int, t1: int, device: Any = None) -> Any:
    """Flat indices into the unpadded signal of frames ``t0 .. t1 - 1`` (``(t1 - t0) * fft_length``)."""
    dt = index_dtype(xp, device)
    starts = xp.arange(t0, t1, dtype=dt, device=device) * stride - pad
    offsets = xp.arange(fft_length, dtype=dt, device=device)
    pos = xp.reshape(starts[:, None] + offsets[None, :], (-1,))
    return reflect_index(xp, pos, n)


def frames(x: Any, xp: Any, *, fft_length: int, stride: int, pad: int, t0: int, t1: int) -> Any:
    """Frames ``t0 .. t1 - 1`` of the centred signal: ``(..., t1 - t0, fft_length)``, materialised."""
    n = x.shape[-1]
    idx = frame_indices(xp, n, fft_length=fft_length, stride=stride, pad=pad, t0=t0, t1=t1, device=xp_device(x))
    out = xp.take(x, idx, axis=x.ndim - 1)
    return xp.reshape(out, (*x.shape[:-1], t1 - t0, fft_length))
