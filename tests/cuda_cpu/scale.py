"""Scale mode: the engine at GPU sizes with its real launch geometry, executing only some blocks.

Buffers are sparse (anonymous ``MAP_NORESERVE`` mappings: untouched pages cost nothing, and ``empty``
is zero pages rather than poison), so a
2^31-sample input or an output of more than 2^31 elements fits a small machine. Every launch has
the grid the engine computes for the real problem (CUDA's limits checked), and runs:

- the corner blocks (first and last along every grid dimension) and a few random ones, so the
  extreme ``blockIdx`` values and the index arithmetic at the buffers' ends run;
- the blocks that produce a chosen set of *sampled* output positions ``(row, frame)``: the signal
  blocks writing those frames' samples, their transforms (only those are computed), the mel blocks
  and the clip blocks covering them. The test compares the sampled outputs with the oracle.

Guard zones are checked after every launch, as in :class:`~cuda_cpu.ops.EmuOps`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from arraymel._cupy import kernels
from cuda_cpu.build import KernelError
from cuda_cpu.ops import EmuOps


class ScaleOps(EmuOps):
    """:class:`EmuOps` with sparse buffers and sampled blocks; call :meth:`begin` with the plan before ``Engine.run``."""

    def __init__(self, *, random_blocks: int = 3, seed: int = 0, **options: Any):
        super().__init__(**options)
        self.zero_pages = True
        self.random_blocks = random_blocks
        self.rng = np.random.default_rng(seed)
        self.blocks_run: dict[str, int] = {}
        self.grids: dict[str, set] = {}

    def sparse(self, shape: tuple, dtype_name: str) -> np.ndarray:
        """A zero-filled device buffer that costs only the pages written (``empty`` here is the same)."""
        return self.empty(shape, dtype_name)

    def zeros(self, n: int, dtype_name: str) -> np.ndarray:
        """Zeros (sparse like every buffer here); the last one is kept as :attr:`keys` (the engine's max keys)."""
        self.keys = super().zeros(n, dtype_name)
        return self.keys

    # ----------------------------------------------------------------- the sampled positions
    def begin(self, engine: Any, plan: Any, samples: set[tuple[int, int]]) -> None:
        """Sample ``samples`` = {(row, frame)} of the run of ``plan`` on ``engine`` (chunk by chunk)."""
        self.p = engine.p
        self.plan = plan
        self.samples = samples
        self._chunks: Iterator = iter(plan.chunks())
        self.local: list[tuple[int, int]] = []
        self.out_base: int = 0

    def _corners_and_random(self, grid: tuple) -> set[int]:
        gx, gy, gz = grid
        ids = set()
        for x in {0, gx - 1}:
            for y in {0, gy - 1}:
                for z in {0, gz - 1}:
                    ids.add(x + gx * (y + gy * z))
        total = gx * gy * gz
        ids.update(int(v) for v in self.rng.integers(0, total, self.random_blocks))
        return ids

    def _signal_blocks(self, kernel: str, a: dict, grid: tuple) -> set[int]:
        p, ids = self.p, set()
        gx, rows = grid[0], grid[1]
        if kernel == "am_pad_reflect":
            pitch, per = int(a["pitch"]), kernels.BLOCK * kernels.PAD_ITEMS
            for r, f in self.local:
                lo = r * pitch + f * p.hop
                for col in range(lo, lo + p.n_fft, per // 2):
                    for c in (col, min(col + per // 2, lo + p.n_fft - 1)):
                        row = min(c // pitch, rows - 1)
                        ids.add((c - row * pitch) // per + gx * row)
        else:
            n_fft = int(a["n_fft"])
            for r, f in self.local:
                for j in range(f * n_fft, (f + 1) * n_fft, kernels.BLOCK):
                    ids.update({j // kernels.BLOCK + gx * r, ((f + 1) * n_fft - 1) // kernels.BLOCK + gx * r})
        return ids

    def _mel_blocks(self, kernel: str, a: dict) -> set[int]:
        tiles, ids = int(a["tiles"]), set()
        frames = int(a["frames"])
        for r, f in self.local:
            if kernel == "am_mel_smem":
                ids.add(r * tiles + f // int(a["fpb"]))
            else:
                ids.update(r * tiles + (m * frames + f) // kernels.BLOCK for m in range(int(a["n_mels"])))
        return ids

    def _clip_blocks(self, a: dict, out_offset: int) -> set[int]:
        p, ids = self.p, set()
        frames = self.plan.problem.frames
        per = kernels.BLOCK * kernels.CLIP_ITEMS
        row_elems, tiles = int(a["row_elems"]), int(a["tiles"])
        for b, f in self.samples:
            for m in range(p.n_mels):
                rel = (b * p.n_mels + m) * frames + f - out_offset
                if int(a["per_row"]):
                    row, within = divmod(rel, row_elems)
                    if 0 <= row and row * tiles < self._grid_x:
                        ids.add(row * tiles + within // per)
                elif 0 <= rel < row_elems:
                    ids.add(rel // per)
        return ids

    def launch(self, kernel: str, dtype_name: str, in_dtype_name: str | None, grid: tuple, block: tuple, smem: int,
               args: tuple) -> None:
        a = {name: v for (_, name), v in zip(kernels.KERNEL_PARAMS[kernel], args)}
        grid = tuple(int(g) for g in grid)
        self.grids.setdefault(kernel, set()).add(grid)
        ids = self._corners_and_random(grid)
        if kernel in kernels.INPUT_KERNELS:
            ch = self.chunk = next(self._chunks)
            self.local = sorted((b - ch.b0, f - ch.t0) for b, f in self.samples
                                if ch.b0 <= b < ch.b0 + ch.rows and ch.t0 <= f < ch.t0 + ch.frames)
            ids |= self._signal_blocks(kernel, a, grid)
        elif kernel in ("am_mel_smem", "am_mel_direct"):
            ids |= self._mel_blocks(kernel, a)
        else:
            self._grid_x = grid[0]
            ids |= self._clip_blocks(a, a["out"].offset if isinstance(a["out"], kernels.Ptr) else 0)
        self.sample = lambda expression, g, chosen=sorted(ids): chosen  # noqa: B008 - sorted once, here
        self.blocks_run[kernel] = self.blocks_run.get(kernel, 0) + len(ids)
        try:
            super().launch(kernel, dtype_name, in_dtype_name, grid, block, smem, args)
        finally:
            self.sample = None

    def rfft(self, layout: Any, src: np.ndarray, dst: np.ndarray) -> None:
        """Only the sampled frames' transforms (cuFFT's layout checked for the whole batch)."""
        s, d = self._flat(src), self._flat(dst)
        n, idist, batch, odist = layout.n, layout.idist, layout.batch, layout.odist
        if (batch - 1) * idist + n > s.size or 2 * batch * odist > d.size:
            raise KernelError(f"cuFFT layout: {batch} transforms of {n}, {idist} apart, overrun a buffer")
        frames_row = self.plan.fft_frames_row(self.chunk.frames)
        idx = np.array(sorted(r * frames_row + f for r, f in self.local), dtype=np.int64)
        if idx.size:
            fr = s[idx[:, None] * idist + np.arange(n)[None, :]]
            ct = np.complex64 if src.dtype == np.float32 else np.complex128
            X = np.fft.rfft(fr.astype(np.float64), axis=-1).astype(ct)
            dv = d[:2 * batch * odist].view(ct).reshape(batch, odist)
            dv[idx] = X
        self.ffts.append(layout)
        self.check_guards()
