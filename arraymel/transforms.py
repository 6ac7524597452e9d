"""``MelSpectrogram``: a validated, reusable mel configuration with Keras's layer interface."""

from __future__ import annotations

from typing import Any

from arraymel._config import EXTENSION_DEFAULTS, KERAS_DEFAULTS, MelConfig
from arraymel._numpy.workers import thread_count
from arraymel.functional import StateCache, compute


class MelSpectrogram:
    """A mel spectrogram transform with the parameters, defaults and behaviour of Keras 3's layer.

    Parameters are those of :func:`arraymel.mel_spectrogram` (keyword-only), validated once
    here. Calling the object computes the spectrogram; its window, filterbank and any fast-path
    plans are built once per (namespace, device, dtype) and reused.

    Parameters
    ----------
    fft_length, sequence_stride, sequence_length, window, sampling_rate, num_mel_bins, min_freq,
    max_freq, power_to_db, top_db, mag_exp, min_power, ref_power :
        Keras's parameters, with Keras's defaults.
    top_db_scope : {"batch", "example"}, default "batch"
    dtype : {None, "float32", "float64"}
    workers : int, optional
        CPU threads of the NumPy path for every call (see :func:`arraymel.mel_spectrogram`);
        None (default) takes :func:`arraymel.get_workers` at each call. Kept in
        :meth:`get_config` only when set.
    **kwargs :
        Keras layer arguments without meaning here (``name``, ``trainable``, ...) are accepted
        and kept in :meth:`get_config`, so that a Keras config dict loads.

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
        if isinstance(kwargs.get("dtype"), dict):  # a Keras DTypePolicy config
            policy = kwargs.pop("dtype")
            layer["dtype"] = policy
        self.workers = kwargs.pop("workers", None)
        if self.workers is not None:
            thread_count(self.workers)  # checked now; -1 stays -1 (resolved per call, on the machine that runs it)
        self.config = MelConfig.create(**kwargs)
        self._layer = layer
        self._cache = StateCache(maxsize=8)

    # ---------------------------------------------------------------- Keras interface
    def __call__(self, x: Any, *, device: Any = None, output: str | None = None, backend: str = "auto",
                 max_memory: int | None = None, workers: int | None = None) -> Any:
        """Compute the mel spectrogram of ``x`` (``(..., samples)`` -> ``(..., num_mel_bins, frames)``)."""
        return compute(x, self.config, device=device, output=output, backend=backend, max_memory=max_memory,
                       workers=self.workers if workers is None else workers, cache=self._cache)

    def get_config(self) -> dict[str, Any]:
        """The parameters as given: Keras's 13 keys, ``top_db_scope``, ``dtype`` and layer keys."""
        cfg = self.config.keras_config()
        cfg["top_db_scope"] = self.config.top_db_scope
        cfg["dtype"] = self.config.dtype
        if self.workers is not None:
            cfg["workers"] = self.workers
        cfg.update(self._layer)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MelSpectrogram":
        """Rebuild from :meth:`get_config`'s dict or from a Keras ``MelSpectrogram`` config."""
        return cls(**config)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for ``input_shape`` ``(..., samples)``, with the true frame count.

        (Keras's layer returns ``(samples + stride + 1) // stride`` frames, one too many when
        ``samples + 1`` is a multiple of the stride.) Unknown (None) sizes stay None.
        """
        shape = tuple(input_shape)
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

    def __repr__(self) -> str:
        c = self.config
        changed = {k: c.given[k] for k in (*KERAS_DEFAULTS, *EXTENSION_DEFAULTS)
                   if not _same(c.given[k], {**KERAS_DEFAULTS, **EXTENSION_DEFAULTS}[k])}
        parts = []
        for k, v in changed.items():
            parts.append(f"{k}=<array {tuple(v.shape)}>" if hasattr(v, "shape") else f"{k}={v!r}")
        return f"MelSpectrogram({', '.join(parts)})"


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "shape") or hasattr(b, "shape"):
        return False
    return a == b and type(a) is type(b) or (a is None and b is None)
