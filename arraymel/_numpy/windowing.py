"""Frames into the NumPy path's FFT buffer: cast, Kaldi's frame step when asked for, the window."""

from __future__ import annotations

import numpy as np

from arraymel._config import KALDI_PREEMPHASIS, MelConfig


def window_into(frames: np.ndarray, window: np.ndarray | None, buf: np.ndarray, cfg: MelConfig) -> None:
    """``buf[...] = window * frames`` (frames on the last axis, cast to ``buf``'s dtype); with
    ``cfg.frame_step == "kaldi"`` each frame's
    first ``sequence_length`` samples lose their mean and are pre-emphasised first (docs/semantics.md)."""
    if cfg.frame_step == "kaldi":
        np.copyto(buf, frames, casting="same_kind")
        head = buf[..., : cfg.sequence_length]
        head -= head.mean(axis=-1, keepdims=True)
        head[..., 1:] -= KALDI_PREEMPHASIS * head[..., :-1]  # the right side is evaluated first: a copy
        head[..., 0] *= 1.0 - KALDI_PREEMPHASIS
        if window is not None:
            buf *= window
    elif window is not None:
        np.multiply(frames, window, out=buf, casting="same_kind")
    else:
        np.copyto(buf, frames, casting="same_kind")
