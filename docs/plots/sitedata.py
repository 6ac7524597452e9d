"""Data the site's pictures are drawn from: a speech-like clip synthesised here (no download).

The clip is a source-filter model of a voice: a glottal pulse train whose pitch glides, shaped by
three formant resonators that move from vowel to vowel, with a short burst of noise for a
fricative. It looks like speech in a spectrogram (harmonics, formants, onsets) and is the same on
every machine.
"""

from __future__ import annotations

import wave

import numpy as np

SAMPLING_RATE = 16000

# (duration s, formants Hz) of the vowels "a", "i", "u", "e"; a fricative between the 2nd and 3rd
VOWELS = [(0.45, (730, 1090, 2440)), (0.40, (270, 2290, 3010)), (0.45, (300, 870, 2240)), (0.40, (530, 1840, 2480))]


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """A two-pole resonance at ``freq`` (the digital formant filter of Klatt's synthesiser)."""
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / sr)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return lfilter([1.0 - r], a, x)


def speech_like(sr: int = SAMPLING_RATE, seed: int = 0) -> np.ndarray:
    """About 2.3 s of a voice-like float32 signal at ``sr`` Hz, peak 0.5."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, (seconds, formants) in enumerate(VOWELS):
        n = int(seconds * sr)
        t = np.arange(n) / sr
        f0 = 140 - 30 * t / seconds + 8 * np.sin(2 * np.pi * 4 * t)  # falling pitch with a little vibrato
        phase = np.cumsum(f0) / sr
        source = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)  # one pulse per period
        voiced = sum(_resonator(source, f, 60 + 0.05 * f, sr) * g for f, g in zip(formants, (1.0, 0.5, 0.25)))
        voiced *= np.hanning(n) ** 0.3
        parts.append(voiced)
        parts.append(np.zeros(int(0.06 * sr)))
        if i == 1:  # an "s": noise shaped towards 5 kHz
            n_s = int(0.18 * sr)
            s = _resonator(rng.standard_normal(n_s), 5000, 2000, sr) * np.hanning(n_s) * 0.2
            parts.extend([s, np.zeros(int(0.05 * sr))])
    x = np.concatenate(parts)
    x += 1e-4 * rng.standard_normal(x.size)  # a quiet room, so silence is not -inf
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_wav(path: str, x: np.ndarray, sr: int = SAMPLING_RATE) -> None:
    """16-bit PCM WAV with the standard library (soundfile reads it back)."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
