"""Analysis windows: periodic Hann and Hamming, array windows, centre padding to fft_length."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from arraymel._config import WINDOW_NAMES, _to_host_float64
from arraymel.core._xp import from_host


def periodic_window(name: str, length: int) -> np.ndarray:
    """The periodic (DFT-even) window of ``length`` in float64, as ``scipy.signal.get_window(name, length)``."""
    if length == 1:  # scipy (and so Keras) return [1.0] for any window of length 1
        return np.ones(1, dtype=np.float64)
    n = np.arange(length, dtype=np.float64)
    phase = 2.0 * np.pi * n / length
    if name == "hann":
        return 0.5 - 0.5 * np.cos(phase)
    if name == "hamming":
        return 0.54 - 0.46 * np.cos(phase)
    raise ValueError(f"window={name!r} is not allowed: window must be one of {WINDOW_NAMES!r}, an array or None.")


@lru_cache(maxsize=64)
def _padded_named(name: str | None, sequence_length: int, fft_length: int) -> np.ndarray:
    if name is None:
        w = np.ones(fft_length, dtype=np.float64)
    else:
        w = centre_pad(periodic_window(name, sequence_length), fft_length)
    w.setflags(write=False)
    return w


def centre_pad(w: np.ndarray, fft_length: int) -> np.ndarray:
    """Zero-pad a window to ``fft_length``: ``(fft_length - len) // 2`` zeros on the left, the rest on the right."""
    left = (fft_length - w.shape[0]) // 2
    out = np.zeros(fft_length, dtype=np.float64)
    out[left : left + w.shape[0]] = w
    return out


def window_host(window: Any, sequence_length: int, fft_length: int) -> np.ndarray:
    """The analysis window of length ``fft_length`` in float64 on the host (docs/semantics.md step 4).

    ``window=None`` is ones over the whole ``fft_length`` (sequence_length is then ignored).
    """
    if window is None or isinstance(window, str):
        return _padded_named(window, sequence_length, fft_length)
    return centre_pad(_to_host_float64(window), fft_length)


def config_window(cfg: Any) -> np.ndarray | None:
    """The ``fft_length`` analysis window of a :class:`~arraymel.MelConfig`: centred in the frame (docs/semantics.md
    step 4; None for ``window=None``), or, without centring (Kaldi), its ``sequence_length`` samples first
    (ones for ``window=None``) and zeros after them."""
    if cfg.center:
        return None if cfg.window is None else window_host(cfg.window, cfg.sequence_length, cfg.fft_length)
    # the frame is its sequence_length samples: window=None is ones over them, zeros after
    w = np.ones(cfg.sequence_length) if cfg.window is None else window_host(cfg.window, cfg.sequence_length,
                                                                            cfg.sequence_length)
    out = np.zeros(cfg.fft_length, dtype=np.float64)
    out[: cfg.sequence_length] = w
    return out


def get_window(
    window: Any = "hann",
    sequence_length: int | None = None,
    *,
    fft_length: int | None = None,
    xp: Any = None,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """The analysis window the mel spectrogram applies to each frame.

    Parameters
    ----------
    window : {"hann", "hamming"}, array or None
        A periodic (DFT-even) window by name, an array of shape ``(sequence_length,)`` used as
        given, or None (ones over ``fft_length``).
    sequence_length : int, optional
        Window length; defaults to ``fft_length`` (or 2048 when neither is given).
    fft_length : int, optional
        When given, the window is centred in ``fft_length`` samples with zeros around it.
    xp, device, dtype :
        Namespace (default NumPy), device and dtype of the result (default float64).

    Returns
    -------
    array of shape ``(fft_length,)`` if ``fft_length`` is given, else ``(sequence_length,)``.

    Examples
    --------
    >>> import arraymel
    >>> w = arraymel.get_window("hann", 400, fft_length=512)
    >>> w.shape, float(w[:56].max()), round(float(w[256]), 6)
    ((512,), 0.0, 1.0)
    """
    from arraymel._config import MelConfig

    if sequence_length is None:
        sequence_length = fft_length if fft_length is not None else 2048
    total = fft_length if fft_length is not None else sequence_length
    cfg = MelConfig.create(fft_length=total, sequence_length=sequence_length, window=window)
    host = window_host(cfg.window, cfg.sequence_length, cfg.fft_length)
    if fft_length is None and window is not None:
        left = (total - sequence_length) // 2
        host = host[left : left + sequence_length]
    if xp is None:
        import array_api_compat.numpy as xp
    return from_host(host, xp, device=device, dtype=dtype if dtype is not None else xp.float64)
