"""Length buckets, and the padded rows that let files of different lengths share one batch exactly.

The mel computation reflect-pads ``fft_length // 2`` samples at both ends of each row. A file
of ``n`` samples placed at the start of a longer, zero-filled row would see zeros instead of its
own reflection at the right end, and its last frames would change. So each file's row holds the
file, then its right reflection written out explicitly (``pad`` samples, NumPy ``reflect``
semantics, repeated for files shorter than the pad), then zeros. Its frames ``0 .. n_frames(n) - 1``
only ever read the file and that explicit reflection, and the row's own left reflection equals the
file's (``x[k]`` for ``k <= pad``, which the explicit extension supplies even for short files),
so those frames are exactly the frames of the file alone; the frames after them are cut off.
``top_db`` is applied afterwards per file, over its own frames only.

A row's length depends on the file's length alone: ``n + pad`` rounded up to 6 significant
bits (at most 1/32, about 3 %, of padding). Files with the same row length form a bucket, and a
file's numbers therefore never depend on which files share its batch, on the batch size, on a
resumed run or on Dask chunking: on the CPU path the outputs are bit-for-bit reproducible.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from arraymel import MelConfig

#: Significant bits kept when rounding a row length up (bucket spacing 1/32 of an octave).
SIGNIFICANT_BITS = 6
#: Default audio per batch (``--batch-seconds``) on the CPU and on a GPU.
CPU_BATCH_SECONDS = 300.0
GPU_BATCH_SECONDS = 3600.0
#: Audio the buckets may hold before the fullest are computed early: max(4 batches, this).
MIN_PENDING_SECONDS = 1800.0


def batch_limits(settings, device_kind: str) -> tuple[int, int]:
    """(samples per batch, samples the buckets may hold) for :class:`Bucketer`. On the CPU both are capped
    by ``--memory-per-worker`` (a batch at most an eighth of it, the buckets a quarter, in float32)."""
    sr = float(settings.mel.sampling_rate)
    secs = settings.batch_seconds or (GPU_BATCH_SECONDS if device_kind == "cuda" else CPU_BATCH_SECONDS)
    batch = int(secs * sr)
    pending = max(4 * batch, int(MIN_PENDING_SECONDS * sr))
    if device_kind != "cuda":
        batch = min(batch, settings.memory_bytes // 8 // 4)
        pending = min(pending, settings.memory_bytes // 4 // 4)
    return batch, pending


def row_length(n: int, cfg: MelConfig) -> int:
    """The padded row length for a file of ``n`` samples (a function of ``n`` and the config only)."""
    m = n + cfg.pad
    shift = max(0, m.bit_length() - SIGNIFICANT_BITS)
    return ((m + (1 << shift) - 1) >> shift) << shift


def extended(x: np.ndarray, pad: int, pad_mode: str = "reflect") -> np.ndarray:
    """The ``pad`` samples that follow ``x`` (``(rows, n)``): its right reflection (NumPy ``reflect``), or zeros
    (``pad_mode="constant"``, the presets' librosa and nemo)."""
    n = x.shape[-1]
    if pad_mode == "constant":
        return np.zeros((*x.shape[:-1], pad), dtype=x.dtype)
    if n == 1:
        idx = np.zeros(pad, dtype=np.intp)
    else:
        period = 2 * (n - 1)
        p = np.arange(n, n + pad) % period
        idx = np.where(p >= n, period - p, p)
    return x[..., idx]


@dataclasses.dataclass
class Batch:
    """Files of one bucket: ``items`` (decoded files) whose rows are all ``length`` long."""

    length: int
    items: list

    @property
    def rows(self) -> int:
        return sum(it.audio.shape[0] for it in self.items)

    @property
    def samples(self) -> int:
        return self.rows * self.length

    def build(self, cfg: MelConfig, buffer: np.ndarray | None = None, signal_step: Any = None,
              copy: bool = False) -> np.ndarray:
        """The ``(rows, length)`` float32 input of this batch (see the module docstring).

        ``buffer``: a flat float32 array of at least ``rows * length`` elements to build it in
        (reused between batches: allocating fresh zeroed memory for every batch costs page faults);
        a new array is allocated without it. ``signal_step``: a preset's step on each file's signal
        (``(x, xp) -> x``, :class:`arraymel.presets.Preset`), applied before the file's padding.
        ``copy``: always build in ``buffer``, never return an item's own row (whose memory is released
        once the batch is built). An item whose ``row`` is already padded to ``length`` (``(length,)``
        or ``(rows, length)``: decoded straight into its padded row) is copied whole.
        """
        rows, length = self.rows, self.length
        if len(self.items) == 1 and signal_step is None and not copy:
            row = getattr(self.items[0], "row", None)
            if row is not None and row.ndim == 1 and row.shape[-1] == length:
                return row.reshape(1, length)  # read straight into place by the decoder: no copy
        if buffer is None:
            out = np.empty((rows, length), dtype=np.float32)
        else:
            out = buffer[: rows * length].reshape(rows, length)
        r = 0
        for it in self.items:
            row = getattr(it, "row", None)
            if signal_step is None and row is not None and row.shape[-1] == length:
                k = it.audio.shape[0]
                out[r : r + k] = row  # already the file, its right extension and zeros
                r += k
                continue
            a = it.audio if signal_step is None else signal_step(it.audio, np)
            k, n = a.shape
            out[r : r + k, :n] = a
            m = min(length, n + cfg.pad)
            out[r : r + k, n:m] = extended(a, m - n, cfg.pad_mode)
            out[r : r + k, m:] = 0.0
            r += k
        return out


class Bucketer:
    """Groups decoded files by row length and hands out batches.

    A bucket is handed out when adding a file would take it over ``batch_samples`` (padded row
    samples: the memory of the batch); a file alone over the cap is a batch by itself. When the
    audio held in all buckets exceeds ``pending_samples``, the fullest buckets are handed out
    early, so that memory stays bounded whatever the mix of lengths. The pipeline also takes the
    fullest bucket whenever the compute stage has nothing queued (:meth:`take_fullest`): batches
    then grow by themselves to what the compute stage needs to keep up, and it never idles while
    decoded audio waits.
    """

    def __init__(self, cfg: MelConfig, batch_samples: int, pending_samples: int):
        self.cfg = cfg
        self.batch_samples = max(1, int(batch_samples))
        self.pending_samples = max(self.batch_samples, int(pending_samples))
        self._buckets: dict[int, Batch] = {}
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def add(self, item) -> list[Batch]:
        length = row_length(item.length, self.cfg)
        size = item.audio.shape[0] * length
        ready = []
        b = self._buckets.get(length)
        if b is not None and b.samples + size > self.batch_samples:
            ready.append(self._pop(length))
            b = None
        if b is None:
            b = self._buckets[length] = Batch(length=length, items=[])
        b.items.append(item)
        self._pending += size
        if b.samples >= self.batch_samples:
            ready.append(self._pop(length))
        while self._pending > self.pending_samples and self._buckets:
            fullest = max(self._buckets.values(), key=lambda bb: bb.samples)
            ready.append(self._pop(fullest.length))
        return ready

    def take_fullest(self) -> Batch | None:
        """The fullest bucket now (the pipeline takes one whenever the compute stage would otherwise idle)."""
        if not self._buckets:
            return None
        return self._pop(max(self._buckets.values(), key=lambda bb: bb.samples).length)

    def drain(self) -> list[Batch]:
        """Every remaining bucket, largest rows first."""
        return [self._pop(k) for k in sorted(self._buckets, reverse=True)]

    def _pop(self, length: int) -> Batch:
        b = self._buckets.pop(length)
        self._pending -= b.samples
        return b
