"""Binding a call's threads to CPUs: off unless ``ARRAYMEL_PIN_THREADS=1``.

Bound, a call on every CPU of the calling thread's affinity mask runs on ``workers`` pool threads,
one per CPU, while the calling thread waits (its own mask is never changed); each pool thread gets
its mask back when the call ends. It is off by default because it did not pay in every common
situation (docs/threads.md): beside a torch training loop bound calls were slower, since a bound
thread cannot leave a CPU that another program keeps busy. What it helps is a call whose second
thread Linux would wake on the caller's CPU: after a pause on a virtual machine whose idle CPU is
halted, or when every CPU looks busy.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

PIN_ENV = "ARRAYMEL_PIN_THREADS"

_ON = ("1", "true", "on", "yes")
_OFF = ("", "0", "false", "off", "no")


def enabled() -> bool:
    """``ARRAYMEL_PIN_THREADS``: 1 (or true, on, yes) binds a call's threads when it uses every CPU; unset or 0
    never does."""
    raw = os.environ.get(PIN_ENV, "").strip().lower()
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise ValueError(f"{PIN_ENV}={raw!r} is not allowed: it must be 1, true, on or yes (bind a call's threads when "
                     "it uses every CPU) or 0, false, off or no (never bind: the default, as when unset).")


@functools.lru_cache(maxsize=1)
def _sched_getcpu() -> Callable[[], int] | None:
    """The C library's ``sched_getcpu``, or None where it has none."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


def cpus_to_bind(n: int) -> list[int] | None:
    """One CPU for each of a call's ``n`` threads, or None to leave placement to the OS.

    Only when binding is on and the call uses every CPU of the calling thread's affinity mask (with
    a CPU to spare the OS places threads better than a fixed binding). The first CPU is the one the
    calling thread is on, which it leaves while it waits.
    """
    if n < 2 or not hasattr(os, "sched_setaffinity") or not enabled():
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

    An OS that refuses (a cgroup that forbids the CPU, a sandbox) leaves the thread where it was:
    binding is a placement hint, never a condition of computing.
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
