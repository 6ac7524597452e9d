"""A bounded LRU of cuFFT plans and their work areas.

A plan is keyed by (device, dtype, layout: n, input distance, batch, stream): the layout is the
part of the config and the input shape that cuFFT sees. The stream is part of the key because a
plan's work area must not be used by two streams at once; the entry keeps a reference to its
stream, so that the stream's handle cannot be reused while the plan is cached. A repeated call
with the same shape finds its plans here: no new plan and no new work area (cuFFT's work area is
allocated through CuPy's memory pool when the plan is made and held by the plan).

Evicting a plan destroys it; cuFFT frees its internal memory, and its work area goes back to the
memory pool, stream-ordered. ``maxsize`` bounds the count; ``max_work_bytes`` the work areas held.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Default bounds of the process-wide cache.
DEFAULT_MAXSIZE = 32
DEFAULT_MAX_WORK_BYTES = 2 * 2**30


@dataclass
class CachedPlan:
    plan: Any
    work_bytes: int
    stream: Any  # kept alive with the plan


class PlanCache:
    """LRU of plans; ``factory(key) -> (plan, work_bytes)`` builds a missing one.

    ``created``, ``hits`` and ``evicted`` count what happened (the tests read them).
    """

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, max_work_bytes: int = DEFAULT_MAX_WORK_BYTES):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.max_work_bytes = max_work_bytes
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.RLock()
        self.created = 0
        self.hits = 0
        self.evicted = 0

    def get(self, key: tuple, factory: Callable[[tuple], tuple[Any, int]], stream: Any = None) -> Any:
        with self._lock:
            entry = self._d.get(key)
            if entry is not None:
                self._d.move_to_end(key)
                self.hits += 1
                return entry.plan
            plan, work = factory(key)
            self.created += 1
            self._d[key] = CachedPlan(plan, int(work), stream)
            self._shrink(keep=key)
            return plan

    def _shrink(self, keep: tuple) -> None:
        while len(self._d) > self.maxsize or (self.work_bytes > self.max_work_bytes and len(self._d) > 1):
            oldest = next(iter(self._d))
            if oldest == keep:
                break
            del self._d[oldest]
            self.evicted += 1

    @property
    def work_bytes(self) -> int:
        return sum(e.work_bytes for e in self._d.values())

    def clear(self, device_id: int | None = None) -> int:
        """Drop every plan (or those of one device); returns how many."""
        with self._lock:
            keys = [k for k in self._d if device_id is None or k[0] == device_id]
            for k in keys:
                del self._d[k]
            return len(keys)

    def __len__(self) -> int:
        return len(self._d)

    def keys(self) -> list:
        return list(self._d)


def plan_key(device_id: int, layout: Any, stream_ptr: int) -> tuple:
    """The cache key of an R2C plan: device first (``clear(device_id)`` relies on it)."""
    return (device_id, layout.dtype_name, layout.n, layout.idist, layout.batch, layout.odist, stream_ptr)


def make_cufft_plan(layout: Any) -> tuple[Any, int]:
    """A CuPy ``PlanNd`` for a batched 1-D R2C (float32) or D2Z (float64) transform with ``layout``'s
    advanced data layout (input distance ``idist``, possibly less than ``n``: overlapping frames read
    in place; output distance ``n // 2 + 1``). Made on the current device; returns ``(plan, work bytes)``."""
    from cupy.cuda import cufft

    fft_type = cufft.CUFFT_R2C if layout.dtype_name == "float32" else cufft.CUFFT_D2Z
    nb = layout.n // 2 + 1
    plan = cufft.PlanNd((layout.n,), [layout.n], 1, layout.idist, [nb], 1, layout.odist, fft_type,
                        layout.batch, "C", 0, nb)
    work = getattr(getattr(plan, "work_area", None), "mem", None)
    return plan, int(getattr(work, "size", 0) or 0)


#: The process-wide plan cache of the GPU path.
PLANS = PlanCache()
