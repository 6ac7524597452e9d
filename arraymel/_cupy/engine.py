"""The chunk loop of the GPU path, written against a small ``ops`` interface.

``ops`` allocates buffers, launches a named kernel with its packed arguments (checked by
:func:`arraymel._cupy.kernels.pack_args`; pointers are :class:`~arraymel._cupy.kernels.Ptr`, an
array plus an element offset) and runs a batched real FFT with a given layout.
:class:`arraymel._cupy.pipeline.CupyOps` does this with CuPy (NVRTC kernels, cached
cuFFT plans, the current stream); the tests' ``tests/cuda_cpu`` runs the same kernel text compiled
with g++ on the CPU, so that every index and layout computed here is tested without a GPU.

Per chunk (see :mod:`arraymel._cupy.chunking`), three launches:

1. ``am_pad_reflect`` (pitched layout: the centred signal segment, one copy, cast to the
   compute type) or ``am_frames_window`` (gather layout: windowed frames);
2. one batched R2C transform (pitched: input distance = hop, frames read in place);
3. ``am_mel_smem`` / ``am_mel_direct``: window taps, power, sparse mel, dB, transposed store,
   ``top_db`` maximum.

After the last chunk, when ``top_db`` clips: one ``am_clip_top_db`` over the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arraymel._cupy.chunking import ChunkPlan, Problem, RetryLog, min_budget, plan_chunks, run_with_retry
from arraymel._cupy.kernels import BLOCK, CLIP_ITEMS, INPUT_CTYPES, PAD_ITEMS, Prepared, Ptr, Unbound
from arraymel._cupy.params import MelParams, mel_launch

_GRID_X_MAX = 2**31 - 1


@dataclass(frozen=True)
class FftLayout:
    """A batched 1-D real-to-complex transform: ``batch`` inputs of ``n`` reals, ``idist`` apart
    (``idist < n``: overlapping frames, read in place), outputs of ``n // 2 + 1`` complex, ``odist`` apart."""

    n: int
    idist: int
    batch: int
    odist: int
    dtype_name: str


@dataclass
class Constants:
    """The per-state device arrays: band table (int32, flat), weights and window in the compute dtype."""

    bands: Any
    weights: Any
    window: Any  # the padded window, or a 1-element placeholder when there is none
    has_window: int


class Engine:
    """Runs one mel spectrogram over ``x2`` ``(rows, samples)`` into ``out`` ``(rows, mels, frames)``."""

    def __init__(self, params: MelParams, ops: Any, consts: Constants, min_blocks: int = 0):
        self.p, self.ops, self.c = params, ops, consts
        #: blocks a mel launch should make to fill the device (2 per multiprocessor; 0: no preference)
        self.min_blocks = min_blocks
        #: arguments packed once per (kernel, input dtype): per call and chunk only pointers and sizes change
        self._kernels: dict[tuple, Prepared] = {}
        self._clip_args = Prepared("am_clip_top_db", params.dtype_name, None, dict(
            out=Unbound(params.dtype_name), row_elems=1, tiles=1, max_keys=Unbound(params.key_dtype.name), per_row=0,
            top_db=params.top_db if params.needs_max else 0.0))

    def problem(self, batch: int, samples: int) -> Problem:
        p = self.p
        frames = p.frames(samples)
        return Problem(batch=batch, samples=samples, frames=frames, n_fft=p.n_fft, hop=p.hop, nb=p.nb,
                       n_mels=p.n_mels, itemsize=p.itemsize, inplace_ok=p.inplace_ok)

    def plan(self, batch: int, samples: int, budget: int) -> ChunkPlan:
        return plan_chunks(self.problem(batch, samples), budget)

    def compute(self, x: Any, budget: int, *, is_oom: Any = None, on_oom: Any = None) -> tuple[Any, ChunkPlan | None, RetryLog]:
        """``x`` ``(..., samples)`` -> ``(..., mels, frames)`` in the compute dtype, with the work area under
        ``budget`` bytes; out-of-memory errors (``is_oom``) halve the budget and start again.

        Returns the output, the chunk plan that succeeded (None for an empty batch) and the retry log.
        """
        p = self.p
        batch_shape, n = tuple(x.shape[:-1]), int(x.shape[-1])
        if n < 1:  # am_reflect has no index into an empty row (it would read before the row)
            raise ValueError(f"x has shape {tuple(x.shape)}: the last axis (samples) must hold at least 1 sample.")
        B = 1
        for d in batch_shape:
            B *= int(d)
        frames = p.frames(n)
        out = self.ops.empty((B, p.n_mels, frames), p.dtype_name)
        log = RetryLog([], [])
        if B == 0:
            return out.reshape(*batch_shape, p.n_mels, frames), None, log
        x2 = x.reshape(B, n)
        if x2.dtype.name not in INPUT_CTYPES:  # float16 and other rare types: one cast first
            x2 = x2.astype(p.dtype_name)

        def attempt(b: int) -> ChunkPlan:
            plan = self.plan(B, n, b)
            self.run(x2, out, plan)
            return plan

        plan = run_with_retry(attempt, budget, is_oom=is_oom or (lambda e: False), on_oom=on_oom or (lambda: None),
                              min_budget=min_budget(self.problem(B, n)), log=log)
        return out.reshape(*batch_shape, p.n_mels, frames), plan, log

    def run(self, x2: Any, out: Any, plan: ChunkPlan) -> None:
        """Every chunk of ``plan`` from ``x2`` ``(rows, samples)`` into ``out`` ``(rows, mels, frames)``.

        Arguments are packed once per kernel (:class:`~arraymel._cupy.kernels.Prepared`); per chunk only
        the pointers (as element offsets) and sizes change, so the host's cost per chunk is a few
        microseconds plus the launches themselves.
        """
        p, ops = self.p, self.ops
        prob = plan.problem
        B, n = prob.batch, prob.samples
        if B == 0:
            return
        T = p.dtype_name
        tin = x2.dtype.name
        if tin not in INPUT_CTYPES:
            raise TypeError(f"input dtype {tin} has no kernel: cast it first")
        isz = x2.dtype.itemsize
        if x2.strides[0] % isz or x2.strides[1] % isz:
            raise ValueError("input strides must be multiples of the item size")
        row_stride, sample_stride = x2.strides[0] // isz, x2.strides[1] // isz
        osz = out.dtype.itemsize
        out_row, out_band = out.strides[0] // osz, out.strides[1] // osz

        sig = ops.empty(plan.max_input_elems, T)
        spec = ops.empty(plan.max_spectrum_elems, T)
        max_mode = 0
        if p.needs_max:
            max_mode = 2 if p.per_example else 1
        keys = ops.zeros(B if max_mode == 2 else 1, p.key_dtype.name)
        ml = mel_launch(p.table.nbu, p.itemsize, plan.frames, min(plan.rows, B), self.min_blocks)
        inplace = plan.path == "inplace"
        block = (BLOCK, 1, 1)

        sig_kernel = self._prepared("am_pad_reflect" if inplace else "am_frames_window", tin).bind(
            row_stride=row_stride, sample_stride=sample_stride, n=n, out=sig)
        mel_kernel = self._prepared(ml.kernel, None).bind(
            spec=spec, taps=p.taps if inplace else 0, out_row=out_row, out_band=out_band, max_mode=max_mode,
            **(dict(fpb=ml.fpb, stride_s=ml.stride_s) if ml.kernel == "am_mel_smem" else {}))

        for ch in plan.chunks():
            rows, fc = ch.rows, ch.frames
            xp_ = Ptr(x2, ch.b0 * row_stride)
            seg_start = ch.t0 * p.hop - p.pad
            if inplace:
                pitch = plan.pitch(fc)
                grid = (-(-(pitch + prob.tail) // (BLOCK * PAD_ITEMS)), rows, 1)
                ops.launch("am_pad_reflect", T, tin, grid, block, 0,
                           sig_kernel.args(x=xp_, seg_start=seg_start, pitch=pitch))
            else:  # a thread per sample, or with the frame step a block per frame
                grid = (fc if p.frame_step else -(-(fc * p.n_fft) // BLOCK), rows, 1)
                ops.launch("am_frames_window", T, tin, grid, block, 0,
                           sig_kernel.args(x=xp_, seg_start=seg_start, frames=fc))
            ops.rfft(FftLayout(n=p.n_fft, idist=plan.fft_idist(), batch=plan.fft_batch(rows, fc), odist=p.nb,
                               dtype_name=T), sig, spec)
            tiles = ml.tiles(fc, p.n_mels)
            ops.launch(ml.kernel, T, None, (rows * tiles, 1, 1), block, ml.smem, mel_kernel.args(
                frames_row=plan.fft_frames_row(fc), frames=fc, tiles=tiles,
                out=Ptr(out, ch.b0 * out_row + ch.t0 * (out.strides[2] // osz)),
                max_keys=Ptr(keys, ch.b0 if max_mode == 2 else 0)))

        if max_mode:
            self._clip(out, keys, B, max_mode == 2)

    def _prepared(self, kernel: str, tin: str | None) -> Prepared:
        """``kernel``'s arguments with this engine's constants, packed once per (kernel, input dtype); a call
        binds its buffers and sizes (:meth:`Prepared.bind`), a chunk its pointers and offsets."""
        key = (kernel, tin)
        prep = self._kernels.get(key)
        if prep is None:
            p, c = self.p, self.c
            T = p.dtype_name
            if kernel == "am_pad_reflect":
                values = dict(x=Unbound(tin), row_stride=0, sample_stride=1, n=1, seg_start=0, pitch=1,
                              tail=max(0, p.n_fft - p.hop), zero_pad=p.zero_pad, out=Unbound(T))
            elif kernel == "am_frames_window":
                values = dict(x=Unbound(tin), row_stride=0, sample_stride=1, n=1, seg_start=0, hop=p.hop,
                              n_fft=p.n_fft, frames=1, window=c.window, has_window=c.has_window, zero_pad=p.zero_pad,
                              frame_step=p.frame_step, win_len=p.win_len, preemph=p.preemph, out=Unbound(T))
            else:
                values = dict(
                    spec=Unbound(T), frames_row=1, frames=1, tiles=1, nb=p.nb, n_fft=p.n_fft, taps=0, tap_a=p.tap_a,
                    tap_b=p.tap_b, pmode=p.pmode, half_exp=p.half_exp, bands=c.bands, weights=c.weights,
                    n_mels=p.n_mels, out=Unbound(T), out_row=0, out_band=0, db=p.db, min_power=p.min_power,
                    ref_db=p.ref_db, has_ref=p.has_ref, max_keys=Unbound(p.key_dtype.name), max_mode=0)
                if kernel == "am_mel_smem":
                    values.update(fpb=1, stride_s=1, bin_lo=p.table.bin_lo, nbu=p.table.nbu)
            prep = self._kernels[key] = Prepared(kernel, T, tin, values)
        return prep

    def _clip(self, out: Any, keys: Any, B: int, per_example: bool) -> None:
        p, ops = self.p, self.ops
        per = BLOCK * CLIP_ITEMS
        T = p.dtype_name
        if not per_example:
            total = B * p.n_mels * out.shape[2]
            tiles = -(-total // per)
            if tiles > _GRID_X_MAX:
                raise ValueError(f"output of {total} elements is too large for one top_db pass")
            ops.launch("am_clip_top_db", T, None, (tiles, 1, 1), (BLOCK, 1, 1), 0, self._clip_args.args(
                out=Ptr(out), row_elems=total, tiles=tiles, max_keys=Ptr(keys), per_row=0))
            return
        row_elems = p.n_mels * out.shape[2]
        tiles = -(-row_elems // per)
        step = max(1, _GRID_X_MAX // tiles)
        osz = out.dtype.itemsize
        for r0 in range(0, B, step):
            r1 = min(B, r0 + step)
            ops.launch("am_clip_top_db", T, None, ((r1 - r0) * tiles, 1, 1), (BLOCK, 1, 1), 0, self._clip_args.args(
                out=Ptr(out, r0 * (out.strides[0] // osz)), row_elems=row_elems, tiles=tiles, max_keys=Ptr(keys, r0),
                per_row=1))


def consts_host(params: MelParams) -> dict:
    """The host arrays :class:`Constants` is made of (flat int32 band table, weights, window)."""
    import numpy as np

    dt = np.dtype(params.dtype_name)
    window = params.window
    return {
        "bands": np.ascontiguousarray(params.table.bands.reshape(-1), dtype=np.int32),
        "weights": np.ascontiguousarray(params.table.weights, dtype=dt),
        "window": np.ascontiguousarray(window if window is not None else np.ones(1), dtype=dt),
        "has_window": int(window is not None),
    }

