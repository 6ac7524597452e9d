"""A NumPy model of ``am_fused_mel``'s transform: the same decomposition, stage by stage, as the CUDA text.

Independent of the CUDA source (it is a second reading of the algorithm, not of the text): the
Stockham stages with the kernel's index maps (butterfly ``j`` reads ``j + r * half / R``, writes
``(j - k) R + k + r ns``) and the kernel's twiddle-table indices (``k r n_fft / (ns R)``), the
real-FFT post-processing over pairs ``(k, half - k)``, and the power rows of stride 2 that the mel
phase reads. The butterflies themselves are ``numpy.fft.fft`` over ``R`` points. It checks the
algorithm against ``numpy.fft`` in milliseconds, without a compiler; the CPU emulator
(tests/cuda_cpu) runs the text itself (tests/test_cupy_fused.py).
"""

from __future__ import annotations

import numpy as np

from arraymel._cupy.fused_kernels import RADIX_BITS


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
