"""A NumPy model of the GPU path's kernels and cuFFT layouts: a second, independent model beside the
CUDA emulator (tests/cuda_cpu, which runs the kernel text itself). The tests compare the two.

:class:`NumpyOps` implements the ``ops`` interface of :mod:`arraymel._cupy.engine` with NumPy:
every launch is packed by :func:`arraymel._cupy.kernels.pack_args` exactly as on the GPU (so the
argument types and names are checked), then each kernel's arithmetic is replayed on the host from
the same scalar arguments and raw pointers (an array argument stands for its first element, as a
device pointer does). Every element read or written is bounds-checked against the allocation
behind the pointer, grids are checked to cover the work the kernel assumes, and fresh buffers are
filled with NaN (reading unwritten memory shows). The arithmetic follows the CUDA sources line by
line in the compute dtype; the FFT is NumPy's.

What this cannot check: the CUDA C++ itself (the emulator runs it), races, and cuFFT's
acceptance of the overlapped layout (only a GPU run shows those).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kernel_sources import decode_key, encode_keys

from arraymel._cupy.kernels import BLOCK, CLIP_ITEMS, KERNEL_PARAMS, PAD_ITEMS, SMEM_LIMIT, Ptr, pack_args


class OutOfBounds(AssertionError):
    """An emulated kernel touched memory outside the allocation behind a pointer."""


class _Ptr:
    """A device pointer modelled as (the flat allocation, the element offset of the first element)."""

    def __init__(self, a: Any):
        extra = 0
        if isinstance(a, Ptr):
            a, extra = a.array, a.offset
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        isz = a.dtype.itemsize
        if root.dtype != a.dtype:
            raise TypeError("emulated pointers need views of the allocation's own dtype")
        self.flat = np.lib.stride_tricks.as_strided(root, shape=(root.nbytes // isz,), strides=(isz,))
        delta = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        if delta % isz:
            raise ValueError("misaligned view")
        self.offset = delta // isz + extra

    def _abs(self, idx: Any) -> np.ndarray:
        i = np.asarray(idx, dtype=np.int64) + self.offset
        if i.size and (i.min() < 0 or i.max() >= self.flat.shape[0]):
            raise OutOfBounds(f"index range [{int(i.min())}, {int(i.max())}] outside an allocation of {self.flat.shape[0]}")
        return i

    def read(self, idx: Any) -> np.ndarray:
        return self.flat[self._abs(idx)]

    def write(self, idx: Any, values: Any) -> None:
        self.flat[self._abs(idx)] = values


def _check_packed(kernel: str, dtype_name: str, in_dtype_name: str | None, packed: tuple) -> None:
    """Each packed argument is exactly what its declared C type needs (as CuPy will pass it)."""
    spec = KERNEL_PARAMS[kernel]
    if len(packed) != len(spec):
        raise AssertionError(f"{kernel}: {len(packed)} arguments for {len(spec)} parameters")
    ref = pack_args(kernel, dtype_name, in_dtype_name, {name: v for (_, name), v in zip(spec, packed)})
    for (ctype, name), got, want in zip(spec, packed, ref):
        if not ctype.endswith("*") and type(got) is not type(want):
            raise AssertionError(f"{kernel}: argument {name} ({ctype}) passed as {type(got).__name__}")


def _reflect(p: np.ndarray, n: int) -> np.ndarray:
    """``am_reflect``: NumPy's reflect padding, periodic with period 2 (n - 1)."""
    p = np.asarray(p, dtype=np.int64)
    if n == 1:
        return np.zeros_like(p)
    period = 2 * (n - 1)
    q = np.abs(p) % period
    q = np.where(q >= n, period - q, q)
    return np.where((p >= 0) & (p < n), p, q)


class NumpyOps:
    """The ``ops`` of the engine on the host; ``launches`` records ``(kernel, grid, smem)`` of each call."""

    def __init__(self) -> None:
        self.launches: list[tuple[str, tuple, int]] = []
        self.ffts: list[Any] = []

    # ----------------------------------------------------------------- memory
    def empty(self, shape: int | tuple, dtype_name: str) -> np.ndarray:
        dt = np.dtype(dtype_name)
        a = np.empty(shape, dtype=dt)
        a.fill(np.nan if dt.kind == "f" else np.iinfo(dt).max // 3)  # poison: unwritten reads show
        return a

    def zeros(self, n: int, dtype_name: str) -> np.ndarray:
        return np.zeros(int(n), dtype=np.dtype(dtype_name))

    # ----------------------------------------------------------------- launches
    def launch(self, kernel: str, dtype_name: str, in_dtype_name: str | None, grid: tuple, block: tuple, smem: int,
               packed: tuple) -> None:
        _check_packed(kernel, dtype_name, in_dtype_name, packed)
        if tuple(block) != (BLOCK, 1, 1):
            raise AssertionError(f"{kernel}: block {block}, the kernels assume ({BLOCK}, 1, 1)")
        if any(int(g) < 1 for g in grid) or grid[0] > 2**31 - 1 or grid[1] > 65535 or grid[2] > 65535:
            raise AssertionError(f"{kernel}: grid {grid} outside CUDA's limits")
        if smem > SMEM_LIMIT:
            raise AssertionError(f"{kernel}: {smem} bytes of dynamic shared memory exceed {SMEM_LIMIT}")
        args = {name: v for (_, name), v in zip(KERNEL_PARAMS[kernel], packed)}
        self.launches.append((kernel, tuple(grid), int(smem)))
        getattr(self, "_" + kernel)(np.dtype(dtype_name), tuple(int(g) for g in grid), int(smem), args)

    def _am_pad_reflect(self, T: np.dtype, grid: tuple, smem: int, a: dict) -> None:
        x, out = _Ptr(a["x"]), _Ptr(a["out"])
        rows = grid[1]
        pitch, tail, n = int(a["pitch"]), int(a["tail"]), int(a["n"])
        for r in range(rows):
            cols = pitch + (tail if r == rows - 1 else 0)
            if grid[0] * BLOCK * PAD_ITEMS < cols:
                raise AssertionError("am_pad_reflect: grid does not cover the row")
            c = np.arange(cols, dtype=np.int64)
            pos = int(a["seg_start"]) + c
            src = r * int(a["row_stride"]) + _reflect(pos, n) * int(a["sample_stride"])
            v = x.read(src).astype(T)
            if int(a["zero_pad"]):
                v = np.where((pos >= 0) & (pos < n), v, T.type(0))
            out.write(r * pitch + c, v)

    def _am_frames_window(self, T: np.dtype, grid: tuple, smem: int, a: dict) -> None:
        x, out, win = _Ptr(a["x"]), _Ptr(a["out"]), _Ptr(a["window"])
        n_fft, frames, hop, n = int(a["n_fft"]), int(a["frames"]), int(a["hop"]), int(a["n"])
        per_row = frames * n_fft
        step, L = int(a["frame_step"]), int(a["win_len"])
        if (grid[0] != frames) if step else (grid[0] * BLOCK < per_row):
            raise AssertionError("am_frames_window: grid does not cover the row")
        j = np.arange(per_row, dtype=np.int64)
        f, k = j // n_fft, j % n_fft
        for r in range(grid[1]):
            pos = int(a["seg_start"]) + f * hop + k
            v = x.read(r * int(a["row_stride"]) + _reflect(pos, n) * int(a["sample_stride"])).astype(T)
            if int(a["zero_pad"]):
                v = np.where((pos >= 0) & (pos < n), v, T.type(0))
            if step:  # Kaldi: the mean of each frame's first win_len samples removed, then pre-emphasis
                fr = v.reshape(frames, n_fft)
                d = fr[:, :L] - fr[:, :L].mean(axis=1, keepdims=True, dtype=T)
                c = T.type(a["preemph"])
                fr[:, 1:L] = d[:, 1:] - c * d[:, :-1]
                fr[:, 0] = d[:, 0] - c * d[:, 0]
                v = fr.reshape(-1)
            if int(a["has_window"]):
                v = v * win.read(k)
            out.write(r * per_row + j, v)

    def _power(self, T: np.dtype, spec: _Ptr, base: np.ndarray, k: np.ndarray, a: dict) -> np.ndarray:
        """``am_power`` for frames at spectrum offsets ``base`` (column) and bins ``k`` (row)."""
        nb, n_fft = int(a["nb"]), int(a["n_fft"])

        def bins(kk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            kk = np.where(kk < 0, kk + n_fft, np.where(kk >= n_fft, kk - n_fft, kk))
            mirror = kk >= nb
            src = np.where(mirror, n_fft - kk, kk)
            re = spec.read(base + 2 * src)
            im = spec.read(base + 2 * src + 1)
            return re, np.where(mirror, -im, im)

        re, im = spec.read(base + 2 * k), spec.read(base + 2 * k + 1)
        if int(a["taps"]):
            re1, im1 = bins(k - 1)
            re2, im2 = bins(k + 1)
            ta, tb = a["tap_a"], a["tap_b"]
            re = ta * re + tb * (re1 + re2)
            im = ta * im + tb * (im1 + im2)
        p = re * re + im * im
        if int(a["pmode"]) == 1:
            p = np.sqrt(p)
        elif int(a["pmode"]) == 2:
            p = np.power(p, a["half_exp"])
        return p.astype(T, copy=False)

    def _db_and_store(self, T: np.dtype, acc: np.ndarray, r: int, frames: np.ndarray, a: dict) -> None:
        """The epilogue shared by both mel kernels: dB, the transposed store, the block maxima."""
        out = _Ptr(a["out"])
        v = acc
        if int(a["db"]):
            mp = a["min_power"]
            v = np.where(v < mp, mp, v).astype(T)
            with np.errstate(divide="ignore", invalid="ignore"):
                v = T.type(10) * np.log10(v)
            if int(a["has_ref"]):
                v = v - a["ref_db"]
        v = v.astype(T, copy=False)
        m = np.arange(v.shape[1], dtype=np.int64)
        idx = r * int(a["out_row"]) + m[None, :] * int(a["out_band"]) + frames[:, None]
        out.write(idx, v)
        mode = int(a["max_mode"])
        if mode and v.size:
            keys = _Ptr(a["max_keys"])
            slot = r if mode == 2 else 0
            cur = keys.read([slot])
            keys.write([slot], np.maximum(cur, encode_keys(v).max()))

    def _bands(self, a: dict) -> tuple[np.ndarray, np.ndarray]:
        bands = _Ptr(a["bands"]).read(np.arange(3 * int(a["n_mels"]))).reshape(-1, 3).astype(np.int64)
        w = _Ptr(a["weights"])
        return bands, w

    def _am_mel_smem(self, T: np.dtype, grid: tuple, smem: int, a: dict) -> None:
        spec = _Ptr(a["spec"])
        frames, tiles, fpb, stride_s = int(a["frames"]), int(a["tiles"]), int(a["fpb"]), int(a["stride_s"])
        bin_lo, nbu, nb = int(a["bin_lo"]), int(a["nbu"]), int(a["nb"])
        if BLOCK % fpb or tiles != -(-frames // fpb) or grid[0] % tiles:
            raise AssertionError(f"am_mel_smem: fpb={fpb}, tiles={tiles}, frames={frames}, grid={grid}")
        if stride_s < nbu or smem < fpb * stride_s * T.itemsize or bin_lo < 0 or bin_lo + nbu > nb:
            raise AssertionError("am_mel_smem: shared-memory rows do not hold the used bins")
        bands, w = self._bands(a)
        f = np.arange(frames, dtype=np.int64)
        k = bin_lo + np.arange(nbu, dtype=np.int64)
        for r in range(grid[0] // tiles):
            base = ((r * int(a["frames_row"]) + f) * 2 * nb)[:, None]
            pw = self._power(T, spec, base, k[None, :], a)  # (frames, nbu): the shared-memory rows
            acc = np.zeros((frames, bands.shape[0]), dtype=T)
            for m, (lo, cnt, off) in enumerate(bands):
                if cnt == 0:  # 0, or NaN for a non-finite frame (0 * its first used bin's power)
                    acc[:, m] = T.type(0) * pw[:, 0]
                    continue
                if lo < bin_lo or lo + cnt > bin_lo + nbu:
                    raise AssertionError(f"am_mel_smem: band {m} reads bins outside the shared-memory row")
                acc[:, m] = pw[:, lo - bin_lo:lo - bin_lo + cnt] @ w.read(off + np.arange(cnt)).astype(T)
            self._db_and_store(T, acc, r, f, a)

    def _am_mel_direct(self, T: np.dtype, grid: tuple, smem: int, a: dict) -> None:
        spec = _Ptr(a["spec"])
        frames, tiles, nb = int(a["frames"]), int(a["tiles"]), int(a["nb"])
        n_mels = int(a["n_mels"])
        if tiles != -(-(n_mels * frames) // BLOCK) or grid[0] % tiles:
            raise AssertionError(f"am_mel_direct: tiles={tiles}, grid={grid}")
        bands, w = self._bands(a)
        f = np.arange(frames, dtype=np.int64)
        for r in range(grid[0] // tiles):
            base = ((r * int(a["frames_row"]) + f) * 2 * nb)[:, None]
            acc = np.zeros((frames, n_mels), dtype=T)
            for m, (lo, cnt, off) in enumerate(bands):
                if cnt == 0:
                    acc[:, m] = T.type(0) * self._power(T, spec, base, np.zeros((1, 1), np.int64), a)[:, 0]
                    continue
                if lo < 0 or lo + cnt > nb:
                    raise AssertionError(f"am_mel_direct: band {m} reads bins outside the spectrum")
                pw = self._power(T, spec, base, (lo + np.arange(cnt))[None, :], a)
                acc[:, m] = pw @ w.read(off + np.arange(cnt)).astype(T)
            self._db_and_store(T, acc, r, f, a)

    def _am_clip_top_db(self, T: np.dtype, grid: tuple, smem: int, a: dict) -> None:
        out, keys = _Ptr(a["out"]), _Ptr(a["max_keys"])
        row_elems, tiles = int(a["row_elems"]), int(a["tiles"])
        if tiles * BLOCK * CLIP_ITEMS < row_elems or grid[0] % tiles:
            raise AssertionError(f"am_clip_top_db: tiles={tiles} for {row_elems} elements, grid={grid}")
        i = np.arange(row_elems, dtype=np.int64)
        for r in range(grid[0] // tiles):
            peak = decode_key(keys.read([r if int(a["per_row"]) else 0])[0], T.name)
            floor = T.type(peak) - a["top_db"]
            v = out.read(r * row_elems + i)
            new = np.full_like(v, floor) if np.isnan(floor) else np.where(v < floor, floor, v)
            out.write(r * row_elems + i, new)

    # ----------------------------------------------------------------- FFT
    def rfft(self, layout: Any, src: np.ndarray, dst: np.ndarray) -> None:
        if layout.odist != layout.n // 2 + 1:
            raise AssertionError("output distance must be n // 2 + 1")
        if src.dtype != np.dtype(layout.dtype_name) or dst.dtype != src.dtype:
            raise AssertionError("FFT buffers must be of the compute dtype")
        s, d = _Ptr(src), _Ptr(dst)
        b = np.arange(layout.batch, dtype=np.int64)[:, None]
        frames = s.read(b * layout.idist + np.arange(layout.n, dtype=np.int64)[None, :])
        X = np.fft.rfft(frames.astype(np.float64), axis=-1)
        ct = np.complex64 if src.dtype == np.float32 else np.complex128
        X = X.astype(ct)
        j = np.arange(layout.odist, dtype=np.int64)[None, :]
        d.write(2 * (b * layout.odist + j), X.real)
        d.write(2 * (b * layout.odist + j) + 1, X.imag)
        self.ffts.append(layout)


def emulated_engine(cfg: Any, dtype_name: str) -> Any:
    """The GPU path's :class:`~arraymel._cupy.engine.Engine` for ``cfg`` running on :class:`NumpyOps`."""
    from arraymel._cupy.engine import Constants, Engine, consts_host
    from arraymel._cupy.params import mel_params

    params = mel_params(cfg, dtype_name)
    return Engine(params, NumpyOps(), Constants(**consts_host(params)))
