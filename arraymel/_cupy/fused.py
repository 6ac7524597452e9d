"""The fused GPU path (opt-in, ``backend="cupy-fused"``): one kernel per call from the signal to the
mel dB values, then the ``top_db`` clip. Pure Python and NumPy (no CuPy), like the engine.

The spectrum never reaches GPU memory: ``am_fused_mel`` (:mod:`arraymel._cupy.fused_kernels`)
windows, transforms, squares, applies the mel bands and converts to dB inside one block. There
is no work area, hence no chunks: one launch covers the whole batch (split only where the grid
would exceed 2^31 - 1 blocks), and the call is two launches (three with the key reset).

Which sizes: ``fft_length`` even, at most 4096, whose half is a product of 2, 3 and 5 (256, 320,
400, 512, 1024, 2048, 4096 and many more: :func:`fused_unsupported` says why one is not). Every
other configuration runs the cuFFT path (:class:`arraymel._cupy.engine.Engine`) instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from arraymel._cupy.chunking import RetryLog
from arraymel._cupy.engine import Engine
from arraymel._cupy.fused_kernels import FUSED_MAX_BUTTERFLIES, FUSED_PARAMS, RADIX_BITS
from arraymel._cupy.kernels import BLOCK, INPUT_CTYPES, SMEM_LIMIT, Prepared, Ptr, Unbound
from arraymel._cupy.params import MAX_FRAMES_PER_BLOCK, MelParams

#: Largest transform of the fused kernel (one frame in float64 must fit 47 KiB of shared memory).
FUSED_MAX_FFT = 4096
#: Smallest transform (radix stages need at least two points of half length).
FUSED_MIN_FFT = 4
#: Packed radix lists hold this many stages (3 bits each in an int32).
MAX_STAGES = 10

_GRID_X_MAX = 2**31 - 1


def radix_plan(half: int) -> tuple[int, ...]:
    """The radices of the half-length complex FFT, first stage first: one 2 where the power of two
    is odd (first: its twiddles are all 1), then 3s, 5s and 4s. Raises ValueError for other factors."""
    m, out = half, []
    twos = 0
    while m % 2 == 0:
        m //= 2
        twos += 1
    for r in (3, 5):
        while m % r == 0:
            m //= r
            out.append(r)
    if m != 1:
        raise ValueError(f"{half} has a prime factor above 5")
    return tuple([2] * (twos % 2) + out + [4] * (twos // 2))


def pack_radices(radices: tuple[int, ...]) -> int:
    """The radix list as the kernel reads it: stage ``s`` in bits ``3 s .. 3 s + 2``."""
    if len(radices) > MAX_STAGES:
        raise ValueError(f"{len(radices)} stages: at most {MAX_STAGES}")
    return sum(r << (RADIX_BITS * s) for s, r in enumerate(radices))


def twiddle_table(n_fft: int) -> np.ndarray:
    """``E[t] = exp(-2 pi i t / n_fft)``, ``t < n_fft``, interleaved (re, im), float64; the quarter turns
    (1, -i, -1, i) are exact."""
    t = np.arange(n_fft, dtype=np.int64)
    c = np.cos(2 * np.pi * t / n_fft)
    s = -np.sin(2 * np.pi * t / n_fft)
    for q, (cq, sq) in enumerate(((1.0, 0.0), (0.0, -1.0), (-1.0, 0.0), (0.0, 1.0))):
        if (q * n_fft) % 4 == 0:
            i = q * n_fft // 4
            c[i], s[i] = cq, sq
    out = np.empty(2 * n_fft, dtype=np.float64)
    out[0::2], out[1::2] = c, s
    return out


def framing_unsupported(params: Any) -> str | None:
    """Why the fused kernel cannot frame this configuration (None: it can): it reads centred, reflect-padded
    frames only (the presets' zero padding, Kaldi's frames and frame step run on the cuFFT path)."""
    if params.frame_step:
        return "the Kaldi frame step is in the gather kernel of the cuFFT path"
    if params.zero_pad:
        return "pad_mode='constant' is on the cuFFT path"
    if params.frame_span != params.n_fft:
        return "center=False is on the cuFFT path"
    return None


def fallback_reason(cfg: Any, dtype_name: str) -> str | None:
    """Why ``backend="cupy-fused"`` computes the :class:`~arraymel.MelConfig` ``cfg`` with the cuFFT kernels
    (None: the fused kernel computes it): its framing (:func:`framing_unsupported`) or its size."""
    framing = SimpleNamespace(frame_step=int(cfg.frame_step == "kaldi"), zero_pad=int(cfg.pad_mode == "constant"),
                              frame_span=cfg.frame_span, n_fft=cfg.fft_length)
    return framing_unsupported(framing) or fused_unsupported(cfg.fft_length, dtype_name)


def fused_unsupported(n_fft: int, dtype_name: str) -> str | None:
    """Why the fused kernel cannot compute this size (None: it can)."""
    if n_fft % 2:
        return f"fft_length={n_fft} is odd (the fused kernel needs an even length)"
    if not FUSED_MIN_FFT <= n_fft <= FUSED_MAX_FFT:
        return f"fft_length={n_fft} is outside {FUSED_MIN_FFT} .. {FUSED_MAX_FFT}"
    try:
        radices = radix_plan(n_fft // 2)
    except ValueError:
        return f"fft_length / 2 = {n_fft // 2} has a prime factor above 5"
    if len(radices) > MAX_STAGES:  # pragma: no cover - 2048 has at most 7 stages
        return f"fft_length={n_fft} needs {len(radices)} stages"
    if frame_smem(n_fft // 2, np.dtype(dtype_name).itemsize) > SMEM_LIMIT:  # pragma: no cover - 4096 fits
        return f"one frame of fft_length={n_fft} does not fit shared memory"
    return None


def frame_smem(half: int, itemsize: int) -> int:
    """Shared memory of one frame: ``half`` complex values plus the spare slot of the last bin."""
    return (2 * half + 2) * itemsize


@dataclass(frozen=True)
class FusedLaunch:
    """Launch shape of ``am_fused_mel``: ``fpb`` frames per block in ``smem`` bytes."""

    fpb: int
    smem: int

    def tiles(self, frames: int) -> int:
        return -(-frames // self.fpb)


def fused_launch(half: int, radices: tuple[int, ...], itemsize: int, frames: int, rows: int = 1,
                 min_blocks: int = 0, smem_limit: int = SMEM_LIMIT) -> FusedLaunch:
    """The largest power-of-two frames per block (at most 32, at most what ``frames`` needs) whose frames
    fit ``smem_limit`` and whose stages fit the threads' registers (``256 * FUSED_MAX_BUTTERFLIES``
    butterflies); fewer, down to 1, while the call makes fewer than ``min_blocks`` blocks."""
    most_butterflies = half // min(radices)
    want = 1 << max(0, math.ceil(math.log2(max(1, frames))))
    fpb = min(MAX_FRAMES_PER_BLOCK, want)
    while fpb > 1 and (fpb * frame_smem(half, itemsize) > smem_limit
                       or fpb * most_butterflies > BLOCK * FUSED_MAX_BUTTERFLIES):
        fpb //= 2
    while fpb > 1 and rows * -(-frames // fpb) < min_blocks:
        fpb //= 2
    if frame_smem(half, itemsize) > smem_limit or most_butterflies > BLOCK * FUSED_MAX_BUTTERFLIES:
        raise ValueError(f"one frame of {2 * half} points does not fit the fused kernel")
    return FusedLaunch(fpb, fpb * frame_smem(half, itemsize))


@dataclass(frozen=True)
class FusedPlan:
    """What one fused call did (the fields :class:`~arraymel._cupy.pipeline.CallStats` reads)."""

    rows: int
    frames: int
    fpb: int
    n_chunks: int  # fused launches
    path: str = "fused"
    work_bytes: int = 0


class FusedEngine(Engine):
    """The engine of the fused path: same ``ops`` interface, constants and clip as :class:`Engine`, plus the
    twiddle table (``twiddles``, interleaved, in the compute dtype, on the device)."""

    def __init__(self, params: MelParams, ops: Any, consts: Any, twiddles: Any, min_blocks: int = 0):
        super().__init__(params, ops, consts, min_blocks)
        why = framing_unsupported(params) or fused_unsupported(params.n_fft, params.dtype_name)
        if why:
            raise ValueError(why)
        self.half = params.n_fft // 2
        self.radices = radix_plan(self.half)
        self.twiddles = twiddles
        self._key_name = params.key_dtype.name
        self._names: dict[Any, str] = {}  # dtype -> its name (dtype.name costs microseconds)
        self._last_launch: tuple = (None, None)  # ((frames, rows), FusedLaunch) of the last call

    def _dtype_name(self, dt: Any) -> str:
        name = self._names.get(dt)
        if name is None:
            name = self._names[dt] = np.dtype(dt).name
        return name

    def launch_shape(self, frames: int, rows: int) -> FusedLaunch:
        """:func:`fused_launch` for this engine (the last call's is kept: a repeated shape recomputes nothing)."""
        key, ml = self._last_launch
        if key != (frames, rows):
            ml = fused_launch(self.half, self.radices, self.p.itemsize, frames, rows, self.min_blocks)
            self._last_launch = ((frames, rows), ml)
        return ml

    def _prepared(self, kernel: str, tin: str | None) -> Prepared:
        """The fused kernel's arguments for input dtype ``tin``, packed once; per call only sizes and pointers change."""
        if kernel != "am_fused_mel":
            return super()._prepared(kernel, tin)
        prep = self._kernels.get((kernel, tin))
        if prep is None:
            p, c = self.p, self.c
            prep = Prepared("am_fused_mel", p.dtype_name, tin, dict(
                x=Unbound(tin), row_stride=0, sample_stride=1, n=1, seg_start=-p.pad, hop=p.hop, frames=1,
                tiles=1, fpb=1, half=self.half, radices=pack_radices(self.radices), stages=len(self.radices),
                twiddles=self.twiddles, window=c.window, has_window=c.has_window, bin_lo=p.table.bin_lo,
                pmode=p.pmode, half_exp=p.half_exp, bands=c.bands, weights=c.weights, n_mels=p.n_mels,
                out=Unbound(p.dtype_name), out_row=0, out_band=0, db=p.db, min_power=p.min_power,
                ref_db=p.ref_db, has_ref=p.has_ref, max_keys=Unbound(self._key_name), max_mode=0,
            ), FUSED_PARAMS)
            self._kernels[kernel, tin] = prep
        return prep

    def compute(self, x: Any, budget: int = 0, *, path: str | None = None, is_oom: Any = None,
                on_oom: Any = None) -> tuple[Any, FusedPlan | None, RetryLog]:
        """``x`` ``(..., samples)`` -> ``(..., mels, frames)``; ``budget`` is not used (there is no work area)."""
        if path not in (None, "fused"):
            raise ValueError(f"the fused engine has one layout, not {path!r}")
        p = self.p
        batch_shape, n = tuple(x.shape[:-1]), int(x.shape[-1])
        if n < 1:
            raise ValueError(f"x has {n} samples: a mel spectrogram needs at least one")
        B = math.prod(batch_shape)
        frames = p.frames(n)
        out = self.ops.empty((B, p.n_mels, frames), p.dtype_name)
        log = RetryLog([0], [])
        if B == 0:
            return out.reshape(*batch_shape, p.n_mels, frames), None, log
        x2 = x.reshape(B, n)
        if self._dtype_name(x2.dtype) not in INPUT_CTYPES:  # float16 and other rare types: one cast first
            x2 = x2.astype(p.dtype_name)
        plan = self.run(x2, out)
        return out.reshape(*batch_shape, p.n_mels, frames), plan, log

    def run(self, x2: Any, out: Any, plan: Any = None) -> FusedPlan:  # type: ignore[override]
        """``x2`` ``(rows, samples)`` into ``out`` ``(rows, mels, frames)``: the fused launch(es), then the clip."""
        p, ops = self.p, self.ops
        B, n = int(x2.shape[0]), int(x2.shape[1])
        frames = int(out.shape[2])
        tin = self._dtype_name(x2.dtype)
        if tin not in INPUT_CTYPES:
            raise TypeError(f"input dtype {tin} has no kernel: cast it first")
        isz, osz = x2.dtype.itemsize, out.dtype.itemsize
        if x2.strides[0] % isz or x2.strides[1] % isz:
            raise ValueError("input strides must be multiples of the item size")
        row_stride, sample_stride = x2.strides[0] // isz, x2.strides[1] // isz
        out_row, out_band = out.strides[0] // osz, out.strides[1] // osz
        max_mode = (2 if p.per_example else 1) if p.needs_max else 0
        keys = ops.zeros(B if max_mode == 2 else 1, self._key_name)
        ml = self.launch_shape(frames, B)
        tiles = ml.tiles(frames)
        step = max(1, _GRID_X_MAX // tiles)
        prep = self._prepared("am_fused_mel", tin)
        launches = 0
        for r0 in range(0, B, step):
            rows = min(B, r0 + step) - r0
            ops.launch("am_fused_mel", p.dtype_name, tin, (rows * tiles, 1, 1), (BLOCK, 1, 1), ml.smem, prep.args(
                x=Ptr(x2, r0 * row_stride), row_stride=row_stride, sample_stride=sample_stride, n=n, frames=frames,
                tiles=tiles, fpb=ml.fpb, out=Ptr(out, r0 * out_row), out_row=out_row, out_band=out_band,
                max_keys=Ptr(keys, r0 if max_mode == 2 else 0), max_mode=max_mode))
            launches += 1
        if max_mode:
            self._clip(out, keys, B, max_mode == 2)
        return FusedPlan(rows=B, frames=frames, fpb=ml.fpb, n_chunks=launches)


def twiddles_host(params: MelParams) -> np.ndarray:
    """The twiddle table of ``params`` in its compute dtype (uploaded once per state)."""
    return twiddle_table(params.n_fft).astype(params.dtype_name)

