"""The helper threads a call computes on, shared by every call of the process.

``workers=1`` computes on the calling thread. ``workers=n > 1`` computes on the calling thread and
``n - 1`` threads of one pool; calls from different threads share the pool's threads (a pool thread
serves one call at a time, in the order they came), so concurrent calls add at most their own
calling threads. Nothing here changes any other library's threads: the products inside a block are
too small for BLAS to start threads of its own (docs/threads.md), so no BLAS or OpenMP limit is set.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from arraymel._threads import binding


class _Helper(threading.Thread):
    """One pool thread: runs the tasks put in its own inbox, one at a time, for the life of the process."""

    def __init__(self, index: int):
        super().__init__(name=f"arraymel-{index}", daemon=True)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        while True:
            fn, future = self.inbox.get()
            try:
                future.set_result(fn())
            except BaseException as e:  # handed to the caller, which raises it
                future.set_exception(e)


_HELPERS: list[_Helper] = []
_LOCK = threading.Lock()
_IN_FLIGHT = 0  # parallel calls running now: only a call alone may bind (two could bind to the same CPUs)


def _helpers(n: int) -> list[_Helper]:
    """The first ``n`` pool threads, started on first need and kept (idle ones wait on their inbox)."""
    with _LOCK:
        while len(_HELPERS) < n:
            _HELPERS.append(_Helper(len(_HELPERS)))
        return _HELPERS[:n]


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker, multiprocessing) has none of the parent's threads: helpers inherited
    from it would take work and never run it, and a lock held by another parent thread would never be released."""
    global _HELPERS, _LOCK, _IN_FLIGHT
    _HELPERS, _LOCK, _IN_FLIGHT = [], threading.Lock(), 0


def _enter() -> bool:
    """Count a parallel call in; True when no other was running."""
    global _IN_FLIGHT
    with _LOCK:
        _IN_FLIGHT += 1
        return _IN_FLIGHT == 1


def _leave() -> None:
    global _IN_FLIGHT
    with _LOCK:
        _IN_FLIGHT -= 1


def run_parallel(work: Callable[[Any], None], items: Iterable[Any], workers: int) -> None:
    """``work(item)`` for every item on exactly ``min(workers, len(items))`` threads.

    The calling thread is one of them: ``workers == 1`` (or a single item) runs there alone;
    otherwise ``workers - 1`` pool threads join it. With binding on (:mod:`~arraymel._threads.binding`),
    a call alone on every CPU runs instead on ``workers`` pool threads bound one per CPU while the
    calling thread waits. Each thread starts with one item, then takes the next from a shared queue
    until none is left, so uneven items balance out. The first exception is raised here once every
    thread has stopped.
    """
    items = list(items)
    n = min(workers, len(items))
    if n <= 1:
        for item in items:
            work(item)
        return
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items[n:]:
        todo.put(item)
    failed = threading.Event()

    def drain(item: Any, cpu: int | None) -> None:
        with binding.bound_to(cpu):
            while not failed.is_set():
                try:
                    work(item)
                except BaseException:
                    failed.set()
                    raise
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return

    alone = _enter()
    try:
        cpus = binding.cpus_to_bind(n) if alone else None
        # Bound, the call runs on n pool threads while the calling thread waits: the caller's own mask is never
        # touched (a thread or child started from a bound thread would keep its single CPU for good).
        helpers = _helpers(n - 1 if cpus is None else n)
        first = items[1:n] if cpus is None else items[:n]
        futures = []
        for i, (helper, item) in enumerate(zip(helpers, first)):
            futures.append(Future())
            helper.inbox.put((functools.partial(drain, item, None if cpus is None else cpus[i]), futures[-1]))
        error = None
        if cpus is None:
            try:
                drain(items[0], None)
            except BaseException as e:
                error = e
        for f in futures:  # wait for every thread before raising
            if f.exception() is not None and error is None:
                error = f.exception()
    finally:
        _leave()
    if error is not None:
        raise error


os.register_at_fork(after_in_child=_forget_in_child)
