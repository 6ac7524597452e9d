"""How many threads a call computes on: the ``workers`` rules, and which one applies here.

The convention is ``scipy.fft``'s: a ``workers`` argument per call, where ``None`` takes the
default, a positive int is a thread count and a negative one counts back from the CPUs available
(``-1``: all of them). The default is, first rule that applies:

1. the innermost ``with set_workers(n):`` of the calling thread (and its ``contextvars`` context);
2. ``ARRAYMEL_NUM_THREADS``;
3. one thread inside a worker (:func:`worker_kind`): a torch DataLoader worker, a Dask worker, a
   process started by ``multiprocessing`` or ``concurrent.futures``, whose parent already runs one
   such worker per CPU (eight workers each on eight threads would be 64 threads on 8 cores);
4. every CPU of this process's affinity mask.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

ENV = "ARRAYMEL_NUM_THREADS"

_SCOPED: contextvars.ContextVar[int | None] = contextvars.ContextVar("arraymel_workers", default=None)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def thread_count(value: Any, name: str = "workers") -> int:
    """``value`` as a thread count (negative counts back from :func:`cpu_count`), or an error naming ``name``."""
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
        raise ValueError(f"{ENV}={raw!r} is not allowed: it must be an int >= 1 or a negative int "
                         "(-1: all CPUs).") from None
    return thread_count(value, ENV)


def worker_kind() -> str | None:
    """What kind of worker the calling thread runs in, or None outside any.

    Looks only at modules already imported: a process that never imported torch, distributed or
    multiprocessing is no worker of theirs, and nothing is imported here to find out.
    """
    data = sys.modules.get("torch.utils.data")
    if data is not None and data.get_worker_info() is not None:
        return "a torch DataLoader worker"
    dist = sys.modules.get("distributed")
    if dist is not None:
        try:
            dist.get_worker()  # the worker running the current task; ValueError outside a task
        except Exception:  # noqa: BLE001 - any failure means "not in a Dask task"
            pass
        else:
            return "a Dask worker"
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        return "a multiprocessing or concurrent.futures worker process"
    return None


def default_rule() -> tuple[int, str]:
    """The default thread count here and the rule that chose it (what ``show_config()`` reports)."""
    scoped = _SCOPED.get()
    if scoped is not None:
        return scoped, "set_workers()"
    env = _env_default()
    if env is not None:
        return env, ENV
    kind = worker_kind()
    if kind is not None:
        return 1, f"one thread in {kind}"
    return cpu_count(), "CPUs available"


def get_workers() -> int:
    """The number of threads a call with ``workers=None`` computes on here.

    The first rule that applies: the innermost :func:`set_workers` block of the calling thread;
    else ``ARRAYMEL_NUM_THREADS``; else 1 inside a worker (a torch DataLoader worker, a Dask
    worker, a process started by ``multiprocessing`` or ``concurrent.futures``); else every CPU in
    this process's affinity mask. ``arraymel.show_config()`` says which rule applied.

    Returns
    -------
    int
        The thread count, at least 1.

    Examples
    --------
    >>> import arraymel
    >>> with arraymel.set_workers(1):
    ...     arraymel.get_workers()
    1
    >>> arraymel.get_workers() >= 1
    True
    """
    return default_rule()[0]


@contextlib.contextmanager
def set_workers(workers: int) -> Iterator[None]:
    """Within the ``with`` block, calls on this thread with ``workers=None`` use ``workers`` threads.

    As ``scipy.fft.set_workers``: the setting is local to the calling thread (and to its
    ``contextvars`` context) and is restored on leaving the block; it takes precedence over
    ``ARRAYMEL_NUM_THREADS`` and over the one-thread default of worker processes.

    Parameters
    ----------
    workers : int
        A thread count ``>= 1``, or a negative int counting back from the CPUs available
        (``-1``: all of them).

    Raises
    ------
    ValueError, TypeError
        When ``workers`` is not such an int (the message names the parameter and what is allowed).

    Examples
    --------
    >>> import numpy as np, arraymel
    >>> with arraymel.set_workers(1):
    ...     arraymel.mel_spectrogram(np.zeros(16000, np.float32)).shape
    (128, 32)
    """
    token = _SCOPED.set(thread_count(workers, "workers"))
    try:
        yield
    finally:
        _SCOPED.reset(token)
