"""The log rules of the presets (:mod:`arraymel.presets`), applied to a mel power ``(..., mels, frames)``
with Array API operations (so on the device and in the namespace the power was computed in).

Keras's (and librosa's, and torchaudio's) decibels are the pipeline's own ``power_to_db``
(:mod:`arraymel.core.db`); these are the rules that differ from it.
"""

from __future__ import annotations

import math
from typing import Any

#: Kaldi's floor before the logarithm: ``std::numeric_limits<float>::epsilon()``.
KALDI_LOG_FLOOR = 2.0**-23
#: NeMo's guard added before the logarithm, and its guard on the standard deviation.
NEMO_LOG_GUARD = 2.0**-24
NEMO_STD_GUARD = 1e-5


def whisper_log(mel: Any, xp: Any) -> Any:
    """openai-whisper's ``log10(clamp(mel, 1e-10))``, raised to ``max - 8`` (per spectrogram), then ``(x + 4) / 4``."""
    floor = xp.asarray(1e-10, dtype=mel.dtype)
    log = xp.log10(xp.where(mel < floor, floor, mel))  # NaN stays NaN (a comparison, not maximum)
    if math.prod(log.shape) == 0:
        return log
    peak = xp.max(log, axis=(-2, -1), keepdims=True)
    return (xp.maximum(log, peak - 8.0) + 4.0) / 4.0


def kaldi_log(mel: Any, xp: Any) -> Any:
    """Kaldi's ``ln(max(mel, FLT_EPSILON))``."""
    floor = xp.asarray(KALDI_LOG_FLOOR, dtype=mel.dtype)
    return xp.log(xp.where(mel < floor, floor, mel))


def nemo_log_normalised(mel: Any, xp: Any, valid_frames: int) -> Any:
    """NeMo's ``ln(mel + 2**-24)``, then per mel band ``(x - mean) / (std + 1e-5)`` over the first
    ``valid_frames`` frames (``std`` with ``valid_frames - 1`` degrees of freedom); later frames are 0."""
    log = xp.log(mel + NEMO_LOG_GUARD)
    frames = log.shape[-1]
    if valid_frames >= frames:
        valid = log
    else:
        valid = log[..., :valid_frames]
    mean = xp.mean(valid, axis=-1, keepdims=True)
    dev = valid - mean
    std = xp.sqrt(xp.sum(dev * dev, axis=-1, keepdims=True) / (valid_frames - 1))
    out = dev / (std + NEMO_STD_GUARD)
    if valid_frames < frames:
        shape = (*log.shape[:-1], frames - valid_frames)
        out = xp.concat([out, xp.zeros(shape, dtype=out.dtype, device=_device(out))], axis=-1)
    return out


def _device(a: Any) -> Any:
    from array_api_compat import device

    return device(a)
