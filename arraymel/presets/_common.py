"""What the presets share: the :class:`Preset` object, the option checks and the signal steps.

Every step here is written with Array API operations, so that it runs where the signal is (NumPy, CuPy,
torch, JAX) and the presets run on every path of the pipeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as xp_device

from arraymel._config import MelConfig
from arraymel.core.framing import index_dtype
from arraymel.core.inputs import as_array

#: Whisper's input length: 30 s at 16 kHz.
WHISPER_SAMPLES = 480000
#: Frames per block of a framed preset (Kaldi's options beyond the pipeline's frame step): bounds the
#: memory of the frames it builds, and fixes which noise a frame's dither draws whatever the call's size.
FRAME_BLOCK = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class Preset:
    """One preset: call it on audio ``(..., samples)`` to get features ``(..., mels, frames)``.

    Attributes
    ----------
    name : str
        The preset's name in :data:`arraymel.presets.PRESETS`.
    reference : str
        The library (and function) whose numbers it reproduces.
    config : MelConfig
        The pipeline's configuration.
    options : dict
        The preset's arguments, resolved (each reference default filled in).
    signal_step : callable or None
        ``(x, xp) -> x`` before the pipeline.
    log_rule : callable or None
        ``(features, xp, samples) -> features`` after it (``samples``: the length of the signal given).
    drop_last_frame : bool
        Whisper drops the STFT's last frame.
    keep_frames : callable or None
        ``samples -> frames``: the pipeline's output is cut to that many frames.
    input_check : callable or None
        ``(x, xp) -> None``: raises where the reference refuses the input.
    framer : object or None
        Kaldi's frames built by the preset (see ``arraymel.presets._kaldi``); the pipeline then
        transforms each frame as a signal of its own.

    Examples
    --------
    >>> import numpy as np, arraymel.presets
    >>> p = arraymel.presets.kaldi(num_mel_bins=40)
    >>> p(np.zeros(16000, np.float32)).shape, p.n_frames(16000)
    ((40, 98), 98)
    """

    name: str
    reference: str
    config: MelConfig
    options: dict
    signal_step: Callable[[Any, Any], Any] | None = None
    log_rule: Callable[[Any, Any, int], Any] | None = None
    drop_last_frame: bool = False
    keep_frames: Callable[[int], int] | None = None
    input_check: Callable[[Any, Any], None] | None = None
    framer: Any = None
    #: ``samples -> samples`` after the signal step (None: unchanged).
    step_length: Callable[[int], int] | None = None
    #: The fewest samples the preset takes, and why, saying what the reference does (checked before the pipeline and
    #: again in :meth:`finish`, so that ``arraymel corpus`` fails such a file alone).
    min_samples: int = 1
    min_reason: str = ""
    #: The options behind ``step_length`` (for :attr:`corpus_unsupported`'s message).
    step_why: str = ""

    @property
    def corpus_unsupported(self) -> str | None:
        """Why ``arraymel corpus`` cannot run this preset file by file (None: it can).

        The corpus applies ``signal_step`` to each file, pads the files of a batch to one length and cuts
        each file's frames by ``config.n_frames``: a preset that changes the signal's length or builds its
        own frames does not fit that.
        """
        if self.framer is not None:
            return (f"the {self.name} preset with {self.framer.why} builds its own frames; compute such files with "
                    f"arraymel.presets.{self.name}(...) directly")
        if self.step_length is not None:
            return (f"the {self.name} preset with {self.step_why or 'these options'} pads or cuts each file's signal "
                    "itself, which changes each file's length; the corpus computes each file at its own length")
        return None

    def n_frames(self, samples: int) -> int:
        """Frames of the features of a signal of ``samples`` samples.

        Parameters
        ----------
        samples : int
            Length of the signal given to the preset (before its signal step).

        Returns
        -------
        int
            The last axis of the preset's features of such a signal.

        See Also
        --------
        arraymel.MelConfig.n_frames : The pipeline's frames, without the preset's steps.

        Examples
        --------
        >>> import numpy as np, arraymel.presets
        >>> p = arraymel.presets.whisper()
        >>> p.n_frames(16000), p(np.zeros(16000, np.float32)).shape[-1]
        (100, 100)
        """
        if self.framer is not None:
            return self.framer.n_frames(samples)
        if self.keep_frames is not None:
            return self.keep_frames(samples)
        n = samples if self.step_length is None else self.step_length(samples)
        return self.config.n_frames(n) - int(self.drop_last_frame)

    def __call__(self, x: Any = None, *, device: Any = None, output: str | None = None, backend: str = "auto",
                 max_memory: int | None = None, **kwargs: Any) -> Any:
        """Features of ``x`` ``(..., samples)``, as :func:`arraymel.mel_spectrogram` takes it.

        Parameters
        ----------
        x : array_like
            Audio ``(..., samples)``: a NumPy, CuPy, torch, JAX or any Array API array, or a sequence.
            Required (a missing ``x`` is a TypeError).
        device : str or None, optional
            Where to compute, as :func:`arraymel.mel_spectrogram` takes it. Default None (where ``x`` is).
        output : str or None, optional
            The array type returned, as :func:`arraymel.mel_spectrogram` takes it. Default None (``x``'s).
        backend : str, optional
            The computing path, as :func:`arraymel.mel_spectrogram` takes it. Default ``"auto"``.
        max_memory : int or None, optional
            Bytes of working memory per block, as :func:`arraymel.mel_spectrogram` takes it. Default None.
        **kwargs
            Refused: any other argument is a TypeError naming it (a preset's options are given when it
            is made, not when it is called).

        Returns
        -------
        array
            The features ``(..., mels, frames)``, float32 for float32 input, in ``output``'s type.

        Raises
        ------
        TypeError
            When ``x`` is missing or another keyword is given.
        ValueError
            When the reference refuses the input (see :meth:`check_length`).

        See Also
        --------
        arraymel.mel_spectrogram : The pipeline every preset runs on.

        Examples
        --------
        >>> import numpy as np, arraymel.presets
        >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
        >>> y = arraymel.presets.librosa(sr=16000)(x, device="cpu")
        >>> y.shape, y.dtype
        ((128, 32), dtype('float32'))
        """
        from arraymel.functional import compute

        if kwargs:
            raise TypeError(f"arraymel.presets.{self.name}(...) got unexpected argument(s) {sorted(kwargs)!r} at call "
                            "time: a preset takes the audio and device=, output=, backend=, max_memory=")
        if x is None:
            raise TypeError(f"arraymel.presets.{self.name}(...)(x): x (the audio, (..., samples)) is required.")
        x, xp = as_array(x)
        samples = int(x.shape[-1]) if x.ndim else 0
        self.check_length(samples)
        if self.input_check is not None:
            self.input_check(x, xp)
        if self.framer is not None:
            out = self.framer.run(x, xp, self.config, lambda fr: compute(
                fr, self.config, device=device, output=output, backend=backend, max_memory=max_memory), max_memory)
            return self.finish(out, samples)
        x = self.prepare(x)
        out = compute(x, self.config, device=device, output=output, backend=backend, max_memory=max_memory)
        return self.finish(out, samples)

    def check_length(self, samples: int) -> None:
        """Raise a ValueError when the reference refuses a signal of ``samples`` samples.

        Parameters
        ----------
        samples : int
            Length of the signal (before the preset's signal step).

        Raises
        ------
        ValueError
            When ``samples`` is below the fewest samples the reference takes; the message says why.

        See Also
        --------
        Preset.__call__ : Checks the length of every input.

        Examples
        --------
        >>> import arraymel.presets
        >>> p = arraymel.presets.whisper()
        >>> p.check_length(16000)  # long enough: nothing happens
        >>> p.check_length(100)
        Traceback (most recent call last):
        ...
        ValueError: arraymel.presets.whisper: x has 100 samples: ...
        """
        if samples < self.min_samples:
            reason = self.min_reason or "there is no signal to transform"
            raise ValueError(f"arraymel.presets.{self.name}: x has {samples} samples: {reason}, so at least "
                             f"{self.min_samples} {'samples are' if self.min_samples > 1 else 'sample is'} needed.")

    def prepare(self, x: Any) -> Any:
        """The signal the pipeline takes: ``x`` after the preset's signal step.

        With :meth:`finish`, the two halves of :meth:`__call__` around the pipeline, for a caller that runs
        the pipeline itself (``arraymel corpus`` batches many files between them).

        Parameters
        ----------
        x : array_like
            Audio ``(..., samples)``.

        Returns
        -------
        array
            ``x`` after the preset's signal step, in ``x``'s namespace (``x`` itself when the preset has
            none); for a framed preset, its frames ``(..., frames, sequence_length)``, each a signal of one
            frame.

        See Also
        --------
        Preset.finish : The other half.

        Examples
        --------
        >>> import numpy as np, arraymel, arraymel.presets
        >>> p = arraymel.presets.nemo()
        >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
        >>> out = arraymel.MelSpectrogram(**p.config.given)(p.prepare(x))  # the pipeline, run by the caller
        >>> bool(np.array_equal(p.finish(out, 16000), p(x)))
        True
        """
        x, xp = as_array(x)
        if self.framer is not None:
            return self.framer.frames(x, xp, 0, self.framer.n_frames(int(x.shape[-1])))
        if self.signal_step is not None:
            if not xp.isdtype(x.dtype, "real floating"):
                x = xp.astype(x, xp.float32)
            x = self.signal_step(x, xp)
        return x

    def finish(self, out: Any, samples: int) -> Any:
        """The features from the pipeline's output ``out``.

        Parameters
        ----------
        out : array
            The pipeline's output on :meth:`prepare`'s result (for a framed preset, on its frames).
        samples : int
            Length of the signal given to :meth:`prepare` (before the signal step).

        Returns
        -------
        array
            The preset's features ``(..., mels, frames)``: frames kept or dropped and the log rule applied
            as the reference does, in ``out``'s namespace.

        Raises
        ------
        ValueError
            When the reference refuses a signal of ``samples`` samples (:meth:`check_length`).

        See Also
        --------
        Preset.prepare : The first half.

        Examples
        --------
        >>> import numpy as np, arraymel, arraymel.presets
        >>> p = arraymel.presets.whisper()
        >>> x = np.zeros(8000, np.float32)
        >>> p.finish(arraymel.MelSpectrogram(**p.config.given)(p.prepare(x)), 8000).shape
        (80, 50)
        """
        self.check_length(samples)
        if self.framer is not None:
            out = self.framer.assemble(out)
        if self.keep_frames is not None:
            out = out[..., : self.keep_frames(samples)]
        if self.drop_last_frame:
            out = out[..., :-1]
        if self.log_rule is not None:
            out = self.log_rule(out, array_namespace(getattr(out, "feats", out)), samples)
        return out

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"arraymel.presets.{self.name}({opts})"


# ------------------------------------------------------------------------------ option checks
#: Each preset's argument names that differ from MelConfig's, for its error messages.
NAMES = {
    "librosa": {"sr": "sampling_rate", "n_fft": "fft_length", "hop_length": "sequence_stride",
                "win_length": "sequence_length", "n_mels": "num_mel_bins", "fmin": "min_freq", "fmax": "max_freq",
                "power": "mag_exp", "ref": "ref_power", "amin": "min_power"},
    "torchaudio": {"sample_rate": "sampling_rate", "n_fft": "fft_length", "hop_length": "sequence_stride",
                   "win_length": "sequence_length", "n_mels": "num_mel_bins", "f_min": "min_freq", "f_max": "max_freq",
                   "power": "mag_exp"},
    "kaldi": {"sample_frequency": "sampling_rate", "frame_length_ms": "sequence_length",
              "frame_shift_ms": "sequence_stride", "low_freq": "min_freq", "high_freq": "max_freq"},
    "nemo": {"n_mels": "num_mel_bins", "n_fft": "fft_length", "hop_length": "sequence_stride",
             "win_length": "sequence_length", "sampling_rate": "sampling_rate"},
    "whisper": {"n_mels": "num_mel_bins", "n_fft": "fft_length", "hop_length": "sequence_stride",
                "sampling_rate": "sampling_rate"},
}


def make_config(preset: str, **params: Any) -> MelConfig:
    """``MelConfig.create(**params)``; an error also says which of the preset's arguments each parameter is."""
    try:
        return MelConfig.create(**params)
    except (TypeError, ValueError) as e:
        names = [f"{theirs} -> {ours}" for theirs, ours in NAMES[preset].items() if ours in str(e)]
        if not names:
            raise
        raise type(e)(f"arraymel.presets.{preset}: {e} ({', '.join(names)})") from None


def choice(preset: str, name: str, value: Any, allowed: tuple) -> Any:
    """``value`` if it is one of ``allowed``, else a ValueError naming the option, the value and the choices."""
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise ValueError(f"arraymel.presets.{preset}: {name}={value!r} is not allowed: {name} must be one of "
                         f"{allowed!r}.")
    return value


def refuse(preset: str, name: str, value: Any, instead: str) -> TypeError:
    """The TypeError of an option the preset cannot honour: what was given and what to use instead."""
    return TypeError(f"arraymel.presets.{preset}: {name}={value!r} is not supported: {instead} "
                     "(docs/presets.md lists what each preset supports).")


def check_real(preset: str, name: str, value: Any, *, minimum: float | None = None, strict: bool = False,
               maximum: float | None = None) -> float:
    """A finite real number within the bounds, or an error naming the option."""
    rule = "a finite number" + ("" if minimum is None else f" {'>' if strict else '>='} {minimum:g}") + \
        ("" if maximum is None else f" and <= {maximum:g}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"arraymel.presets.{preset}: {name}={value!r} is not allowed: {name} must be {rule}.")
    v = float(value)
    bad = not math.isfinite(v) or (minimum is not None and (v <= minimum if strict else v < minimum)) or \
        (maximum is not None and v > maximum)
    if bad:
        raise ValueError(f"arraymel.presets.{preset}: {name}={value!r} is not allowed: {name} must be {rule}.")
    return v


def check_int(preset: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """An int ``>= minimum`` (not a bool), or an error naming the option."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"arraymel.presets.{preset}: {name}={value!r} is not allowed: {name} must be an int >= "
                        f"{minimum}.")
    if value < minimum:
        raise ValueError(f"arraymel.presets.{preset}: {name}={value!r} is not allowed: {name} must be an int >= "
                         f"{minimum}.")
    return int(value)


def check_bool(preset: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"arraymel.presets.{preset}: {name}={value!r} is not allowed: {name} must be True or False.")
    return bool(value)


def one_of_aliases(preset: str, given: dict, names: tuple[str, ...], default: Any) -> Any:
    """The value of an option that two references spell differently (``frame_length`` / ``frame_length_ms``)."""
    present = [n for n in names if given.get(n) is not None]
    if len(present) > 1:
        raise TypeError(f"arraymel.presets.{preset}: {' and '.join(present)} are one option under two names; "
                        "give one of them.")
    return given[present[0]] if present else default


class _Default(int):
    """An int default that can be told from the same number given by the caller (``n_mels is N_MELS``)."""

    __slots__ = ()


#: ``n_mels``'s default (80) in the presets that also take transformers' ``feature_size`` for it.
N_MELS = _Default(80)


def n_mels_or_feature_size(preset: str, n_mels: Any, feature_size: Any) -> int:
    """The mel bands of a preset that takes openai-whisper's/NeMo's ``n_mels`` and transformers' ``feature_size``:
    either name, or both when they agree; a TypeError when both are given and differ."""
    if feature_size is not None:
        if n_mels is not N_MELS and n_mels != feature_size:
            raise TypeError(f"arraymel.presets.{preset}: n_mels={n_mels!r} and feature_size={feature_size!r} are one "
                            "option under two names (transformers' feature_size); give one of them.")
        n_mels = feature_size
    return check_int(preset, "n_mels" if feature_size is None else "feature_size", n_mels)


# ------------------------------------------------------------------------------ input checks
def check_float_finite(preset: str, x: Any, xp: Any) -> None:
    """librosa's ``valid_audio``: floating-point audio, finite everywhere.

    The finiteness check reads the data, so it runs on NumPy input only (librosa's own input): on a device
    it would wait for the device and copy a flag to the host. Elsewhere NaN and inf propagate to the output.
    """
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"arraymel.presets.{preset}: x has dtype {x.dtype}: audio must be floating-point, as "
                        f"librosa requires (convert it first, e.g. x.astype(np.float32) / 32768 for int16).")
    if isinstance(x, np.ndarray) and not np.isfinite(x).all():
        raise ValueError(f"arraymel.presets.{preset}: x is not finite everywhere (NaN or inf), which librosa refuses.")


# ------------------------------------------------------------------------------ signal steps
def pad_signal(x: Any, xp: Any, left: int, right: int, mode: str, value: float = 0.0) -> Any:
    """``np.pad(x, (left, right), mode)`` on the last axis, in ``x``'s namespace.

    ``mode``: ``"constant"`` (``value``), ``"edge"``, ``"reflect"``, ``"symmetric"``, ``"wrap"`` or
    ``"linear_ramp"`` (from the edge sample to 0), as NumPy pads (repeatedly where the pad is longer than
    the signal).
    """
    if left == 0 and right == 0:
        return x
    n = x.shape[-1]
    dev = xp_device(x)
    dt = index_dtype(xp, dev)
    if mode == "constant" or mode == "linear_ramp":
        shape = x.shape[:-1]
        if mode == "constant":
            lo = xp.full((*shape, left), value, dtype=x.dtype, device=dev)
            hi = xp.full((*shape, right), value, dtype=x.dtype, device=dev)
        else:  # np.pad's linear_ramp with end_values 0: edge * (distance from the far end) / pad
            ramp_l = xp.arange(left, dtype=x.dtype, device=dev) / max(left, 1)
            ramp_r = xp.arange(right, 0, -1, dtype=x.dtype, device=dev) / max(right, 1)
            ramp_r = (ramp_r - 1.0 / max(right, 1)) if right else ramp_r
            lo = x[..., :1] * ramp_l
            hi = x[..., -1:] * ramp_r
        return xp.concat([lo, x, hi], axis=-1)
    pos = xp.arange(-left, n + right, dtype=dt, device=dev)
    if mode == "edge":
        idx = xp.clip(pos, 0, n - 1) if hasattr(xp, "clip") else xp.where(pos < 0, 0, xp.where(pos >= n, n - 1, pos))
    elif mode == "wrap":
        idx = xp.remainder(pos, n)
    elif mode == "symmetric":  # ... x1 x0 | x0 x1 ... x(n-1) | x(n-1) x(n-2) ...
        p = xp.remainder(pos, 2 * n)
        idx = xp.where(p >= n, 2 * n - 1 - p, p)
    elif mode == "reflect":  # ... x2 x1 | x0 x1 ... x(n-1) | x(n-2) ...
        if n == 1:
            idx = xp.zeros_like(pos)
        else:
            p = xp.remainder(pos, 2 * (n - 1))
            idx = xp.where(p >= n, 2 * (n - 1) - p, p)
    else:
        raise ValueError(f"pad mode {mode!r} is not one of constant, edge, reflect, symmetric, wrap, linear_ramp.")
    return xp.take(x, idx, axis=x.ndim - 1)


def frames_after_padding(samples: int, *, pad: int, n_fft: int, hop: int) -> int:
    """Frames of ``n_fft`` every ``hop`` in a signal padded by ``pad`` on each side (librosa's and torch.stft's)."""
    return max(0, 1 + (samples + 2 * pad - n_fft) // hop)


def preemphasis(x: Any, xp: Any, coefficient: float) -> Any:
    """Pre-emphasis of the whole signal: ``y[0] = x[0]``, ``y[i] = x[i] - c x[i - 1]`` (NeMo's)."""
    return xp.concat([x[..., :1], x[..., 1:] - coefficient * x[..., :-1]], axis=-1)


def seeded_noise(xp: Any, like: Any, shape: tuple, seed: Any, block: int) -> Any:
    """Standard normal noise of ``shape``, drawn by NumPy from ``(seed, block)`` and put where ``like`` is: the same
    numbers on every path and whatever the size of the call's blocks."""
    rng = np.random.default_rng([int(seed), int(block)] if seed is not None else None)
    host = rng.standard_normal(shape).astype(np.float64 if like.dtype == xp.float64 else np.float32)
    return to_namespace(host, xp, like)


def to_namespace(a: Any, xp: Any, like: Any) -> Any:
    """``a`` (host or another namespace) as an array of ``xp`` on ``like``'s device."""
    try:
        return xp.asarray(a, device=xp_device(like))
    except (TypeError, ValueError, RuntimeError):
        get = getattr(a, "get", None)  # CuPy to a host namespace: an explicit copy
        host = get() if callable(get) else np.asarray(a)
        return xp.asarray(host, device=xp_device(like))


def float_signal(x: Any, xp: Any) -> Any:
    """``x`` as floats (integers as float32), for a step on the signal before the pipeline."""
    return x if xp.isdtype(x.dtype, "real floating") else xp.astype(x, xp.float32)


def per_example_max(a: Any, xp: Any) -> Any:
    """The maximum over the last two axes, kept as ``(..., 1, 1)``."""
    return xp.max(a, axis=(-2, -1), keepdims=True)


def db(power: Any, xp: Any, *, multiplier: float, amin: float, ref: Any, top_db: float | None,
       scope: str = "example") -> Any:
    """``multiplier * log10(max(power, amin)) - multiplier * log10(max(amin, |ref|))``, then ``top_db`` below
    each spectrogram's maximum (``scope="batch"``: the whole array's) (``ref``: a number or an array
    ``(..., 1, 1)``)."""
    floor = xp.asarray(amin, dtype=power.dtype, device=xp_device(power))
    out = multiplier * xp.log10(xp.where(power < floor, floor, power))
    if isinstance(ref, (int, float)):
        r = multiplier * math.log10(max(amin, abs(ref)))
        if r != 0.0:
            out = out - r
    else:
        ref = xp.abs(ref)
        out = out - multiplier * xp.log10(xp.where(ref < floor, floor, ref))
    if top_db is not None and math.prod(out.shape) > 0:
        out = xp.maximum(out, (xp.max(out) if scope == "batch" else per_example_max(out, xp)) - top_db)
    return out
