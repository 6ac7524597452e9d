"""Presets: the features of Whisper, librosa, torchaudio, Kaldi and NeMo on arraymel's pipeline.

A preset is one :class:`~arraymel.MelConfig` for the shared pipeline (every path: NumPy, generic,
CuPy) that picks a filterbank and the framing (and, for Kaldi, a step on each frame), plus one log
rule applied to its output, plus at most one step on the signal (NeMo's pre-emphasis, Whisper's
optional 30 s pad-or-trim). Each is named and opt-in; ``mel_spectrogram`` stays Keras's layer.

>>> import numpy as np, arraymel.presets
>>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
>>> arraymel.presets.whisper(n_mels=80)(x).shape
(80, 100)
>>> arraymel.presets.kaldi()(x).shape     # (mels, frames): arraymel's layout; Kaldi's is its transpose
(80, 98)

Parameter names are the reference library's own (``n_mels``, ``hop_length``, ``num_mel_bins``...).
See docs/presets.md for each preset's parameters and its measured distance to its reference.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as xp_device

from arraymel._config import MelConfig
from arraymel.core.inputs import as_array
from arraymel.core.log_rules import kaldi_log, nemo_log_normalised, whisper_log

#: Whisper's input length: 30 s at 16 kHz.
WHISPER_SAMPLES = 480000


@dataclasses.dataclass(frozen=True, eq=False)
class Preset:
    """One preset: call it on audio ``(..., samples)`` to get features ``(..., mels, frames)``.

    Made by the preset functions (:func:`whisper`, :func:`librosa`, :func:`torchaudio`,
    :func:`kaldi`, :func:`nemo`, :func:`get`), not directly.

    Attributes
    ----------
    name : str
        The preset's name, as ``arraymel.presets.PRESETS`` and ``arraymel corpus --preset`` know it.
    reference : str
        The library (and function) whose numbers it reproduces.
    config : MelConfig
        The configuration of the shared pipeline.
    options : dict
        The preset's arguments as given.
    signal_step, log_rule : callable or None
        The step on the signal before the pipeline, and the rule on its output after it.
    drop_last_frame : bool
        Whisper drops the STFT's last frame.

    See Also
    --------
    arraymel.MelSpectrogram : Keras's layer, the pipeline without a preset's rules.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> p = arraymel.presets.kaldi(num_mel_bins=40)
    >>> p.name, p.config.num_mel_bins, p.n_frames(16000), p(np.zeros(16000, np.float32)).shape
    ('kaldi', 40, 98, (40, 98))
    """

    name: str
    reference: str
    config: MelConfig
    options: dict
    #: ``(x, xp) -> x`` before the pipeline (None: nothing).
    signal_step: Callable[[Any, Any], Any] | None = None
    #: ``(features, xp, samples) -> features`` after it (None: the pipeline's output as it is).
    log_rule: Callable[[Any, Any, int], Any] | None = None
    #: Whisper drops the STFT's last frame.
    drop_last_frame: bool = False

    def n_frames(self, samples: int) -> int:
        """Frames of the features of a signal of ``samples`` samples.

        Parameters
        ----------
        samples : int
            Length of the signal.

        Returns
        -------
        frames : int

        Examples
        --------
        >>> import arraymel.presets
        >>> arraymel.presets.whisper().n_frames(16000), arraymel.presets.whisper(pad_or_trim=True).n_frames(16000)
        (100, 3000)
        """
        if self.signal_step is _pad_or_trim:
            samples = WHISPER_SAMPLES
        return self.config.n_frames(samples) - int(self.drop_last_frame)

    def __call__(self, x: Any, *, device: Any = None, output: str | None = None, backend: str = "auto",
                 max_memory: int | None = None) -> Any:
        """Features of ``x`` ``(..., samples)``, as :func:`arraymel.mel_spectrogram` takes it.

        Parameters
        ----------
        x : array of shape ``(..., samples)``
            Real audio at the preset's sampling rate: NumPy, CuPy, torch, JAX or any Array API array.
        device, output, backend, max_memory : optional
            As in :func:`arraymel.mel_spectrogram` (defaults None, None, "auto", None).

        Returns
        -------
        features : array of shape ``(..., mels, frames)``
            In the preset's units (dB, log10 / 4, natural log or normalised), each row of ``x``
            computed as one clip.

        Raises
        ------
        ValueError
            Input with no samples, or shorter than one frame for a preset without centring (Kaldi).

        Examples
        --------
        >>> import numpy as np, arraymel.presets
        >>> arraymel.presets.nemo()(np.zeros((2, 16000), np.float32)).shape
        (2, 80, 101)
        """
        from arraymel.functional import compute

        x = self.prepare(x)
        out = compute(x, self.config, device=device, output=output, backend=backend, max_memory=max_memory)
        return self.finish(out, int(x.shape[-1]))

    def prepare(self, x: Any) -> Any:
        """The signal the pipeline takes: ``x`` after the preset's signal step (in ``x``'s namespace).

        Parameters
        ----------
        x : array of shape ``(..., samples)``
            Real audio.

        Returns
        -------
        prepared : array
            ``x`` itself when the preset has no signal step; else the stepped signal, as float.

        See Also
        --------
        arraymel.presets.Preset.finish : The other half, after the pipeline.

        Examples
        --------
        >>> import numpy as np, arraymel.presets
        >>> arraymel.presets.nemo().prepare(np.ones(4, np.float32)).round(2).tolist()  # pre-emphasis 0.97
        [1.0, 0.03, 0.03, 0.03]
        """
        x, xp = as_array(x)
        if self.signal_step is not None:
            if not xp.isdtype(x.dtype, "real floating"):
                x = xp.astype(x, xp.float32)
            x = self.signal_step(x, xp)
        return x

    def finish(self, out: Any, samples: int) -> Any:
        """The features from the pipeline's output ``out`` for a prepared signal of ``samples`` samples.

        Parameters
        ----------
        out : array of shape ``(..., mels, frames)``
            What the pipeline computed from :meth:`arraymel.presets.Preset.prepare`'s signal.
        samples : int
            Length of the prepared signal.

        Returns
        -------
        features : array
            ``out`` with the preset's frame drop and log rule applied.

        Examples
        --------
        >>> import numpy as np, arraymel.presets
        >>> float(arraymel.presets.kaldi().finish(np.ones((1, 1)), 400)[0, 0])  # ln(1)
        0.0
        """
        if self.drop_last_frame:
            out = out[..., :-1]
        if self.log_rule is not None:
            out = self.log_rule(out, array_namespace(out), samples)
        return out

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"arraymel.presets.{self.name}({opts})"


# ------------------------------------------------------------------------------ signal steps and rules
def _pad_or_trim(x: Any, xp: Any) -> Any:
    """Whisper's ``pad_or_trim``: zeros after the signal up to 30 s, or its first 30 s."""
    n = x.shape[-1]
    if n >= WHISPER_SAMPLES:
        return x[..., :WHISPER_SAMPLES]
    zeros = xp.zeros((*x.shape[:-1], WHISPER_SAMPLES - n), dtype=x.dtype, device=xp_device(x))
    return xp.concat([x, zeros], axis=-1)


def _signal_preemphasis(x: Any, xp: Any, coefficient: float) -> Any:
    """NeMo's pre-emphasis of the whole signal: ``y[0] = x[0]``, ``y[i] = x[i] - c x[i - 1]``."""
    return xp.concat([x[..., :1], x[..., 1:] - coefficient * x[..., :-1]], axis=-1)


def _whisper_rule(out: Any, xp: Any, samples: int) -> Any:
    return whisper_log(out, xp)


def _kaldi_rule(out: Any, xp: Any, samples: int) -> Any:
    return kaldi_log(out, xp)


def _nemo_rule(out: Any, xp: Any, samples: int, hop: int) -> Any:
    if samples < 2 * hop:  # the standard deviation needs two valid frames
        raise ValueError(f"x has {samples} samples: the nemo preset normalises over samples // {hop} frames and "
                         f"needs at least 2 of them, so at least {2 * hop} samples.")
    return nemo_log_normalised(out, xp, valid_frames=samples // hop)


#: Each preset's argument names that differ from MelConfig's, for its error messages.
_NAMES = {
    "librosa": {"sr": "sampling_rate", "n_fft": "fft_length", "hop_length": "sequence_stride",
                "win_length": "sequence_length", "n_mels": "num_mel_bins", "fmin": "min_freq", "fmax": "max_freq",
                "power": "mag_exp", "ref": "ref_power", "amin": "min_power"},
    "torchaudio": {"sample_rate": "sampling_rate", "n_fft": "fft_length", "hop_length": "sequence_stride",
                   "win_length": "sequence_length", "n_mels": "num_mel_bins", "f_min": "min_freq", "f_max": "max_freq",
                   "power": "mag_exp"},
    "kaldi": {"sample_frequency": "sampling_rate", "frame_length_ms": "sequence_length",
              "frame_shift_ms": "sequence_stride", "low_freq": "min_freq", "high_freq": "max_freq"},
    "nemo": {},
    "whisper": {},
}


def _config(preset: str, **params: Any) -> MelConfig:
    """``MelConfig.create(**params)``; an error also says which of the preset's arguments each parameter is."""
    try:
        return MelConfig.create(**params)
    except (TypeError, ValueError) as e:
        names = [f"{theirs} -> {ours}" for theirs, ours in _NAMES[preset].items() if ours in str(e)]
        if not names:
            raise
        raise type(e)(f"arraymel.presets.{preset}: {e} ({', '.join(names)})") from None


def _choice(name: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be one of {allowed!r}.")
    return value


# ------------------------------------------------------------------------------ the presets
def whisper(n_mels: int = 80, *, pad_or_trim: bool = False) -> Preset:
    """openai-whisper's ``log_mel_spectrogram`` (and transformers' ``WhisperFeatureExtractor``).

    16 kHz, n_fft 400, hop 160, periodic Hann, centred reflect padding, the last frame dropped, power,
    librosa's Slaney-scale Slaney-normalised filterbank (0 - 8 kHz), ``log10(clamp(1e-10))``,
    ``max(x, x.max() - 8)`` per spectrogram, ``(x + 4) / 4``.

    Parameters
    ----------
    n_mels : {80, 128}, default 80
        80 for Whisper up to large-v2, 128 for large-v3.
    pad_or_trim : bool, default False
        Pad or trim the signal to 30 s first, as the feature extractor does (3000 frames).

    Returns
    -------
    Preset
        Call it on audio ``(..., samples)`` to get ``(..., n_mels, frames)`` features.

    Raises
    ------
    ValueError
        ``n_mels`` other than 80 or 128.

    See Also
    --------
    get : A preset by name.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> feats = arraymel.presets.whisper(n_mels=128)(np.zeros(16000, np.float32))
    >>> feats.shape, feats.dtype
    ((128, 100), dtype('float32'))
    """
    _choice("n_mels", n_mels, (80, 128))
    cfg = _config("whisper", fft_length=400, sequence_stride=160, window="hann", sampling_rate=16000,
                           num_mel_bins=n_mels, min_freq=0.0, max_freq=8000.0, power_to_db=False, filterbank="librosa")
    return Preset("whisper", "openai-whisper log_mel_spectrogram / transformers WhisperFeatureExtractor", cfg,
                  {"n_mels": n_mels, "pad_or_trim": pad_or_trim}, _pad_or_trim if pad_or_trim else None,
                  _whisper_rule, drop_last_frame=True)


def librosa(*, sr: float = 22050, n_fft: int = 2048, hop_length: int | None = None, win_length: int | None = None,
            n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
            norm: str | None = "slaney", center: bool = True, pad_mode: str = "constant", power: float = 2.0,
            ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0,
            top_db_scope: str = "example") -> Preset:
    """``librosa.power_to_db(librosa.feature.melspectrogram(y=x, ...), ref=ref, amin=amin, top_db=top_db)``.

    librosa's defaults (0.10 and later): periodic Hann, centred with zero padding (``pad_mode="constant"``;
    ``"reflect"`` was librosa's default before 0.10), the Slaney-scale Slaney-normalised filterbank
    (``htk=True`` and ``norm=None`` as in librosa). ``top_db`` is clipped per spectrogram
    (``top_db_scope="example"``: each clip as if given to librosa alone; ``"batch"``: a batch as one array).

    Parameters
    ----------
    sr : float, default 22050
        Sampling rate in Hz.
    n_fft : int, default 2048
        FFT size.
    hop_length : int, optional, default None
        Hop in samples (None: ``n_fft // 4``).
    win_length : int, optional, default None
        Window length (None: ``n_fft``).
    n_mels : int, default 128
        Number of mel bands.
    fmin : float, default 0.0
        Lowest frequency, in Hz.
    fmax : float, optional, default None
        Highest frequency, in Hz (None: ``sr / 2``).
    htk : bool, default False
        The HTK mel scale instead of Slaney's.
    norm : {"slaney", None}, default "slaney"
        Slaney's area normalisation of the bands, or none.
    center : bool, default True
        Centre the frames (pad by ``n_fft // 2``).
    pad_mode : {"constant", "reflect"}, default "constant"
        How centring pads (``"reflect"`` was librosa's default before 0.10).
    power : float, default 2.0
        Exponent of the magnitude.
    ref, amin : float, default 1.0 and 1e-10
        ``librosa.power_to_db``'s reference and floor.
    top_db : float or None, default 80.0
        Clip values more than ``top_db`` below the maximum (None: no clipping).
    top_db_scope : {"example", "batch"}, default "example"
        The maximum per clip, or over the whole batch.

    Returns
    -------
    Preset
        Call it on audio ``(..., samples)`` to get ``(..., n_mels, frames)`` features.

    Raises
    ------
    ValueError
        ``norm`` or ``pad_mode`` not among the values above, or a parameter the pipeline refuses.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> arraymel.presets.librosa(sr=16000, n_mels=64)(np.zeros((2, 16000), np.float32)).shape
    (2, 64, 32)
    """
    _choice("norm", norm, ("slaney", None))
    _choice("pad_mode", pad_mode, ("constant", "reflect"))
    hop = n_fft // 4 if hop_length is None else hop_length
    fb = "librosa" + ("-htk" if htk else "") + ("" if norm else "-nonorm")
    cfg = _config("librosa", fft_length=n_fft, sequence_stride=hop, sequence_length=win_length, window="hann",
                           sampling_rate=sr, num_mel_bins=n_mels, min_freq=fmin, max_freq=sr / 2.0 if fmax is None else fmax,
                           power_to_db=True, top_db=top_db, mag_exp=power, min_power=amin, ref_power=ref,
                           top_db_scope=top_db_scope, filterbank=fb, center=center, pad_mode=pad_mode)
    opts = dict(sr=sr, n_fft=n_fft, hop_length=hop, win_length=win_length, n_mels=n_mels, fmin=fmin, fmax=fmax,
                htk=htk, norm=norm, center=center, pad_mode=pad_mode, power=power, ref=ref, amin=amin, top_db=top_db,
                top_db_scope=top_db_scope)
    return Preset("librosa", "librosa.feature.melspectrogram + librosa.power_to_db", cfg, opts)


def torchaudio(*, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
               hop_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, n_mels: int = 128,
               power: float = 2.0, top_db: float | None = None) -> Preset:
    """``torchaudio.transforms.AmplitudeToDB(top_db=top_db)(torchaudio.transforms.MelSpectrogram(...)(x))``.

    torchaudio's defaults: n_fft 400, hop ``win_length // 2`` (200), periodic Hann, centred reflect
    padding, the HTK-scale filterbank with triangles linear in Hz and no norm, AmplitudeToDB's default
    ``10 log10(clamp(1e-10))`` (``stype="power"``, whatever ``power``), ``top_db`` per spectrogram (None: no clipping).

    One difference on batches: torchaudio's ``AmplitudeToDB`` clips a ``(batch, mels, frames)`` tensor at
    ``top_db`` below the whole batch's maximum (and a 4-D one per item across its channels); this preset clips
    each spectrogram at its own maximum, so that a clip's features never depend on its batch. With ``top_db``
    set, a batched call equals torchaudio's on each clip alone, not on the batch.

    Parameters
    ----------
    sample_rate : int, default 16000
        Sampling rate in Hz.
    n_fft : int, default 400
        FFT size.
    win_length : int, optional, default None
        Window length (None: ``n_fft``).
    hop_length : int, optional, default None
        Hop in samples (None: ``win_length // 2``).
    f_min : float, default 0.0
        Lowest frequency, in Hz.
    f_max : float, optional, default None
        Highest frequency, in Hz (None: ``sample_rate // 2``).
    n_mels : int, default 128
        Number of mel bands.
    power : float, default 2.0
        Exponent of the magnitude.
    top_db : float, optional, default None
        ``AmplitudeToDB``'s clipping below each spectrogram's maximum (None: none).

    Returns
    -------
    Preset
        Call it on audio ``(..., samples)`` to get ``(..., n_mels, frames)`` features.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> arraymel.presets.torchaudio(n_mels=64)(np.zeros(16000, np.float32)).shape
    (64, 81)
    """
    win = n_fft if win_length is None else win_length
    hop = win // 2 if hop_length is None else hop_length
    cfg = _config("torchaudio", fft_length=n_fft, sequence_stride=hop, sequence_length=win, window="hann",
                           sampling_rate=sample_rate, num_mel_bins=n_mels, min_freq=f_min,
                           max_freq=float(sample_rate // 2) if f_max is None else f_max, power_to_db=True, top_db=top_db,
                           mag_exp=power, min_power=1e-10, ref_power=1.0, top_db_scope="example",
                           filterbank="librosa-htk-nonorm")
    opts = dict(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, f_min=f_min,
                f_max=f_max, n_mels=n_mels, power=power, top_db=top_db)
    return Preset("torchaudio", "torchaudio.transforms.MelSpectrogram + AmplitudeToDB", cfg, opts)


def povey_window(length: int) -> np.ndarray:
    """Kaldi's "povey" window: ``(0.5 - 0.5 cos(2 pi i / (length - 1))) ** 0.85``.

    Parameters
    ----------
    length : int
        Number of samples (at least 2).

    Returns
    -------
    w : numpy.ndarray of shape ``(length,)``
        float64 values, 0 at both ends and 1 in the middle for an odd ``length``.

    Examples
    --------
    >>> import arraymel.presets
    >>> arraymel.presets.povey_window(5).round(3).tolist()
    [0.0, 0.555, 1.0, 0.555, 0.0]
    """
    i = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * i / (length - 1))) ** 0.85


def kaldi(*, num_mel_bins: int = 80, sample_frequency: float = 16000, frame_length_ms: float = 25.0,
          frame_shift_ms: float = 10.0, low_freq: float = 20.0, high_freq: float = 0.0) -> Preset:
    """Kaldi's fbank as kaldi-native-fbank (and ``torchaudio.compliance.kaldi.fbank``) computes it with
    ``dither=0``: frames of 25 ms every 10 ms without centring (snip_edges), each frame's mean removed and
    pre-emphasis 0.97, the povey window, the FFT size rounded up to a power of two, power, Kaldi's mel
    banks (``high_freq <= 0`` is relative to Nyquist), ``ln(max(x, FLT_EPSILON))``.
    Output ``(..., num_mel_bins, frames)`` (Kaldi's is ``(frames, num_mel_bins)``).

    Parameters
    ----------
    num_mel_bins : int, default 80
        Number of mel bands.
    sample_frequency : float, default 16000
        Sampling rate in Hz.
    frame_length_ms, frame_shift_ms : float, default 25.0 and 10.0
        Frame length and hop, in milliseconds.
    low_freq : float, default 20.0
        Lowest frequency, in Hz.
    high_freq : float, default 0.0
        Highest frequency, in Hz; zero or negative counts back from Nyquist.

    Returns
    -------
    Preset
        Call it on audio ``(..., samples)`` to get ``(..., num_mel_bins, frames)`` features with
        ``frames = 1 + (samples - frame_length) // frame_shift``; a signal shorter than one frame
        is a ValueError.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> fbank = arraymel.presets.kaldi()
    >>> fbank.config.fft_length, fbank(np.zeros(16000, np.float32)).shape
    (512, (80, 98))
    """
    win = int(sample_frequency * 0.001 * frame_length_ms)
    hop = int(sample_frequency * 0.001 * frame_shift_ms)
    n_fft = 1 << max(0, (win - 1).bit_length())
    top = high_freq if high_freq > 0 else sample_frequency / 2.0 + high_freq
    cfg = _config("kaldi", fft_length=n_fft, sequence_stride=hop, sequence_length=win, window=povey_window(win),
                           sampling_rate=sample_frequency, num_mel_bins=num_mel_bins, min_freq=low_freq, max_freq=top,
                           power_to_db=False, filterbank="kaldi", center=False, frame_step="kaldi")
    opts = dict(num_mel_bins=num_mel_bins, sample_frequency=sample_frequency, frame_length_ms=frame_length_ms,
                frame_shift_ms=frame_shift_ms, low_freq=low_freq, high_freq=high_freq)
    return Preset("kaldi", "kaldi-native-fbank OnlineFbank (dither 0)", cfg, opts, log_rule=_kaldi_rule)


def nemo(n_mels: int = 80, *, sampling_rate: int = 16000) -> Preset:
    """NeMo's ``AudioToMelSpectrogramPreprocessor`` as transformers' ``ParakeetFeatureExtractor`` computes it
    (Parakeet, Canary): pre-emphasis 0.97 of the signal, n_fft 512 with a 400-sample symmetric Hann window
    centred in it, hop 160, centred zero padding, power, librosa's Slaney filterbank (0 - Nyquist),
    ``ln(x + 2**-24)``, then per mel band ``(x - mean) / (std + 1e-5)`` over the ``samples // 160`` valid
    frames (the last frame, past them, is 0).

    Parameters
    ----------
    n_mels : {80, 128}, default 80
        Number of mel bands (Parakeet: 80; Canary: 128).
    sampling_rate : int, default 16000
        Sampling rate in Hz.

    Returns
    -------
    Preset
        Call it on audio ``(..., samples)`` to get normalised ``(..., n_mels, frames)`` features.

    Raises
    ------
    ValueError
        ``n_mels`` other than 80 or 128.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> feats = arraymel.presets.nemo()(x)
    >>> feats.shape, bool(abs(feats[:, :100].mean(axis=1)).max() < 1e-4)  # per band: mean 0
    ((80, 101), True)
    """
    _choice("n_mels", n_mels, (80, 128))
    i = np.arange(400, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * i / 399)  # torch.hann_window(400, periodic=False)
    cfg = _config("nemo", fft_length=512, sequence_stride=160, sequence_length=400, window=window,
                           sampling_rate=sampling_rate, num_mel_bins=n_mels, min_freq=0.0,
                           max_freq=sampling_rate / 2.0, power_to_db=False, filterbank="librosa", pad_mode="constant")
    return Preset("nemo", "transformers ParakeetFeatureExtractor (NeMo AudioToMelSpectrogramPreprocessor)", cfg,
                  {"n_mels": n_mels, "sampling_rate": sampling_rate},
                  functools.partial(_signal_preemphasis, coefficient=0.97), functools.partial(_nemo_rule, hop=160))


#: The presets by name (``arraymel corpus --preset NAME``, ``arraymel bench --config NAME``).
PRESETS: dict[str, Callable[..., Preset]] = {
    "whisper": whisper, "librosa": librosa, "torchaudio": torchaudio, "kaldi": kaldi, "nemo": nemo,
}


def get(name: str, **options: Any) -> Preset:
    """The preset called ``name`` with ``options`` (its function's keyword arguments).

    Parameters
    ----------
    name : {"whisper", "librosa", "torchaudio", "kaldi", "nemo"}
        The preset's name (the keys of ``arraymel.presets.PRESETS``).
    **options : optional
        The preset function's arguments.

    Returns
    -------
    Preset

    Raises
    ------
    ValueError
        An unknown ``name``, naming the presets there are.
    TypeError
        An argument the preset does not take.

    Examples
    --------
    >>> import arraymel.presets
    >>> arraymel.presets.get("whisper", n_mels=128)
    arraymel.presets.whisper(n_mels=128, pad_or_trim=False)
    """
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not allowed: preset must be one of {tuple(PRESETS)!r}.")
    return PRESETS[name](**options)
