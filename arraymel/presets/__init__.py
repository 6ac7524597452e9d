"""Presets: the features of Whisper, librosa, torchaudio, Kaldi and NeMo on arraymel's pipeline.

A preset is one :class:`~arraymel.MelConfig` for the shared pipeline (every path: NumPy, generic, CuPy)
that picks a filterbank and the framing, plus the steps its reference takes around it (a step on the
signal, a log rule on the output, Kaldi's frame extraction), written with Array API operations so that
they run where the data is. Each preset takes its reference's own parameters, under their own names, with
their own defaults; an option it cannot honour is a TypeError saying what to use instead.

>>> import numpy as np, arraymel.presets
>>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
>>> arraymel.presets.whisper(n_mels=80)(x).shape
(80, 100)
>>> arraymel.presets.kaldi()(x).shape     # (mels, frames): arraymel's layout; Kaldi's is its transpose
(23, 98)

See docs/presets.md for each preset's parameters and its measured distance to its reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arraymel.presets._common import WHISPER_SAMPLES, Preset
from arraymel.presets._kaldi import kaldi, povey_window
from arraymel.presets._librosa import librosa
from arraymel.presets._nemo import nemo
from arraymel.presets._torchaudio import torchaudio
from arraymel.presets._whisper import whisper

__all__ = ["PRESETS", "Preset", "WHISPER_SAMPLES", "get", "kaldi", "librosa", "nemo", "povey_window", "torchaudio",
           "whisper"]

#: The presets by name (``arraymel corpus --preset NAME``, ``arraymel bench --config NAME``).
PRESETS: dict[str, Callable[..., Preset]] = {
    "whisper": whisper, "librosa": librosa, "torchaudio": torchaudio, "kaldi": kaldi, "nemo": nemo,
}


def get(name: str, **options: Any) -> Preset:
    """The preset called ``name`` with ``options`` (its function's keyword arguments).

    Parameters
    ----------
    name : str
        One of the keys of :data:`PRESETS`: ``"whisper"``, ``"librosa"``, ``"torchaudio"``, ``"kaldi"``,
        ``"nemo"``.
    **options
        Keyword arguments of that preset's function (:func:`whisper`, :func:`librosa`, ...).

    Returns
    -------
    Preset
        ``PRESETS[name](**options)``.

    Raises
    ------
    ValueError
        When ``name`` is not a preset; the message lists the names.
    TypeError
        When an option is unknown to the preset or cannot be honoured (the preset's own message).

    See Also
    --------
    PRESETS : The preset functions by name.

    Examples
    --------
    >>> import arraymel.presets
    >>> arraymel.presets.get("kaldi", num_mel_bins=40).config.num_mel_bins
    40
    """
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not allowed: preset must be one of {tuple(PRESETS)!r}.")
    return PRESETS[name](**options)
