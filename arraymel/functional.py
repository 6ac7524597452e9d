"""``mel_spectrogram`` and the dispatch shared with :class:`arraymel.MelSpectrogram`."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from arraymel import _backend, _dlpack, _threads
from arraymel._config import MelConfig
from arraymel.core._xp import namespace_name
from arraymel.core.inputs import as_array, compute_dtype_name, warn_if_channels_last


class StateCache:
    """A bounded LRU of per-path states (window, filterbank, plans), keyed by config, path, device and dtype."""

    def __init__(self, maxsize: int = 16):
        self.maxsize = maxsize
        self._d: OrderedDict = OrderedDict()

    def get(self, key: Any, build: Any) -> Any:
        try:
            self._d.move_to_end(key)
            return self._d[key]
        except KeyError:
            state = build()
            self._d[key] = state
            if len(self._d) > self.maxsize:
                self._d.popitem(last=False)
            return state

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        self._d.clear()


_CACHE = StateCache(maxsize=16)


def _state(cfg: MelConfig, plan: _backend.Plan, xp: Any, device: Any, dtype_name: str, cache: StateCache) -> Any:
    """The plan's path's state for (config, namespace, device, dtype, transform), from ``cache`` or built."""
    info = _backend.PATHS[plan.path]
    fft = plan.fft if plan.path == "cupy" else None
    namespace = None if plan.path != "generic" else namespace_name(xp)
    key = (cfg.key, plan.path, namespace, str(device) if plan.path == "generic" else device, dtype_name, fft)
    return cache.get(key, lambda: info.build(cfg, dtype_name, xp=xp, device=device, fft=fft))


def compute(
    x: Any,
    cfg: MelConfig,
    *,
    device: Any = None,
    output: str | None = None,
    backend: str = "auto",
    max_memory: int | None = None,
    workers: int | None = None,
    cache: StateCache | None = None,
) -> Any:
    """Run one mel spectrogram with an already validated config (the body of both public entry points)."""
    cache = _CACHE if cache is None else cache
    x, xp = as_array(x)
    if _dlpack.is_jax_tracer(x):  # inside jit: constants made now are tracers of this trace; never keep them
        cache = StateCache()
    plan = _backend.choose(x, device=device, backend=backend, output=output)
    if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer))
                                   or max_memory <= 0):
        raise ValueError(f"max_memory={max_memory!r} is not allowed: max_memory must be None (automatic) or an int > 0 (bytes).")
    n_workers = _threads.resolve(workers)
    dtype_name = compute_dtype_name(x, xp, cfg.dtype)
    warn_if_channels_last(tuple(x.shape), cfg.fft_length)
    cfg.check_samples(int(x.shape[-1]))

    if plan.input_kind in _dlpack.FRAMEWORKS and plan.path != "generic":
        if plan.path == "numpy":
            state = _state(cfg, plan, np, None, dtype_name, cache)
            return _dlpack.run_on_cpu(x, plan.input_kind, dtype_name,
                                      lambda a: state(a, max_memory=max_memory, workers=n_workers),
                                      plan.output)
        return _dlpack.run_on_cuda(
            x, plan.input_kind, plan.cuda_index, dtype_name,
            lambda a: _state(cfg, plan, None, plan.cuda_index, dtype_name, cache)(a, max_memory=max_memory),
            plan.output)
    if plan.path == "cupy":
        from arraymel._cupy import pipeline as cp_pipeline

        xc, dev = cp_pipeline.to_device(x, plan.cuda_index)
        out = _state(cfg, plan, None, dev, dtype_name, cache)(xc, max_memory=max_memory)
        if plan.output == "numpy" or (plan.output is None and plan.input_kind == "numpy"):
            return out.get()
        return out
    if plan.path == "numpy":
        xn = x.get() if plan.input_kind == "cupy" else x  # device="cpu" with CuPy input: asked-for copy
        out = _state(cfg, plan, np, None, dtype_name, cache)(xn, max_memory=max_memory, workers=n_workers)
        if plan.input_kind == "cupy" and plan.output is None:
            import cupy

            with x.device:
                return cupy.asarray(out)
        return out
    from array_api_compat import device as xp_device

    out = _state(cfg, plan, xp, xp_device(x), dtype_name, cache)(x, max_memory=max_memory)
    if plan.output == "numpy" and not isinstance(out, np.ndarray):
        return np.from_dlpack(out)
    return out


def mel_spectrogram(
    x: Any,
    *,
    fft_length: int = 2048,
    sequence_stride: int = 512,
    sequence_length: int | None = None,
    window: Any = "hann",
    sampling_rate: float = 16000,
    num_mel_bins: int = 128,
    min_freq: float = 20.0,
    max_freq: float | None = None,
    power_to_db: bool = True,
    top_db: float | None = 80.0,
    mag_exp: float = 2.0,
    min_power: float = 1e-10,
    ref_power: float = 1.0,
    top_db_scope: str = "batch",
    dtype: Any = None,
    filterbank: str = "exact",
    device: Any = None,
    output: str | None = None,
    backend: str = "auto",
    max_memory: int | None = None,
    workers: int | None = None,
) -> Any:
    """Mel spectrogram of a batch of audio, exactly as Keras 3's ``MelSpectrogram`` layer computes it.

    Parameters
    ----------
    x : array of shape ``(..., samples)``
        Real audio (float or integer; integers are cast, not rescaled, as in Keras). NumPy, CuPy
        or any Array API array; lists become NumPy arrays.
    fft_length : int, default 2048
        FFT size; frames are ``fft_length`` samples long.
    sequence_stride : int, default 512
        Hop between successive frames, in samples.
    sequence_length : int, optional
        Window length (``<= fft_length``), centred in the frame; defaults to ``fft_length``.
    window : {"hann", "hamming"}, array or None, default "hann"
        Periodic window by name, an array of shape ``(sequence_length,)``, or None (no window).
    sampling_rate : float, default 16000
        Sample rate of ``x`` in Hz.
    num_mel_bins : int, default 128
        Number of mel bands.
    min_freq, max_freq : float, default 20.0 and None
        Band edges in Hz; a falsy ``max_freq`` means ``int(sampling_rate / 2)``.
    power_to_db : bool, default True
        Convert to decibels.
    top_db : float or None, default 80.0
        Values more than ``top_db`` below the maximum are raised to it; None clips nothing.
    mag_exp : float, default 2.0
        Exponent of the magnitude: 1 for magnitude, 2 for power.
    min_power : float, default 1e-10
        Floor applied to the mel power and to ``ref_power`` before the logarithm.
    ref_power : float, default 1.0
        Reference power: ``10 * log10(S / |ref_power|)``.
    top_db_scope : {"batch", "example"}, default "batch"
        The maximum for ``top_db`` is over the whole input (Keras) or per spectrogram (a result
        then does not depend on what it was batched with).
    dtype : {None, "float32", "float64"}, default None
        Compute and output dtype; None takes the input's float dtype (float32 for integer and
        half-precision input).
    filterbank : {"exact", "keras", "librosa", "librosa-nonorm", "librosa-htk", "librosa-htk-nonorm", "kaldi"}, default "exact"
        ``"exact"``: Keras's HTK-style filterbank evaluated in float64. ``"keras"``: Keras's own
        float32 evaluation of it, operation for operation, which moves band edges (up to 1.5 dB on
        rare configurations, see docs/semantics.md); use it to reproduce Keras's numbers, e.g. for
        a model trained on its layer. The other five are the presets' filterbanks: librosa's
        triangles linear in Hz on the Slaney (``"librosa"``, ``"librosa-nonorm"``) or HTK
        (``"librosa-htk"``, ``"librosa-htk-nonorm"``) mel scale, with or without Slaney's area
        norm, and Kaldi's mel banks (``"kaldi"``).
    device : {None, "cpu", "cuda", "cuda:N"}, default None
        Where to compute; None computes where ``x`` lives. ``device="cuda"`` computes NumPy input
        on a GPU.
    output : {None, "numpy", "device"}, default None
        None returns the input's namespace (NumPy in, NumPy out, even when computed on a GPU);
        ``"numpy"`` always returns NumPy (a copy from the GPU, which waits for it); ``"device"``
        returns the array where it was computed (CuPy for ``device="cuda"``).
    backend : {"auto", "generic", "numpy", "cupy", "cupy-fused"}, default "auto"
        ``"auto"`` picks the tuned NumPy path for NumPy input, the CuPy path for CuPy input, and
        the generic Array API path otherwise; the others force one. ``"cupy-fused"`` is the CuPy
        path with one fused kernel instead of cuFFT (opt-in, not yet measured on a GPU; sizes it
        does not cover use cuFFT: see docs/gpu.md).
    max_memory : int, optional, default None
        Work-area budget in bytes; the input is processed in blocks of frames (and, on a GPU,
        of examples) so that temporary memory stays under it. The default adapts to the path.
    workers : int, optional, default None
        CPU threads of the NumPy path (as ``scipy.fft``'s ``workers``): ``1`` computes on the
        calling thread, ``-1`` on every CPU available; None takes :func:`arraymel.get_workers`
        (set with :func:`arraymel.set_workers` or ``ARRAYMEL_NUM_THREADS``; default all CPUs, one
        in a worker process). A small call (under about a million frame samples, e.g. one 10 s
        clip) computes on the calling thread alone. No BLAS or OpenMP setting is changed. Other
        paths ignore it.

    Returns
    -------
    S : array of shape ``(..., num_mel_bins, frames)``
        dB (or power, with ``power_to_db=False``), in the input's namespace and on its device
        unless ``output`` says otherwise, with
        ``frames = 1 + (samples + 2 * (fft_length // 2) - fft_length) // sequence_stride``.

    Raises
    ------
    ValueError
        A parameter out of its range (``sequence_stride=0``, ``min_freq >= max_freq``,
        ``sequence_length > fft_length``, ...), an input with no samples or of rank 0, or an unknown
        ``device``, ``output`` or ``backend``; the message names the parameter, the value and what
        is allowed.
    TypeError
        A parameter of the wrong type (``window=("kaiser", 8.0)``, ``power_to_db=2``), or complex
        or boolean input.

    Warns
    -----
    UserWarning
        Once per process, when a mel band receives no FFT bin (it is all zero), or when the input
        looks like ``(samples, channels)`` (the last axis is always the samples).

    See Also
    --------
    MelSpectrogram : The same computation with its parameters validated once, and Keras's config interface.
    power_to_db : The dB step alone.
    stft : The complex STFT the spectrogram is made from.
    mel_filterbank : The matrix that maps FFT bins to mel bands.

    Notes
    -----
    The pipeline (docs/semantics.md): the signal is reflect-padded by ``fft_length // 2`` on both
    ends, cut into frames of ``fft_length`` samples every ``sequence_stride``, windowed, transformed
    with an unnormalised one-sided DFT, raised to ``|X| ** mag_exp``, multiplied by the filterbank,
    and converted to dB, ``10 * log10(max(S, min_power)) - 10 * log10(max(|ref_power|, min_power))``,
    after which values more than ``top_db`` below the maximum are raised to it. Float32 input is
    computed in float32 and is within 1e-3 dB of a float64 evaluation for every value within 60 dB
    of its spectrogram's maximum.

    Examples
    --------
    >>> import numpy as np, arraymel
    >>> t = np.arange(16000) / 16000
    >>> x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    >>> S = arraymel.mel_spectrogram(x, num_mel_bins=64)
    >>> S.shape, S.dtype, float(S.max() - S.min()) <= 80.0
    ((64, 32), dtype('float32'), True)
    """
    cfg = MelConfig.create(
        fft_length=fft_length, sequence_stride=sequence_stride, sequence_length=sequence_length,
        window=window, sampling_rate=sampling_rate, num_mel_bins=num_mel_bins, min_freq=min_freq,
        max_freq=max_freq, power_to_db=power_to_db, top_db=top_db, mag_exp=mag_exp,
        min_power=min_power, ref_power=ref_power, top_db_scope=top_db_scope, dtype=dtype, filterbank=filterbank,
    )
    return compute(x, cfg, device=device, output=output, backend=backend, max_memory=max_memory, workers=workers)
