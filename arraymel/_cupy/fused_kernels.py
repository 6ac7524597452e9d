"""The fused GPU path's kernel (``cuda/fused.cuh``): one kernel from the signal to the mel dB values.

``am_fused_mel`` (one block: ``fpb`` consecutive frames of one row, 256 threads) does, without
the spectrum ever leaving the chip:

1. **Load.** Frame ``f`` is the ``n_fft`` samples from signal position ``seg_start + f * hop``,
   read with reflect indexing straight from the input (any integer or float type, cast to ``T``),
   multiplied by the zero-padded window (array windows, ``sequence_length < fft_length``), and
   packed as ``n_fft / 2`` complex values ``z[j] = x[2j] + i x[2j + 1]`` in shared memory.
   Neighbouring frames of a block read overlapping samples: DRAM delivers each once, L1/L2
   serve the overlap.
2. **Half-length complex FFT** of each frame, in place in shared memory: self-sorting Stockham
   stages of radix 2, 3, 4 and 5 (``radices``: 3 bits per stage, first stage lowest). A stage
   loads each thread's butterflies (at most :data:`FUSED_MAX_BUTTERFLIES` of up to 5 points) into
   registers, barrier, twiddles and transforms them, writes them to their sorted places, barrier.
   Twiddles come from one table ``E[t] = exp(-2 pi i t / n_fft)``, ``t < n_fft``, built on the host
   in float64 and rounded once to ``T``.
3. **Real-FFT post-processing.** With ``E_k = (Z[k] + conj Z[M-k]) / 2`` and
   ``O_k = (Z[k] - conj Z[M-k]) / 2i`` (``M = n_fft / 2``): ``X[k] = E_k + W^k O_k`` and
   ``X[M-k] = conj(E_k - W^k O_k)``, ``W = exp(-2 pi i / n_fft)``. The thread that reads the pair
   ``(k, M-k)`` writes ``|X|^mag_exp`` of both back over the real parts of those two slots (and
   ``X[M]`` into a spare slot after the frame), so no other thread's input is overwritten.
4. **Mel, dB, store, maximum**: ``am_mel_bands`` (``cuda/mel_bands.cuh``), the same code as
   ``am_mel_smem``'s second phase, on power rows of stride 2.

The ``top_db`` clip is ``am_clip_top_db`` of :mod:`arraymel._cupy.kernels`. Host side:
:mod:`arraymel._cupy.fused`.
"""

from __future__ import annotations

from arraymel._cupy.kernels import COMPUTE_CTYPES, INPUT_CTYPES, KernelCache, translation_unit

#: Butterflies one thread holds in registers per FFT stage: a stage of a block has at most
#: ``256 * FUSED_MAX_BUTTERFLIES`` butterflies (this bounds frames per block: see ``fused_launch``).
FUSED_MAX_BUTTERFLIES = 4
#: Bits per stage in the packed radix list (radices 2 to 5).
RADIX_BITS = 3

#: The translation unit of the fused kernels (what NVRTC compiles).
FUSED_SOURCE_FILES = ("common.cuh", "mel_bands.cuh", "fused.cuh")
FUSED_SOURCE = translation_unit(FUSED_SOURCE_FILES)

FUSED_KERNELS = ("am_fused_mel",)

#: The fused kernel's parameters, in order (the vocabulary of :data:`arraymel._cupy.kernels.KERNEL_PARAMS`).
FUSED_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "am_fused_mel": (
        ("const TIn*", "x"), ("long long", "row_stride"), ("long long", "sample_stride"), ("long long", "n"),
        ("long long", "seg_start"), ("int", "hop"), ("int", "frames"), ("int", "tiles"), ("int", "fpb"),
        ("int", "half"), ("int", "radices"), ("int", "stages"), ("const T*", "twiddles"), ("const T*", "window"),
        ("int", "has_window"), ("int", "bin_lo"), ("int", "pmode"), ("T", "half_exp"), ("const int*", "bands"),
        ("const T*", "weights"), ("int", "n_mels"), ("T*", "out"), ("long long", "out_row"),
        ("long long", "out_band"), ("int", "db"), ("T", "min_power"), ("T", "ref_db"), ("int", "has_ref"),
        ("K*", "max_keys"), ("int", "max_mode"),
    ),
}


def fused_name_expression(kernel: str, dtype_name: str, in_dtype_name: str | None) -> str:
    """The NVRTC name expression of one instantiation, e.g. ``am_fused_mel<short, float>``."""
    if kernel not in FUSED_KERNELS:
        raise ValueError(f"unknown fused kernel {kernel!r}")
    if in_dtype_name is None:
        raise ValueError(f"{kernel} needs the input dtype")
    return f"{kernel}<{INPUT_CTYPES[in_dtype_name]}, {COMPUTE_CTYPES[dtype_name]}>"


def fused_name_expressions(dtype_name: str, in_dtype_name: str | None) -> list[str]:
    """The instantiations of one module: the fused kernel for one compute and one input dtype."""
    return [fused_name_expression(k, dtype_name, in_dtype_name) for k in FUSED_KERNELS]


#: Compiled fused kernels, one NVRTC module per (device, compute dtype, input dtype).
FUSED_KERNEL_CACHE = KernelCache(FUSED_SOURCE, FUSED_KERNELS, fused_name_expression, fused_name_expressions)
