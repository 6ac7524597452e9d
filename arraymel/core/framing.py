"""Framing (centred with reflect or zero padding, or not centred) and the Kaldi frame step, expressed
with standard Array API operations."""

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


def padded_take(xp: Any, x: Any, positions: Any, pad_mode: str) -> Any:
    """``x[..., positions]`` of the signal extended by reflection (``pad_mode="reflect"``) or by zeros
    (``"constant"``); ``positions`` is a 1-D integer array, any values."""
    n = x.shape[-1]
    out = xp.take(x, reflect_index(xp, positions, n), axis=x.ndim - 1)
    if pad_mode == "constant":
        out = xp.where((positions >= 0) & (positions < n), out, xp.zeros_like(out))
    return out


def frames(x: Any, xp: Any, *, fft_length: int, stride: int, pad: int, t0: int, t1: int,
           pad_mode: str = "reflect") -> Any:
    """Frames ``t0 .. t1 - 1`` of the padded signal: ``(..., t1 - t0, fft_length)``, materialised.

    Frame ``t`` starts at signal position ``t * stride - pad``; positions outside the signal read its
    reflection (``pad_mode="reflect"``) or zero (``"constant"``)."""
    dev = xp_device(x)
    dt = index_dtype(xp, dev)
    starts = xp.arange(t0, t1, dtype=dt, device=dev) * stride - pad
    pos = xp.reshape(starts[:, None] + xp.arange(fft_length, dtype=dt, device=dev)[None, :], (-1,))
    out = padded_take(xp, x, pos, pad_mode)
    return xp.reshape(out, (*x.shape[:-1], t1 - t0, fft_length))


def kaldi_frame_step(fr: Any, xp: Any, length: int, preemphasis: float) -> Any:
    """Kaldi's step on each frame's first ``length`` samples: remove their mean, then pre-emphasise
    (``y[i] = x[i] - c x[i - 1]``, ``y[0] = x[0] - c x[0]``); the samples after them are kept."""
    head = fr[..., :length]
    d = head - xp.mean(head, axis=-1, keepdims=True)
    parts = [d[..., :1] * (1.0 - preemphasis), d[..., 1:] - preemphasis * d[..., :-1]]
    if fr.shape[-1] > length:
        parts.append(fr[..., length:])
    return xp.concat(parts, axis=-1)
