"""How many threads the NumPy path computes on, and keeping every other thread pool out of its way.

The convention is ``scipy.fft``'s: a ``workers`` argument per call, where ``None`` takes the
scoped default, a positive int is a thread count and a negative one counts back from the CPUs
available (``-1``: all of them); :func:`set_workers` is a context manager that sets the default
for the calling thread; :func:`get_workers` reads it. Outside any :func:`set_workers` block the
default is ``ARRAYMEL_NUM_THREADS`` when set, else every CPU in this process's affinity mask.

``workers=1`` computes on the calling thread. ``workers=n > 1`` computes on exactly ``n`` threads
(fewer when there are fewer blocks; one for a small call: see ``arraymel._numpy.pipeline``):
the calling thread and ``n - 1`` threads of one shared pool. Calls from different threads share
the pool's threads (a pool thread serves one call at a time), so concurrent calls add at most
their own calling threads.

While arraymel computes, every BLAS and OpenMP pool of the process is held to one thread
(through ``threadpoolctl``), so that the small matrix products inside the workers never start
BLAS threads of their own. The limit is process-wide (BLAS libraries have no per-thread
setting): it is taken when the first concurrent call starts and restored when the last ends.

A call that computes on every CPU of the calling thread's affinity mask runs on ``workers`` pool
threads, each bound to its own CPU for the call's duration, while the calling thread waits (its
mask is never changed); the pool threads get their masks back after. Left to itself, Linux woke
a pool thread on its waker's CPU when no other CPU looked free: on a virtual machine whose other
CPU is idle but halted, the calling thread and the pool thread then shared one CPU for most of
the call (16 clips of 10 s after a 0.15 s pause: 21.0 ms, against 13.1 ms bound; binding the pool
thread alone, 20.3 ms, as the caller then moved to its CPU; measured). Only a call with no other
arraymel call in flight binds; ``ARRAYMEL_PIN_THREADS=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator

import numpy as np

ENV = "ARRAYMEL_NUM_THREADS"
PIN_ENV = "ARRAYMEL_PIN_THREADS"

_DEFAULT: contextvars.ContextVar[int | None] = contextvars.ContextVar("arraymel_workers", default=None)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def thread_count(value: Any, name: str = "workers") -> int:
    """``value`` as a thread count (negative counts back from :func:`cpu_count`), or a ValueError naming ``name``."""
    cpus = cpu_count()
    allowed = (f"None (the default), an int >= 1, or a negative int counting back from the {cpus} CPUs "
               f"available (-1: all of them, down to -{cpus})")
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")
    n = value if value > 0 else cpus + 1 + value
    if value == 0 or n < 1:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")
    return n


def _env_default() -> int | None:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r} is not allowed: it must be an int >= 1 or a negative int (-1: all CPUs).") from None
    return thread_count(value, ENV)


def get_workers() -> int:
    """The number of threads a call with ``workers=None`` uses here (see :func:`set_workers`).

    Returns
    -------
    workers : int
        The innermost :func:`arraymel.set_workers` value on this thread, else the
        ``ARRAYMEL_NUM_THREADS`` environment variable, else every CPU available (``>= 1``).

    Raises
    ------
    ValueError
        ``ARRAYMEL_NUM_THREADS`` is set to something other than a non-zero int.

    See Also
    --------
    set_workers : Set it for a ``with`` block.
    show_config : Where the value comes from, and the CPUs available.

    Examples
    --------
    >>> import arraymel
    >>> with arraymel.set_workers(1):
    ...     arraymel.get_workers()
    1
    """
    scoped = _DEFAULT.get()
    if scoped is not None:
        return scoped
    env = _env_default()
    return cpu_count() if env is None else env


@contextlib.contextmanager
def set_workers(workers: int) -> Iterator[None]:
    """Within the ``with`` block, calls on this thread with ``workers=None`` use ``workers`` threads.

    As ``scipy.fft.set_workers``: ``-1`` means every CPU available; the setting is local to the
    calling thread (and to its ``contextvars`` context), and is restored on leaving the block.

    Parameters
    ----------
    workers : int
        Threads per call: a positive count, or a negative one counting back from the CPUs
        available (``-1``: all of them).

    Returns
    -------
    context : context manager
        Use it in a ``with`` statement; it yields None.

    Raises
    ------
    ValueError
        ``workers=0``, or a negative count beyond the CPUs available.
    TypeError
        ``workers`` is not an int.

    See Also
    --------
    get_workers : The value in force.
    mel_spectrogram : Its ``workers`` argument overrides this for one call.

    Examples
    --------
    >>> import numpy as np, arraymel
    >>> with arraymel.set_workers(1):
    ...     arraymel.mel_spectrogram(np.zeros(16000, np.float32)).shape
    (128, 32)
    """
    token = _DEFAULT.set(thread_count(workers, "workers"))
    try:
        yield
    finally:
        _DEFAULT.reset(token)


def resolve(workers: Any) -> int:
    """The thread count for a call's ``workers`` argument (None: :func:`get_workers`); a bad
    ``ARRAYMEL_PIN_THREADS`` is refused here, on every call, not only on calls that would bind."""
    pin_threads_enabled()
    return get_workers() if workers is None else thread_count(workers, "workers")


# ---------------------------------------------------------------------- the pool
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
_HELPERS_LOCK = threading.Lock()


def _helpers(n: int) -> list[_Helper]:
    """The first ``n`` pool threads, started on first need and kept (idle ones wait on a queue)."""
    with _HELPERS_LOCK:
        while len(_HELPERS) < n:
            _HELPERS.append(_Helper(len(_HELPERS)))
        return _HELPERS[:n]


def _forget_helpers_in_child() -> None:
    """A forked child (a torch DataLoader worker, multiprocessing) has none of the parent's threads: helpers
    inherited from it would take work and never run it. The child starts its own on first need."""
    global _HELPERS, _HELPERS_LOCK, _LIMIT_LOCK, _LIMIT_DEPTH, _LIMITER
    _HELPERS, _HELPERS_LOCK = [], threading.Lock()
    # forked while a call of another thread held BLAS to one thread: the child has no such call, so it gets its
    # BLAS threads back (the limiter remembers the original setting)
    if _LIMITER is not None:
        try:
            _LIMITER.restore_original_limits()
        except Exception:  # noqa: BLE001 - a child must start even if a BLAS library cannot be reset
            pass
    # a lock held by another thread of the parent would never be released in the child
    _LIMIT_LOCK, _LIMIT_DEPTH, _LIMITER = threading.Lock(), 0, None


def run_parallel(work: Callable[[Any], None], items: Iterable[Any], workers: int) -> None:
    """``work(item)`` for every item on exactly ``min(workers, len(items))`` threads; BLAS held to one thread.

    The calling thread is one of them: ``workers == 1`` (or a single item) runs there alone;
    otherwise ``workers - 1`` pool threads join it. A call on every CPU (:func:`cpus_to_bind`)
    runs instead on ``workers`` pool threads bound one per CPU while the calling thread waits.
    Each thread starts with one item, then takes the next from a shared queue until none is
    left, so uneven items balance out. Concurrent calls share the pool threads (a thread busy
    for one call serves the other next). The first exception is raised here once every thread
    has stopped.
    """
    items = list(items)
    n = min(workers, len(items))
    with blas_single_threaded() as alone:
        if n <= 1:
            for item in items:
                work(item)
            return
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for item in items[n:]:
            todo.put(item)
        failed = threading.Event()

        def drain(item: Any, cpu: int | None) -> None:
            with bound_to(cpu):
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

        cpus = cpus_to_bind(n) if alone else None
        # Bound, the call runs on n pool threads, one per CPU, while the calling thread waits: the caller's
        # own mask is never touched (other code reads a process's mask from its main thread's, and a thread or
        # child started from a bound thread would keep its single CPU for good).
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
        if error is not None:
            raise error


# ---------------------------------------------------------------------- binding a call's threads to CPUs
def pin_threads_enabled() -> bool:
    """``ARRAYMEL_PIN_THREADS``: unset or 1 binds a call's threads when it uses every CPU; 0 never does."""
    raw = os.environ.get(PIN_ENV, "").strip().lower()
    if raw in ("", "1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{PIN_ENV}={raw!r} is not allowed: it must be 1, true, on or yes (bind a call's threads "
                     "when it uses every CPU; the default, as when unset) or 0, false, off or no (never bind).")


@functools.lru_cache(maxsize=1)
def _sched_getcpu() -> Callable[[], int] | None:
    """glibc's (or musl's) ``sched_getcpu``, or None where the C library has none."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


def cpus_to_bind(n: int) -> list[int] | None:
    """One CPU for each of a call's ``n`` threads (the calling thread's first), or None to leave them to the OS.

    Only when the call uses every CPU of the calling thread's affinity mask: with a CPU to spare the
    OS may well place a thread better than a fixed binding would. The first CPU is the one the calling
    thread is on (where the C library says), which the calling thread leaves while it waits.
    """
    if n < 2 or not hasattr(os, "sched_setaffinity") or not pin_threads_enabled():
        return None
    try:
        mask = sorted(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover - no affinity support
        return None
    if n != len(mask):
        return None
    getcpu = _sched_getcpu()
    here = getcpu() if getcpu is not None else -1
    if here in mask:
        mask.remove(here)
        mask.insert(0, here)
    return mask


@contextlib.contextmanager
def bound_to(cpu: int | None) -> Iterator[None]:
    """The calling thread runs on ``cpu`` alone inside the block (None: unchanged); its mask is restored after.

    A refusal by the OS (a cgroup that forbids the CPU, a sandbox without the call) leaves the thread
    where it was: binding is a placement hint, never a condition of computing.
    """
    saved = None
    if cpu is not None:
        try:
            saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu})
        except OSError:
            saved = None
    try:
        yield
    finally:
        if saved is not None:
            try:
                os.sched_setaffinity(0, saved)
            except OSError:  # pragma: no cover - the OS took a CPU away meanwhile
                pass


# ---------------------------------------------------------------------- BLAS and OpenMP pools
_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_LIMITER: Any = None
_CONTROLLER: Any = None


def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (built once), or None without threadpoolctl."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER or None


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[bool]:
    """Hold every BLAS and OpenMP pool to one thread while any arraymel call runs (reference counted).

    Yields True when no other call was in flight as this one entered."""
    global _LIMIT_DEPTH, _LIMITER
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            ctl = _controller()
            _LIMITER = ctl.limit(limits=1) if ctl is not None else None
        _LIMIT_DEPTH += 1
        alone = _LIMIT_DEPTH == 1
    try:
        yield alone
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0 and _LIMITER is not None:
                _LIMITER.restore_original_limits()
                _LIMITER = None


os.register_at_fork(after_in_child=_forget_helpers_in_child)
