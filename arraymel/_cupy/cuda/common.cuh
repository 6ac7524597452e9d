// Helpers shared by the kernels: traits per float type, the reflect index, the ordered max key.
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
