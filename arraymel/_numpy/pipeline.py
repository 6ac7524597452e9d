"""The tuned NumPy path: blocks of frames through windowing, FFT, power, banded mel and dB.

Frames are never materialised for the whole signal. A block is either a tile of one long clip
(a strided view of the input; a small reflect-padded gather only at the two ends) or, for clips
shorter than half a block, a group of whole clips (their centred signals gathered, then viewed as
frames), so that 10,000 clips of 400 samples are some forty blocks, not 10,000. A block's frames
are multiplied by the window into a per-thread buffer (casting integer or float64 input on the way),
transformed in the compute dtype (``scipy.fft``: float32 for float32 input, well inside docs/semantics.md's
tolerance bands) and raised to ``|X| ** mag_exp`` into the block's power rows, all at once or, in a
call with at most one block per thread, in FFT batches that stay in a core's L2 cache
(:data:`FFT_BATCH_BYTES`); the block is then reduced to mel bands and written into the output
``(batch, mels, frames)`` in place; ``top_db`` needs one more pass over the (small) output. How a
clip is cut into blocks depends on its length only, and a frame's transform does not depend on its
batch, so a clip's numbers never depend on the batch or on the thread count.

Blocks run on ``workers`` threads (:mod:`arraymel._threads`); the FFT, the element-wise passes and
BLAS release the GIL. The mel products are small enough that BLAS runs them on the thread that calls
it, so no BLAS limit is set (docs/threads.md). A small call (under :data:`MIN_PARALLEL_FRAME_SAMPLES`)
runs on the calling thread alone.

Non-finite values: the banded product skips the filterbank's zeros, so ``0 * NaN`` or ``0 * inf``
would never be computed. Each block first reads the extremes of the samples it uses (two
reductions, cheap next to the transform, and they bring those samples into cache for it): when
every sample is finite and no power can overflow, nothing non-finite can arise and the banded
product is exact; otherwise that block uses the dense product over every bin, which is what Keras
computes (docs/semantics.md: non-finite handling equals the dense product's). A block's choice depends on
its own samples only, so a NaN in one clip changes no other clip's numbers (but for the clips
grouped with it), and the batch-wide ``top_db`` then spreads it as in Keras.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from arraymel._config import MelConfig
from arraymel._numpy.banded import banded
from arraymel._numpy.fft import rfft_impl
from arraymel._numpy.memory import empty_aligned
from arraymel._numpy.windowing import window_into
from arraymel._threads import cpu_count, resolve, run_parallel
from arraymel.core.framing import padded_take
from arraymel.core.plan import host_plan

#: Target bytes of one block's frames (256 frames of 2048 in float32). A block is the unit of work of a
#: thread and the width of its mel products; smaller blocks cost more Python and BLAS calls (0.125 to
#: 8 MiB measured, 2 MiB best here).
BLOCK_BYTES = 2 * 1024 * 1024

#: Target bytes of one FFT batch in a call with at most one block per thread: the batch's windowed
#: frames and their spectrum, about a core's 1 MiB L2 (63 frames of 2048, 326 of 400). Windowing,
#: transform and power then go batch by batch into the block's power rows, so that frames and
#: spectra stay in cache, and the mel product reads the whole block. Such a call (one 10 s speech
#: clip is one block) starts with cold caches after another library's work: 1.42-1.56 -> 1.10-1.13 ms
#: for one 10 s clip with speech settings after a 64 MB sweep (measured; 512 KiB batches gave the
#: same, whole blocks of the new contiguous power rows 1.26-1.32 ms). With more blocks than threads
#: the buffers stay warm from block to block and each batch costs more Python calls and GIL hand-offs:
#: 16 x 10 s with Keras defaults took 13.8 ms in batches of 512 KiB against 11.3 ms whole (2 threads),
#: so blocks are transformed whole there. The FFT of a frame does not depend on the frames beside it
#: (tested), so batching changes no number.
FFT_BATCH_BYTES = 1024 * 1024

#: A call with fewer frame samples (frames x fft_length) than this runs on the calling thread alone, whatever
#: ``workers`` says: about 2 ms of one core here (one 10 s clip with Keras defaults is 0.64 M). Waking the pool
#: costs a hand-off, and while another library's BLAS threads still spin after its call (librosa's and Keras's
#: mel products leave one spinning about 0.1 s), the woken thread waits for a core: one 10 s clip took 1.65 ms
#: on one thread and 1.85 ms on two right after librosa, 2.1 and 5.6 ms in a busier minute (measured).
MIN_PARALLEL_FRAME_SAMPLES = 1 << 20

#: The most multiply-adds made in one BLAS call. OpenBLAS runs a GEMM of at most 65536 x 4 of them on the
#: calling thread (its ``GEMM_MULTITHREAD_THRESHOLD``; the OpenBLAS 0.3.31 of NumPy's wheels went up to twice
#: that, measured); a larger one wakes OpenBLAS's own threads, which then spin beside arraymel's workers.
#: Keeping every product under it is what lets arraymel leave the process's BLAS settings alone
#: (docs/threads.md): with speech settings a group's product over a 1001-frame tile is up to 646,646, and
#: 16 x 10 s on two workers took 1084 ms unsplit with BLAS free against 84 ms with BLAS held to one thread
#: (load 7). Split, the products of a speech tile cost 171 us of CPU against 147 us whole (measured); Keras
#: defaults (at most 193,000 per product) are never split. How a product is split depends on the shapes
#: only, so a clip's numbers still depend on nothing else.
MAX_PRODUCT = 1 << 18

#: Frames per piece when a product must be split across its rows too (the dense product, mels x every bin),
#: fewer only where a single row of that many frames would pass :data:`MAX_PRODUCT` (never under two, so that
#: a piece stays a matrix product: a matrix-vector product has its own, lower, threshold).
MIN_PIECE_FRAMES = 16


def _product(w: np.ndarray, src: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = w @ src`` (``w (rows, k)``, ``src (..., k, n)``) in BLAS calls of at most :data:`MAX_PRODUCT`
    multiply-adds: split over frames (``n``), and over rows when even :data:`MIN_PIECE_FRAMES` frames are too many."""
    rows, k = w.shape
    n = src.shape[-1]
    if rows * k * n <= MAX_PRODUCT:
        np.matmul(w, src, out=out)
        return
    step = MAX_PRODUCT // (rows * k)
    if step < MIN_PIECE_FRAMES:
        step = max(2, min(MIN_PIECE_FRAMES, MAX_PRODUCT // k))
    row_step = max(1, MAX_PRODUCT // (k * step))
    for t in range(0, n, step):
        for r in range(0, rows, row_step):
            np.matmul(w[r : r + row_step], src[..., t : t + step], out=out[..., r : r + row_step, t : t + step])


class NumpyState:
    """Constants and buffers of the NumPy path for one (config, dtype)."""

    def __init__(self, cfg: MelConfig, dtype_name: str):
        self.cfg = cfg
        self.dtype = np.dtype(dtype_name)
        plan = host_plan(cfg, dtype_name)
        win = plan.window
        self.window = None if win is None else win.astype(self.dtype)
        self.filterbank = plan.filterbank  # (bins, mels)
        self.banded = banded(self.filterbank, self.dtype, ranges=(plan.band_first, plan.band_last))
        self._dense_t: np.ndarray | None = None  # (mels, bins): built on the first non-finite input
        self.block = max(8, min(1024, BLOCK_BYTES // (cfg.fft_length * self.dtype.itemsize)))
        batch_frame_bytes = (cfg.fft_length + 2 * cfg.n_bins) * self.dtype.itemsize  # a windowed frame and its spectrum
        self.fft_batch = max(4, min(self.block, FFT_BATCH_BYTES // batch_frame_bytes))
        self.ref_db = plan.ref_db
        # The largest |X| that cannot overflow: |X| ** max(mag_exp, 2), summed over every bin, stays finite.
        win_sum = float(np.abs(win).sum()) if win is not None else float(cfg.fft_length)
        log_max = math.log(float(np.finfo(self.dtype).max) / (4.0 * cfg.n_bins))
        # Kaldi's frame step (mean removal, then pre-emphasis) can grow a sample up to (1 + 0.97) * 2 times
        step_gain = 4.0 if cfg.frame_step is not None else 1.0
        self.max_safe_sample = math.exp(log_max / max(cfg.mag_exp, 2.0)) / max(win_sum * step_gain, 1e-300)
        self._local = threading.local()
        rfft_impl()  # SciPy's libraries load now, not inside the first call's threads

    @property
    def dense_t(self) -> np.ndarray:
        if self._dense_t is None:
            self._dense_t = np.ascontiguousarray(self.filterbank.T, dtype=self.dtype)
        return self._dense_t

    # ------------------------------------------------------------------ buffers
    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per thread: windowed frames of one block ``(block, fft)``; its power, flat."""
        loc = self._local
        if getattr(loc, "frames", None) is None:
            loc.frames = np.empty((self.block, self.cfg.fft_length), dtype=self.dtype)
            loc.power = np.empty(self.block * self.cfg.n_bins, dtype=self.dtype)
        return loc.frames, loc.power

    def _bins(self, dense: bool) -> tuple[int, int]:
        """The bins the mel product reads: every bin for the dense product, else the banded one's span."""
        return (0, self.filterbank.shape[0]) if dense else (self.banded.bin_lo, self.banded.bin_hi)

    # ------------------------------------------------------------------ frames of one block
    def _tile_frames(self, row: np.ndarray, t0: int, t1: int) -> np.ndarray:
        """Frames ``t0 .. t1 - 1`` of one clip: ``(t1 - t0, fft)``, a strided view where possible."""
        cfg = self.cfg
        n = row.shape[0]
        s0 = t0 * cfg.sequence_stride - cfg.pad
        s1 = (t1 - 1) * cfg.sequence_stride - cfg.pad + cfg.fft_length
        if s0 >= 0 and s1 <= n:
            seg = row[s0:s1]
        else:  # an end of the signal: gather only the reflected samples, slice the rest
            lo, hi = min(max(s0, 0), n), max(min(s1, n), 0)
            parts = []
            if s0 < lo:
                parts.append(padded_take(np, row, np.arange(s0, min(s1, 0)), cfg.pad_mode))
            if hi > lo:
                parts.append(row[lo:hi])
            if s1 > max(hi, s0):
                parts.append(padded_take(np, row, np.arange(max(n, s0), s1), cfg.pad_mode))
            seg = np.concatenate(parts)
        step = seg.strides[0]
        return as_strided(seg, shape=(t1 - t0, cfg.fft_length), strides=(step * cfg.sequence_stride, step), writeable=False)

    def _clip_frames(self, rows: np.ndarray, n_frames: int) -> np.ndarray:
        """Every frame of a group of short clips: ``(clips, n_frames, fft)``.

        The clips' centred signals (reflections included) are gathered once, then viewed as frames:
        reading overlapping frames from that view beat gathering every frame (measured).
        """
        cfg = self.cfg
        span = (n_frames - 1) * cfg.sequence_stride + cfg.fft_length
        centred = padded_take(np, rows, np.arange(-cfg.pad, span - cfg.pad), cfg.pad_mode)
        s_row, s = centred.strides
        return as_strided(centred, shape=(rows.shape[0], n_frames, cfg.fft_length),
                          strides=(s_row, s * cfg.sequence_stride, s), writeable=False)

    # ------------------------------------------------------------------ one block
    def _power(self, frames: np.ndarray, dense: bool, batch: int) -> np.ndarray:
        """``|rfft(window * frame)| ** mag_exp`` of ``frames (clips, n, fft)`` over the bins the mel product
        reads: ``(clips, n, bins)``, in this thread's power buffer, ``batch`` frames or fewer at a time
        (whole clips when a clip has at most ``batch`` frames, else even slices of one clip).

        ``|X|`` in one pass (NumPy's vectorised complex absolute value), then its power in place. Letting
        the product read the squared real and imaginary parts where they lie (interleaved, each with its
        bin's weight) saved a pass but doubled the product's width: 1.02x (16 x 10 s) to 1.23x (10,000
        clips of 3 frames) slower than this (measured). Non-finite input: where ``re^2 + im^2`` would be
        NaN, ``|X|`` may be inf, but the dense product then gives NaN in every band of that frame either way.
        """
        cfg = self.cfg
        clips, n, _ = frames.shape
        lo, hi = self._bins(dense)
        fbuf, pbuf = self._buffers()
        p = pbuf[: clips * n * (hi - lo)].reshape(clips, n, hi - lo)
        if n <= batch:
            per = batch // n
            pieces = [(slice(c, min(clips, c + per)), slice(0, n)) for c in range(0, clips, per)]
        else:
            size = -(-n // -(-n // batch))  # even slices
            pieces = [(slice(c, c + 1), slice(t, min(n, t + size))) for c in range(clips) for t in range(0, n, size)]
        rfft = rfft_impl()[1]
        for rows, ts in pieces:
            src = frames[rows, ts]
            buf = fbuf[: src.shape[0] * src.shape[1]].reshape(src.shape)
            window_into(src, self.window, buf, cfg)
            dst = p[rows, ts]
            np.abs(rfft(buf)[..., lo:hi], out=dst)
            if cfg.mag_exp == 2.0:
                np.multiply(dst, dst, out=dst)
            elif cfg.mag_exp != 1.0:
                np.power(dst, cfg.mag_exp, out=dst)
        return p

    def _mel(self, p: np.ndarray, o: np.ndarray, dense: bool) -> None:
        """``o (..., mels, T) = filterbank.T @ p (..., T, bins).T``, then dB before ``top_db`` (NaN propagates,
        as in Keras). With a leading clip axis the product is one matrix product per clip, so that a clip's
        numbers never depend on the clips beside it (BLAS rounds a column by where it sits in a product)."""
        cfg, bf = self.cfg, self.banded
        if dense:
            _product(self.dense_t, p.swapaxes(-1, -2), o)
        else:
            for g in bf.groups:
                dst = o[..., g.band_lo : g.band_hi, :]
                if g.bin_hi > g.bin_lo:
                    _product(g.weights_t, p[..., g.bin_lo - bf.bin_lo : g.bin_hi - bf.bin_lo].swapaxes(-1, -2), dst)
                else:
                    dst[...] = 0
        if cfg.power_to_db:
            np.maximum(o, cfg.min_power, out=o)
            np.log10(o, out=o)
            np.multiply(o, 10.0, out=o)
            if self.ref_db != 0.0:
                np.subtract(o, self.ref_db, out=o)

    def _tile(self, x2: np.ndarray, out: np.ndarray, dense: bool, batch: int, i: int, t0: int, t1: int) -> None:
        p = self._power(self._tile_frames(x2[i], t0, t1)[None], dense, batch)
        self._mel(p[0], out[i, :, t0:t1], dense)

    def _clips(self, x2: np.ndarray, out: np.ndarray, dense: bool, batch: int, i0: int, i1: int) -> None:
        p = self._power(self._clip_frames(x2[i0:i1], out.shape[2]), dense, batch)
        self._mel(p, out[i0:i1], dense)

    # ------------------------------------------------------------------ whole call
    def _blocks(self, clips: int, n_frames: int, max_memory: int | None) -> list[tuple]:
        """The units of work: ``("clips", i0, i1)`` groups of short clips, or ``("tile", i, t0, t1)``."""
        block = self.block
        if max_memory is not None:  # per frame: frames, spectrum (2x), power, mel, in the compute dtype
            per_frame = self.dtype.itemsize * (4 * self.cfg.fft_length + self.cfg.num_mel_bins + 4)
            # shared by as many threads as there are CPUs (not by this call's workers: blocks never depend on those)
            block = max(1, min(block, int(max_memory) // max(1, per_frame * cpu_count())))
        # A clip's frames are cut the same way whatever the batch and the thread count, so that its numbers
        # depend on nothing else (BLAS rounds a column by where it sits in a product): the split depends on
        # the clip's length (and max_memory) only. Short clips are grouped, each with its own products
        # (see _mel); a long one is cut in even tiles of at most a block, so a clip of n blocks keeps
        # n workers busy (splitting a 10 s speech clip in two cost 11% more CPU over 16 clips).
        if clips == 0:
            return []
        if 2 * n_frames <= block:
            per = block // n_frames
            per = -(-clips // -(-clips // per))  # even groups
            return [("clips", i, min(clips, i + per)) for i in range(0, clips, per)]
        tiles = -(-n_frames // block)
        size = -(-n_frames // tiles)
        return [("tile", i, t0, min(n_frames, t0 + size)) for i in range(clips) for t0 in range(0, n_frames, size)]

    def _samples_read(self, x2: np.ndarray, unit: tuple) -> np.ndarray:
        """The input samples a block reads (a superset: a tile's span widened by the padding on each side, so
        that the samples its reflections copy are in; a group's whole clips)."""
        if unit[0] == "clips":
            return x2[unit[1] : unit[2]]
        cfg = self.cfg
        _, i, t0, t1 = unit
        s0 = t0 * cfg.sequence_stride - 2 * cfg.pad
        s1 = (t1 - 1) * cfg.sequence_stride + cfg.fft_length
        return x2[i, max(s0, 0) : max(min(s1, x2.shape[1]), 0)]

    def needs_dense(self, x: np.ndarray) -> bool:
        """True when a sample is non-finite or so large that a power or a mel sum could overflow."""
        if x.size == 0:
            return False
        hi, lo = x.max(), x.min()  # NaN propagates through both
        with np.errstate(invalid="ignore", over="ignore"):
            return not (abs(float(hi)) <= self.max_safe_sample and abs(float(lo)) <= self.max_safe_sample)

    def __call__(self, x: np.ndarray, *, max_memory: int | None = None, workers: int | None = None) -> np.ndarray:
        cfg = self.cfg
        n_workers = resolve(workers)
        batch_shape, n = x.shape[:-1], x.shape[-1]
        x2 = x.reshape(math.prod(batch_shape), n)
        n_frames = cfg.n_frames(n)
        out = empty_aligned((x2.shape[0], cfg.num_mel_bins, n_frames), self.dtype)  # JAX adopts it without a copy
        units = self._blocks(x2.shape[0], n_frames, max_memory)
        if x2.shape[0] * n_frames * cfg.fft_length < MIN_PARALLEL_FRAME_SAMPLES:
            n_workers = 1  # a small call: not worth waking the pool (see MIN_PARALLEL_FRAME_SAMPLES)
        batch = self.fft_batch if len(units) <= n_workers else self.block  # see FFT_BATCH_BYTES

        def work(unit: tuple) -> None:
            dense = self.needs_dense(self._samples_read(x2, unit))
            # non-finite input: inf - inf, 0 * inf and overflow are expected, and give Keras's NaN silently
            with np.errstate(over="ignore", invalid="ignore") if dense else contextlib.nullcontext():
                if unit[0] == "clips":
                    self._clips(x2, out, dense, batch, unit[1], unit[2])
                else:
                    self._tile(x2, out, dense, batch, *unit[1:])

        run_parallel(work, units, n_workers)
        if cfg.power_to_db and cfg.top_db is not None and out.size:
            if cfg.top_db_scope == "batch":
                floor = out.max() - cfg.top_db
            else:
                floor = out.max(axis=(1, 2), keepdims=True) - cfg.top_db
            np.maximum(out, floor, out=out)
        return out.reshape(*batch_shape, cfg.num_mel_bins, n_frames)
