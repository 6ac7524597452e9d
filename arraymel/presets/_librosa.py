"""The librosa preset: ``librosa.feature.melspectrogram`` (and ``librosa.power_to_db``)."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from arraymel.presets._common import (
    Preset,
    check_bool,
    check_float_finite,
    check_int,
    check_real,
    choice,
    db,
    frames_after_padding,
    make_config,
    pad_signal,
    per_example_max,
    refuse,
)

#: librosa.stft's pad modes with center=True (it refuses wrap, maximum, mean, median and minimum).
PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric")
#: Windows the pipeline has by name (others are computed once, as librosa does, by scipy.signal.get_window).
_NAMED = ("hann", "hamming")


def _window_values(window: Any, win_length: int) -> Any:
    """librosa's ``get_window(window, win_length, fftbins=True)``: the name for the pipeline's own windows, else
    the values (a callable is called with ``win_length``; a name or tuple goes to scipy, as librosa does)."""
    if isinstance(window, list) and window and isinstance(window[0], str):  # a tuple spec given as JSON
        window = tuple(window)
    if isinstance(window, str) and window in _NAMED:
        return window
    if callable(window):
        return np.asarray(window(win_length), dtype=np.float64)
    if isinstance(window, (str, tuple, numbers.Real)) and not isinstance(window, bool):
        try:
            import scipy.signal  # noqa: PLC0415  (librosa's own dependency; only for windows beyond hann/hamming)
        except ImportError:
            raise refuse("librosa", "window", window, "windows other than 'hann' and 'hamming' are computed by "
                         "scipy.signal.get_window, as librosa does: install scipy, or pass the window's values") from None
        try:
            return scipy.signal.get_window(window, win_length, fftbins=True).astype(np.float64)
        except ValueError as e:  # scipy's message names the window only
            raise ValueError(f"arraymel.presets.librosa: window={window!r} is not allowed: scipy.signal.get_window "
                             f"refuses it ({e}); a window is a name or tuple scipy.signal.get_window takes, a callable "
                             "of the length, or an array of win_length values, as librosa takes.") from None
    values = np.asarray(window, dtype=np.float64)
    if values.shape != (win_length,):
        raise ValueError(f"arraymel.presets.librosa: window has shape {values.shape}: an array window must have "
                         f"shape (win_length,) = ({win_length},), as librosa requires.")
    return values


def _band_scale(fb_unnormed: np.ndarray, norm: float) -> np.ndarray:
    """librosa's ``util.normalize(weights, norm=norm, axis=-1)`` as a factor per band (bands of norm 0 keep 0)."""
    w = np.abs(fb_unnormed.T)
    if math.isinf(norm):
        length = w.max(axis=-1)
    else:
        length = (w**norm).sum(axis=-1) ** (1.0 / norm)
    small = length < np.finfo(np.float32).tiny  # librosa's threshold: the float32 tiny of the dtype
    return np.where(small, 1.0, 1.0 / np.where(small, 1.0, length))


def _rule(out: Any, xp: Any, samples: int, *, scale: np.ndarray | None, to_db: bool, ref: Any, amin: float,
          top_db: float | None, scope: str) -> Any:
    if scale is not None:
        from arraymel.core._xp import from_host  # noqa: PLC0415

        s = from_host(scale[:, None], xp, device=_dev(out), dtype=out.dtype)
        out = out * s
    if not to_db:
        return out
    if callable(ref):
        ref = _ref_value(ref, out, xp)
    return db(out, xp, multiplier=10.0, amin=amin, ref=ref, top_db=top_db, scope=scope)


def _ref_value(ref: Callable, out: Any, xp: Any) -> Any:
    """librosa's ``ref(S)`` per spectrogram: ``np.max``/``np.amax`` on the device; another callable is called on
    each spectrogram (in its own namespace) and must return a number."""
    if ref in (np.max, np.amax, max):
        return per_example_max(out, xp)
    if out.ndim == 2:
        return xp.reshape(xp.asarray(ref(out), dtype=out.dtype, device=_dev(out)), (1, 1))
    flat = xp.reshape(out, (-1, *out.shape[-2:]))
    vals = [xp.reshape(xp.asarray(ref(flat[i, ...]), dtype=out.dtype, device=_dev(out)), (1,))
            for i in range(flat.shape[0])]
    return xp.reshape(xp.concat(vals), (*out.shape[:-2], 1, 1))


def _dev(a: Any) -> Any:
    from array_api_compat import device  # noqa: PLC0415

    return device(a)


def librosa(*, sr: float = 22050, n_fft: int = 2048, hop_length: int | None = None, win_length: int | None = None,
            window: Any = "hann", center: bool = True, pad_mode: str = "constant", power: float = 2.0,
            n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
            norm: Any = "slaney", dtype: Any = np.float32, db: bool = True, ref: Any = 1.0, amin: float = 1e-10,
            top_db: float | None = 80.0, top_db_scope: str = "example") -> Preset:
    """``librosa.power_to_db(librosa.feature.melspectrogram(y=x, ...), ref=ref, amin=amin, top_db=top_db)``.

    Every parameter of ``librosa.feature.melspectrogram`` (and of ``librosa.filters.mel`` it passes on), with
    librosa's defaults; ``db=False`` returns the mel power itself, as ``melspectrogram`` does. Call the preset on
    audio, or on a precomputed spectrogram ``S`` (``|stft| ** power``, ``(..., 1 + n_fft // 2, frames)``;
    ``n_fft`` is then ``2 * (bins - 1)``, as librosa infers it).

    Parameters
    ----------
    sr, n_fft, hop_length, win_length, window, center, pad_mode, power :
        As ``librosa.feature.melspectrogram``: ``hop_length`` 512 whatever ``n_fft`` (librosa's default),
        ``win_length`` ``n_fft``; ``window`` a name (``"hann"``, ``"hamming"``, or any
        ``scipy.signal.get_window`` spec, computed with scipy once), a callable of the length, or the values;
        ``pad_mode`` one of ``"constant"``, ``"edge"``, ``"linear_ramp"``, ``"reflect"``, ``"symmetric"``.
    n_mels, fmin, fmax, htk, norm, dtype :
        As ``librosa.filters.mel``: ``norm`` ``"slaney"``, None, or a number ``p > 0`` (each band scaled to unit
        ``p``-norm, ``inf`` included); ``dtype`` float32 (the output follows the input: float32 audio gives
        float32, as in librosa) or float64 (float64 output whatever the input, as librosa's type promotion).
    db : bool
        True: ``librosa.power_to_db`` of it (``ref``, ``amin``, ``top_db``); False: the mel power.
    ref, amin, top_db :
        As ``librosa.power_to_db``: ``ref`` a number or a callable (``np.max``: each spectrogram's maximum,
        computed on the device; another callable is called on each spectrogram).
    top_db_scope : {"example", "batch"}
        arraymel's: ``top_db`` and a callable ``ref`` apply per spectrogram (each clip as if given to librosa
        alone); ``"batch"`` (numeric ``ref`` only) clips a batch as one array, as librosa on a 2-D array.

    Returns
    -------
    Preset

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> y = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    >>> arraymel.presets.librosa(n_fft=1024)(y).shape              # hop 512, as librosa
    (128, 44)
    >>> S_db = arraymel.presets.librosa(ref=np.max)(y)             # librosa's docstring idiom
    >>> float(S_db.max())
    0.0
    >>> arraymel.presets.librosa(db=False, n_mels=64)(y).dtype     # the mel power
    dtype('float32')
    """
    name = "librosa"
    n_fft = check_int(name, "n_fft", n_fft)
    hop = 512 if hop_length is None else check_int(name, "hop_length", hop_length)
    win = n_fft if win_length is None else check_int(name, "win_length", win_length)
    if win > n_fft:
        raise ValueError(f"arraymel.presets.librosa: win_length={win} is not allowed: win_length must be <= n_fft "
                         f"({n_fft}), as librosa requires.")
    center = check_bool(name, "center", center)
    if callable(pad_mode):
        raise refuse(name, "pad_mode", pad_mode, f"a padding function has no arraymel equivalent; use one of {PAD_MODES!r}")
    if pad_mode == "empty":
        raise refuse(name, "pad_mode", pad_mode, "'empty' leaves the padded samples undefined, so the edge frames are "
                     "arbitrary; use 'constant'")
    choice(name, "pad_mode", pad_mode, PAD_MODES)
    power = check_real(name, "power", power, minimum=0.0, strict=True)
    htk = check_bool(name, "htk", htk)
    scale_norm = None
    if norm is None or norm == "slaney":
        bank_norm = norm
    elif isinstance(norm, numbers.Real) and not isinstance(norm, bool) and (norm > 0 or math.isinf(norm)):
        bank_norm, scale_norm = None, float(norm)
    else:
        raise ValueError(f"arraymel.presets.librosa: norm={norm!r} is not allowed: norm must be 'slaney', None or a "
                         "number > 0 (a p-norm, inf included), as librosa.util.normalize takes.")
    try:
        dtype_name = np.dtype(dtype).name
    except TypeError:
        dtype_name = None
    if dtype_name not in ("float32", "float64"):
        raise refuse(name, "dtype", dtype, "the filterbank's dtype must be np.float32 or np.float64 (arraymel computes "
                     "in float32 or float64)")
    db_ = check_bool(name, "db", db)
    if not callable(ref):
        ref = check_real(name, "ref", ref)
    if callable(ref) and top_db_scope != "example":
        raise ValueError(f"arraymel.presets.librosa: top_db_scope={top_db_scope!r} is not allowed with a callable "
                         f"ref ({getattr(ref, '__name__', ref)!r}): a callable ref is applied per spectrogram, so "
                         "top_db_scope must be 'example'.")
    amin = check_real(name, "amin", amin, minimum=0.0, strict=True)
    if top_db is not None:
        top_db = check_real(name, "top_db", top_db, minimum=0.0)
    window_arg = _window_values(window, win)
    fmax_ = sr / 2.0 if fmax is None else fmax
    fb = "librosa" + ("-htk" if htk else "") + ("" if bank_norm else "-nonorm")
    # the pipeline frames by librosa's rules where it has them (centred, zeros or reflection); the other pad modes
    # are the signal padded here, then frames without centring
    native_pad = center and pad_mode in ("constant", "reflect")
    own_db = db_ and (callable(ref) or scale_norm is not None)
    cfg = make_config(name, fft_length=n_fft, sequence_stride=hop, sequence_length=win, window=window_arg,
                      sampling_rate=sr, num_mel_bins=n_mels, min_freq=fmin, max_freq=fmax_,
                      power_to_db=db_ and not own_db, top_db=top_db, mag_exp=power, min_power=amin,
                      ref_power=ref if not callable(ref) else 1.0, top_db_scope=top_db_scope, filterbank=fb,
                      center=native_pad, pad_mode=pad_mode if native_pad else "reflect",
                      dtype="float64" if dtype_name == "float64" else None)
    scale = None
    if scale_norm is not None:
        from arraymel.core.filterbank import config_filterbank  # noqa: PLC0415

        scale = _band_scale(config_filterbank(cfg), scale_norm)
    signal_step = keep = step_length = None
    if not native_pad:
        # librosa without centring: frame t is samples t * hop .. t * hop + n_fft with the window centred in it,
        # so the window's samples start (n_fft - win) // 2 in; the pipeline's frames without centring are the
        # window's samples, so the signal starts there, and only librosa's 1 + (n - n_fft) // hop frames are kept
        lead = (n_fft - win) // 2
        pad = n_fft // 2 if center else 0
        signal_step = functools.partial(_librosa_signal, pad=pad, lead=lead, mode=pad_mode)
        step_length = functools.partial(_librosa_length, pad=pad, lead=lead)
        keep = functools.partial(frames_after_padding, pad=pad, n_fft=n_fft, hop=hop)
    rule = None
    if own_db or scale is not None:
        rule = functools.partial(_rule, scale=scale, to_db=db_, ref=ref, amin=amin, top_db=top_db,
                                 scope=top_db_scope)
    opts = dict(sr=sr, n_fft=n_fft, hop_length=hop, win_length=win_length, window=window, center=center,
                pad_mode=pad_mode, power=power, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, dtype=dtype_name,
                db=db_, ref=ref, amin=amin, top_db=top_db, top_db_scope=top_db_scope)
    return LibrosaPreset(name, "librosa.feature.melspectrogram" + (" + librosa.power_to_db" if db_ else ""), cfg, opts,
                         signal_step=signal_step, log_rule=rule, keep_frames=keep,
                         input_check=functools.partial(_check_input, center=center, n_fft=n_fft),
                         step_length=step_length,
                         step_why=f"pad_mode={pad_mode!r}, center={center!r}" if step_length else "")


def _librosa_signal(x: Any, xp: Any, *, pad: int, lead: int, mode: str) -> Any:
    x = pad_signal(x, xp, pad, pad, mode)
    return x[..., lead:] if lead else x


def _librosa_length(samples: int, *, pad: int, lead: int) -> int:
    return samples + 2 * pad - lead


def _check_input(x: Any, xp: Any, *, center: bool, n_fft: int) -> None:
    check_float_finite("librosa", x, xp)
    if not center and x.shape[-1] < n_fft:
        raise ValueError(f"arraymel.presets.librosa: x has {x.shape[-1]} samples: with center=False a frame needs "
                         f"n_fft={n_fft} samples, as librosa requires.")


class LibrosaPreset(Preset):
    """The librosa preset: also takes a precomputed spectrogram, ``preset(S=S)``, as ``melspectrogram(S=S)``."""

    def __call__(self, x: Any = None, *, S: Any = None, **kwargs: Any) -> Any:
        """Features of audio ``x`` ``(..., samples)``, or of a power spectrogram ``S``
        ``(..., 1 + n_fft // 2, frames)`` (``|stft| ** power``, as librosa takes it)."""
        if S is None:
            return super().__call__(x, **kwargs)
        if x is not None:
            raise TypeError("arraymel.presets.librosa(...): give the audio x or a spectrogram S, not both.")
        if kwargs:
            raise TypeError(f"arraymel.presets.librosa(...)(S=...): {sorted(kwargs)!r} apply to audio only; S is "
                            "computed in its own namespace, on its own device.")
        return self.from_spectrogram(S)

    def from_spectrogram(self, S: Any) -> Any:
        """``librosa.feature.melspectrogram(S=S, ...)`` (and its dB): the filterbank for ``n_fft = 2 * (bins - 1)``
        applied to ``S`` where it is."""
        from arraymel.core._xp import from_host  # noqa: PLC0415
        from arraymel.core.filterbank import config_filterbank  # noqa: PLC0415
        from arraymel.core.inputs import as_array  # noqa: PLC0415

        S, xp = as_array(S)
        if S.ndim < 2:
            raise ValueError(f"arraymel.presets.librosa: S has shape {tuple(S.shape)}: S must be (..., 1 + n_fft // 2, "
                             "frames).")
        check_float_finite("librosa", S, xp)
        bins = int(S.shape[-2])
        same = librosa(**{**self.options, "n_fft": max(2, 2 * (bins - 1)), "win_length": None, "window": "hann",
                          "pad_mode": "constant", "center": True})
        cfg = same.config
        want = xp.float64 if (self.config.dtype == "float64" or S.dtype == xp.float64) else xp.float32
        if S.dtype != want:
            S = xp.astype(S, want)
        fb = from_host(config_filterbank(cfg).T, xp, device=_dev(S), dtype=want)
        mel = fb @ S
        if same.log_rule is not None:
            return same.log_rule(mel, xp, 0)
        if not cfg.power_to_db:
            return mel
        return db(mel, xp, multiplier=10.0, amin=cfg.min_power, ref=cfg.ref_power, top_db=cfg.top_db,
                  scope=cfg.top_db_scope)
