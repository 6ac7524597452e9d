"""The validated mel configuration shared by every backend.

``MelConfig`` holds the 13 Keras parameters plus arraymel's extensions, checked once
(docs/semantics.md's parameters). Every path (generic, NumPy, CuPy) takes a ``MelConfig`` and
never re-validates; the public functions build one from keyword arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import numpy as np

#: The Keras 3 ``MelSpectrogram`` parameters, in Keras's order, with Keras's defaults.
KERAS_DEFAULTS: dict[str, Any] = {
    "fft_length": 2048,
    "sequence_stride": 512,
    "sequence_length": None,
    "window": "hann",
    "sampling_rate": 16000,
    "num_mel_bins": 128,
    "min_freq": 20.0,
    "max_freq": None,
    "power_to_db": True,
    "top_db": 80.0,
    "mag_exp": 2.0,
    "min_power": 1e-10,
    "ref_power": 1.0,
}

#: The Keras parameters its layer needs as ints (arraymel also takes floats with an integral value).
KERAS_INT_KEYS = ("fft_length", "sequence_stride", "sequence_length", "num_mel_bins")

#: arraymel's extensions, with defaults that keep Keras's behaviour.
EXTENSION_DEFAULTS: dict[str, Any] = {"top_db_scope": "batch", "dtype": None, "filterbank": "exact",
                                      "center": True, "pad_mode": "reflect", "frame_step": None}

WINDOW_NAMES = ("hann", "hamming")
TOP_DB_SCOPES = ("batch", "example")
DTYPES = ("float32", "float64")
#: "exact": the HTK filterbank evaluated in float64 (docs/semantics.md); "keras": Keras's float32 evaluation of it,
#: operation for operation, for Keras's exact numbers (see :func:`arraymel.core.filterbank.keras_filterbank_host`).
#: The others are the presets' (:mod:`arraymel.presets`): librosa's triangles linear in Hz on its Slaney or HTK
#: scale, with or without Slaney's area normalisation ("librosa" is ``librosa.filters.mel``'s default), and Kaldi's.
FILTERBANKS = ("exact", "keras", "librosa", "librosa-nonorm", "librosa-htk", "librosa-htk-nonorm", "kaldi")
#: Out-of-signal samples of centred frames: NumPy's ``mode="reflect"`` (Keras) or zeros (librosa >= 0.10, NeMo).
PAD_MODES = ("reflect", "constant")
#: A step on each frame before the window: "kaldi" removes the frame's mean, then pre-emphasises it
#: (``y[i] = x[i] - 0.97 x[i - 1]``, ``y[0] = x[0] - 0.97 x[0]``) over its ``sequence_length`` samples.
FRAME_STEPS = (None, "kaldi")
#: Kaldi's pre-emphasis coefficient.
KALDI_PREEMPHASIS = 0.97


def _fail(name: str, value: Any, allowed: str, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"{name}={value!r} is not allowed: {name} must be {allowed}.")


def _check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """An int, or a float with an integral value (``128.0``, as Keras accepts for ``sequence_stride``)."""
    integral_float = isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and \
        math.isfinite(value) and float(value).is_integer()
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Integral) or integral_float):
        raise _fail(name, value, f"an int >= {minimum} (or a float with an integral value)", TypeError)
    value = int(value)
    if value < minimum:
        raise _fail(name, value, f"an int >= {minimum}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    """True/False, or 0/1 (Keras tests the value's truth; other values are refused as likely mistakes)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise _fail(name, value, "True or False (or 1 or 0)", TypeError)


def _is_falsy_number(value: Any) -> bool:
    """None or a (non-bool) number equal to 0: Keras's ``value or default`` falls back to the default."""
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and value == 0)


def _check_real(name: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, value, allowed, TypeError)
    value = float(value)
    if not math.isfinite(value):
        raise _fail(name, value, allowed)
    return value


WINDOW_RULE = f"one of {WINDOW_NAMES!r}, a 1-D array of length sequence_length, or None"


def _check_window(window: Any, sequence_length: int) -> Any:
    if window is None:
        return None
    if isinstance(window, str):
        if window not in WINDOW_NAMES:
            raise _fail("window", window, WINDOW_RULE)
        return window
    shape = getattr(window, "shape", None)
    if shape is None:
        if isinstance(window, (list, tuple)):
            if any(isinstance(v, str) for v in window):  # a scipy-style spec such as ("kaiser", 8.0)
                raise _fail("window", window, WINDOW_RULE + " (for a scipy window, pass its values: "
                            f"scipy.signal.get_window({window!r}, sequence_length))", TypeError)
            try:
                window = np.asarray(window, dtype=np.float64)
            except (TypeError, ValueError):
                raise _fail("window", window, WINDOW_RULE, TypeError) from None
            shape = window.shape
        else:
            raise _fail("window", window, WINDOW_RULE, TypeError)
    if tuple(shape) != (sequence_length,):
        raise ValueError(
            f"window has shape {tuple(shape)}: an array window must have shape (sequence_length,) = ({sequence_length},)."
        )
    return window


def _dtype_name(dtype: Any) -> str | None:
    if dtype is None:
        return None
    if isinstance(dtype, dict):  # a Keras DTypePolicy config: {"class_name": "DTypePolicy", "config": {"name": ...}}
        name = (dtype.get("config") or {}).get("name")
        if name not in DTYPES:
            raise _fail("dtype", dtype, f"None, one of {DTYPES!r}, or a Keras dtype policy of one of them "
                        "(arraymel computes and returns float32 or float64 only)")
        return name
    try:  # "float64", np.float64, np.dtype("float64")
        name = np.dtype(dtype).name
    except TypeError:
        name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
    if name not in DTYPES:
        raise _fail("dtype", dtype, f"None (the input's float dtype) or one of {DTYPES!r} (also as a Keras dtype "
                    "policy; mixed and 16-bit policies have no arraymel equivalent)")
    return name


@dataclasses.dataclass(frozen=True, eq=False)
class MelConfig:
    """A checked set of mel spectrogram parameters, shared by every path (see docs/semantics.md).

    Build it with :meth:`MelConfig.create`, which validates and resolves defaults
    (as in Keras, a falsy ``sequence_length`` -> ``fft_length``, a falsy ``max_freq`` -> ``int(sampling_rate / 2)``).
    The unresolved values are kept in ``given`` so that ``get_config`` round-trips. It is
    immutable; :meth:`replace` makes a changed copy.

    Attributes
    ----------
    fft_length, sequence_stride, sequence_length, num_mel_bins : int
        Resolved sizes (``sequence_length`` is never None).
    window : str, array or None
        ``"hann"``, ``"hamming"``, a float array of ``sequence_length`` values, or None.
    sampling_rate, min_freq, max_freq, mag_exp, min_power, ref_power : float
        Resolved values (``max_freq`` is never None; ``ref_power`` is its absolute value).
    power_to_db : bool
    top_db : float or None
    top_db_scope : {"batch", "example"}
    dtype : {None, "float32", "float64"}
    filterbank : str
        One of the seven filterbanks of :func:`arraymel.mel_filterbank`.
    center : bool
    pad_mode : {"reflect", "constant"}
    frame_step : {None, "kaldi"}
    given : dict
        Every parameter as it was given, before resolution.

    See Also
    --------
    MelSpectrogram : Holds one, with Keras's interface.

    Examples
    --------
    >>> import arraymel
    >>> cfg = arraymel.MelConfig.create(fft_length=400, sequence_stride=160, max_freq=None)
    >>> cfg.sequence_length, cfg.max_freq, cfg.given["max_freq"], cfg.n_frames(16000)
    (400, 8000.0, None, 101)
    """

    fft_length: int
    sequence_stride: int
    sequence_length: int
    window: Any
    sampling_rate: float
    num_mel_bins: int
    min_freq: float
    max_freq: float
    power_to_db: bool
    top_db: float | None
    mag_exp: float
    min_power: float
    ref_power: float
    top_db_scope: str
    dtype: str | None
    filterbank: str
    center: bool
    pad_mode: str
    frame_step: str | None
    given: dict = dataclasses.field(repr=False)

    @classmethod
    def create(cls, **kwargs: Any) -> MelConfig:
        """Validate parameters and resolve their defaults.

        Parameters
        ----------
        **kwargs : optional
            Keras's 13 parameters and arraymel's extensions (``top_db_scope``, ``dtype``,
            ``filterbank``, ``center``, ``pad_mode``, ``frame_step``), by name, as
            :class:`arraymel.MelSpectrogram` takes them; the rest take their defaults.

        Returns
        -------
        MelConfig

        Raises
        ------
        ValueError
            A value out of its range; the message names the parameter, the value and what is allowed.
        TypeError
            An unknown parameter, or a value of the wrong type.

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelConfig.create(sequence_stride=0)
        Traceback (most recent call last):
        ...
        ValueError: sequence_stride=0 is not allowed: ...
        """
        unknown = set(kwargs) - set(KERAS_DEFAULTS) - set(EXTENSION_DEFAULTS)
        if unknown:
            allowed = ", ".join([*KERAS_DEFAULTS, *EXTENSION_DEFAULTS])
            raise TypeError(f"unknown parameter(s) {sorted(unknown)!r}; the parameters are: {allowed}.")
        p = {**KERAS_DEFAULTS, **EXTENSION_DEFAULTS, **kwargs}

        fft_length = _check_int("fft_length", p["fft_length"])
        stride = _check_int("sequence_stride", p["sequence_stride"])
        seq = p["sequence_length"]
        if _is_falsy_number(seq):  # Keras: `sequence_length or fft_length`
            seq = fft_length
        else:
            seq = _check_int("sequence_length", seq)
            if seq > fft_length:
                raise _fail("sequence_length", seq,
                            f"None or 0 (both mean fft_length) or an int with 0 < sequence_length <= fft_length ({fft_length})")
        window = _check_window(p["window"], seq)

        sr = _check_real("sampling_rate", p["sampling_rate"], "a finite number > 0")
        if sr <= 0:
            raise _fail("sampling_rate", p["sampling_rate"], "a finite number > 0")
        n_mels = _check_int("num_mel_bins", p["num_mel_bins"])
        min_freq = _check_real("min_freq", p["min_freq"], "a finite number >= 0 and < max_freq")
        if _is_falsy_number(p["max_freq"]):
            max_freq = float(int(sr / 2))  # Keras: `max_freq or int(sampling_rate / 2)`
        else:
            max_freq = _check_real("max_freq", p["max_freq"],
                                   "None, 0 (both mean int(sampling_rate / 2)) or a finite number > min_freq")
        if min_freq < 0:
            raise _fail("min_freq", p["min_freq"], "a finite number >= 0 and < max_freq")
        if not min_freq < max_freq:
            keras_does = "NaN everywhere" if min_freq == max_freq else (
                f"the bands of [{max_freq:g}, {min_freq:g}] Hz in reverse order, or a constant -100 dB where no "
                "FFT bin lies in that range")
            raise ValueError(
                f"min_freq={p['min_freq']!r} and max_freq={p['max_freq']!r} (resolved to {max_freq:g} Hz) are not allowed: "
                f"min_freq must be less than max_freq (Keras would silently return {keras_does})."
            )
        power_to_db = _check_bool("power_to_db", p["power_to_db"])
        top_db = p["top_db"]
        if top_db is not None:
            top_db = _check_real("top_db", top_db, "None (no clipping) or a finite number >= 0")
            if top_db < 0:
                raise _fail("top_db", p["top_db"], "None (no clipping) or a finite number >= 0")
        mag_exp = _check_real("mag_exp", p["mag_exp"], "a finite number > 0")
        if mag_exp <= 0:
            raise _fail("mag_exp", p["mag_exp"], "a finite number > 0")
        min_power = _check_real("min_power", p["min_power"], "a finite number > 0")
        if min_power <= 0:
            raise _fail("min_power", p["min_power"], "a finite number > 0")
        ref_power = abs(_check_real("ref_power", p["ref_power"], "a finite number (its absolute value is used)"))
        scope = p["top_db_scope"]
        if scope not in TOP_DB_SCOPES:
            raise _fail("top_db_scope", scope, f"one of {TOP_DB_SCOPES!r}")
        dtype = _dtype_name(p["dtype"])
        filterbank = p["filterbank"]
        if filterbank not in FILTERBANKS:
            raise _fail("filterbank", filterbank, f"one of {FILTERBANKS!r} (\"exact\": the float64 evaluation; "
                        "\"keras\": Keras's float32 "
                        "one; the others: the presets' filterbanks)")

        center = _check_bool("center", p["center"])
        pad_mode = p["pad_mode"]
        if pad_mode not in PAD_MODES:
            raise _fail("pad_mode", pad_mode, f"one of {PAD_MODES!r}")
        frame_step = p["frame_step"]
        if frame_step not in FRAME_STEPS:
            raise _fail("frame_step", frame_step, f"one of {FRAME_STEPS!r}")
        if frame_step is not None and center:
            raise ValueError(f"frame_step={frame_step!r} with center=True is not allowed: the frame step works on the "
                             "first sequence_length samples of each frame, where the window lies only without "
                             "centring (Kaldi's snip_edges); pass center=False.")

        given = {k: kwargs.get(k, v) for k, v in {**KERAS_DEFAULTS, **EXTENSION_DEFAULTS}.items()}
        given["window"] = window  # a list window is kept as the NumPy array it was checked as
        return cls(
            fft_length=fft_length,
            sequence_stride=stride,
            sequence_length=seq,
            window=window,
            sampling_rate=sr,
            num_mel_bins=n_mels,
            min_freq=min_freq,
            max_freq=max_freq,
            power_to_db=power_to_db,
            top_db=top_db,
            mag_exp=mag_exp,
            min_power=min_power,
            ref_power=ref_power,
            top_db_scope=scope,
            dtype=dtype,
            filterbank=filterbank,
            center=center,
            pad_mode=pad_mode,
            frame_step=frame_step,
            given=given,
        )

    # ------------------------------------------------------------------ derived sizes
    @property
    def n_bins(self) -> int:
        """Number of one-sided FFT bins, ``fft_length // 2 + 1``."""
        return self.fft_length // 2 + 1

    @property
    def pad(self) -> int:
        """Padding on each side of the signal: ``fft_length // 2`` when centred, else 0."""
        return self.fft_length // 2 if self.center else 0

    @property
    def frame_span(self) -> int:
        """Signal samples a frame needs: ``fft_length`` when centred; without centring (Kaldi's snip_edges)
        a frame is its ``sequence_length`` samples, left-aligned in ``fft_length`` with zeros after them."""
        return self.fft_length if self.center else self.sequence_length

    def n_frames(self, samples: int) -> int:
        """The true frame count for ``samples`` input samples.

        ``1 + (samples + 2 * (fft_length // 2) - fft_length) // sequence_stride`` (docs/semantics.md,
        step 3); without centring ``1 + (samples - sequence_length) // sequence_stride``, as Kaldi's
        snip_edges.

        Parameters
        ----------
        samples : int
            Length of the signal.

        Returns
        -------
        frames : int

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelConfig.create().n_frames(16000)
        32
        """
        return 1 + (samples + 2 * self.pad - self.frame_span) // self.sequence_stride

    def check_samples(self, samples: int) -> None:
        """Check that a signal of ``samples`` samples has at least one frame.

        Parameters
        ----------
        samples : int
            Length of the signal.

        Raises
        ------
        ValueError
            Without centring (``center=False``), a signal shorter than ``sequence_length``, naming
            both sizes. A centred configuration accepts any length.

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelConfig.create(center=False, fft_length=512, sequence_length=400).check_samples(300)
        Traceback (most recent call last):
        ...
        ValueError: x has 300 samples: with center=False a frame needs sequence_length=400 samples, ...
        """
        if not self.center and samples < self.sequence_length:
            raise ValueError(f"x has {samples} samples: with center=False a frame needs sequence_length="
                             f"{self.sequence_length} samples, so the signal must have at least that many.")

    @functools.cached_property
    def window_key(self) -> Any:
        """A hashable stand-in for the window (arrays are keyed by content; computed once, so a
        device array window is copied to the host once per config, never per call)."""
        w = self.window
        if w is None or isinstance(w, str):
            return w
        host = _to_host_float64(w)
        return ("array", host.tobytes())

    @functools.cached_property
    def key(self) -> tuple:
        """Hashable identity of everything that changes the numbers (not ``dtype``)."""
        return (
            self.fft_length, self.sequence_stride, self.sequence_length, self.window_key,
            self.sampling_rate, self.num_mel_bins, self.min_freq, self.max_freq,
            self.power_to_db, self.top_db, self.mag_exp, self.min_power, self.ref_power,
            self.top_db_scope, self.filterbank, self.center, self.pad_mode, self.frame_step,
        )

    def replace(self, **changes: Any) -> MelConfig:
        """A new validated config with some parameters changed.

        Parameters
        ----------
        **changes : optional
            Parameters by name, as :meth:`create` takes them.

        Returns
        -------
        MelConfig
            The given parameters of this one, updated with ``changes`` and validated again.

        Raises
        ------
        ValueError, TypeError
            As :meth:`create`.

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelConfig.create(num_mel_bins=80).replace(fft_length=400).num_mel_bins
        80
        """
        given = {k: v for k, v in self.given.items()}
        given.update(changes)
        return MelConfig.create(**given)

    def keras_config(self) -> dict[str, Any]:
        """The 13 Keras parameters as given (unresolved), as plain Python values Keras's layer takes.

        Returns
        -------
        params : dict
            An array window as a list, NumPy scalars as Python numbers, and the int parameters as
            ints (Keras fails on ``fft_length=512.0``).

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelConfig.create(fft_length=512.0).keras_config()["fft_length"]
        512
        """
        out = {}
        for k in KERAS_DEFAULTS:
            v = self.given[k]
            if hasattr(v, "shape") and v.shape != ():
                v = _to_host_float64(v).tolist()
            elif isinstance(v, np.generic):
                v = v.item()
            if k in KERAS_INT_KEYS and v is not None:
                v = int(v)
            out[k] = v
        return out


def _to_host_float64(w: Any) -> np.ndarray:
    """A window array, whatever its namespace, as a NumPy float64 array (a small, explicit copy)."""
    if isinstance(w, np.ndarray):
        return w.astype(np.float64, copy=False)
    get = getattr(w, "get", None)  # CuPy: an explicit device-to-host copy of a tiny constant
    if callable(get) and type(w).__module__.startswith("cupy"):
        return np.asarray(get(), dtype=np.float64)
    try:
        return np.asarray(w, dtype=np.float64)
    except Exception:  # array-api-strict and others: go through DLPack-free conversion
        return np.asarray(list(w), dtype=np.float64)
