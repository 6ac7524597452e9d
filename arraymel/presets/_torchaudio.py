"""The torchaudio preset: ``torchaudio.transforms.MelSpectrogram`` (and ``AmplitudeToDB``)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from arraymel.presets._common import (
    Preset,
    check_bool,
    check_int,
    check_real,
    choice,
    db,
    frames_after_padding,
    make_config,
    pad_signal,
    refuse,
)

#: torch.stft's pad modes (``torch.nn.functional.pad``) and NumPy's names for them.
PAD_MODES = {"reflect": "reflect", "constant": "constant", "replicate": "edge", "circular": "wrap"}


def _window(window_fn: Any, wkwargs: dict | None, win: int) -> Any:
    """``window_fn(win_length, **wkwargs)`` as the pipeline takes it: a name for torch's periodic Hann and
    Hamming, else the values on the host (computed once, here)."""
    if window_fn is None:
        return "hann"
    if not callable(window_fn):
        raise TypeError(f"arraymel.presets.torchaudio: window_fn={window_fn!r} is not allowed: window_fn must be a "
                        "callable (win_length, **wkwargs) -> window, such as torch.hann_window.")
    w = window_fn(win) if wkwargs is None else window_fn(win, **wkwargs)
    values = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=np.float64)
    if values.shape != (win,):
        raise ValueError(f"arraymel.presets.torchaudio: window_fn({win}) has shape {values.shape}: it must return "
                         f"shape (win_length,) = ({win},).")
    from arraymel.core.windows import periodic_window  # noqa: PLC0415

    for name in ("hann", "hamming"):  # torch's periodic defaults: the pipeline's own windows, by name
        if np.allclose(values, periodic_window(name, win), rtol=0, atol=1e-6):
            return name
    return values


def _scale_rule(out: Any, xp: Any, samples: int, *, scale: float, to_db: bool, multiplier: float,
                top_db: float | None) -> Any:
    if scale != 1.0:
        out = out * scale
    if not to_db:
        return out
    return db(out, xp, multiplier=multiplier, amin=1e-10, ref=1.0, top_db=top_db)


def torchaudio(*, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
               hop_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, pad: int = 0,
               n_mels: int = 128, window_fn: Any = None, power: float = 2.0, normalized: Any = False,
               wkwargs: dict | None = None, center: bool = True, pad_mode: str = "reflect", onesided: Any = None,
               norm: str | None = None, mel_scale: str = "htk", db: bool = True, stype: str = "power",
               top_db: float | None = None) -> Preset:
    """``torchaudio.transforms.AmplitudeToDB(stype, top_db)(torchaudio.transforms.MelSpectrogram(...)(x))``.

    Every parameter of ``MelSpectrogram`` and ``AmplitudeToDB``, with torchaudio's defaults; ``db=False`` returns
    ``MelSpectrogram``'s output itself.

    Parameters
    ----------
    sample_rate, n_fft, win_length, hop_length, f_min, f_max, pad, n_mels, power, normalized, center, norm, mel_scale :
        As ``MelSpectrogram``: ``hop_length`` ``win_length // 2``; ``f_max`` ``sample_rate // 2``; ``pad`` zeros on
        both sides first; ``normalized`` False, True or ``"window"`` (divided by the window's L2 norm) or
        ``"frame_length"`` (by ``sqrt(n_fft)``); ``norm`` None or ``"slaney"``; ``mel_scale`` ``"htk"`` or
        ``"slaney"``; ``power`` > 0 (None, the complex STFT, is :func:`arraymel.stft`'s).
    window_fn, wkwargs :
        ``window_fn(win_length, **wkwargs)``: None (torch's default, ``torch.hann_window``), or any callable
        returning the window (torch's window functions included: it is called once, here).
    pad_mode : {"reflect", "constant", "replicate", "circular"}
        torch.stft's padding with ``center=True``.
    onesided :
        Deprecated in torchaudio; None or True (the one-sided spectrum the filterbank takes).
    db : bool
        True: ``AmplitudeToDB(stype, top_db)`` after it; False: the mel spectrogram.
    stype, top_db :
        As ``AmplitudeToDB``: ``stype`` ``"power"`` (10 log10) or ``"magnitude"`` (20 log10); ``top_db`` per
        spectrogram (torchaudio clips a 3-D batch at its batch-wide maximum: with ``top_db`` set, a batched call
        equals torchaudio on each clip alone).

    Returns
    -------
    Preset

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> arraymel.presets.torchaudio(n_mels=64, norm="slaney", mel_scale="slaney")(x).shape
    (64, 81)
    """
    name = "torchaudio"
    n_fft = check_int(name, "n_fft", n_fft)
    win = n_fft if win_length is None else check_int(name, "win_length", win_length)
    if win > n_fft:
        raise ValueError(f"arraymel.presets.torchaudio: win_length={win} is not allowed: win_length must be <= "
                         f"n_fft ({n_fft}), as torch.stft requires.")
    hop = win // 2 if hop_length is None else check_int(name, "hop_length", hop_length)
    pad = check_int(name, "pad", pad, minimum=0)
    if power is None:
        raise refuse(name, "power", power, "the complex STFT is arraymel.stft(...); the mel spectrogram takes power > 0")
    power = check_real(name, "power", power, minimum=0.0, strict=True)
    if normalized is True or normalized == "window":
        norm_kind = "window"
    elif normalized is False:
        norm_kind = None
    elif normalized == "frame_length":
        norm_kind = "frame_length"
    else:
        raise ValueError(f"arraymel.presets.torchaudio: normalized={normalized!r} is not allowed: normalized must be "
                         "False, True, 'window' or 'frame_length'.")
    center = check_bool(name, "center", center)
    choice(name, "pad_mode", pad_mode, tuple(PAD_MODES))
    if onesided is not None and onesided is not True:
        raise refuse(name, "onesided", onesided, "the mel filterbank takes the one-sided spectrum; leave onesided out")
    choice(name, "norm", norm, (None, "slaney"))
    choice(name, "mel_scale", mel_scale, ("htk", "slaney"))
    db_ = check_bool(name, "db", db)
    choice(name, "stype", stype, ("power", "magnitude"))
    if top_db is not None:
        top_db = check_real(name, "top_db", top_db, minimum=0.0)
    window = _window(window_fn, wkwargs, win)
    sample_rate_f = check_real(name, "sample_rate", sample_rate, minimum=0.0, strict=True)
    fmax = float(int(sample_rate_f) // 2) if f_max is None else f_max
    fb = "librosa" + ("-htk" if mel_scale == "htk" else "") + ("" if norm == "slaney" else "-nonorm")
    native_pad = pad_mode in ("reflect", "constant")
    scale = 1.0
    if norm_kind == "window":
        wv = _window_host(window, win)
        scale = 1.0 / float(np.sum(wv * wv)) ** (power / 2.0)
    elif norm_kind == "frame_length":
        scale = 1.0 / float(n_fft) ** (power / 2.0)
    plain_db = db_ and scale == 1.0 and stype == "power"
    cfg = make_config(name, fft_length=n_fft, sequence_stride=hop, sequence_length=win, window=window,
                      sampling_rate=sample_rate_f, num_mel_bins=n_mels, min_freq=f_min, max_freq=fmax,
                      power_to_db=plain_db, top_db=top_db, mag_exp=power, min_power=1e-10, ref_power=1.0,
                      top_db_scope="example", filterbank=fb, center=center and native_pad,
                      pad_mode=pad_mode if native_pad else "reflect")
    signal_step = step_length = keep = None
    if pad or (center and not native_pad) or (not center):
        lead = (n_fft - win) // 2
        cpad = n_fft // 2 if center and not native_pad else 0
        signal_step = functools.partial(_torch_signal, pad=pad, cpad=cpad, mode=PAD_MODES[pad_mode],
                                        lead=0 if (center and native_pad) else lead)
        step_length = functools.partial(_torch_length, pad=pad, cpad=cpad, lead=0 if (center and native_pad) else lead)
        if not (center and native_pad):
            keep = functools.partial(frames_after_padding, pad=pad + cpad, n_fft=n_fft, hop=hop)
    rule = None
    if db_ and not plain_db or scale != 1.0:
        rule = functools.partial(_scale_rule, scale=scale, to_db=db_, multiplier=10.0 if stype == "power" else 20.0,
                                 top_db=top_db)
    opts = dict(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, f_min=f_min,
                f_max=f_max, pad=pad, n_mels=n_mels, window_fn=window_fn, power=power, normalized=normalized,
                wkwargs=wkwargs, center=center, pad_mode=pad_mode, onesided=onesided, norm=norm, mel_scale=mel_scale,
                db=db_, stype=stype, top_db=top_db)
    return Preset(name, "torchaudio.transforms.MelSpectrogram" + (" + AmplitudeToDB" if db_ else ""), cfg, opts,
                  signal_step=signal_step, log_rule=rule, keep_frames=keep, step_length=step_length,
                  step_why=f"pad={pad}, center={center!r}, pad_mode={pad_mode!r}" if step_length else "",
                  input_check=functools.partial(_check_input, n_fft=n_fft, win=win, pad=pad, center=center,
                                                pad_mode=pad_mode),
                  min_samples=max(1, n_fft // 2 + 1 - 2 * pad) if center and pad_mode == "reflect" else 1,
                  min_reason=f"torch.stft (center=True, pad_mode='reflect') reflect-pads n_fft // 2 = {n_fft // 2} "
                             f"samples on each side of the signal and its pad={pad} zeros, which needs more than that "
                             "(torch.stft raises too)")


def _window_host(window: Any, win: int) -> np.ndarray:
    if isinstance(window, str):
        from arraymel.core.windows import periodic_window  # noqa: PLC0415

        return periodic_window(window, win)
    return np.asarray(window, dtype=np.float64)


def _torch_signal(x: Any, xp: Any, *, pad: int, cpad: int, mode: str, lead: int) -> Any:
    if pad:
        x = pad_signal(x, xp, pad, pad, "constant")
    if cpad:
        x = pad_signal(x, xp, cpad, cpad, mode)
    return x[..., lead:] if lead else x


def _torch_length(samples: int, *, pad: int, cpad: int, lead: int) -> int:
    return samples + 2 * pad + 2 * cpad - lead


def _check_input(x: Any, xp: Any, *, n_fft: int, win: int, pad: int, center: bool, pad_mode: str) -> None:
    samples = int(x.shape[-1]) + 2 * pad
    if not center and samples < n_fft:
        raise ValueError(f"arraymel.presets.torchaudio: x has {x.shape[-1]} samples: with center=False a frame needs "
                         f"n_fft={n_fft} samples (after pad={pad} on each side), as torch.stft requires.")
    if center and pad_mode == "circular" and n_fft // 2 > samples:
        raise ValueError(f"arraymel.presets.torchaudio: x has {x.shape[-1]} samples: circular padding of "
                         f"{n_fft // 2} needs at least that many, as torch requires.")

