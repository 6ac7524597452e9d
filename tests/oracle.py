"""A second, independent float64 evaluation of docs/semantics.md, for the parity tests.

Deliberately plain: every step of docs/semantics.md's pipeline written out once in float64 NumPy
(reflect padding with ``np.pad``, frames gathered by explicit indices, windows from
``scipy.signal.get_window``, ``np.fft.rfft``, the HTK filterbank of step 7, dB and
``top_db`` with both scopes). No speed tricks, no shared code with arraymel: it must not
import arraymel, so that a mistake in the library cannot hide in its own reference.

Inputs are cast to float64 first; compare a float32 result of the library against the
oracle evaluated on the same (float32-valued) samples.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.signal

_MEL_Q = 1127.0
_MEL_BREAK = 700.0


def hz_to_mel(f):
    """HTK mel scale: 1127 ln(1 + f / 700), in float64."""
    return _MEL_Q * np.log(1.0 + np.asarray(f, dtype=np.float64) / _MEL_BREAK)


def default_max_freq(sampling_rate, max_freq=None):
    """docs/semantics.md: a falsy max_freq (None or 0) means int(sampling_rate / 2), as in Keras."""
    return max_freq if max_freq else int(sampling_rate / 2)


def window_vector(window, fft_length: int, sequence_length: int | None = None) -> np.ndarray:
    """The length-``fft_length`` float64 window of docs/semantics.md step 4 (centre zero-padded)."""
    seq = fft_length if sequence_length is None else int(sequence_length)
    if window is None:
        # NumPy/JAX Keras backends: ones over the whole fft_length, sequence_length ignored.
        return np.ones(fft_length, dtype=np.float64)
    if isinstance(window, str):
        if window not in ("hann", "hamming"):
            raise ValueError(f"unknown window {window!r}")
        w = scipy.signal.get_window(window, seq, fftbins=True).astype(np.float64)
    else:
        w = np.asarray(window, dtype=np.float64)
        if w.shape != (seq,):
            raise ValueError(f"window shape {w.shape} != ({seq},)")
    left = (fft_length - seq) // 2
    right = fft_length - seq - left
    return np.concatenate([np.zeros(left), w, np.zeros(right)])


@functools.lru_cache(maxsize=64)
def _filterbank_cached(fft_length, sampling_rate, num_mel_bins, min_freq, max_freq) -> np.ndarray:
    fb = _build_filterbank(fft_length, sampling_rate, num_mel_bins, min_freq, max_freq)
    fb.flags.writeable = False
    return fb


def mel_filterbank(fft_length: int, sampling_rate, num_mel_bins: int, min_freq, max_freq) -> np.ndarray:
    """HTK filterbank of docs/semantics.md step 7, shape (fft_length // 2 + 1, num_mel_bins), float64 (cached, read-only)."""
    return _filterbank_cached(int(fft_length), float(sampling_rate), int(num_mel_bins), float(min_freq), float(max_freq))


def _build_filterbank(fft_length, sampling_rate, num_mel_bins, min_freq, max_freq) -> np.ndarray:
    """HTK filterbank of docs/semantics.md step 7, shape (fft_length // 2 + 1, num_mel_bins), float64.

    Triangles linear in mel, peak 1, no normalisation, DC row all zero. Written bin by
    bin and band by band (no broadcasting tricks) so that it reads like the spec.
    """
    n_bins = fft_length // 2 + 1
    freqs = np.linspace(0.0, sampling_rate / 2.0, n_bins)
    bin_mel = hz_to_mel(freqs).tolist()  # Python floats (IEEE doubles): plain scalar arithmetic below
    edges = np.linspace(hz_to_mel(min_freq), hz_to_mel(max_freq), num_mel_bins + 2).tolist()
    fb = np.zeros((n_bins, num_mel_bins), dtype=np.float64)
    for m in range(num_mel_bins):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(1, n_bins):  # k = 0: the DC row stays zero
            rising = (bin_mel[k] - lo) / (mid - lo)
            falling = (hi - bin_mel[k]) / (hi - mid)
            fb[k, m] = max(0.0, min(rising, falling))
    return fb


def frames(x: np.ndarray, fft_length: int, sequence_stride: int) -> np.ndarray:
    """Centre (reflect-pad fft_length // 2 both ends) and cut frames: (..., n_frames, fft_length)."""
    pad = fft_length // 2
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    padded = np.pad(x, widths, mode="reflect")  # reflects repeatedly for short inputs
    n_frames = 1 + (padded.shape[-1] - fft_length) // sequence_stride
    idx = np.arange(n_frames)[:, None] * sequence_stride + np.arange(fft_length)[None, :]
    return padded[..., idx]


def power_spectrogram(
    x,
    *,
    fft_length=2048,
    sequence_stride=512,
    sequence_length=None,
    window="hann",
    mag_exp=2.0,
) -> np.ndarray:
    """|rfft(window * frame)| ** mag_exp in float64: (..., n_frames, fft_length // 2 + 1)."""
    x = np.asarray(x).astype(np.float64)
    fr = frames(x, fft_length, sequence_stride)
    w = window_vector(window, fft_length, sequence_length)
    spec = np.fft.rfft(fr * w, n=fft_length, axis=-1)
    if mag_exp == 2:
        return spec.real * spec.real + spec.imag * spec.imag
    return np.abs(spec) ** mag_exp


def to_db(mel, *, top_db=80.0, min_power=1e-10, ref_power=1.0, top_db_scope="batch", spec_ndim=2):
    """docs/semantics.md step 9 on a (..., num_mel_bins, n_frames) array (any layout with spec_ndim trailing dims)."""
    db = 10.0 * np.log10(np.maximum(mel, min_power))
    db = db - 10.0 * np.log10(max(abs(ref_power), min_power))
    if top_db is None:
        return db
    if top_db_scope == "batch":
        peak = np.max(db)  # NaN propagates, as in Keras
    elif top_db_scope == "example":
        axes = tuple(range(db.ndim - spec_ndim, db.ndim))
        peak = np.max(db, axis=axes, keepdims=True)
    else:
        raise ValueError(f"unknown top_db_scope {top_db_scope!r}")
    return np.maximum(db, peak - top_db)


def mel_spectrogram(
    x,
    *,
    fft_length=2048,
    sequence_stride=512,
    sequence_length=None,
    window="hann",
    sampling_rate=16000,
    num_mel_bins=128,
    min_freq=20.0,
    max_freq=None,
    power_to_db=True,
    top_db=80.0,
    mag_exp=2.0,
    min_power=1e-10,
    ref_power=1.0,
    top_db_scope="batch",
) -> np.ndarray:
    """Float64 evaluation of docs/semantics.md: x (..., samples) -> (..., num_mel_bins, n_frames)."""
    power = power_spectrogram(
        x,
        fft_length=fft_length,
        sequence_stride=sequence_stride,
        sequence_length=sequence_length,
        window=window,
        mag_exp=mag_exp,
    )
    fb = mel_filterbank(
        fft_length, sampling_rate, num_mel_bins, min_freq, default_max_freq(sampling_rate, max_freq)
    )
    mel = power @ fb  # (..., n_frames, num_mel_bins)
    mel = np.swapaxes(mel, -1, -2)
    if power_to_db:
        mel = to_db(mel, top_db=top_db, min_power=min_power, ref_power=ref_power, top_db_scope=top_db_scope)
    return mel
