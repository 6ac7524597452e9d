"""The Whisper preset: openai-whisper's ``log_mel_spectrogram`` and transformers' ``WhisperFeatureExtractor``."""

from __future__ import annotations

import functools
from typing import Any

from arraymel.core.log_rules import whisper_log
from arraymel.presets._common import (
    N_MELS,
    Preset,
    check_bool,
    check_int,
    check_real,
    float_signal,
    make_config,
    n_mels_or_feature_size,
    pad_signal,
    refuse,
    seeded_noise,
)


def _rule(out: Any, xp: Any, samples: int) -> Any:
    return whisper_log(out, xp)


def _signal(x: Any, xp: Any, *, padding: int, chunk: int | None, value: float, dither: float, seed: Any) -> Any:
    x = float_signal(x, xp)
    if chunk is not None:  # pad_or_trim: the first `chunk` samples, or `value` after the signal up to them
        n = x.shape[-1]
        x = x[..., :chunk] if n >= chunk else pad_signal(x, xp, 0, chunk - n, "constant", value)
    if padding:
        x = pad_signal(x, xp, 0, padding, "constant")
    if dither:
        x = x + dither * seeded_noise(xp, x, tuple(x.shape), seed, 0)
    return x


def _length(samples: int, *, padding: int, chunk: int | None) -> int:
    return (chunk if chunk is not None else samples) + padding


def whisper(n_mels: int = N_MELS, *, feature_size: int | None = None, sampling_rate: int = 16000, hop_length: int = 160,
            chunk_length: int = 30, n_fft: int = 400, padding: int | str = 0, padding_value: float = 0.0,
            pad_or_trim: bool = False, dither: float = 0.0, seed: int | None = None,
            return_attention_mask: bool = False) -> Preset:
    """openai-whisper's ``log_mel_spectrogram`` (and transformers' ``WhisperFeatureExtractor``).

    Periodic Hann of ``n_fft``, hop ``hop_length``, centred reflect padding, the last frame dropped, power,
    librosa's Slaney-scale Slaney-normalised filterbank from 0 to 8 kHz (whatever ``sampling_rate``, as
    transformers builds it), ``log10(max(x, 1e-10))``, ``max(x, x.max() - 8)`` per spectrogram,
    ``(x + 4) / 4``.

    Parameters
    ----------
    n_mels, feature_size : int
        Mel bands (80: Whisper up to large-v2; 128: large-v3; any other as transformers builds it);
        ``feature_size`` is transformers' name for it.
    sampling_rate, hop_length, chunk_length, n_fft, padding_value, dither :
        As ``WhisperFeatureExtractor``: ``chunk_length`` seconds is the length ``pad_or_trim`` makes,
        ``padding_value`` what it pads with; ``dither`` adds ``dither`` times standard normal noise to the
        signal (drawn by NumPy from ``seed``: transformers draws torch's unseeded noise, so only the statistics
        agree).
    seed : int or None, optional
        The seed of the dither's noise (default None: fresh noise on each call); only used with ``dither``.
    padding : int or str
        openai-whisper's: zeros appended to the signal first (``transcribe`` uses 480000); the feature
        extractor's ``"max_length"`` (``pad_or_trim=True``), ``"longest"`` or ``"do_not_pad"`` (each row is
        its own clip: no padding).
    pad_or_trim : bool
        Pad or trim the signal to ``chunk_length`` seconds first, as the feature extractor does by default
        (3000 frames at the defaults).
    return_attention_mask : bool
        Only False: the preset returns the features (a mask of the frames is ``preset.n_frames``).

    Returns
    -------
    Preset

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> arraymel.presets.whisper(n_mels=80)(x).shape
    (80, 100)
    >>> arraymel.presets.whisper(feature_size=64, n_fft=512, hop_length=128)(x).shape
    (64, 125)
    """
    name = "whisper"
    n_mels = n_mels_or_feature_size(name, n_mels, feature_size)
    sr = check_int(name, "sampling_rate", sampling_rate)
    hop = check_int(name, "hop_length", hop_length)
    n_fft = check_int(name, "n_fft", n_fft)
    chunk_length = check_int(name, "chunk_length", chunk_length)
    if isinstance(padding, str):  # the extractor's call option: "max_length" pads (or trims) to chunk_length
        if padding not in ("max_length", "longest", "do_not_pad"):
            raise ValueError(f"arraymel.presets.whisper: padding={padding!r} is not allowed: padding must be an int "
                             "(openai-whisper's zeros appended) or one of 'max_length', 'longest', 'do_not_pad' (the "
                             "feature extractor's).")
        pad_or_trim, padding = pad_or_trim or padding == "max_length", 0
    padding = check_int(name, "padding", padding, minimum=0)
    padding_value = check_real(name, "padding_value", padding_value)
    pad_or_trim = check_bool(name, "pad_or_trim", pad_or_trim)
    dither = check_real(name, "dither", dither, minimum=0.0)
    if check_bool(name, "return_attention_mask", return_attention_mask):
        raise refuse(name, "return_attention_mask", True, "the preset returns the features only; the valid frames "
                     "of a clip of n samples are preset.n_frames(n)")
    cfg = make_config(name, fft_length=n_fft, sequence_stride=hop, window="hann", sampling_rate=sr,
                      num_mel_bins=n_mels, min_freq=0.0, max_freq=8000.0, power_to_db=False, filterbank="librosa")
    chunk = chunk_length * sr if pad_or_trim else None
    step = length = None
    if chunk is not None or padding or dither:
        step = functools.partial(_signal, padding=padding, chunk=chunk, value=padding_value, dither=dither, seed=seed)
        if chunk is not None or padding:
            length = functools.partial(_length, padding=padding, chunk=chunk)
    opts = dict(n_mels=n_mels, sampling_rate=sr, hop_length=hop, chunk_length=chunk_length, n_fft=n_fft,
                padding=padding, padding_value=padding_value, pad_or_trim=pad_or_trim, dither=dither, seed=seed)
    return Preset(name, "openai-whisper log_mel_spectrogram / transformers WhisperFeatureExtractor", cfg, opts,
                  signal_step=step, log_rule=_rule, drop_last_frame=True, step_length=length,
                  step_why=f"pad_or_trim={pad_or_trim!r}, padding={padding}" if length else "",
                  min_samples=1 if chunk is not None else max(1, n_fft // 2 + 1 - padding),
                  min_reason=f"the STFT (torch.stft, centred) reflect-pads n_fft // 2 = {n_fft // 2} samples on each "
                             f"side of the signal and its {padding} padding zeros, which needs more than that "
                             "(torch.stft raises too)")
