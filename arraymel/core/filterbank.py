"""The Keras/TensorFlow (HTK) mel filterbank, built in float64."""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import numpy as np

from arraymel.core._xp import from_host

MEL_HIGH_FREQUENCY_Q = 1127.0
MEL_BREAK_FREQUENCY_HERTZ = 700.0


def hertz_to_mel(f: Any) -> Any:
    """HTK mel scale, ``1127 * ln(1 + f / 700)``."""
    return MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(f, dtype=np.float64) / MEL_BREAK_FREQUENCY_HERTZ)


def _warn_user(message: str) -> None:
    """Warn with the location of the first caller outside arraymel (whatever the call depth)."""
    import os
    import sys

    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


@lru_cache(maxsize=64)
def filterbank_host(num_mel_bins: int, fft_length: int, sampling_rate: float, min_freq: float, max_freq: float) -> np.ndarray:
    """The ``(fft_length // 2 + 1, num_mel_bins)`` float64 filterbank of SPEC.md step 7 (read-only, cached).

    Warns once per configuration when a band receives no FFT bin.
    """
    n_bins = fft_length // 2 + 1
    bin_mel = hertz_to_mel(np.linspace(0.0, sampling_rate / 2.0, n_bins)[1:])[:, None]
    edges = np.linspace(hertz_to_mel(min_freq), hertz_to_mel(max_freq), num_mel_bins + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (centre - lower)
    falling = (upper - bin_mel) / (upper - centre)
    weights = np.zeros((n_bins, num_mel_bins), dtype=np.float64)
    weights[1:] = np.maximum(0.0, np.minimum(rising, falling))
    empty = np.flatnonzero(~weights.any(axis=0))
    if empty.size:
        shown = ", ".join(str(int(i)) for i in empty[:10]) + (", ..." if empty.size > 10 else "")
        _warn_user(
            f"{empty.size} of {num_mel_bins} mel bands receive no FFT bin and are all zero (bands {shown}) "
            f"with fft_length={fft_length}, sampling_rate={sampling_rate:g}, min_freq={min_freq:g}, "
            f"max_freq={max_freq:g}: use a larger fft_length or fewer num_mel_bins."
        )
    weights.setflags(write=False)
    return weights


def mel_filterbank(
    *,
    num_mel_bins: int = 128,
    fft_length: int = 2048,
    sampling_rate: float = 16000,
    min_freq: float = 20.0,
    max_freq: float | None = None,
    xp: Any = None,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """The mel filterbank that maps ``fft_length // 2 + 1`` power bins to ``num_mel_bins`` bands.

    HTK style as in TensorFlow and Keras: triangles linear in the mel domain, the DC row zero,
    no area normalisation. Built in float64, returned in ``dtype`` (default float64).

    Parameters
    ----------
    num_mel_bins, fft_length, sampling_rate, min_freq, max_freq :
        As in :func:`arraymel.mel_spectrogram` (falsy ``max_freq`` means ``int(sampling_rate / 2)``).
    xp, device, dtype :
        Namespace (default NumPy), device and dtype of the result.

    Returns
    -------
    array of shape ``(fft_length // 2 + 1, num_mel_bins)``

    Examples
    --------
    >>> import arraymel
    >>> fb = arraymel.mel_filterbank(num_mel_bins=40, fft_length=512, sampling_rate=16000)
    >>> fb.shape, float(fb[0].max()), bool((fb <= 1).all())
    ((257, 40), 0.0, True)
    """
    from arraymel._config import MelConfig

    cfg = MelConfig.create(
        num_mel_bins=num_mel_bins, fft_length=fft_length, sampling_rate=sampling_rate,
        min_freq=min_freq, max_freq=max_freq,
    )
    host = filterbank_host(cfg.num_mel_bins, cfg.fft_length, cfg.sampling_rate, cfg.min_freq, cfg.max_freq)
    if xp is None:
        import array_api_compat.numpy as xp
    return from_host(host, xp, device=device, dtype=dtype if dtype is not None else xp.float64)
