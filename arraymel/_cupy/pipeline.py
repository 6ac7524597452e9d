"""The CuPy path: :func:`to_device` and :class:`CupyState` (imports CuPy; only ever imported for
CuPy input or a CUDA ``device=``).

Work happens on the input's device, in the current stream, with no host synchronisation and
no copy to the host: the output is a new CuPy array on the same device. Per call: one output
allocation and, from CuPy's memory pool, the chunk work area (returned to the pool at the end,
stream-ordered, so a repeated call reuses the same blocks); the kernels are compiled once per
device and dtype and the cuFFT plans are cached (:mod:`arraymel._cupy.plans`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import cupy
    from cupy.cuda import cufft as _cufft
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "arraymel's GPU path needs CuPy: pip install 'arraymel[cuda12]' or 'arraymel[cuda13]' "
        "(the CuPy wheel matching your CUDA driver)."
    ) from e

from arraymel._config import MelConfig
from arraymel._cupy.chunking import default_budget, is_oom_error
from arraymel._cupy.engine import Constants, Engine, FftLayout, consts_host
from arraymel._cupy.fused import FusedEngine, fallback_reason, twiddles_host
from arraymel._cupy.fused_kernels import FUSED_KERNEL_CACHE, FUSED_KERNELS
from arraymel._cupy.kernels import KERNELS, Ptr
from arraymel._cupy.params import mel_params
from arraymel._cupy.plans import PLANS, make_cufft_plan, plan_key


def _device_count() -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise RuntimeError(f"device='cuda' needs a CUDA device, but CuPy finds none ({e}).") from e


def _check_index(index: int) -> None:
    count = _device_count()
    if not 0 <= index < count:
        raise ValueError(f"device='cuda:{index}' is not allowed: CuPy sees {count} CUDA device(s) (cuda:0 .. cuda:{count - 1}).")


def to_device(x: Any, cuda_index: int | None) -> tuple[Any, int]:
    """``x`` (NumPy or CuPy) as a CuPy array on the requested device (current device if None), and its id.

    CuPy input already on that device is returned as is (no copy). NumPy input is copied to the
    device (what ``device="cuda"`` asks for); CuPy input on another device is copied peer to peer.
    """
    if isinstance(x, cupy.ndarray):
        dev = int(x.device.id)
        if cuda_index is None or int(cuda_index) == dev:
            return x, dev
        _check_index(int(cuda_index))
        with cupy.cuda.Device(int(cuda_index)):
            return cupy.array(x, copy=True), int(cuda_index)
    if cuda_index is None:
        _device_count()
        idx = int(cupy.cuda.runtime.getDevice())
    else:
        idx = int(cuda_index)
        _check_index(idx)
    with cupy.cuda.Device(idx):
        return cupy.asarray(np.asarray(x)), idx


class CupyOps:
    """The engine's ``ops`` on one CUDA device: CuPy buffers, NVRTC kernels, cached cuFFT plans."""

    def __init__(self, device_id: int):
        self.device_id = device_id

    def empty(self, shape: int | tuple, dtype_name: str) -> Any:
        return cupy.empty(shape, dtype=dtype_name)

    def zeros(self, n: int, dtype_name: str) -> Any:
        return cupy.zeros(int(n), dtype=dtype_name)

    def launch(self, kernel: str, dtype_name: str, in_dtype_name: str | None, grid: tuple, block: tuple, smem: int,
               args: tuple) -> None:
        cache = FUSED_KERNEL_CACHE if kernel in FUSED_KERNELS else KERNELS
        fn = cache.function(self.device_id, kernel, dtype_name, in_dtype_name)
        # a Ptr becomes its device address, passed by value (8 bytes, as the pointer parameter)
        raw = tuple(np.uint64(a.array.data.ptr + a.offset * a.array.itemsize) if type(a) is Ptr else a for a in args)
        fn(grid, block, raw, shared_mem=smem)

    def rfft(self, layout: FftLayout, src: Any, dst: Any) -> None:
        if layout.n == 1:  # a 1-point DFT is the sample itself (cuFFT plans start at 2 points)
            m = layout.batch
            dst[0:2 * m:2] = src[0:(m - 1) * layout.idist + 1:layout.idist]
            dst[1:2 * m:2] = 0
            return
        stream = cupy.cuda.get_current_stream()
        key = plan_key(self.device_id, layout, int(stream.ptr))
        plan = PLANS.get(key, lambda _k: make_cufft_plan(layout), stream)
        plan.fft(src, dst, _cufft.CUFFT_FORWARD)


def _is_oom(e: BaseException) -> bool:
    return is_oom_error(e, (cupy.cuda.memory.OutOfMemoryError,), _cufft.CuFFTError,
                        cupy.cuda.runtime.CUDARuntimeError)


@dataclass
class CallStats:
    """What the last call did (for tests and benchmarks)."""

    path: str
    rows: int
    frames: int
    chunks: int
    budget: int
    work_bytes: int
    retries: int
    budgets: list


class CupyState:
    """Window taps, band table, compiled kernels and launch shapes for one (config, dtype, device).

    ``state(x)`` computes ``x`` ``(..., samples)`` (CuPy, on this device, any real dtype) into a
    new ``(..., num_mel_bins, frames)`` array of ``dtype_name`` on the same device, in the current
    stream. ``max_memory`` bounds the work area (bytes); by default twice the device's L2 cache, at
    most a quarter of the free memory.

    ``fft="fused"`` asks for the fused kernel (:mod:`arraymel._cupy.fused`: no spectrum in memory, no
    work area, so ``max_memory`` is not used); a size it does not cover runs cuFFT, and ``fft_path``
    says which one runs ("fused" or "cufft"), ``fallback_reason`` why not fused.
    """

    def __init__(self, cfg: MelConfig, dtype_name: str, device_id: int, fft: str = "cufft"):
        if fft not in ("cufft", "fused"):
            raise ValueError(f"fft={fft!r} is not allowed: fft must be 'cufft' or 'fused'.")
        self.cfg = cfg
        self.dtype_name = dtype_name
        self.device_id = int(device_id)
        self.params = mel_params(cfg, dtype_name)
        if dtype_name == "float32" and cfg.power_to_db and cfg.min_power < float(np.finfo(np.float32).tiny):
            warnings.warn(
                f"min_power={cfg.min_power!r} is below float32's smallest normal number (1.18e-38): CUDA kernels "
                "flush such values to zero (as CuPy's own kernels do), so the floor is not honoured; use dtype='float64'.",
                UserWarning, stacklevel=4,
            )
        self.last_call: CallStats | None = None
        self._default_budget: int | None = None
        with cupy.cuda.Device(self.device_id):
            host = consts_host(self.params)
            self.consts = Constants(
                bands=cupy.asarray(host["bands"]), weights=cupy.asarray(host["weights"]),
                window=cupy.asarray(host["window"]), has_window=host["has_window"],
            )
            attrs = cupy.cuda.Device(self.device_id).attributes
            self.l2_bytes = int(attrs.get("L2CacheSize", 0))
            self.multiprocessors = int(attrs.get("MultiProcessorCount", 0))
            # the constants were copied on this stream; a call on another stream waits for them on the
            # device (an event), never on the host
            self._ready = cupy.cuda.Event(block=False, disable_timing=True)
            self._ready.record()
        self.ops = CupyOps(self.device_id)
        self.fallback_reason = fallback_reason(cfg, dtype_name) if fft == "fused" else None
        self.fft_path = "fused" if fft == "fused" and self.fallback_reason is None else "cufft"
        if self.fft_path == "fused":
            with cupy.cuda.Device(self.device_id):
                twiddles = cupy.asarray(twiddles_host(self.params))
                self._ready.record()
            self.engine: Engine = FusedEngine(self.params, self.ops, self.consts, twiddles,
                                              min_blocks=2 * self.multiprocessors)
        else:
            self.engine = Engine(self.params, self.ops, self.consts, min_blocks=2 * self.multiprocessors)

    def default_budget(self) -> int:
        """The automatic work area (see :func:`arraymel._cupy.chunking.default_budget`), read from the free
        device memory once and kept, so that repeated calls chunk alike (and reuse their plans); it is
        read again after an out-of-memory error."""
        if self._default_budget is None:
            free, _total = cupy.cuda.runtime.memGetInfo()
            pool = cupy.get_default_memory_pool()
            self._default_budget = default_budget(int(free), int(pool.free_bytes()), self.l2_bytes)
        return self._default_budget

    def _free_caches(self) -> None:
        PLANS.clear(self.device_id)
        cupy.get_default_memory_pool().free_all_blocks()
        self._default_budget = None

    def __call__(self, x: Any, *, max_memory: int | None = None) -> Any:
        if not isinstance(x, cupy.ndarray):
            raise TypeError(f"CupyState needs a CuPy array, got {type(x).__module__}.{type(x).__name__}")
        if int(x.device.id) != self.device_id:
            raise ValueError(f"x is on cuda:{x.device.id}, this state computes on cuda:{self.device_id}")
        with cupy.cuda.Device(self.device_id):
            cupy.cuda.get_current_stream().wait_event(self._ready)
            if self.fft_path == "fused":  # no work area: nothing to budget (nor to read from the device)
                budget = 0
            else:
                budget = int(max_memory) if max_memory is not None else self.default_budget()
            out, plan, log = self.engine.compute(x, budget, is_oom=_is_oom,
                                                 on_oom=self._free_caches)
            if plan is not None:
                self.last_call = CallStats(path=plan.path, rows=plan.rows, frames=plan.frames, chunks=plan.n_chunks,
                                           budget=log.budgets[-1], work_bytes=plan.work_bytes, retries=log.retries,
                                           budgets=list(log.budgets))
            return out
