"""``MelSpectrogram``: a validated, reusable mel configuration with Keras's layer interface."""

from __future__ import annotations

import numbers
from typing import Any

from arraymel import _backend
from arraymel._config import EXTENSION_DEFAULTS, KERAS_DEFAULTS, MelConfig
from arraymel._threads import thread_count
from arraymel.functional import StateCache, compute


class MelSpectrogram:
    """A mel spectrogram transform with the parameters, defaults and behaviour of Keras 3's layer.

    Parameters are those of :func:`arraymel.mel_spectrogram` (keyword-only), validated once
    here. Calling the object computes the spectrogram; its window, filterbank and any fast-path
    plans are built once per (namespace, device, dtype) and reused.

    Parameters
    ----------
    fft_length, sequence_stride, sequence_length, window, sampling_rate, num_mel_bins, min_freq, max_freq, power_to_db, top_db, mag_exp, min_power, ref_power : optional
        Keras's 13 parameters, with Keras's defaults (2048, 512, None, "hann", 16000, 128, 20.0,
        None, True, 80.0, 2.0, 1e-10, 1.0); see :func:`arraymel.mel_spectrogram`.
    top_db_scope : {"batch", "example"}, default "batch"
        The maximum ``top_db`` counts from: the whole input (Keras) or each spectrogram.
    dtype : {None, "float32", "float64"} or a Keras dtype policy, default None
        A Keras ``DTypePolicy`` config (dict) or policy name sets the compute and output dtype as
        in Keras (``"float64"`` computes in float64); mixed and 16-bit policies are refused.
    filterbank : {"exact", "keras", "librosa", "librosa-nonorm", "librosa-htk", "librosa-htk-nonorm", "kaldi"}, default "exact"
        The float64 filterbank, or Keras's float32 one (Keras's exact numbers); the presets'
        filterbanks (librosa's and Kaldi's, see :mod:`arraymel.presets`) are named here too.
    center, pad_mode, frame_step : bool, {"reflect", "constant"}, {None, "kaldi"}; default True, "reflect", None
        The framing the presets use (default: Keras's centred reflect padding, no frame step):
        ``center=False`` frames from the first sample (Kaldi's ``snip_edges``), ``pad_mode="constant"``
        pads with zeros (librosa 0.10+), ``frame_step="kaldi"`` removes each frame's mean and
        pre-emphasises it (needs ``center=False``). :func:`arraymel.mel_spectrogram` does not take
        them: use a :mod:`arraymel.presets` preset, or this class.
    workers : int, optional, default None
        CPU threads of the NumPy path for every call (see :func:`arraymel.mel_spectrogram`);
        None (default) takes :func:`arraymel.get_workers` at each call. Kept in
        :meth:`get_config` only when set; :meth:`to_keras_config` leaves it out.
    **kwargs : optional
        Keras layer arguments without meaning here (``name``, ``trainable``, ...) are accepted
        and kept in :meth:`get_config`, so that a Keras config dict loads.

    Attributes
    ----------
    config : MelConfig
        The validated parameters.
    workers : int or None
        The ``workers`` given, or None.

    Raises
    ------
    ValueError
        A parameter out of its range; the message names the parameter, the value and what is allowed.
    TypeError
        An unknown parameter, or a parameter of the wrong type.

    See Also
    --------
    mel_spectrogram : The same computation as one function call.
    arraymel.torch.MelSpectrogram : The same as a ``torch.nn.Module``.
    arraymel.presets : Other libraries' features (Whisper, Kaldi, ...) on the same pipeline.

    Notes
    -----
    Two objects are equal when they compute the same numbers (the same configuration and dtype).
    The object pickles without its cache, so it can be sent to worker processes.

    Examples
    --------
    >>> import numpy as np, arraymel
    >>> mel = arraymel.MelSpectrogram(num_mel_bins=80, sampling_rate=8000, sequence_stride=128)
    >>> mel.compute_output_shape((2, 16000))
    (2, 80, 126)
    >>> mel(np.zeros((2, 16000), np.float32)).shape
    (2, 80, 126)
    >>> arraymel.MelSpectrogram.from_config(mel.get_config()) == mel
    True
    """

    #: Keras layer arguments accepted and carried through get_config but otherwise ignored.
    LAYER_KEYS = ("name", "trainable", "dtype_policy", "autocast")

    def __init__(self, **kwargs: Any) -> None:
        layer = {k: kwargs.pop(k) for k in self.LAYER_KEYS if k in kwargs}
        self.workers = kwargs.pop("workers", None)
        if self.workers is not None:
            thread_count(self.workers)  # checked now; -1 stays -1 (resolved per call, on the machine that runs it)
        self.config = MelConfig.create(**kwargs)
        self._layer = layer
        self._cache = StateCache(maxsize=8)

    # ---------------------------------------------------------------- Keras interface
    def __call__(self, x: Any, *, device: Any = None, output: str | None = None, backend: str = "auto",
                 max_memory: int | None = None, workers: int | None = None) -> Any:
        """Compute the mel spectrogram of ``x`` (``(..., samples)`` -> ``(..., num_mel_bins, frames)``).

        Parameters
        ----------
        x : array of shape ``(..., samples)``
            Real audio: NumPy, CuPy, torch, JAX or any Array API array.
        device, output, backend, max_memory : optional
            As in :func:`arraymel.mel_spectrogram` (defaults None, None, "auto", None).
        workers : int, optional, default None
            CPU threads of the NumPy path for this call; None takes the object's ``workers``, then
            :func:`arraymel.get_workers`.

        Returns
        -------
        S : array of shape ``(..., num_mel_bins, frames)``
            As :func:`arraymel.mel_spectrogram` returns it.

        Raises
        ------
        ValueError
            Input with no samples or of rank 0, or an unknown ``device``, ``output`` or ``backend``.
        TypeError
            Complex or boolean input.

        Examples
        --------
        >>> import numpy as np, arraymel
        >>> mel = arraymel.MelSpectrogram(num_mel_bins=40)
        >>> mel(np.zeros((3, 8000), np.float32)).shape
        (3, 40, 16)
        """
        return compute(x, self.config, device=device, output=output, backend=backend, max_memory=max_memory,
                       workers=self.workers if workers is None else workers, cache=self._cache)

    def get_config(self) -> dict[str, Any]:
        """The parameters as given: Keras's 13 keys, the layer keys given (``name``, ...), and each
        extension (``top_db_scope``, ``dtype``, ``filterbank``, ...) only where it differs from its default.

        Returns
        -------
        config : dict
            Keyword arguments that rebuild this object (:meth:`from_config`).

        See Also
        --------
        to_keras_config : The config for Keras's own layer, or why there is none.

        Notes
        -----
        A configuration that uses no extension is exactly what
        ``keras.layers.MelSpectrogram.from_config`` accepts (``dtype`` is Keras's own key: a dtype name
        or a policy dict, which Keras reads the same way). :meth:`to_keras_config` says why when Keras
        cannot express a configuration.

        Examples
        --------
        >>> import arraymel
        >>> cfg = arraymel.MelSpectrogram(num_mel_bins=80, top_db_scope="example").get_config()
        >>> cfg["num_mel_bins"], cfg["top_db_scope"], len(cfg)
        (80, 'example', 14)
        """
        cfg = self.config.keras_config()
        cfg.update(self._layer)
        given = self.config.given
        cfg.update({k: given[k] for k, default in EXTENSION_DEFAULTS.items() if not _same(given[k], default)})
        if "dtype" in cfg:
            cfg["dtype"] = self._keras_dtype()
        if self.workers is not None:
            cfg["workers"] = self.workers
        return cfg

    def _keras_dtype(self) -> Any:
        """``dtype`` as given when Keras reads it (a name or a policy dict), else its name (a NumPy dtype object)."""
        given = self.config.given["dtype"]
        return given if isinstance(given, (str, dict)) else self.config.dtype

    def to_keras_config(self) -> dict[str, Any]:
        """A config for ``keras.layers.MelSpectrogram.from_config`` that computes what this object computes.

        As :meth:`get_config` without arraymel's extensions. ``dtype=None``
        is left out: Keras's layer then computes in float32, as arraymel does for float32 and integer
        input (for float64 input arraymel computes in float64). Both filterbanks map to Keras's layer,
        which always uses its float32 one (the same numbers as ``filterbank="keras"``).

        Returns
        -------
        config : dict
            Keras's 13 keys (with ints for the int parameters), the layer keys given, and ``dtype``
            when one was given.

        Raises
        ------
        ValueError
            Naming each setting Keras's layer cannot express: ``top_db=None`` (Keras raises a TypeError),
            ``top_db_scope="example"``, and any other extension away from its default.

        See Also
        --------
        get_config : The whole configuration, extensions included.

        Examples
        --------
        >>> import arraymel
        >>> sorted(arraymel.MelSpectrogram(fft_length=400.0).to_keras_config())[:3]
        ['fft_length', 'mag_exp', 'max_freq']
        >>> arraymel.MelSpectrogram(fft_length=400.0).to_keras_config()["fft_length"]
        400
        >>> arraymel.MelSpectrogram(top_db=None).to_keras_config()
        Traceback (most recent call last):
        ...
        ValueError: this configuration cannot be expressed as a Keras MelSpectrogram config: top_db=None ...
        """
        c = self.config
        refused = []
        if c.top_db is None:
            refused.append("top_db=None (Keras's layer raises a TypeError; use a number)")
        for k, default in EXTENSION_DEFAULTS.items():
            if k == "dtype" or (k == "filterbank" and c.filterbank in ("exact", "keras")) or _same(c.given[k], default):
                continue
            refused.append(f"{k}={c.given[k]!r} (Keras's layer has no such parameter; {k}={default!r} is its behaviour)")
        if refused:
            raise ValueError("this configuration cannot be expressed as a Keras MelSpectrogram config: "
                             + "; ".join(refused) + ".")
        cfg = c.keras_config()
        cfg.update(self._layer)
        if c.dtype is not None:
            cfg["dtype"] = self._keras_dtype()
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MelSpectrogram:
        """Rebuild from :meth:`arraymel.MelSpectrogram.get_config`'s dict or from a Keras ``MelSpectrogram`` config.

        Parameters
        ----------
        config : dict
            The parameters by name; Keras layer keys (``name``, ``trainable``, ...) are kept, and a
            Keras ``dtype`` (a policy name such as ``"float64"`` or a ``DTypePolicy`` dict) sets the
            compute and output dtype, as in Keras.

        Returns
        -------
        MelSpectrogram

        Raises
        ------
        ValueError
            A parameter out of its range, or a mixed or 16-bit dtype policy.
        TypeError
            An unknown key.

        Examples
        --------
        >>> import arraymel
        >>> keras_config = {"name": "mel", "num_mel_bins": 64, "dtype": "float64"}
        >>> mel = arraymel.MelSpectrogram.from_config(keras_config)
        >>> mel.config.num_mel_bins, mel.config.dtype, mel.get_config()["name"]
        (64, 'float64', 'mel')
        """
        return cls(**config)

    def fused_fallback_reason(self, dtype: str = "float32") -> str | None:
        """Why ``backend="cupy-fused"`` would compute this configuration with the cuFFT kernels instead.

        The fused kernel covers centred, reflect-padded frames of an even ``fft_length`` up to 4096 whose
        half has no prime factor above 5 (see docs/gpu.md); other configurations run the cuFFT kernels,
        with the same numbers. Needs no GPU and does not import CuPy.

        Parameters
        ----------
        dtype : {"float32", "float64"}, default "float32"
            The compute dtype (the fused kernel's shared memory depends on it).

        Returns
        -------
        str or None
            The reason, or None when the fused kernel computes this configuration.

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelSpectrogram(fft_length=400).fused_fallback_reason() is None
        True
        >>> arraymel.MelSpectrogram(fft_length=401).fused_fallback_reason()
        'fft_length=401 is odd (the fused kernel needs an even length)'
        """
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype={dtype!r} is not allowed: dtype must be 'float32' or 'float64'.")
        return _backend.fused_fallback_reason(self.config, dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for ``input_shape`` ``(..., samples)`` (or an int: ``samples``), with the true frame count.

        Parameters
        ----------
        input_shape : tuple or int
            ``(..., samples)``, where any size may be None (unknown); an int is ``(samples,)``.

        Returns
        -------
        shape : tuple
            ``(..., num_mel_bins, frames)``; ``frames`` is None when ``samples`` is.

        Raises
        ------
        ValueError
            An empty shape, or fewer than one sample.
        TypeError
            Neither an int nor a sequence.

        Notes
        -----
        Keras's layer returns ``(samples + stride + 1) // stride`` frames, one too many when
        ``samples + 1`` is a multiple of the stride.

        Examples
        --------
        >>> import arraymel
        >>> arraymel.MelSpectrogram().compute_output_shape((None, 16000))
        (None, 128, 32)
        >>> arraymel.MelSpectrogram(sequence_stride=160).compute_output_shape(16159)  # Keras says 102 frames
        (128, 101)
        """
        if isinstance(input_shape, numbers.Integral) and not isinstance(input_shape, bool):
            input_shape = (int(input_shape),)
        try:
            shape = tuple(input_shape)
        except TypeError:
            raise TypeError(f"input_shape={input_shape!r} is not allowed: input_shape must be an int (samples) "
                            "or a tuple (..., samples).") from None
        if len(shape) == 0:
            raise ValueError("input_shape=() is not allowed: the input must have shape (..., samples).")
        samples = shape[-1]
        if samples is not None and samples < 1:
            raise ValueError(f"input_shape={shape!r} is not allowed: samples must be >= 1.")
        frames = None if samples is None else self.config.n_frames(int(samples))
        return (*shape[:-1], self.config.num_mel_bins, frames)

    # ---------------------------------------------------------------- Python niceties
    def __eq__(self, other: object) -> bool:
        return isinstance(other, MelSpectrogram) and self.config.key == other.config.key and \
            self.config.dtype == other.config.dtype

    __hash__ = None  # mutable cache inside; equality is by configuration

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its cache of per-path states (thread-local buffers, device arrays): a copy in another
        process (a DataLoader worker under spawn) builds its own on first use."""
        return {"config": self.config, "_layer": self._layer, "workers": self.workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = StateCache(maxsize=8)

    def __repr__(self) -> str:
        c = self.config
        changed = {k: c.given[k] for k in (*KERAS_DEFAULTS, *EXTENSION_DEFAULTS)
                   if not _same(c.given[k], {**KERAS_DEFAULTS, **EXTENSION_DEFAULTS}[k])}
        parts = []
        for k, v in changed.items():
            parts.append(f"{k}=<array {tuple(v.shape)}>" if hasattr(v, "shape") else f"{k}={v!r}")
        if self.workers is not None:
            parts.append(f"workers={self.workers!r}")
        return f"MelSpectrogram({', '.join(parts)})"


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "shape") or hasattr(b, "shape"):
        return False
    return a == b and type(a) is type(b) or (a is None and b is None)
