"""Threads: how many a call computes on, the pool they come from, and binding them to CPUs.

- :mod:`~arraymel._threads.count`: the ``workers`` rules (``set_workers``, ``get_workers``,
  ``ARRAYMEL_NUM_THREADS``, one thread in a worker process);
- :mod:`~arraymel._threads.pool`: the helper threads shared by every call;
- :mod:`~arraymel._threads.binding`: binding a call's threads to CPUs (``ARRAYMEL_PIN_THREADS=1``).

arraymel sets no BLAS or OpenMP thread count, neither per call nor for the process: a user's
``threadpool_limits``, ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` stay as the user set them,
on every thread. The mel products inside a block are small enough that OpenBLAS runs them on the
calling thread without a limit, and a process-wide limit cannot be held per call once two threads
call at once (docs/threads.md has the measurements). This package imports no backend.
"""

from __future__ import annotations

from typing import Any

from arraymel._threads import binding
from arraymel._threads.count import ENV, cpu_count, default_rule, get_workers, set_workers, thread_count, worker_kind
from arraymel._threads.pool import run_parallel

__all__ = ["ENV", "cpu_count", "default_rule", "get_workers", "resolve", "run_parallel", "set_workers",
           "thread_count", "worker_kind"]


def resolve(workers: Any) -> int:
    """The thread count for a call's ``workers`` argument (None: :func:`get_workers`).

    A bad ``ARRAYMEL_PIN_THREADS`` is refused here, on every call, not only on calls that would bind.
    """
    binding.enabled()
    return get_workers() if workers is None else thread_count(workers, "workers")
