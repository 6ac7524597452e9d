"""The synthetic test signal of the preset tests, shared with the torchaudio golden generator (NumPy only)."""

import numpy as np


def speechlike(samples: int, sr: int, seed: int = 0) -> np.ndarray:
    """A voiced-speech stand-in: a gliding harmonic series with syllable-rate amplitude modulation, noise bursts
    and a quiet pause (real speech is used for the figures in docs/presets.md)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sr
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) ** 2
    x = 0.1 * voiced * envelope + 0.02 * rng.standard_normal(samples) * (np.sin(2 * np.pi * 1.3 * t) > 0.6)
    x[samples // 3 : samples // 3 + sr // 10] *= 1e-3
    return x.astype(np.float32)
