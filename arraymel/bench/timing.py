"""Timing and memory measurement that does not lie about asynchronous devices.

- CPU: ``time.perf_counter`` around each call (every CPU peer is synchronous).
- CuPy: a pair of CUDA events recorded on the current stream around each call, then
  ``end.synchronize()`` and ``cupy.cuda.get_elapsed_time`` (what ``cupyx.profiler.benchmark``
  does for its GPU times). Host launch gaps inside the call are counted, because the GPU
  waits for them; nothing that happened before the start event is.
- torch: ``torch.cuda.Event(enable_timing=True)`` on torch's current stream, after a
  ``torch.cuda.synchronize()``.

The libraries compared are timed interleaved, one call each per round, in one process
(:func:`measure_interleaved`): that is how a notebook or a data pipeline runs them, and what one
library leaves behind (BLAS threads still spinning, caches filled with its data) weighs on the
next. Warm-up calls come first and are not counted (plans, caches, JIT, lazy imports). With
``repeat=None`` the number of rounds adapts: enough for the slowest library to fill ``budget_s``
seconds, at least ``min_repeat`` and at most ``max_repeat``. Statistics: median and
interquartile range.

Peak memory:
- CPU: the peak of the bytes traced by :mod:`tracemalloc` during one extra, untimed call.
  NumPy reports every array buffer to tracemalloc, so this is the working set of NumPy
  pipelines (arraymel, librosa, Keras's NumPy backend), the output included, the input not.
  It misses memory a C library allocates for itself (FFT scratch, BLAS buffers, torch's
  allocator): such peers report ``None``, never a guess.
- CuPy: the growth of CuPy's default memory pool over one call after ``free_all_blocks()``:
  the pool grows only when no free block fits, so this is the high-water mark of device
  memory requested through CuPy (cuFFT work areas included), rounded up to the pool's blocks.
- torch: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TIMERS = ("cpu", "cupy", "torch")


@dataclass
class Timing:
    """The times of the counted calls (seconds) and how they were taken."""

    times: list[float]
    timer: str
    warmup: int
    first_output: Any = field(default=None, repr=False)

    @property
    def median(self) -> float:
        return float(statistics.median(self.times))

    @property
    def quartiles(self) -> tuple[float, float]:
        return quartiles(self.times)

    @property
    def iqr(self) -> float:
        q1, q3 = self.quartiles
        return q3 - q1


def quartiles(times: list[float]) -> tuple[float, float]:
    """First and third quartiles (linear interpolation, as ``numpy.percentile``'s default)."""
    xs = sorted(times)
    if not xs:
        return math.nan, math.nan

    def pct(p: float) -> float:
        pos = (len(xs) - 1) * p
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return pct(0.25), pct(0.75)


# ---------------------------------------------------------------------- one timed call per timer
def _cpu_call(fn: Callable[[Any], Any], x: Any, _device: int | None) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(x)
    return time.perf_counter() - t0, out


def _cupy_call(fn: Callable[[Any], Any], x: Any, device: int | None) -> tuple[float, Any]:
    import cupy  # noqa: PLC0415

    with cupy.cuda.Device(device or 0):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        out = fn(x)
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3, out


def _torch_call(fn: Callable[[Any], Any], x: Any, device: int | None) -> tuple[float, Any]:
    import torch  # noqa: PLC0415

    with torch.cuda.device(device or 0):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, out


_CALLS = {"cpu": _cpu_call, "cupy": _cupy_call, "torch": _torch_call}


def measure(fn: Callable[[Any], Any], x: Any, *, timer: str = "cpu", device: int | None = None,
            repeat: int | None = None, warmup: int = 1, budget_s: float = 1.0,
            min_repeat: int = 5, max_repeat: int = 50) -> Timing:
    """Time ``fn(x)`` alone (a :func:`measure_interleaved` of one callable; for design measurements of one library)."""
    return measure_interleaved({"fn": (fn, x, timer, device)}, repeat=repeat, warmup=warmup, budget_s=budget_s,
                               min_repeat=min_repeat, max_repeat=max_repeat)["fn"]


def measure_interleaved(calls: dict[str, tuple[Callable[[Any], Any], Any, str, int | None]], *,
                        repeat: int | None = None, warmup: int = 1, budget_s: float = 1.0,
                        min_repeat: int = 11, max_repeat: int = 50,
                        on_error: Callable[[str, BaseException], None] | None = None) -> dict[str, Timing]:
    """Time several callables round-robin, as a process that uses them all runs them.

    ``calls`` maps a name to ``(fn, x, timer, device)``. Each is warmed up alone first; then
    every round calls each once, one after the other, the round's first one rotating, so that
    each library runs after every other as often (a library's leftovers, such as BLAS threads
    still spinning, weigh on whichever runs next). ``repeat=None``: enough rounds to fill
    ``budget_s`` seconds per library, at least ``min_repeat``, at most ``max_repeat``.
    A callable that raises is reported through ``on_error`` (or raised when None) and dropped.
    """
    def failed(name: str, e: BaseException) -> None:
        if on_error is None:
            raise e
        on_error(name, e)
        live.pop(name, None)

    live = dict(calls)
    for _, _, timer, _ in calls.values():
        if timer not in _CALLS:
            raise ValueError(f"timer={timer!r}: one of {TIMERS}")
    firsts: dict[str, Any] = {}
    slowest = 0.0
    for name, (fn, x, timer, device) in list(live.items()):
        try:
            for i in range(max(1, int(warmup))):
                t, out = _CALLS[timer](fn, x, device)
                if i == 0:
                    firsts[name] = out
                del out
            slowest = max(slowest, t)
        except Exception as e:
            failed(name, e)
    if repeat is None:
        n = int(budget_s / max(slowest, 1e-9))
        n = max(int(min_repeat), min(int(max_repeat), n))
    else:
        n = max(1, int(repeat))
    times: dict[str, list[float]] = {name: [] for name in live}
    names = list(live)
    for r in range(n):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            if name not in live:
                continue
            fn, x, timer, device = live[name]
            try:
                t, out = _CALLS[timer](fn, x, device)
            except Exception as e:
                failed(name, e)
                continue
            times[name].append(t)
            del out
    return {name: Timing(times=times[name], timer=live[name][2], warmup=max(1, int(warmup)),
                         first_output=firsts.get(name))
            for name in names if name in live}


# ---------------------------------------------------------------------- peak memory
MEMORY_METHODS = {
    "tracemalloc": "peak bytes traced by tracemalloc during one call (NumPy buffers; output included, input not)",
    "cupy-pool": "growth of CuPy's memory pool over one call after free_all_blocks() (device bytes, pool-rounded)",
    "torch-cuda": "torch.cuda.max_memory_allocated over one call after reset_peak_memory_stats()",
}


def peak_memory(fn: Callable[[Any], Any], x: Any, *, method: str | None, device: int | None = None) -> int | None:
    """Peak memory of one call of ``fn(x)`` by ``method`` (see the module docstring); None when not measurable."""
    if method is None:
        return None
    if method == "tracemalloc":
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            out = fn(x)
            _, peak = tracemalloc.get_traced_memory()
            del out
            return max(0, int(peak - base))
        finally:
            if not was_tracing:
                tracemalloc.stop()
    if method == "cupy-pool":
        import cupy  # noqa: PLC0415

        with cupy.cuda.Device(device or 0):
            pool = cupy.get_default_memory_pool()
            cupy.cuda.Device().synchronize()
            pool.free_all_blocks()
            base = pool.total_bytes()
            out = fn(x)
            cupy.cuda.Device().synchronize()
            grown = pool.total_bytes() - base
            del out
            return max(0, int(grown))
    if method == "torch-cuda":
        import torch  # noqa: PLC0415

        with torch.cuda.device(device or 0):
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            out = fn(x)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            del out
            return max(0, int(peak - base))
    raise ValueError(f"memory method {method!r}: one of {sorted(MEMORY_METHODS)}")
