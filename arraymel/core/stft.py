"""The centred short-time Fourier transform (docs/semantics.md steps 2-5), generic over Array API namespaces."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as xp_device

from arraymel._config import KALDI_PREEMPHASIS, MelConfig
from arraymel.core._xp import from_host
from arraymel.core.framing import frames, kaldi_frame_step
from arraymel.core.inputs import as_array, compute_dtype_name
from arraymel.core.windows import config_window


def window_for(cfg: MelConfig, xp: Any, device: Any, dtype: Any) -> Any | None:
    """The padded analysis window in ``xp`` (None when ``window=None``: multiplying by ones is skipped)."""
    w = config_window(cfg)
    return None if w is None else from_host(w, xp, device=device, dtype=dtype)


def stft_block(x: Any, xp: Any, cfg: MelConfig, window: Any | None, t0: int, t1: int) -> Any:
    """Complex spectrum of frames ``t0 .. t1 - 1``: ``(..., t1 - t0, fft_length // 2 + 1)``."""
    fr = frames(x, xp, fft_length=cfg.fft_length, stride=cfg.sequence_stride, pad=cfg.pad, t0=t0, t1=t1,
                pad_mode=cfg.pad_mode)
    if cfg.frame_step == "kaldi":
        fr = kaldi_frame_step(fr, xp, cfg.sequence_length, KALDI_PREEMPHASIS)
    if window is not None:
        fr = fr * window
    if math.prod(fr.shape[:-1]) == 0:  # an empty batch: torch's (MKL) FFT fails on it, so no transform
        complex_dtype = xp.complex128 if fr.dtype == xp.float64 else xp.complex64
        return xp.zeros((*fr.shape[:-1], cfg.n_bins), dtype=complex_dtype, device=xp_device(x))
    return xp.fft.rfft(fr, n=cfg.fft_length, axis=-1)


def stft(
    x: Any,
    *,
    fft_length: int = 2048,
    sequence_stride: int = 512,
    sequence_length: int | None = None,
    window: Any = "hann",
    dtype: Any = None,
) -> Any:
    """Centred STFT as Keras's ``ops.stft(..., center=True)``, as one complex array.

    The signal is reflect-padded by ``fft_length // 2`` on both ends, cut into frames of
    ``fft_length`` every ``sequence_stride`` samples, windowed and transformed with an
    unnormalised one-sided DFT.

    Parameters
    ----------
    x : array of shape ``(..., samples)``
        Real audio, any Array API namespace.
    fft_length : int, default 2048
        FFT size and frame length.
    sequence_stride : int, default 512
        Hop between frames, in samples.
    sequence_length : int, optional, default None
        Window length (None: ``fft_length``), centred in the frame.
    window : {"hann", "hamming"}, array or None, default "hann"
        As in :func:`arraymel.mel_spectrogram`.
    dtype : {None, "float32", "float64"}, default None
        Real compute dtype (None: the input's float dtype, float32 for integers); the result is
        the matching complex dtype.

    Returns
    -------
    X : complex array of shape ``(..., frames, fft_length // 2 + 1)``
        Keras's layout (frames before bins), with
        ``frames = 1 + (samples + 2 * (fft_length // 2) - fft_length) // sequence_stride``.

    Raises
    ------
    ValueError
        A parameter out of its range, or input with no samples.
    TypeError
        Complex or boolean input, or a window of the wrong type.

    See Also
    --------
    mel_spectrogram : The mel spectrogram computed from this STFT.
    get_window : The window applied to each frame.

    Examples
    --------
    >>> import numpy as np, arraymel
    >>> X = arraymel.stft(np.ones(1000, dtype=np.float32), fft_length=256, sequence_stride=128)
    >>> X.shape, X.dtype
    ((8, 129), dtype('complex64'))
    """
    cfg = MelConfig.create(fft_length=fft_length, sequence_stride=sequence_stride,
                           sequence_length=sequence_length, window=window, dtype=dtype)
    x, xp = as_array(x)
    dt = getattr(xp, compute_dtype_name(x, xp, cfg.dtype))
    if x.dtype != dt:
        x = xp.astype(x, dt)
    win = window_for(cfg, xp, xp_device(x), dt)
    return stft_block(x, xp, cfg, win, 0, cfg.n_frames(x.shape[-1]))
