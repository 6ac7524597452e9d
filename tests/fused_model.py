"""A NumPy model of ``am_fused_mel``: the same decomposition, stage by stage, as the CUDA text.

Independent of the CUDA source (it is a second reading of the algorithm, not of the text): the
Stockham stages with the kernel's index maps (butterfly ``j`` reads ``j + r * half / R``, writes
``(j - k) R + k + r ns``) and the kernel's twiddle-table indices (``k r n_fft / (ns R)``), the
real-FFT post-processing over pairs ``(k, half - k)``, and the power rows of stride 2 that the mel
phase reads. The butterflies themselves are ``numpy.fft.fft`` over ``R`` points, so rounding is
not the kernel's; the CPU emulator (tests/cuda_cpu) runs the text.

:class:`FusedModelOps` plugs into :class:`arraymel._cupy.fused.FusedEngine` as an ``ops``: it checks
each launch's packed arguments and launch shape and computes the kernel's output with this model
(mel, dB, store and maximum as the reference ops model ``am_mel_smem``'s second phase).
"""

from __future__ import annotations

import numpy as np

from arraymel._cupy.emulate import NumpyOps, _Ptr, _reflect
from arraymel._cupy.fused import frame_smem
from arraymel._cupy.fused_kernels import FUSED_MAX_BUTTERFLIES, FUSED_PARAMS, RADIX_BITS
from arraymel._cupy.kernels import BLOCK, SMEM_LIMIT, pack_args


def unpack_radices(packed: int, stages: int) -> list[int]:
    return [(packed >> (RADIX_BITS * s)) & 7 for s in range(stages)]


def stockham(z: np.ndarray, radices: list[int], twiddles: np.ndarray) -> np.ndarray:
    """The half-length FFT of each row of ``z`` (complex, ``(frames, half)``) as the kernel's stages do it.

    ``twiddles`` is the table ``E[t] = exp(-2 pi i t / n_fft)`` as complex values (``n_fft = 2 half``)."""
    half = z.shape[-1]
    n_fft = 2 * half
    ns = 1
    for R in radices:
        q = half // R
        tstep = n_fft // (ns * R)
        j = np.arange(q)
        k = j % ns
        r = np.arange(R)
        v = z[:, j[:, None] + r[None, :] * q]  # (frames, q, R): butterfly j's points
        t = (k[:, None] * r[None, :]) * tstep
        assert t.max() < n_fft
        v = v * twiddles[t][None]
        y = np.fft.fft(v, axis=-1).astype(z.dtype)
        out = np.empty_like(z)
        out[:, ((j - k) * R + k)[:, None] + r[None, :] * ns] = y
        z = out
        ns *= R
    assert ns == half
    return z


def power_rows(Z: np.ndarray, twiddles: np.ndarray, pmode: int, half_exp: float) -> np.ndarray:
    """The shared-memory rows after the post-processing: ``(frames, 2 half + 2)`` reals whose even slots
    ``2k`` hold ``|X[k]|^mag_exp`` for ``k = 0 .. half`` (odd slots keep the spectrum's leftovers)."""
    frames, half = Z.shape
    T = Z.real.dtype
    rows = np.zeros((frames, 2 * half + 2), dtype=T)
    rows[:, 0:2 * half:2], rows[:, 1:2 * half:2] = Z.real, Z.imag
    k = np.arange(half // 2 + 1)
    mk = np.where(k > 0, half - k, 0)
    zk, cz = Z[:, k], np.conj(Z[:, mk])
    e = T.type(0.5) * (zk + cz)
    o = (zk - cz) / Z.dtype.type(2j)
    wo = twiddles[k][None] * o
    xk, xm = e + wo, np.conj(e - wo)

    def mag(x):
        p = (x.real * x.real + x.imag * x.imag).astype(T)
        if pmode == 1:
            return np.sqrt(p)
        if pmode == 2:
            return np.power(p, T.type(half_exp))
        return p

    rows[:, 2 * k] = mag(xk)
    rows[:, 2 * (half - k)] = mag(xm)
    return rows


def frames_of(x: _Ptr, row: int, a: dict, frames: np.ndarray, n_fft: int, T: np.dtype, window: np.ndarray | None):
    """The windowed frames ``frames`` of row ``row``, gathered with reflect indexing, in ``T``."""
    pos = int(a["seg_start"]) + frames[:, None] * int(a["hop"]) + np.arange(n_fft)[None, :]
    v = x.read(row * int(a["row_stride"]) + _reflect(pos, int(a["n"])) * int(a["sample_stride"])).astype(T)
    return v * window[None, :] if window is not None else v


class FusedModelOps(NumpyOps):
    """:class:`arraymel._cupy.emulate.NumpyOps` plus ``am_fused_mel`` computed by this module's model."""

    def launch(self, kernel, dtype_name, in_dtype_name, grid, block, smem, packed):
        if kernel != "am_fused_mel":
            return super().launch(kernel, dtype_name, in_dtype_name, grid, block, smem, packed)
        spec = FUSED_PARAMS[kernel]
        assert len(packed) == len(spec)
        a = {name: v for (_, name), v in zip(spec, packed)}
        ref = pack_args(kernel, dtype_name, in_dtype_name, a, FUSED_PARAMS)
        for (ctype, name), got, want in zip(spec, packed, ref):
            assert ctype.endswith("*") or type(got) is type(want), f"{name} passed as {type(got).__name__}"
        assert tuple(block) == (BLOCK, 1, 1) and 1 <= grid[0] <= 2**31 - 1 and smem <= SMEM_LIMIT
        self.launches.append((kernel, tuple(grid), int(smem)))
        self._fused(np.dtype(dtype_name), tuple(grid), int(smem), a)

    def _fused(self, T: np.dtype, grid: tuple, smem: int, a: dict) -> None:
        half, fpb, tiles, frames = int(a["half"]), int(a["fpb"]), int(a["tiles"]), int(a["frames"])
        n_fft = 2 * half
        radices = unpack_radices(int(a["radices"]), int(a["stages"]))
        assert int(np.prod(radices)) == half, radices
        if BLOCK % fpb or tiles != -(-frames // fpb) or grid[0] % tiles:
            raise AssertionError(f"am_fused_mel: fpb={fpb}, tiles={tiles}, frames={frames}, grid={grid}")
        if smem < fpb * frame_smem(half, T.itemsize):
            raise AssertionError("am_fused_mel: shared memory does not hold the block's frames")
        if fpb * (half // min(radices)) > BLOCK * FUSED_MAX_BUTTERFLIES:
            raise AssertionError("am_fused_mel: a stage has more butterflies than the block holds in registers")
        ct = np.complex64 if T == np.float32 else np.complex128
        tw = _Ptr(a["twiddles"]).read(np.arange(2 * n_fft))
        twc = (tw[0::2] + 1j * tw[1::2]).astype(ct)
        window = _Ptr(a["window"]).read(np.arange(n_fft)) if int(a["has_window"]) else None
        x = _Ptr(a["x"])
        bands, w = self._bands(a)
        bin_lo = int(a["bin_lo"])
        f = np.arange(frames, dtype=np.int64)
        for r in range(grid[0] // tiles):
            v = frames_of(x, r, a, f, n_fft, T, window)
            Z = stockham((v[:, 0::2] + 1j * v[:, 1::2]).astype(ct), radices, twc)
            rows = power_rows(Z, twc, int(a["pmode"]), float(a["half_exp"]))
            acc = np.zeros((frames, bands.shape[0]), dtype=T)
            for m, (lo, cnt, off) in enumerate(bands):
                if cnt == 0:
                    acc[:, m] = T.type(0) * rows[:, 2 * bin_lo]
                    continue
                acc[:, m] = rows[:, 2 * (lo + np.arange(cnt))] @ w.read(off + np.arange(cnt)).astype(T)
            self._db_and_store(T, acc, r, f, a)
