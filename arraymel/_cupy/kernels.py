"""CUDA sources of the GPU path, the arguments each kernel takes, and the compile cache.

The sources are self-contained CUDA C++ (no ``#include``), so that the same text compiles with
NVRTC at run time (through ``cupy.RawModule``) and with ``nvcc`` in the tests (no GPU needed:
``tests/test_kernels_compile.py`` builds every instantiation for sm_80 and sm_90). Kernels are
C++ templates over the compute type ``T`` (float or double) and, for those that read the user's
signal, over its element type ``TIn`` (every integer width and float32/float64), instantiated
through NVRTC name expressions such as ``am_pad_reflect<short, float>``.

Kernels (one launch each; see docs/gpu.md for the passes):

``am_pad_reflect``
    The centred (reflect-padded) signal segment of a chunk, cast to ``T``, laid out with a row
    pitch that is a multiple of the hop, so that one cuFFT plan with input distance = hop reads
    every frame of every row in place (frames are never materialised).
``am_frames_window``
    The general path: frames gathered with reflect indexing (or zeros outside the signal) and
    multiplied by an arbitrary window (array windows, ``sequence_length < fft_length``, or when the
    pitched layout would waste too many transforms); with ``frame_step``, Kaldi's per-frame mean
    removal and pre-emphasis first (one block per frame).
``am_mel_smem``
    Over the spectrum, once: the periodic Hann/Hamming window applied after the FFT as a
    three-tap combination of neighbouring bins (exact: the window is a sum of two complex
    exponentials), ``|X| ** mag_exp``, the sparse mel filterbank (each band reads only its own
    bins), the power-to-dB conversion, the transposed ``(rows, mels, frames)`` store, and the
    block maximum for ``top_db`` folded into one ``atomicMax`` per block on an order-preserving
    integer key (NaN is the largest key, so NaN propagates as in Keras).
``am_mel_direct``
    The same without shared memory, for spectra too long for one frame's power row to fit.
``am_clip_top_db``
    The ``top_db`` clip in place, with the batch-wide or per-example maximum.

Every kernel's parameter list is declared in :data:`KERNEL_PARAMS`; :func:`pack_args` turns keyword
values into exactly those C types (a wrong type or a missing argument is a Python error, never a
silently misread kernel argument), and a test checks the declarations against the sources.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Mapping

import numpy as np

#: Threads per block of every kernel (the sources assume a multiple of 32; ``__launch_bounds__``).
BLOCK = 256
#: Elements per thread of the pad and clip kernels.
PAD_ITEMS = 4
CLIP_ITEMS = 4
#: Shared memory a mel block may use without an opt-in (48 KiB, less the reduction scratch).
SMEM_LIMIT = 48 * 1024 - 1024

# --------------------------------------------------------------------------------------- sources
#: Helpers shared by the kernels: traits per float type, the reflect index, the ordered max key.
COMMON_SOURCE = r"""
#define AM_BLOCK 256
#define AM_PAD_ITEMS 4
#define AM_CLIP_ITEMS 4

template <typename T> struct am_traits;

template <> struct am_traits<float> {
    typedef unsigned int key_t;
    static __device__ __forceinline__ key_t nan_key() { return 0xFFFFFFFFu; }
    // Order-preserving map of a float to an unsigned key; every NaN maps to the largest key.
    static __device__ __forceinline__ key_t to_key(float v) {
        if (v != v) return 0xFFFFFFFFu;
        const unsigned int b = __float_as_uint(v);
        return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    }
    static __device__ __forceinline__ float from_key(key_t k) {
        if (k == 0xFFFFFFFFu) return __int_as_float(0x7FC00000);
        const unsigned int b = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
        return __uint_as_float(b);
    }
    static __device__ __forceinline__ float log10_(float v) { return log10f(v); }
    static __device__ __forceinline__ float sqrt_(float v) { return sqrtf(v); }
    static __device__ __forceinline__ float pow_(float v, float e) { return powf(v, e); }
};

template <> struct am_traits<double> {
    typedef unsigned long long key_t;
    static __device__ __forceinline__ key_t nan_key() { return 0xFFFFFFFFFFFFFFFFull; }
    static __device__ __forceinline__ key_t to_key(double v) {
        if (v != v) return 0xFFFFFFFFFFFFFFFFull;
        const unsigned long long b = (unsigned long long)__double_as_longlong(v);
        return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
    }
    static __device__ __forceinline__ double from_key(key_t k) {
        if (k == 0xFFFFFFFFFFFFFFFFull) return __longlong_as_double(0x7FF8000000000000ll);
        const unsigned long long b = (k & 0x8000000000000000ull) ? (k & 0x7FFFFFFFFFFFFFFFull) : ~k;
        return __longlong_as_double((long long)b);
    }
    static __device__ __forceinline__ double log10_(double v) { return log10(v); }
    static __device__ __forceinline__ double sqrt_(double v) { return sqrt(v); }
    static __device__ __forceinline__ double pow_(double v, double e) { return pow(v, e); }
};

template <typename T> using am_key_t = typename am_traits<T>::key_t;

// Index into [0, n) of position p of the signal extended by reflection (numpy.pad mode="reflect";
// periodic with period 2 (n - 1), so pads longer than the signal reflect repeatedly). Needs n >= 1:
// an empty row has no index (Engine.compute rejects it).
__device__ __forceinline__ long long am_reflect(long long p, long long n) {
    if (p >= 0 && p < n) return p;
    if (n == 1) return 0;
    const long long period = 2 * (n - 1);
    long long q = (p < 0 ? -p : p) % period;
    return q >= n ? period - q : q;
}

// Sample p of a row extended by reflection, or 0 outside [0, n) with zero_pad (librosa's and NeMo's padding).
template <typename TIn, typename T>
__device__ __forceinline__ T am_sample(const TIn* __restrict__ xr, long long sample_stride, long long p, long long n,
                                       int zero_pad) {
    if (zero_pad && (p < 0 || p >= n)) return T(0);
    return static_cast<T>(xr[am_reflect(p, n) * sample_stride]);
}

// Block-wide sum, returned to every thread (blockDim.x a multiple of 32, at most 1024). Every thread of the
// block must call it, once per kernel (its scratch is not reused).
template <typename T>
__device__ __forceinline__ T am_block_sum(T v) {
    __shared__ T am_sum_scratch[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) am_sum_scratch[warp] = v;
    __syncthreads();
    T s = T(0);
    for (int w = 0; w < nw; ++w) s += am_sum_scratch[w];
    return s;
}

// Bin k of the full DFT of a real frame, from its one-sided spectrum s (nb = n_fft / 2 + 1 complex
// values, interleaved): k in [-1, nb]; X[k] = X[k mod N] and X[N - k] = conj(X[k]).
template <typename T>
__device__ __forceinline__ void am_bin(const T* __restrict__ s, int k, int nb, int n_fft, T& re, T& im) {
    int kk = k;
    if (kk < 0) kk += n_fft;
    else if (kk >= n_fft) kk -= n_fft;
    if (kk >= nb) {
        re = s[2 * (n_fft - kk)];
        im = -s[2 * (n_fft - kk) + 1];
    } else {
        re = s[2 * kk];
        im = s[2 * kk + 1];
    }
}

// |Y[k]| ** mag_exp of bin k, with Y the spectrum of the windowed frame: Y = X (taps == 0) or the
// periodic Hann/Hamming window applied in frequency, Y[k] = a X[k] + b (X[k-1] + X[k+1]).
// pmode 0: re^2 + im^2 (mag_exp 2, no square root); 1: its square root; 2: its power half_exp.
template <typename T>
__device__ __forceinline__ T am_power(const T* __restrict__ s, int k, int nb, int n_fft, int taps, T tap_a,
                                      T tap_b, int pmode, T half_exp) {
    T re = s[2 * k], im = s[2 * k + 1];
    if (taps) {
        T re1, im1, re2, im2;
        am_bin(s, k - 1, nb, n_fft, re1, im1);
        am_bin(s, k + 1, nb, n_fft, re2, im2);
        re = tap_a * re + tap_b * (re1 + re2);
        im = tap_a * im + tap_b * (im1 + im2);
    }
    T p = re * re + im * im;
    if (pmode == 1) p = am_traits<T>::sqrt_(p);
    else if (pmode == 2) p = am_traits<T>::pow_(p, half_exp);
    return p;
}

// 10 log10(max(v, min_power)) - ref_db, with NaN kept (a comparison, not fmax, which drops NaN).
template <typename T>
__device__ __forceinline__ T am_db(T v, T min_power, T ref_db, int has_ref) {
    v = (v < min_power) ? min_power : v;
    v = T(10) * am_traits<T>::log10_(v);
    return has_ref ? v - ref_db : v;
}

template <typename K>
__device__ __forceinline__ K am_warp_max(K v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const K w = __shfl_xor_sync(0xFFFFFFFFu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

// Block-wide maximum of the threads' keys, then one atomicMax into *dst (key 0 = nothing seen).
// Every thread of the block must call it (blockDim.x a multiple of 32, at most 1024).
template <typename K>
__device__ __forceinline__ void am_block_max(K v, K* dst) {
    __shared__ K am_warp_keys[32];
    v = am_warp_max(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) am_warp_keys[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int nw = (blockDim.x + 31) >> 5;
        v = lane < nw ? am_warp_keys[lane] : K(0);
        v = am_warp_max(v);
        if (lane == 0 && v != K(0)) atomicMax(dst, v);
    }
}
"""

#: The reflect-padded, cast signal of a chunk: row r (``blockIdx.y``) holds signal positions
#: ``seg_start .. seg_start + pitch`` at ``out + r * pitch``; the last row runs on for ``tail``
#: more samples so that the overlapped FFT's spare frames of that row stay inside the buffer.
PAD_SOURCE = r"""
template <typename TIn, typename T>
__global__ void __launch_bounds__(AM_BLOCK)
am_pad_reflect(const TIn* __restrict__ x, long long row_stride, long long sample_stride, long long n,
               long long seg_start, long long pitch, long long tail, int zero_pad, T* __restrict__ out)
{
    const long long r = blockIdx.y;
    const long long cols = (r == (long long)gridDim.y - 1) ? pitch + tail : pitch;
    const TIn* __restrict__ xr = x + r * row_stride;
    T* __restrict__ o = out + r * pitch;
    long long c = (long long)blockIdx.x * (blockDim.x * AM_PAD_ITEMS) + threadIdx.x;
#pragma unroll
    for (int u = 0; u < AM_PAD_ITEMS; ++u, c += blockDim.x) {
        if (c < cols) o[c] = am_sample<TIn, T>(xr, sample_stride, seg_start + c, n, zero_pad);
    }
}
"""

#: Frames of a chunk, gathered from the (virtually) reflect-padded signal and windowed: frame f of
#: row r (``blockIdx.y``) starts at signal position ``seg_start + f * hop`` and is stored at
#: ``out + (r * frames + f) * n_fft``. Every sample is multiplied, also by the window's zero
#: padding, so that a NaN anywhere in a frame reaches its spectrum as in Keras.
#: ``frame_step`` (Kaldi): one block per frame (``gridDim.x == frames``); the mean of the frame's first
#: ``win_len`` samples is removed and they are pre-emphasised, ``y[k] = d[k] - preemph d[k - 1]``
#: (``y[0] = d[0] - preemph d[0]``), before the window.
FRAMES_SOURCE = r"""
template <typename TIn, typename T>
__global__ void __launch_bounds__(AM_BLOCK)
am_frames_window(const TIn* __restrict__ x, long long row_stride, long long sample_stride, long long n,
                 long long seg_start, int hop, int n_fft, int frames, const T* __restrict__ window,
                 int has_window, int zero_pad, int frame_step, int win_len, T preemph, T* __restrict__ out)
{
    const long long r = blockIdx.y;
    const TIn* __restrict__ xr = x + r * row_stride;
    if (frame_step) {
        const int f = blockIdx.x;
        const long long start = seg_start + (long long)f * hop;
        T s = T(0);
        for (int k = threadIdx.x; k < win_len; k += blockDim.x)
            s += am_sample<TIn, T>(xr, sample_stride, start + k, n, zero_pad);
        const T mean = am_block_sum(s) / T(win_len);
        T* __restrict__ o = out + ((long long)r * frames + f) * n_fft;
        for (int k = threadIdx.x; k < n_fft; k += blockDim.x) {
            T v = am_sample<TIn, T>(xr, sample_stride, start + k, n, zero_pad);
            if (k < win_len) {
                const T prev = k ? am_sample<TIn, T>(xr, sample_stride, start + k - 1, n, zero_pad) : v;
                v = (v - mean) - preemph * (prev - mean);
            }
            if (has_window) v *= window[k];
            o[k] = v;
        }
        return;
    }
    const int per_row = frames * n_fft;  // < 2^31 (chunk planner)
    const long long jj = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (jj >= per_row) return;
    const int j = (int)jj;
    const int f = j / n_fft;
    const int k = j - f * n_fft;
    const long long pos = seg_start + (long long)f * hop + k;
    T v = am_sample<TIn, T>(xr, sample_stride, pos, n, zero_pad);
    if (has_window) v *= window[k];
    out[r * (long long)per_row + j] = v;
}
"""

#: Phase 2 of the shared-memory mel kernels (``am_mel_smem`` here, ``am_fused_mel`` in
#: :mod:`arraymel._cupy.fused_kernels`): the power rows of ``fpb`` consecutive frames are in shared
#: memory, frame ``fl``'s bin ``bin_lo + j`` at ``pw[fl * frame_stride + j * PS]``. Thread t takes frame
#: ``t % fpb`` and bands ``t / fpb, + 256 / fpb, ...``, so a warp stores runs of consecutive frames of
#: one band (the output is ``(rows, mels, frames)``); then the block's maximum key for ``top_db``.
#: ``bands`` holds ``(first bin, bin count, weight offset)`` per band; ``weights`` the non-zero weights
#: band after band. ``max_mode``: 0 none, 1 one key (batch scope), 2 one key per row.
#: Every thread of the block must call it (it ends in a block-wide reduction).
MEL_BANDS_SOURCE = r"""
template <typename T, int PS>
__device__ __forceinline__ void am_mel_bands(const T* pw, int frame_stride, int fpb, int f0, int frames, int bin_lo,
                                             const int* __restrict__ bands, const T* __restrict__ weights, int n_mels,
                                             T* __restrict__ orow, long long out_band, int db, T min_power, T ref_db,
                                             int has_ref, am_key_t<T>* __restrict__ max_key, int max_mode)
{
    typedef am_key_t<T> K;
    const int fl = threadIdx.x % fpb;
    const int lane = threadIdx.x / fpb;
    const int nlanes = blockDim.x / fpb;
    const int f = f0 + fl;
    const T* prow = pw + fl * frame_stride;
    K kmax = K(0);
    for (int m = lane; m < n_mels; m += nlanes) {
        const int lo = bands[3 * m] - bin_lo, cnt = bands[3 * m + 1], off = bands[3 * m + 2];
        // an empty band is 0, or NaN when the frame's spectrum is not finite (Keras's dense product: 0 * NaN)
        T acc = cnt ? T(0) : T(0) * prow[0];
        for (int j = 0; j < cnt; ++j) acc += prow[(lo + j) * PS] * weights[off + j];
        if (f < frames) {
            const T v = db ? am_db(acc, min_power, ref_db, has_ref) : acc;
            orow[(long long)m * out_band + fl] = v;
            if (max_mode) {
                const K key = am_traits<T>::to_key(v);
                kmax = key > kmax ? key : kmax;
            }
        }
    }
    if (max_mode) am_block_max(kmax, max_key);
}
"""

#: Power, window taps, sparse mel, dB, transposed store and the top_db maximum in one pass.
#: Block b handles ``fpb`` consecutive frames of chunk row ``b / tiles``: phase 1 writes their
#: power rows (bins ``bin_lo .. bin_lo + nbu``) to shared memory with coalesced spectrum reads;
#: phase 2 is :data:`MEL_BANDS_SOURCE`.
MEL_SMEM_SOURCE = r"""
template <typename T>
__global__ void __launch_bounds__(AM_BLOCK)
am_mel_smem(const T* __restrict__ spec, long long frames_row, int frames, int tiles, int fpb, int stride_s,
            int nb, int n_fft, int bin_lo, int nbu, int taps, T tap_a, T tap_b, int pmode, T half_exp,
            const int* __restrict__ bands, const T* __restrict__ weights, int n_mels,
            T* __restrict__ out, long long out_row, long long out_band,
            int db, T min_power, T ref_db, int has_ref, am_key_t<T>* __restrict__ max_keys, int max_mode)
{
    extern __shared__ __align__(16) unsigned char am_dynamic_smem[];
    T* pw = reinterpret_cast<T*>(am_dynamic_smem);

    const int row = blockIdx.x / tiles;
    const int tile = blockIdx.x - row * tiles;
    const int f0 = tile * fpb;
    const T* __restrict__ srow = spec + ((long long)row * frames_row + f0) * (2LL * nb);

    const int total = fpb * nbu;
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
        const int fl = i / nbu;
        const int kk = i - fl * nbu;
        T p = T(0);
        if (f0 + fl < frames)
            p = am_power(srow + (long long)fl * (2LL * nb), bin_lo + kk, nb, n_fft, taps, tap_a, tap_b, pmode, half_exp);
        pw[fl * stride_s + kk] = p;
    }
    __syncthreads();

    am_mel_bands<T, 1>(pw, stride_s, fpb, f0, frames, bin_lo, bands, weights, n_mels,
                       out + (long long)row * out_row + f0, out_band, db, min_power, ref_db, has_ref,
                       max_keys + (max_mode == 2 ? row : 0), max_mode);
}
"""

#: The mel pass without shared memory (very long spectra): thread j of chunk row ``b / tiles``
#: computes band ``j / frames`` of frame ``j % frames`` straight from the spectrum.
MEL_DIRECT_SOURCE = r"""
template <typename T>
__global__ void __launch_bounds__(AM_BLOCK)
am_mel_direct(const T* __restrict__ spec, long long frames_row, int frames, int tiles,
              int nb, int n_fft, int taps, T tap_a, T tap_b, int pmode, T half_exp,
              const int* __restrict__ bands, const T* __restrict__ weights, int n_mels,
              T* __restrict__ out, long long out_row, long long out_band,
              int db, T min_power, T ref_db, int has_ref, am_key_t<T>* __restrict__ max_keys, int max_mode)
{
    typedef am_key_t<T> K;
    const int row = blockIdx.x / tiles;
    const int tile = blockIdx.x - row * tiles;
    const long long j = (long long)tile * blockDim.x + threadIdx.x;
    K kmax = K(0);
    if (j < (long long)n_mels * frames) {
        const int m = (int)(j / frames);
        const int f = (int)(j - (long long)m * frames);
        const T* __restrict__ s = spec + ((long long)row * frames_row + f) * (2LL * nb);
        const int lo = bands[3 * m], cnt = bands[3 * m + 1], off = bands[3 * m + 2];
        T acc = cnt ? T(0) : T(0) * am_power(s, 0, nb, n_fft, taps, tap_a, tap_b, pmode, half_exp);
        for (int q = 0; q < cnt; ++q)
            acc += am_power(s, lo + q, nb, n_fft, taps, tap_a, tap_b, pmode, half_exp) * weights[off + q];
        const T v = db ? am_db(acc, min_power, ref_db, has_ref) : acc;
        out[(long long)row * out_row + (long long)m * out_band + f] = v;
        if (max_mode) kmax = am_traits<T>::to_key(v);
    }
    if (max_mode) am_block_max(kmax, max_keys + (max_mode == 2 ? row : 0));
}
"""

#: ``out = max(out, peak - top_db)`` in place over ``rows`` rows of ``row_elems`` elements; the peak
#: is ``max_keys[row]`` (per-example scope) or ``max_keys[0]`` (batch scope). A NaN peak makes
#: the whole row NaN (``np.maximum`` semantics); a NaN element stays NaN.
CLIP_SOURCE = r"""
template <typename T>
__global__ void __launch_bounds__(AM_BLOCK)
am_clip_top_db(T* __restrict__ out, long long row_elems, int tiles, const am_key_t<T>* __restrict__ max_keys,
               int per_row, T top_db)
{
    const int row = blockIdx.x / tiles;
    const int tile = blockIdx.x - row * tiles;
    const T floor_v = am_traits<T>::from_key(max_keys[per_row ? row : 0]) - top_db;
    const bool floor_nan = floor_v != floor_v;
    T* __restrict__ p = out + (long long)row * row_elems;
    long long i = (long long)tile * (blockDim.x * AM_CLIP_ITEMS) + threadIdx.x;
#pragma unroll
    for (int u = 0; u < AM_CLIP_ITEMS; ++u, i += blockDim.x) {
        if (i < row_elems) {
            const T v = p[i];
            p[i] = floor_nan ? floor_v : (v < floor_v ? floor_v : v);
        }
    }
}
"""

#: The whole translation unit (what NVRTC compiles).
SOURCE = COMMON_SOURCE + PAD_SOURCE + FRAMES_SOURCE + MEL_BANDS_SOURCE + MEL_SMEM_SOURCE + MEL_DIRECT_SOURCE + CLIP_SOURCE

# --------------------------------------------------------------------------------------- types
#: Compute dtypes and their C types.
COMPUTE_CTYPES: dict[str, str] = {"float32": "float", "float64": "double"}
#: Key dtype of the ordered max per compute dtype.
KEY_DTYPES: dict[str, str] = {"float32": "uint32", "float64": "uint64"}
#: Input dtypes the signal kernels read natively (others are cast on the device first).
INPUT_CTYPES: dict[str, str] = {
    "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
    "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
    "float32": "float", "float64": "double",
}

#: Kernels templated on the compute type alone, and those also on the input type.
CORE_KERNELS = ("am_mel_smem", "am_mel_direct", "am_clip_top_db")
INPUT_KERNELS = ("am_pad_reflect", "am_frames_window")

#: Each kernel's parameters, in order, as ``(C type, name)``. ``T``/``TIn`` are the template types,
#: ``K`` the key type of ``T``. Checked against the sources by a test.
KERNEL_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "am_pad_reflect": (
        ("const TIn*", "x"), ("long long", "row_stride"), ("long long", "sample_stride"), ("long long", "n"),
        ("long long", "seg_start"), ("long long", "pitch"), ("long long", "tail"), ("int", "zero_pad"), ("T*", "out"),
    ),
    "am_frames_window": (
        ("const TIn*", "x"), ("long long", "row_stride"), ("long long", "sample_stride"), ("long long", "n"),
        ("long long", "seg_start"), ("int", "hop"), ("int", "n_fft"), ("int", "frames"), ("const T*", "window"),
        ("int", "has_window"), ("int", "zero_pad"), ("int", "frame_step"), ("int", "win_len"), ("T", "preemph"),
        ("T*", "out"),
    ),
    "am_mel_smem": (
        ("const T*", "spec"), ("long long", "frames_row"), ("int", "frames"), ("int", "tiles"), ("int", "fpb"),
        ("int", "stride_s"), ("int", "nb"), ("int", "n_fft"), ("int", "bin_lo"), ("int", "nbu"), ("int", "taps"),
        ("T", "tap_a"), ("T", "tap_b"), ("int", "pmode"), ("T", "half_exp"), ("const int*", "bands"),
        ("const T*", "weights"), ("int", "n_mels"), ("T*", "out"), ("long long", "out_row"),
        ("long long", "out_band"), ("int", "db"), ("T", "min_power"), ("T", "ref_db"), ("int", "has_ref"),
        ("K*", "max_keys"), ("int", "max_mode"),
    ),
    "am_mel_direct": (
        ("const T*", "spec"), ("long long", "frames_row"), ("int", "frames"), ("int", "tiles"), ("int", "nb"),
        ("int", "n_fft"), ("int", "taps"), ("T", "tap_a"), ("T", "tap_b"), ("int", "pmode"), ("T", "half_exp"),
        ("const int*", "bands"), ("const T*", "weights"), ("int", "n_mels"), ("T*", "out"),
        ("long long", "out_row"), ("long long", "out_band"), ("int", "db"), ("T", "min_power"), ("T", "ref_db"),
        ("int", "has_ref"), ("K*", "max_keys"), ("int", "max_mode"),
    ),
    "am_clip_top_db": (
        ("T*", "out"), ("long long", "row_elems"), ("int", "tiles"), ("const K*", "max_keys"), ("int", "per_row"),
        ("T", "top_db"),
    ),
}

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def name_expression(kernel: str, dtype_name: str, in_dtype_name: str | None = None) -> str:
    """The NVRTC name expression of one instantiation, e.g. ``am_pad_reflect<short, float>``."""
    t = COMPUTE_CTYPES[dtype_name]
    if kernel in INPUT_KERNELS:
        if in_dtype_name is None:
            raise ValueError(f"{kernel} needs the input dtype")
        return f"{kernel}<{INPUT_CTYPES[in_dtype_name]}, {t}>"
    if kernel not in CORE_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}")
    return f"{kernel}<{t}>"


def name_expressions(dtype_name: str, in_dtype_name: str | None = None) -> list[str]:
    """The instantiations one module holds: the core kernels, or the input kernels for one input dtype."""
    if in_dtype_name is None:
        return [name_expression(k, dtype_name) for k in CORE_KERNELS]
    return [name_expression(k, dtype_name, in_dtype_name) for k in INPUT_KERNELS]


def all_name_expressions() -> list[str]:
    """Every instantiation the GPU path can ask for (float32 and float64, every input dtype)."""
    out: list[str] = []
    for dt in COMPUTE_CTYPES:
        out += name_expressions(dt)
        for it in INPUT_CTYPES:
            out += name_expressions(dt, it)
    return out


def parse_signatures(source: str = SOURCE) -> dict[str, tuple[tuple[str, str], ...]]:
    """``{kernel: ((C type, name), ...)}`` read from the ``__global__`` definitions of ``source``.

    Types are normalised to the vocabulary of :data:`KERNEL_PARAMS` (``am_key_t<T>`` -> ``K``,
    ``__restrict__`` dropped).
    """
    sigs = {}
    for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(([^)]*)\)", source):
        params = []
        for raw in m.group(2).split(","):
            p = " ".join(raw.replace("__restrict__", " ").split())
            ctype, name = p.rsplit(" ", 1)
            while name.startswith("*"):
                ctype, name = ctype + "*", name[1:]
            ctype = ctype.replace("am_key_t<T>", "K").replace(" *", "*")
            params.append((ctype, name))
        sigs[m.group(1)] = tuple(params)
    return sigs


class Ptr:
    """A device pointer argument: the first element of ``array`` plus ``offset`` elements (negative for
    the rows of a reversed view). ``dtype`` is the array's, so :func:`pack_args` checks it like an array."""

    __slots__ = ("array", "offset")

    def __init__(self, array: Any, offset: int = 0):
        self.array = array
        self.offset = int(offset)

    @property
    def dtype(self) -> Any:
        return self.array.dtype

    def __repr__(self) -> str:
        return f"Ptr({type(self.array).__name__}[{self.array.dtype}], +{self.offset})"


class Unbound:
    """Stands for an array of ``dtype_name`` in arguments packed once (:class:`Prepared`), before the array
    exists: every launch replaces it (so a prepared argument list never keeps a call's buffers alive)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype_name: str):
        self.dtype = np.dtype(dtype_name)


class Prepared:
    """One kernel's arguments for a run: packed and checked once by :func:`pack_args`; per launch,
    :meth:`args` replaces only the arguments that change (a cheap conversion by declared C type)."""

    __slots__ = ("kernel", "_args", "_pos", "_ftype")

    def __init__(self, kernel: str, dtype_name: str, in_dtype_name: str | None, values: Mapping[str, Any],
                 declared: Mapping[str, tuple] | None = None):
        declared = KERNEL_PARAMS if declared is None else declared
        self.kernel = kernel
        self._args = list(pack_args(kernel, dtype_name, in_dtype_name, values, declared))
        self._pos = {name: (i, ctype) for i, (ctype, name) in enumerate(declared[kernel])}
        self._ftype = np.dtype(dtype_name).type

    def bind(self, **changes: Any) -> "Prepared":
        """A copy with some arguments replaced (what stays fixed for a whole call); :meth:`args` then per launch."""
        new = object.__new__(Prepared)
        new.kernel, new._pos, new._ftype = self.kernel, self._pos, self._ftype
        new._args = list(self.args(**changes))
        return new

    def args(self, **changes: Any) -> tuple:
        out = self._args.copy()
        for name, v in changes.items():
            i, ctype = self._pos[name]
            if ctype == "int":
                out[i] = np.int32(v)  # NumPy raises OverflowError out of range
            elif ctype == "long long":
                out[i] = np.int64(v)
            elif ctype == "T":
                out[i] = self._ftype(v)
            else:
                if v.dtype != out[i].dtype:
                    raise TypeError(f"{self.kernel}: argument {name} changed dtype from {out[i].dtype} to {v.dtype}")
                out[i] = v
        return tuple(out)


def pack_args(kernel: str, dtype_name: str, in_dtype_name: str | None, values: Mapping[str, Any],
              declared: Mapping[str, tuple] | None = None) -> tuple:
    """The argument tuple of one launch, in declaration order, each value in its exact C type.

    Arrays (NumPy or CuPy) or :class:`Ptr` must have the element dtype the parameter declares; scalars are range
    checked and converted to ``numpy.int32``/``int64`` or the compute float type. Unknown or
    missing names raise. ``declared`` is the parameter table (default :data:`KERNEL_PARAMS`; the fused
    kernels pass :data:`arraymel._cupy.fused_kernels.FUSED_PARAMS`).
    """
    spec = (KERNEL_PARAMS if declared is None else declared)[kernel]
    names = [n for _, n in spec]
    extra = set(values) - set(names)
    if extra:
        raise TypeError(f"{kernel}: unknown argument(s) {sorted(extra)}")
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"{kernel}: missing argument(s) {missing}")
    dt = np.dtype(dtype_name)
    elem = {"T": dt, "TIn": np.dtype(in_dtype_name) if in_dtype_name else None,
            "K": np.dtype(KEY_DTYPES[dtype_name]), "int": np.dtype(np.int32)}
    out = []
    for ctype, name in spec:
        v = values[name]
        if ctype.endswith("*"):
            base = ctype.replace("const ", "").rstrip("*").strip()
            want = elem[base]
            got = getattr(v, "dtype", None)
            if got is None or np.dtype(got) != want:
                raise TypeError(f"{kernel}: argument {name} ({ctype}) needs an array of {want}, got {got}")
            out.append(v)
        elif ctype == "int":
            out.append(_int(kernel, name, v, np.int32, _INT32))
        elif ctype == "long long":
            out.append(_int(kernel, name, v, np.int64, _INT64))
        elif ctype == "T":
            out.append(dt.type(v))
        else:  # pragma: no cover - the declarations above use only these
            raise TypeError(f"{kernel}: unsupported parameter type {ctype}")
    return tuple(out)


def _int(kernel: str, name: str, v: Any, typ: type, bounds: tuple[int, int]) -> Any:
    if isinstance(v, (bool, np.bool_)):
        v = int(v)
    if not isinstance(v, (int, np.integer)):
        raise TypeError(f"{kernel}: argument {name} must be an integer, got {type(v).__name__}")
    if not bounds[0] <= int(v) <= bounds[1]:
        raise OverflowError(f"{kernel}: argument {name}={int(v)} does not fit {np.dtype(typ).name}")
    return typ(int(v))


# --------------------------------------------------------------------------------------- compile cache
class KernelCache:
    """Compiled kernels, one NVRTC module per (device, compute dtype[, input dtype]), built on first use.

    CuPy keeps the compiled binary in its on-disk cache as well, so a new process loads rather
    than recompiles. Thread-safe; ``compiled`` counts the modules built by this process. A cache is
    for one translation unit: ``source``, the kernels templated on the input type, and the
    functions that name one instantiation and the instantiations of one module (defaults: this
    module's kernels; :mod:`arraymel._cupy.fused_kernels` makes one for the fused kernels).
    """

    def __init__(self, source: str = SOURCE, input_kernels: tuple = INPUT_KERNELS, expression: Any = None,
                 expressions: Any = None) -> None:
        self.source = source
        self.input_kernels = input_kernels
        self._expression = expression or name_expression
        self._expressions = expressions or name_expressions
        self._modules: dict[tuple, Any] = {}
        self._functions: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.compiled = 0

    def function(self, device_id: int, kernel: str, dtype_name: str, in_dtype_name: str | None = None) -> Any:
        """The ``cupy.RawKernel`` of one instantiation on ``device_id``."""
        key = (device_id, kernel, dtype_name, in_dtype_name if kernel in self.input_kernels else None)
        fn = self._functions.get(key)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._functions.get(key)
            if fn is None:
                mod = self._module(device_id, dtype_name, key[3])
                import cupy

                with cupy.cuda.Device(device_id):
                    fn = mod.get_function(self._expression(kernel, dtype_name, key[3]))
                self._functions[key] = fn
            return fn

    def _module(self, device_id: int, dtype_name: str, in_dtype_name: str | None) -> Any:
        key = (device_id, dtype_name, in_dtype_name)
        mod = self._modules.get(key)
        if mod is None:
            import cupy

            with cupy.cuda.Device(device_id):
                mod = cupy.RawModule(code=self.source, options=("--std=c++14",),
                                     name_expressions=self._expressions(dtype_name, in_dtype_name))
                mod.compile()
            self._modules[key] = mod
            self.compiled += 1
        return mod

    def __len__(self) -> int:
        return len(self._modules)


KERNELS = KernelCache()
