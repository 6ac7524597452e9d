"""The presets' reference libraries, called as ``arraymel bench``'s ``preset-reference`` peer
(:class:`arraymel.bench.peers.PresetReferencePeer`) and by benchmarks/presets.py.

A configuration named after a preset (:data:`arraymel.presets.PRESETS`) is ``{"preset": name,
"sampling_rate": ...}``: arraymel runs the preset, and the only other peer that runs it is
``preset-reference``, the library the preset reproduces, called the way its users call it:

- whisper: transformers' ``WhisperFeatureExtractor._torch_extract_fbank_features`` on the batch (what its
  ``__call__`` runs after padding, in torch; openai-whisper's ``log_mel_spectrogram`` is the same torch code);
- librosa: ``librosa.power_to_db(librosa.feature.melspectrogram(y=batch, ...))`` per clip (the preset's
  per-clip ``top_db``);
- torchaudio: ``AmplitudeToDB()(MelSpectrogram()(batch))``;
- kaldi: kaldi-native-fbank's ``OnlineFbank``, one clip after another (it takes one signal);
- nemo: transformers' ``ParakeetFeatureExtractor`` on the batch.

Every library is imported only when the peer runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Each preset's reference: the modules it needs and a builder ``(preset) -> fn(x_host) -> (..., mels, frames)``.
REFERENCE_MODULES: dict[str, tuple[str, ...]] = {
    "whisper": ("torch", "transformers"), "librosa": ("librosa",), "torchaudio": ("torch", "torchaudio"),
    "kaldi": ("kaldi_native_fbank",), "nemo": ("torch", "transformers"),
}


def _whisper(preset: Any) -> Callable[[np.ndarray], Any]:
    from transformers import WhisperFeatureExtractor  # noqa: PLC0415

    fe = WhisperFeatureExtractor(feature_size=preset.config.num_mel_bins)
    return lambda x: fe._torch_extract_fbank_features(x, device="cpu")


def _librosa(preset: Any) -> Callable[[np.ndarray], Any]:
    import librosa  # noqa: PLC0415

    o = preset.options

    def fn(x: np.ndarray) -> np.ndarray:
        return np.stack([librosa.power_to_db(
            librosa.feature.melspectrogram(y=clip, sr=o["sr"], n_fft=o["n_fft"], hop_length=o["hop_length"],
                                           win_length=o["win_length"], n_mels=o["n_mels"], fmin=o["fmin"],
                                           fmax=o["fmax"], htk=o["htk"], norm=o["norm"], center=o["center"],
                                           pad_mode=o["pad_mode"], power=o["power"]),
            ref=o["ref"], amin=o["amin"], top_db=o["top_db"]) for clip in x])

    return fn


def _torchaudio(preset: Any) -> Callable[[Any], Any]:
    import torchaudio  # noqa: PLC0415

    o = preset.options
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=o["sample_rate"], n_fft=o["n_fft"], win_length=o["win_length"], hop_length=o["hop_length"],
        f_min=o["f_min"], f_max=o["f_max"], n_mels=o["n_mels"], power=o["power"])
    db = torchaudio.transforms.AmplitudeToDB(top_db=o["top_db"])
    return lambda x: db(mel(x))


def _kaldi(preset: Any) -> Callable[[np.ndarray], np.ndarray]:
    import kaldi_native_fbank as knf  # noqa: PLC0415

    o = preset.options
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = o["sample_frequency"]
    opts.frame_opts.frame_length_ms = o["frame_length_ms"]
    opts.frame_opts.frame_shift_ms = o["frame_shift_ms"]
    opts.mel_opts.num_bins = o["num_mel_bins"]
    opts.mel_opts.low_freq = o["low_freq"]
    opts.mel_opts.high_freq = o["high_freq"]

    def one(clip: np.ndarray) -> np.ndarray:
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(o["sample_frequency"], clip)
        fb.input_finished()
        return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)]).T

    return lambda x: np.stack([one(clip) for clip in x])


def _nemo(preset: Any) -> Callable[[np.ndarray], Any]:
    from transformers import ParakeetFeatureExtractor  # noqa: PLC0415

    fe = ParakeetFeatureExtractor(feature_size=preset.config.num_mel_bins, sampling_rate=preset.options["sampling_rate"])
    sr = preset.options["sampling_rate"]
    return lambda x: fe(x, sampling_rate=sr, return_tensors="np").input_features.transpose(0, 2, 1)


BUILDERS: dict[str, Callable[[Any], Callable[[Any], Any]]] = {
    "whisper": _whisper, "librosa": _librosa, "torchaudio": _torchaudio, "kaldi": _kaldi, "nemo": _nemo,
}


def reference(preset: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(x_host) -> NumPy (..., mels, frames)``: the preset's reference library on a host batch."""
    build = BUILDERS[preset.name](preset)
    if preset.name == "torchaudio":  # torch in, torch out
        import torch  # noqa: PLC0415

        return lambda x: build(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    return lambda x: np.asarray(build(x))
