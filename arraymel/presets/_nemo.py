"""The NeMo preset: transformers' ``ParakeetFeatureExtractor`` (NeMo's ``AudioToMelSpectrogramPreprocessor``)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from arraymel.core.log_rules import nemo_log_normalised
from arraymel.presets._common import (
    N_MELS,
    Preset,
    check_int,
    check_real,
    float_signal,
    make_config,
    n_mels_or_feature_size,
    refuse,
)
from arraymel.presets._common import (
    preemphasis as _preemphasis,
)


def valid_frames(samples: int, n_fft: int, hop: int) -> int:
    """Parakeet's feature length: ``(samples + n_fft // 2 * 2 - n_fft) // hop``."""
    return (samples + n_fft // 2 * 2 - n_fft) // hop


def _rule(out: Any, xp: Any, samples: int, *, n_fft: int, hop: int) -> Any:
    valid = valid_frames(samples, n_fft, hop)
    if valid < 2:  # the standard deviation needs two valid frames
        need = 2 * hop + n_fft - n_fft // 2 * 2
        raise ValueError(f"x has {samples} samples: the nemo preset normalises over its {valid} valid frame(s) "
                         f"((samples + n_fft // 2 * 2 - n_fft) // {hop}) and needs at least 2 of them, so at least "
                         f"{need} samples.")
    return nemo_log_normalised(out, xp, valid_frames=valid)


def _signal(x: Any, xp: Any, *, coefficient: float) -> Any:
    return _preemphasis(float_signal(x, xp), xp, coefficient)


def nemo(n_mels: int = N_MELS, *, feature_size: int | None = None, sampling_rate: int = 16000, hop_length: int = 160,
         n_fft: int = 512, win_length: int = 400, preemphasis: float | None = 0.97,
         padding_value: float = 0.0) -> Preset:
    """NeMo's ``AudioToMelSpectrogramPreprocessor`` as transformers' ``ParakeetFeatureExtractor`` computes it
    (Parakeet, Canary).

    Pre-emphasis of the signal, an ``n_fft`` FFT of a ``win_length`` symmetric Hann window centred in it, hop
    ``hop_length``, centred zero padding, power, librosa's Slaney filterbank (0 - Nyquist), ``ln(x + 2**-24)``,
    then per mel band ``(x - mean) / (std + 1e-5)`` over the ``(samples + n_fft // 2 * 2 - n_fft) // hop_length``
    valid frames (std with N - 1); the frames past them are 0.

    Parameters
    ----------
    n_mels, feature_size : int
        Mel bands (``feature_size``: transformers' name).
    sampling_rate, hop_length, n_fft, win_length : int
        As ``ParakeetFeatureExtractor``.
    preemphasis : float or None
        ``y[i] = x[i] - preemphasis * x[i - 1]`` (``y[0] = x[0]``); None or 0: none.
    padding_value : float
        Only 0.0: the preset computes each row as one clip, so there is no batch padding to fill.

    Returns
    -------
    Preset

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> arraymel.presets.nemo(128)(x).shape
    (128, 101)
    """
    name = "nemo"
    n_mels = n_mels_or_feature_size(name, n_mels, feature_size)
    sr = check_int(name, "sampling_rate", sampling_rate)
    hop = check_int(name, "hop_length", hop_length)
    n_fft = check_int(name, "n_fft", n_fft)
    win = check_int(name, "win_length", win_length)
    if win > n_fft:
        raise ValueError(f"arraymel.presets.nemo: win_length={win} is not allowed: win_length must be <= n_fft "
                         f"({n_fft}), as torch.stft requires.")
    coef = 0.0 if preemphasis is None else check_real(name, "preemphasis", preemphasis)
    if check_real(name, "padding_value", padding_value) != 0.0:
        raise refuse(name, "padding_value", padding_value, "it fills the batch padding of clips of unequal lengths, "
                     "which the preset does not make (each row is one clip); call the preset on each clip")
    i = np.arange(win, dtype=np.float64)
    window = np.ones(1) if win == 1 else 0.5 - 0.5 * np.cos(2.0 * np.pi * i / (win - 1))  # hann_window(periodic=False)
    cfg = make_config(name, fft_length=n_fft, sequence_stride=hop, sequence_length=win, window=window,
                      sampling_rate=sr, num_mel_bins=n_mels, min_freq=0.0, max_freq=sr / 2.0, power_to_db=False,
                      filterbank="librosa", pad_mode="constant")
    step = functools.partial(_signal, coefficient=coef) if coef else None
    opts = {"n_mels": n_mels, "sampling_rate": sr, "hop_length": hop, "n_fft": n_fft, "win_length": win,
            "preemphasis": preemphasis, "padding_value": padding_value}
    return Preset(name, "transformers ParakeetFeatureExtractor (NeMo AudioToMelSpectrogramPreprocessor)", cfg, opts,
                  signal_step=step, log_rule=functools.partial(_rule, n_fft=n_fft, hop=hop))
