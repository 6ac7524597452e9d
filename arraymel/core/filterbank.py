"""The Keras/TensorFlow (HTK) mel filterbank: in float64 (the default), or as Keras evaluates it in float32;
and the filterbanks of the presets (:mod:`arraymel.presets`): librosa's and Kaldi's, in float64."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from arraymel.core._xp import from_host
from arraymel.core.inputs import warn_user

MEL_HIGH_FREQUENCY_Q = 1127.0
MEL_BREAK_FREQUENCY_HERTZ = 700.0


def hertz_to_mel(f: Any) -> Any:
    """HTK mel scale, ``1127 * ln(1 + f / 700)``."""
    return MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(f, dtype=np.float64) / MEL_BREAK_FREQUENCY_HERTZ)


def _warn_empty_bands(weights: np.ndarray, fft_length: int, sampling_rate: float, min_freq: float, max_freq: float) -> None:
    empty = np.flatnonzero(~weights.any(axis=0))
    if empty.size:
        shown = ", ".join(str(int(i)) for i in empty[:10]) + (", ..." if empty.size > 10 else "")
        warn_user(
            f"{empty.size} of {weights.shape[1]} mel bands receive no FFT bin and are all zero (bands {shown}) "
            f"with fft_length={fft_length}, sampling_rate={sampling_rate:g}, min_freq={min_freq:g}, "
            f"max_freq={max_freq:g}: use a larger fft_length or fewer num_mel_bins."
        )


@lru_cache(maxsize=64)
def filterbank_host(num_mel_bins: int, fft_length: int, sampling_rate: float, min_freq: float, max_freq: float) -> np.ndarray:
    """The ``(fft_length // 2 + 1, num_mel_bins)`` float64 filterbank of docs/semantics.md step 7 (read-only, cached).

    Warns once per configuration when a band receives no FFT bin.
    """
    n_bins = fft_length // 2 + 1
    bin_mel = hertz_to_mel(np.linspace(0.0, sampling_rate / 2.0, n_bins)[1:])[:, None]
    edges = np.linspace(hertz_to_mel(min_freq), hertz_to_mel(max_freq), num_mel_bins + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (centre - lower)
    falling = (upper - bin_mel) / (upper - centre)
    weights = np.zeros((n_bins, num_mel_bins), dtype=np.float64)
    weights[1:] = np.maximum(0.0, np.minimum(rising, falling))
    _warn_empty_bands(weights, fft_length, sampling_rate, min_freq, max_freq)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=64)
def keras_filterbank_host(num_mel_bins: int, fft_length: int, sampling_rate: float, min_freq: float,
                          max_freq: float) -> np.ndarray:
    """The filterbank exactly as Keras 3's ``MelSpectrogram.linear_to_mel_weight_matrix`` computes it on its
    NumPy backend: the same NumPy operations, in the same order, in float32 (read-only, cached).

    Float32 moves band edges: on rare configurations (a tone on a band edge, odd sampling rates) the
    output is up to 1.5 dB from the float64 filterbank (docs/semantics.md). This reproduces Keras's numbers for models trained
    on its layer. The float32 values are returned as float64 (exactly), so that every path casts them to
    its compute dtype as Keras does (its float64 layer multiplies by the same float32 values).
    """
    f32 = np.float32
    # Keras casts its (Python) arguments to float32 tensors first, then works on float32 arrays;
    # NumPy >= 2 keeps float32 when they meet Python floats (NEP 50), as Keras's NumPy backend sees it.
    sr, lower_hz, upper_hz, zero = (np.asarray(v, dtype=f32) for v in (sampling_rate, min_freq, max_freq, 0.0))

    def to_mel(hz: np.ndarray) -> np.ndarray:  # Keras's _hertz_to_mel
        return f32(MEL_HIGH_FREQUENCY_Q) * np.log(f32(1.0) + hz / f32(MEL_BREAK_FREQUENCY_HERTZ), dtype=f32)

    n_bins = fft_length // 2 + 1
    bin_mel = to_mel(np.linspace(zero, sr / f32(2.0), n_bins, dtype=f32)[1:])[:, None]
    edges = np.linspace(to_mel(lower_hz), to_mel(upper_hz), num_mel_bins + 2, dtype=f32)
    lower, centre, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bin_mel - lower) / (centre - lower)
    falling = (upper - bin_mel) / (upper - centre)
    weights32 = np.pad(np.maximum(zero, np.minimum(rising, falling)), [[1, 0], [0, 0]])
    weights = weights32.astype(np.float64)
    _warn_empty_bands(weights, fft_length, sampling_rate, min_freq, max_freq)
    weights.setflags(write=False)
    return weights


def slaney_hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, linear)


def slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), (200.0 / 3.0) * m)


@lru_cache(maxsize=64)
def librosa_filterbank_host(num_mel_bins: int, fft_length: int, sampling_rate: float, min_freq: float,
                            max_freq: float, htk: bool, slaney_norm: bool) -> np.ndarray:
    """``librosa.filters.mel(...).T`` in float64 (read-only, cached): edges evenly spaced on Slaney's mel
    scale (or HTK's, ``2595 log10(1 + f / 700)``), triangles linear in Hz over the bin frequencies
    ``k * sampling_rate / fft_length``, each divided by half its width in Hz with ``slaney_norm``.
    With ``htk`` and no norm this is also ``torchaudio.functional.melscale_fbanks``'s default."""
    if htk:
        edges_mel = np.linspace(2595.0 * np.log10(1.0 + min_freq / 700.0), 2595.0 * np.log10(1.0 + max_freq / 700.0),
                                num_mel_bins + 2)
        edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    else:
        edges = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(min_freq), slaney_hz_to_mel(max_freq), num_mel_bins + 2))
    bin_hz = np.arange(fft_length // 2 + 1, dtype=np.float64) * (sampling_rate / fft_length)
    width = np.diff(edges)
    ramps = edges[:, None] - bin_hz[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if slaney_norm:
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights = np.ascontiguousarray(weights.T)
    _warn_empty_bands(weights, fft_length, sampling_rate, min_freq, max_freq)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=64)
def kaldi_filterbank_host(num_mel_bins: int, fft_length: int, sampling_rate: float, min_freq: float,
                          max_freq: float) -> np.ndarray:
    """Kaldi's mel banks (``MelBanks`` of Kaldi and kaldi-native-fbank) in float64 (read-only, cached):
    edges evenly spaced on ``1127 ln(1 + f / 700)`` from ``min_freq`` to ``max_freq``, triangles linear in
    mel over bins ``0 .. fft_length / 2 - 1`` (the Nyquist bin's row is zero), weights only strictly
    inside a triangle, no normalisation."""
    n_bins = fft_length // 2 + 1
    lo, hi = hertz_to_mel(min_freq), hertz_to_mel(max_freq)
    delta = (hi - lo) / (num_mel_bins + 1)
    left = lo + delta * np.arange(num_mel_bins)
    centre, right = left + delta, left + 2 * delta
    bin_mel = hertz_to_mel(np.arange(fft_length // 2, dtype=np.float64) * (sampling_rate / fft_length))[:, None]
    inside = (bin_mel > left) & (bin_mel < right)
    w = np.where(bin_mel <= centre, (bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre))
    weights = np.zeros((n_bins, num_mel_bins), dtype=np.float64)
    weights[: fft_length // 2] = np.where(inside, w, 0.0)
    _warn_empty_bands(weights, fft_length, sampling_rate, min_freq, max_freq)
    weights.setflags(write=False)
    return weights


#: The librosa-style filterbank names: (htk scale, Slaney norm).
LIBROSA_FILTERBANKS = {"librosa": (False, True), "librosa-nonorm": (False, False), "librosa-htk": (True, True),
                       "librosa-htk-nonorm": (True, False)}


def config_filterbank(cfg: Any) -> np.ndarray:
    """The host filterbank (float64 values) a :class:`~arraymel.MelConfig` asks for (``cfg.filterbank``)."""
    args = (cfg.num_mel_bins, cfg.fft_length, cfg.sampling_rate, cfg.min_freq, cfg.max_freq)
    if cfg.filterbank in LIBROSA_FILTERBANKS:
        return librosa_filterbank_host(*args, *LIBROSA_FILTERBANKS[cfg.filterbank])
    if cfg.filterbank == "kaldi":
        return kaldi_filterbank_host(*args)
    build = keras_filterbank_host if cfg.filterbank == "keras" else filterbank_host
    return build(*args)


def mel_filterbank(
    *,
    num_mel_bins: int = 128,
    fft_length: int = 2048,
    sampling_rate: float = 16000,
    min_freq: float = 20.0,
    max_freq: float | None = None,
    filterbank: str = "exact",
    xp: Any = None,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """The mel filterbank that maps ``fft_length // 2 + 1`` power bins to ``num_mel_bins`` bands.

    By default HTK style as in TensorFlow and Keras: triangles linear in the mel domain, the DC row
    zero, no area normalisation. Built in float64 (or as Keras builds it, in float32), returned in
    ``dtype`` (default float64).

    Parameters
    ----------
    num_mel_bins : int, default 128
        Number of mel bands (columns).
    fft_length : int, default 2048
        FFT size; the matrix has ``fft_length // 2 + 1`` rows, one per one-sided FFT bin.
    sampling_rate : float, default 16000
        Sample rate in Hz.
    min_freq : float, default 20.0
        Lower edge of the first band, in Hz.
    max_freq : float, optional, default None
        Upper edge of the last band, in Hz; a falsy value means ``int(sampling_rate / 2)``.
    filterbank : {"exact", "keras", "librosa", "librosa-nonorm", "librosa-htk", "librosa-htk-nonorm", "kaldi"}, default "exact"
        ``"exact"`` evaluates Keras's HTK-style filterbank in float64; ``"keras"`` repeats Keras's
        float32 evaluation operation for operation. The presets' filterbanks: ``"librosa"``
        (``librosa.filters.mel``: Slaney mel scale, triangles linear in Hz, Slaney's area norm),
        ``"librosa-nonorm"`` (the same, peak 1), ``"librosa-htk"`` and ``"librosa-htk-nonorm"``
        (the HTK mel scale, with or without the norm; the latter is
        ``torchaudio.functional.melscale_fbanks``), and ``"kaldi"`` (Kaldi's mel banks, triangles
        linear in mel over the FFT bins).
    xp : namespace, optional, default None
        Array API namespace of the result (None: NumPy).
    device : optional, default None
        Device of the result, in ``xp``'s terms.
    dtype : dtype, optional, default None
        Dtype of the result (None: float64).

    Returns
    -------
    weights : array of shape ``(fft_length // 2 + 1, num_mel_bins)``
        Non-negative weights; ``power @ weights`` is the mel power.

    Raises
    ------
    ValueError
        A parameter out of its range (``min_freq >= max_freq``, ``num_mel_bins < 1``, ...) or an
        unknown ``filterbank``.

    Warns
    -----
    UserWarning
        When a band receives no FFT bin (its column is all zero), naming the bands.

    See Also
    --------
    mel_spectrogram : Applies this matrix to the power spectrogram.

    Notes
    -----
    The HTK mel scale is ``mel(f) = 1127 ln(1 + f / 700)``; ``num_mel_bins + 2`` edges are evenly
    spaced in mel from ``min_freq`` to ``max_freq``, and band ``k`` rises from edge ``k`` to a peak
    of 1 at edge ``k + 1`` and falls to 0 at edge ``k + 2``. The bins' frequencies are
    ``linspace(0, sampling_rate / 2, fft_length // 2 + 1)``, and the DC row is zero.

    Examples
    --------
    >>> import arraymel
    >>> fb = arraymel.mel_filterbank(num_mel_bins=40, fft_length=512, sampling_rate=16000)
    >>> fb.shape, float(fb[0].max()), bool((fb <= 1).all())
    ((257, 40), 0.0, True)
    >>> slaney = arraymel.mel_filterbank(num_mel_bins=40, fft_length=512, filterbank="librosa")
    >>> bool(slaney.max() < 0.05)  # Slaney's area norm: a band's peak is 2 / its width in Hz
    True
    """
    from arraymel._config import MelConfig

    cfg = MelConfig.create(
        num_mel_bins=num_mel_bins, fft_length=fft_length, sampling_rate=sampling_rate,
        min_freq=min_freq, max_freq=max_freq, filterbank=filterbank,
    )
    host = config_filterbank(cfg)
    if xp is None:
        import array_api_compat.numpy as xp
    return from_host(host, xp, device=device, dtype=dtype if dtype is not None else xp.float64)
