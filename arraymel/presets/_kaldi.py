"""The Kaldi preset: Kaldi's fbank as kaldi-native-fbank and ``torchaudio.compliance.kaldi.fbank`` compute it.

With Kaldi's usual frame options (``snip_edges``, no dither, mean removal and pre-emphasis 0.97, or neither, no
energy) the pipeline frames the signal itself (its Kaldi frame step). Any other frame option is Kaldi's frame
extraction written here (:class:`KaldiFramer`): the preset builds the frames, block by block, and the pipeline
transforms each frame as a signal of one frame.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
from array_api_compat import device as xp_device

from arraymel._config import KALDI_PREEMPHASIS
from arraymel.core.framing import index_dtype
from arraymel.presets._common import (
    FRAME_BLOCK,
    Preset,
    check_bool,
    check_int,
    check_real,
    choice,
    float_signal,
    make_config,
    one_of_aliases,
    refuse,
    seeded_noise,
    to_namespace,
)

#: Kaldi's floor of the energy and of the mel energies before the logarithm: ``FLT_EPSILON``.
FLT_EPSILON = float(np.finfo(np.float32).eps)
WINDOW_TYPES = ("povey", "hamming", "hanning", "hann", "rectangular", "sine", "blackman")
#: Options spelled differently by kaldi-native-fbank and torchaudio.compliance.kaldi.fbank: name -> aliases.
ALIASES = {"sample_frequency": ("samp_freq",), "frame_length_ms": ("frame_length",),
           "frame_shift_ms": ("frame_shift",), "preemph_coeff": ("preemphasis_coefficient",),
           "num_mel_bins": ("num_bins",)}


def kaldi_window(window_type: str, length: int, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi's window of ``length`` samples in float64 (``a = 2 pi / (length - 1)``; ``"hann"``: torch's periodic
    Hann, ``a = 2 pi / length``)."""
    i = np.arange(length, dtype=np.float64)
    a = 2.0 * np.pi / (length - 1) if length > 1 else 0.0
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if window_type == "hann":
        return 0.5 - 0.5 * np.cos(2.0 * np.pi * i / length)
    if window_type == "sine":
        return np.sin(0.5 * a * i)
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    if window_type == "rectangular":
        return np.ones(length)
    if window_type == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * i) + (0.5 - blackman_coeff) * np.cos(2.0 * a * i)
    raise ValueError(f"window_type={window_type!r} is not one of {WINDOW_TYPES!r}.")


def povey_window(length: int) -> np.ndarray:
    """Kaldi's "povey" window: ``(0.5 - 0.5 cos(2 pi i / (length - 1))) ** 0.85``.

    Parameters
    ----------
    length : int
        Samples of the window (Kaldi's frame length in samples).

    Returns
    -------
    numpy.ndarray
        The window, float64, of shape ``(length,)``; symmetric, zero at both ends.

    See Also
    --------
    kaldi : The preset whose default ``window_type`` it is.
    arraymel.get_window : The windows of the pipeline.

    Examples
    --------
    >>> from arraymel.presets import povey_window
    >>> w = povey_window(400)
    >>> float(w[0]), round(float(w.max()), 6)
    (0.0, 0.999987)
    """
    return kaldi_window("povey", length)


@dataclasses.dataclass(frozen=True)
class KaldiFramer:
    """Kaldi's frame extraction (``ExtractWindow`` and ``ProcessWindow``) in Array API operations: frames of ``win``
    samples every ``shift`` (``snip_edges=False``: centred on ``t * shift + shift // 2``, the signal mirrored at
    its ends), dither, mean removal, the log energy, pre-emphasis. The window and the FFT are the pipeline's."""

    win: int
    shift: int
    snip_edges: bool
    dither: float
    seed: Any
    remove_dc: bool
    preemph: float
    energy: str | None  # None, "raw" (before pre-emphasis and the window) or "windowed"
    window: np.ndarray
    why: str

    def n_frames(self, samples: int) -> int:
        if self.snip_edges:
            return 0 if samples < self.win else 1 + (samples - self.win) // self.shift
        return (samples + self.shift // 2) // self.shift

    def frames(self, x: Any, xp: Any, t0: int, t1: int, with_energy: bool = False) -> Any:
        """Frames ``t0 .. t1 - 1`` after dither, mean removal and pre-emphasis: ``(..., t1 - t0, win)`` (and their
        log energy ``(..., t1 - t0)`` with ``with_energy``)."""
        x = float_signal(x, xp)
        n = int(x.shape[-1])
        dev = xp_device(x)
        dt = index_dtype(xp, dev)
        first = xp.arange(t0, t1, dtype=dt, device=dev) * self.shift
        if not self.snip_edges:
            first = first + (self.shift // 2 - self.win // 2)
        pos = first[:, None] + xp.arange(self.win, dtype=dt, device=dev)[None, :]
        if not self.snip_edges:  # Kaldi mirrors: s < 0 -> -s - 1, s >= n -> 2 n - 1 - s (repeatedly)
            p = xp.remainder(pos, 2 * n)
            pos = xp.where(p >= n, 2 * n - 1 - p, p)
        fr = xp.take(x, xp.reshape(pos, (-1,)), axis=x.ndim - 1)
        fr = xp.reshape(fr, (*x.shape[:-1], t1 - t0, self.win))
        if self.dither:
            fr = fr + self.dither * self._noise(xp, fr, t0, t1)
        if self.remove_dc:
            fr = fr - xp.mean(fr, axis=-1, keepdims=True)
        energy = None
        if with_energy and self.energy == "raw":
            energy = _log_energy(fr, xp)
        if self.preemph:
            fr = xp.concat([fr[..., :1] * (1.0 - self.preemph), fr[..., 1:] - self.preemph * fr[..., :-1]], axis=-1)
        if with_energy and self.energy == "windowed":
            w = to_namespace(self.window.astype(np.float64 if fr.dtype == xp.float64 else np.float32), xp, fr)
            energy = _log_energy(fr * w, xp)
        return (fr, energy) if with_energy else fr

    def _noise(self, xp: Any, like: Any, t0: int, t1: int) -> Any:
        """Kaldi's dither noise of frames ``t0 .. t1 - 1``: block ``k`` of :data:`FRAME_BLOCK` frames is drawn from
        ``(seed, k)``, so a frame's noise does not depend on how the call is cut into blocks."""
        batch = tuple(like.shape[:-2])
        parts = []
        for k in range(t0 // FRAME_BLOCK, -(-t1 // FRAME_BLOCK)):
            noise = seeded_noise(xp, like, (*batch, FRAME_BLOCK, self.win), self.seed, k)
            lo, hi = max(t0, k * FRAME_BLOCK) - k * FRAME_BLOCK, min(t1, (k + 1) * FRAME_BLOCK) - k * FRAME_BLOCK
            parts.append(noise[..., lo:hi, :])
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-2)

    def run(self, x: Any, xp: Any, cfg: Any, compute: Any, max_memory: int | None = None) -> Any:
        """The features ``(..., mels, frames)`` (and the log energy, kept for :meth:`assemble`) of ``x``, block by
        block (frames of about ``max_memory`` bytes, default 64 MiB, a multiple of :data:`FRAME_BLOCK` frames):
        ``compute(frames)`` is the pipeline on the frames as signals."""
        total = self.n_frames(int(x.shape[-1]))
        if total == 0:
            raise ValueError(f"x has {x.shape[-1]} samples: with snip_edges a frame needs sequence_length={self.win} "
                             f"samples, so the signal must have at least that many.")
        budget = (64 << 20) if max_memory is None else max_memory
        block = FRAME_BLOCK * max(1, budget // max(1, 8 * self.win * FRAME_BLOCK * math.prod(x.shape[:-1])))
        outs, energies = [], []
        for t0 in range(0, total, block):
            fr, e = self.frames(x, xp, t0, min(total, t0 + block), with_energy=True)
            out = compute(fr)  # (..., frames, mels, 1): each frame a signal of one frame
            outs.append(out[..., 0])
            energies.append(e)
        from array_api_compat import array_namespace  # noqa: PLC0415

        oxp = array_namespace(outs[0])
        out = outs[0] if len(outs) == 1 else oxp.concat(outs, axis=-2)
        energy = None
        if self.energy is not None:
            energy = energies[0] if len(energies) == 1 else xp.concat(energies, axis=-1)
            energy = to_namespace(energy, oxp, out)
        return _Framed(out, energy)

    def assemble(self, out: Any) -> Any:
        """``(..., mels, frames)`` from the pipeline's ``(..., frames, mels, 1)`` on :meth:`frames`, or from
        :meth:`run`'s result."""
        if isinstance(out, _Framed):
            return out
        if self.energy is not None:
            raise ValueError("the kaldi preset's use_energy needs the frames' energy: call the preset on the audio.")
        return _Framed(out[..., 0], None)


@dataclasses.dataclass
class _Framed:
    """A framed preset's output before the log rule: ``(..., frames, mels)`` features and their log energy."""

    feats: Any
    energy: Any


def _log_energy(fr: Any, xp: Any) -> Any:
    e = xp.sum(fr * fr, axis=-1)
    floor = xp.asarray(FLT_EPSILON, dtype=e.dtype, device=xp_device(e))
    return xp.log(xp.where(e < floor, floor, e))


def _rule(out: Any, xp: Any, samples: int, *, use_log: bool, log_floor: bool, eps: float, energy: bool,
          energy_floor: float, htk_compat: bool, subtract_mean: bool) -> Any:
    e = None
    if isinstance(out, _Framed):  # (..., frames, mels) -> (..., mels, frames)
        nd = out.feats.ndim
        out, e = xp.permute_dims(out.feats, (*range(nd - 2), nd - 1, nd - 2)), out.energy
    if use_log:
        if log_floor:
            floor = xp.asarray(eps, dtype=out.dtype, device=xp_device(out))
            out = xp.log(xp.where(out < floor, floor, out))
        else:
            out = xp.log(out + eps)
    if energy:
        if energy_floor > 0.0:
            lf = math.log(energy_floor)
            e = xp.where(e < lf, xp.asarray(lf, dtype=e.dtype, device=xp_device(e)), e)
        e = xp.astype(e[..., None, :], out.dtype)
        out = xp.concat([out, e] if htk_compat else [e, out], axis=-2)
    if subtract_mean:
        out = out - xp.mean(out, axis=-1, keepdims=True)
    return out


def kaldi(*, num_mel_bins: int = 23, sample_frequency: float = 16000, frame_length_ms: float = 25.0,
          frame_shift_ms: float = 10.0, low_freq: float = 20.0, high_freq: float = 0.0, dither: float = 0.0,
          seed: int | None = None, preemph_coeff: float = 0.97, remove_dc_offset: bool = True,
          window_type: str = "povey", round_to_power_of_two: bool = True, blackman_coeff: float = 0.42,
          snip_edges: bool = True, use_energy: bool = False, energy_floor: float = 0.0, raw_energy: bool = True,
          htk_compat: bool = False, use_log_fbank: bool = True, use_power: bool = True, use_log_floor: bool = True,
          eps: float = FLT_EPSILON, subtract_mean: bool = False, vtln_warp: float = 1.0, vtln_low: float = 100.0,
          vtln_high: float = -500.0, debug_mel: bool = False, htk_mode: bool = False, is_librosa: bool = False,
          min_duration: float = 0.0, channel: int = -1, **aliases: Any) -> Preset:
    """Kaldi's fbank as kaldi-native-fbank (``FbankOptions``) and ``torchaudio.compliance.kaldi.fbank`` compute it.

    Every option of both, under either name (``samp_freq`` / ``sample_frequency``, ``frame_length`` /
    ``frame_length_ms``, ``frame_shift`` / ``frame_shift_ms``, ``preemphasis_coefficient`` / ``preemph_coeff``,
    ``num_bins`` / ``num_mel_bins``), with their defaults (``dither``: torchaudio's 0.0, not
    kaldi-native-fbank's 3e-5, so that the default is reproducible). Output ``(..., num_mel_bins, frames)``
    (Kaldi's is ``(frames, num_mel_bins)``), the log energy first (last with ``htk_compat``) with ``use_energy``.

    Parameters
    ----------
    num_mel_bins, low_freq, high_freq :
        Kaldi's mel banks (``high_freq <= 0``: relative to Nyquist); Kaldi's errors for a bank without an FFT bin
        (too many bins), ``high_freq`` above Nyquist and fewer than 3 bins are raised as ValueError.
    sample_frequency, frame_length_ms, frame_shift_ms, snip_edges, round_to_power_of_two :
        Kaldi's framing: ``snip_edges=False`` gives ``(samples + shift // 2) // shift`` frames centred on
        ``t * shift + shift // 2``, the signal mirrored at its ends.
    dither, seed :
        ``dither`` times standard normal noise added to each frame, as Kaldi; the noise is NumPy's from ``seed``
        (Kaldi's generator is its own: only the statistics agree), the same on every path.
    preemph_coeff, remove_dc_offset, window_type, blackman_coeff :
        Kaldi's frame processing; ``window_type`` one of ``"povey"``, ``"hamming"``, ``"hanning"``,
        ``"hann"`` (periodic), ``"rectangular"``, ``"sine"``, ``"blackman"``.
    use_energy, energy_floor, raw_energy, htk_compat :
        The log energy of each frame (after mean removal; ``raw_energy=False``: after the window), floored at
        ``log(energy_floor)`` when ``energy_floor > 0``.
    use_log_fbank, use_power, use_log_floor, eps :
        ``ln(max(x, eps))`` (``use_log_floor=False``: ``ln(x + eps)``) or the mel energies; power or magnitude.
    subtract_mean :
        torchaudio's: each feature's mean over the frames subtracted.
    vtln_warp, vtln_low, vtln_high, debug_mel, htk_mode, is_librosa, min_duration, channel :
        Only at their defaults (VTLN warping, HTK mode, librosa mode, ``min_duration`` and channel selection are
        not computed; the TypeError says what to use instead).
    **aliases
        The same options under the other library's names (``samp_freq``, ``frame_length``, ``frame_shift``,
        ``preemphasis_coefficient``, ``num_bins``); giving one option under both names is a TypeError, and
        so is an unknown name.

    Returns
    -------
    Preset

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> arraymel.presets.kaldi(num_mel_bins=80)(x).shape   # (mels, frames): the transpose of Kaldi's layout
    (80, 98)
    >>> arraymel.presets.kaldi(snip_edges=False, window_type="hann", use_energy=True)(x).shape
    (24, 100)
    """
    name = "kaldi"
    unknown = set(aliases) - {a for names in ALIASES.values() for a in names}
    if unknown:
        raise TypeError(f"arraymel.presets.kaldi: unknown option(s) {sorted(unknown)!r}; the options are those of "
                        "kaldi-native-fbank's FbankOptions and torchaudio.compliance.kaldi.fbank (docs/presets.md).")
    local = dict(num_mel_bins=num_mel_bins, sample_frequency=sample_frequency, frame_length_ms=frame_length_ms,
                 frame_shift_ms=frame_shift_ms, preemph_coeff=preemph_coeff)
    defaults = dict(num_mel_bins=23, sample_frequency=16000, frame_length_ms=25.0, frame_shift_ms=10.0,
                    preemph_coeff=0.97)
    for key, names in ALIASES.items():
        given = {key: None if local[key] == defaults[key] else local[key], **{a: aliases.get(a) for a in names}}
        local[key] = one_of_aliases(name, given, (key, *names), defaults[key])
    num_mel_bins = check_int(name, "num_mel_bins", local["num_mel_bins"])
    sr = check_real(name, "sample_frequency", local["sample_frequency"], minimum=0.0, strict=True)
    length_ms = check_real(name, "frame_length_ms", local["frame_length_ms"], minimum=0.0, strict=True)
    shift_ms = check_real(name, "frame_shift_ms", local["frame_shift_ms"], minimum=0.0, strict=True)
    preemph = check_real(name, "preemph_coeff", local["preemph_coeff"], minimum=0.0, maximum=1.0)
    low_freq = check_real(name, "low_freq", low_freq)
    high_freq = check_real(name, "high_freq", high_freq)
    dither = check_real(name, "dither", dither, minimum=0.0)
    remove_dc = check_bool(name, "remove_dc_offset", remove_dc_offset)
    choice(name, "window_type", window_type, WINDOW_TYPES)
    blackman_coeff = check_real(name, "blackman_coeff", blackman_coeff)
    flags = {k: check_bool(name, k, v) for k, v in dict(
        round_to_power_of_two=round_to_power_of_two, snip_edges=snip_edges, use_energy=use_energy,
        raw_energy=raw_energy, htk_compat=htk_compat, use_log_fbank=use_log_fbank, use_power=use_power,
        use_log_floor=use_log_floor, subtract_mean=subtract_mean).items()}
    energy_floor = check_real(name, "energy_floor", energy_floor, minimum=0.0)
    eps = check_real(name, "eps", eps, minimum=0.0, strict=True)
    if check_real(name, "vtln_warp", vtln_warp) != 1.0:
        raise refuse(name, "vtln_warp", vtln_warp, "VTLN warping of the mel banks is not computed; warp factor 1.0 "
                     "(vtln_low and vtln_high then have no effect)")
    check_real(name, "vtln_low", vtln_low)
    check_real(name, "vtln_high", vtln_high)
    for flag, value, instead in (("debug_mel", debug_mel, "it prints Kaldi's bins; arraymel.mel_filterbank("
                                  "filterbank='kaldi', ...) returns them"),
                                 ("htk_mode", htk_mode, "HTK's hidden test mode has no arraymel equivalent"),
                                 ("is_librosa", is_librosa, "librosa's filterbank is arraymel.presets.librosa(...) "
                                  "or nemo(...)")):
        if check_bool(name, flag, value):
            raise refuse(name, flag, value, instead)
    if check_real(name, "min_duration", min_duration, minimum=0.0) != 0.0:
        raise refuse(name, "min_duration", min_duration, "check the clip's length before calling the preset "
                     "(torchaudio returns an empty tensor below it)")
    if channel != -1:
        raise refuse(name, "channel", channel, "the preset computes every row of x; select the channel first, "
                     "x[channel] (torchaudio's channel=-1 is the first channel of a 2-D waveform: x[0])")
    win = int(sr * 0.001 * length_ms)
    hop = int(sr * 0.001 * shift_ms)
    if win < 1 or hop < 1:
        raise ValueError(f"arraymel.presets.kaldi: frame_length_ms={length_ms:g} and frame_shift_ms={shift_ms:g} at "
                         f"{sr:g} Hz give frames of {win} samples every {hop}: both must be at least 1.")
    n_fft = 1 << max(0, (win - 1).bit_length()) if flags["round_to_power_of_two"] else win
    nyquist = 0.5 * sr
    top = high_freq if high_freq > 0 else nyquist + high_freq
    if num_mel_bins < 3:
        raise ValueError(f"arraymel.presets.kaldi: num_mel_bins={num_mel_bins} is not allowed: Kaldi needs at least 3 "
                         "mel bins.")
    if low_freq < 0 or low_freq >= nyquist or top <= 0 or top > nyquist or top <= low_freq:
        raise ValueError(f"arraymel.presets.kaldi: low_freq={low_freq:g} and high_freq={high_freq:g} (resolved to "
                         f"{top:g}) are not allowed at {sr:g} Hz: Kaldi needs 0 <= low_freq < high_freq <= Nyquist "
                         f"({nyquist:g}) (high_freq <= 0 is relative to Nyquist).")
    window = kaldi_window(window_type, win, blackman_coeff)
    native = flags["snip_edges"] and dither == 0.0 and not flags["use_energy"] and (
        (remove_dc and preemph == KALDI_PREEMPHASIS) or (not remove_dc and preemph == 0.0))
    frame_step = "kaldi" if native and remove_dc else None
    cfg = make_config(name, fft_length=n_fft, sequence_stride=win if not native else hop, sequence_length=win,
                      window=window, sampling_rate=sr, num_mel_bins=num_mel_bins, min_freq=low_freq, max_freq=top,
                      power_to_db=False, filterbank="kaldi", center=False, frame_step=frame_step,
                      mag_exp=2.0 if flags["use_power"] else 1.0)
    _check_bins(cfg)
    framer = None
    if not native:
        why = ", ".join(f"{k}={v!r}" for k, v in (("snip_edges", flags["snip_edges"]), ("dither", dither),
                                                  ("use_energy", flags["use_energy"]), ("remove_dc_offset", remove_dc),
                                                  ("preemph_coeff", preemph))
                        if v != {"snip_edges": True, "dither": 0.0, "use_energy": False, "remove_dc_offset": True,
                                 "preemph_coeff": 0.97}[k])
        framer = KaldiFramer(win=win, shift=hop, snip_edges=flags["snip_edges"], dither=dither, seed=seed,
                             remove_dc=remove_dc, preemph=preemph,
                             energy=None if not flags["use_energy"] else ("raw" if flags["raw_energy"] else "windowed"),
                             window=window, why=why)
    rule = functools.partial(_rule, use_log=flags["use_log_fbank"], log_floor=flags["use_log_floor"], eps=eps,
                             energy=flags["use_energy"], energy_floor=energy_floor, htk_compat=flags["htk_compat"],
                             subtract_mean=flags["subtract_mean"])
    opts = dict(num_mel_bins=num_mel_bins, sample_frequency=local["sample_frequency"], frame_length_ms=length_ms,
                frame_shift_ms=shift_ms, low_freq=low_freq, high_freq=high_freq, dither=dither, seed=seed,
                preemph_coeff=preemph, remove_dc_offset=remove_dc, window_type=window_type,
                blackman_coeff=blackman_coeff, energy_floor=energy_floor, eps=eps, **flags)
    return Preset(name, "kaldi-native-fbank OnlineFbank / torchaudio.compliance.kaldi.fbank", cfg, opts,
                  log_rule=rule, framer=framer, min_samples=win if flags["snip_edges"] else hop - hop // 2,
                  min_reason=(f"with snip_edges=True a frame is frame_length_ms={length_ms:g} ms = {win} samples"
                              if flags["snip_edges"] else
                              f"with snip_edges=False the first frame needs half a frame_shift_ms={shift_ms:g} ms "
                              f"= {hop} samples") + f" at {sr:g} Hz, Kaldi returns no frame for a shorter signal, and "
                  "the preset refuses it rather than return no features (docs/presets.md)")


def _check_bins(cfg: Any) -> None:
    """Kaldi's error for a mel bin that no FFT bin falls in ("You may have set num_mel_bins too large")."""
    import warnings  # noqa: PLC0415

    from arraymel.core.filterbank import config_filterbank  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fb = config_filterbank(cfg)
    empty = np.flatnonzero(~(fb > 0).any(axis=0))
    if empty.size:
        raise ValueError(f"arraymel.presets.kaldi: num_mel_bins={cfg.num_mel_bins} is not allowed with an FFT of "
                         f"{cfg.fft_length} at {cfg.sampling_rate:g} Hz between {cfg.min_freq:g} and "
                         f"{cfg.max_freq:g} Hz: mel bin(s) {empty.tolist()[:5]} receive no FFT bin (Kaldi: \"You may "
                         "have set num_mel_bins too large\"); use fewer bins or a longer frame.")
