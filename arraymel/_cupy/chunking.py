"""Planning the GPU work in chunks under a memory budget, and retrying after out-of-memory.

Pure Python (no CuPy), so that it is tested on any machine.

A *chunk* is a block of rows (examples) and a block of frames of each row. The work area of a
chunk is what exists only while it is computed: the reflect-padded signal segment (pitched
layout) or the windowed frames (gather layout), the complex spectrum, and the cuFFT work area
(estimated: cuFFT reports it only once a plan exists). The output is not part of it (it must
exist anyway), nor is the input.

Rows are split first; a single row whose frames do not fit is split in time. Time chunks start
on a hop boundary (frame ``t0`` starts at padded sample ``t0 * hop``) and overlap their neighbour
by ``fft_length - hop`` samples (each reads its own padded segment), so every frame is computed
exactly as in one piece. Chunks are balanced (sizes differ by at most one), so at most two
shapes (two cuFFT plans) occur per call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

#: Largest element count of one buffer or kernel index space (32-bit indices in the kernels, int
#: sizes in cuFFT's plan interface).
MAX_ELEMS = 2**31 - 1
#: Rows per chunk are a grid dimension (``gridDim.y``) of the signal kernels.
MAX_ROWS = 65535
#: The pitched layout computes ``ceil(fft / hop) - 1`` spare transforms per row; beyond this fraction
#: of the useful frames, the gather layout is used instead (not yet measured on a GPU; a guess).
INPLACE_MAX_WASTE = 0.25
#: cuFFT work area, estimated as this many times the chunk's spectrum (cuFFT gives the size only
#: once a plan is made; a conservative guess, not measured).
FFT_WORK_FACTOR = 1.0
#: Default work area: this many times the device's L2 cache (so that a chunk's spectrum, about 40% of
#: the work-area estimate, is of the order of L2 between the FFT that writes it and the mel kernel
#: that reads it), while keeping chunks large enough that the host's launches (about 35 us per chunk:
#: 10 us of Python measured on the 2-core CI machine, plus three CuPy/cuFFT calls) stay ahead of the
#: GPU. A design bet, not yet measured on a GPU: benchmarks/test_gpu.py sweeps it ...
DEFAULT_L2_FACTOR = 2.0
#: ... but at least this much ...
DEFAULT_MIN_WORK = 32 * 2**20
#: ... and at most this fraction of the free device memory (the CuPy pool's free blocks counted as free).
DEFAULT_FREE_FRACTION = 0.25

PATHS = ("inplace", "gather")


@dataclass(frozen=True)
class Problem:
    """The sizes that decide the chunks: ``batch`` rows of ``samples``, ``frames`` frames each."""

    batch: int
    samples: int
    frames: int
    n_fft: int
    hop: int
    nb: int
    n_mels: int
    itemsize: int
    inplace_ok: bool

    @property
    def extra(self) -> int:
        """Spare transforms per row of the pitched layout: ``ceil(fft / hop) - 1``."""
        return -(-self.n_fft // self.hop) - 1

    @property
    def tail(self) -> int:
        """Samples after the last row of a pitched buffer, read only by the spare transforms."""
        return max(0, self.n_fft - self.hop)


@dataclass(frozen=True)
class Chunk:
    b0: int
    b1: int
    t0: int
    t1: int

    @property
    def rows(self) -> int:
        return self.b1 - self.b0

    @property
    def frames(self) -> int:
        return self.t1 - self.t0


@dataclass(frozen=True)
class ChunkPlan:
    """How one call is cut: ``rows`` x ``frames`` per chunk (the last ones may be smaller)."""

    problem: Problem
    path: str
    rows: int
    frames: int
    budget: int

    @property
    def n_row_chunks(self) -> int:
        return -(-self.problem.batch // self.rows) if self.problem.batch else 0

    @property
    def n_time_chunks(self) -> int:
        return -(-self.problem.frames // self.frames)

    @property
    def n_chunks(self) -> int:
        return self.n_row_chunks * self.n_time_chunks

    def chunks(self) -> Iterator[Chunk]:
        """The chunks, rows major; boundaries at ``i * total // count``, so sizes differ by at most one."""
        p = self.problem
        nr, nt = self.n_row_chunks, self.n_time_chunks
        for i in range(nr):
            b0, b1 = i * p.batch // nr, (i + 1) * p.batch // nr
            for j in range(nt):
                yield Chunk(b0, b1, j * p.frames // nt, (j + 1) * p.frames // nt)

    # ------------------------------------------------------------ layout of one chunk
    def fft_frames_row(self, frames: int) -> int:
        """Transforms per row of a chunk of ``frames`` frames (pitched: plus the spare ones)."""
        return frames + self.problem.extra if self.path == "inplace" else frames

    def pitch(self, frames: int) -> int:
        """Samples per row of the pitched buffer (a multiple of the hop)."""
        return self.fft_frames_row(frames) * self.problem.hop

    def fft_batch(self, rows: int, frames: int) -> int:
        return rows * self.fft_frames_row(frames)

    def fft_idist(self) -> int:
        return self.problem.hop if self.path == "inplace" else self.problem.n_fft

    def input_elems(self, rows: int, frames: int) -> int:
        """Elements of the pitched signal buffer or of the frames buffer."""
        p = self.problem
        if self.path == "inplace":
            return rows * self.pitch(frames) + p.tail
        return rows * frames * p.n_fft

    def spectrum_elems(self, rows: int, frames: int) -> int:
        """Real elements (2 per complex bin) of the spectrum buffer."""
        return self.fft_batch(rows, frames) * self.problem.nb * 2

    @property
    def max_input_elems(self) -> int:
        return self.input_elems(min(self.rows, self.problem.batch), self.frames)

    @property
    def max_spectrum_elems(self) -> int:
        return self.spectrum_elems(min(self.rows, self.problem.batch), self.frames)

    @property
    def work_bytes(self) -> int:
        """Estimated work area of the largest chunk (buffers plus the cuFFT work estimate)."""
        return work_bytes(self.problem, self.path, min(self.rows, self.problem.batch), self.frames)


def work_bytes(p: Problem, path: str, rows: int, frames: int) -> int:
    """Estimated bytes of a chunk's work area: signal or frames buffer, spectrum, cuFFT work area."""
    s = p.itemsize
    if path == "inplace":
        ffts = rows * (frames + p.extra)
        signal = (ffts * p.hop + p.tail) * s
    else:
        ffts = rows * frames
        signal = ffts * p.n_fft * s
    spectrum = ffts * p.nb * 2 * s
    return int(signal + spectrum * (1.0 + FFT_WORK_FACTOR))


def _fits_limits(p: Problem, path: str, rows: int, frames: int) -> bool:
    if rows > MAX_ROWS:
        return False
    ffts = rows * (frames + (p.extra if path == "inplace" else 0))
    if ffts * p.nb * 2 > MAX_ELEMS:
        return False
    if path == "inplace":
        if ffts * p.hop + p.tail > MAX_ELEMS:
            return False
    elif frames * p.n_fft > MAX_ELEMS or rows * frames * p.n_fft > MAX_ELEMS:
        return False
    return frames * p.n_mels <= MAX_ELEMS


def _max_rows(p: Problem, path: str, budget: int) -> int:
    """Most whole rows per chunk within ``budget`` and the index limits (0 if not even one)."""
    per_row = work_bytes(p, path, 1, p.frames) - (p.tail * p.itemsize if path == "inplace" else 0)
    fixed = p.tail * p.itemsize if path == "inplace" else 0
    rows = max(0, (budget - fixed) // max(1, per_row))
    rows = min(rows, p.batch, MAX_ROWS)
    while rows > 0 and not _fits_limits(p, path, rows, p.frames):
        rows //= 2
    return int(rows)


def _max_frames(p: Problem, path: str, budget: int) -> int:
    """Most frames of one row per chunk within ``budget`` and the limits (at least 1)."""
    per_frame = work_bytes(p, path, 1, 2) - work_bytes(p, path, 1, 1)
    fixed = work_bytes(p, path, 1, 1) - per_frame
    frames = max(1, (budget - fixed) // max(1, per_frame))
    frames = min(frames, p.frames)
    while frames > 1 and not _fits_limits(p, path, 1, frames):
        frames //= 2
    return int(frames)


def _balanced(total: int, most: int) -> int:
    """The chunk size that splits ``total`` into as few chunks of at most ``most`` as possible, evenly."""
    n = -(-total // max(1, most))
    return -(-total // max(1, n))


def plan_chunks(p: Problem, budget: int) -> ChunkPlan:
    """The chunks for ``p`` under a work-area ``budget`` (bytes).

    The pitched (in-place FFT) layout is used when the window allows it and its spare transforms
    are at most :data:`INPLACE_MAX_WASTE` of the frames per chunk; otherwise frames are gathered.
    A budget smaller than one frame's work area still makes progress, one frame at a time.
    """
    budget = int(budget)
    if budget <= 0:
        raise ValueError(f"max_memory={budget!r} is not allowed: the work-area budget must be > 0 bytes.")
    candidates = ("inplace", "gather") if p.inplace_ok else ("gather",)
    plan = None
    for path in candidates:
        plan = _plan_path(p, path, budget)
        if path == "inplace" and p.extra > INPLACE_MAX_WASTE * plan.frames:
            continue
        return plan
    assert plan is not None
    return plan


def _plan_path(p: Problem, path: str, budget: int) -> ChunkPlan:
    if p.batch == 0:
        return ChunkPlan(p, path, 1, max(1, p.frames), budget)
    rows = _max_rows(p, path, budget)
    if rows >= 1:
        return ChunkPlan(p, path, _balanced(p.batch, rows), p.frames, budget)
    frames = _max_frames(p, path, budget)
    return ChunkPlan(p, path, 1, _balanced(p.frames, frames), budget)


# --------------------------------------------------------------------------------------- budget
def default_budget(free_bytes: int, pool_free_bytes: int, l2_bytes: int) -> int:
    """The automatic work-area budget: twice the L2 cache, at least 32 MiB, at most a quarter of free memory."""
    target = max(DEFAULT_MIN_WORK, int(DEFAULT_L2_FACTOR * max(0, l2_bytes)))
    cap = int(DEFAULT_FREE_FRACTION * (max(0, free_bytes) + max(0, pool_free_bytes)))
    return max(1, min(target, cap))


# --------------------------------------------------------------------------------------- retry
@dataclass
class RetryLog:
    """What :func:`run_with_retry` did: the budgets tried, in order, and the errors it absorbed."""

    budgets: list
    errors: list

    @property
    def retries(self) -> int:
        return len(self.errors)


def run_with_retry(run: Callable[[int], Any], budget: int, *, is_oom: Callable[[BaseException], bool],
                   on_oom: Callable[[], None] = lambda: None, min_budget: int = 1,
                   log: RetryLog | None = None) -> Any:
    """``run(budget)``; on an out-of-memory error, ``on_oom()`` (free caches), halve the budget, try again.

    Gives up, re-raising the last error, once a run at ``min_budget`` (the smallest chunk) has
    failed too. Errors that are not out-of-memory propagate at once.
    """
    log = log if log is not None else RetryLog([], [])
    budget = max(int(budget), int(min_budget))
    while True:
        log.budgets.append(budget)
        try:
            return run(budget)
        except Exception as e:  # noqa: BLE001 - filtered by is_oom
            if not is_oom(e) or budget <= min_budget:
                raise
            log.errors.append(e)
            on_oom()
            budget = max(int(min_budget), budget // 2)


def is_oom_error(e: BaseException, oom_types: tuple = (), cufft_error: type | None = None,
                 runtime_error: type | None = None) -> bool:
    """Whether ``e`` says the device ran out of memory: CuPy's ``OutOfMemoryError``, cuFFT's
    ``CUFFT_ALLOC_FAILED``, or the runtime's ``cudaErrorMemoryAllocation``. The classes are passed in
    (they live in CuPy), so that this is tested without it."""
    if oom_types and isinstance(e, oom_types):
        return True
    text = str(e)
    if cufft_error is not None and isinstance(e, cufft_error):
        return "ALLOC_FAILED" in text
    if runtime_error is not None and isinstance(e, runtime_error):
        return "cudaErrorMemoryAllocation" in text or "out of memory" in text
    return False


def min_budget(p: Problem) -> int:
    """The work area of the smallest chunk (one frame of one row) in the gather layout."""
    return work_bytes(p, "gather", 1, 1)
