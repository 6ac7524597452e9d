// The fused kernel am_fused_mel: window, half-length complex FFT (Stockham stages of radix 2, 3, 4, 5),
// real-FFT post-processing, power, mel, dB and the top_db maximum of fpb frames in one block, the
// spectrum never leaving shared memory (see arraymel/_cupy/fused_kernels.py for the steps). Needs
// common.cuh and mel_bands.cuh before it.

#define AM_FUSED_MAXB 4

// A complex value as one aligned 8- or 16-byte access (a warp's consecutive values: no bank conflict).
template <typename T> struct alignas(2 * sizeof(T)) am_cplx { T re, im; };

// Forward DFT of R points (R = 2, 3, 4, 5) in place: Y[m] = sum_r v[r] exp(-2 pi i r m / R).
template <typename T>
__device__ __forceinline__ void am_dft(int R, T (&re)[5], T (&im)[5]) {
    if (R == 2) {
        const T ar = re[0], ai = im[0];
        re[0] = ar + re[1]; im[0] = ai + im[1];
        re[1] = ar - re[1]; im[1] = ai - im[1];
    } else if (R == 4) {
        const T s0r = re[0] + re[2], s0i = im[0] + im[2], d0r = re[0] - re[2], d0i = im[0] - im[2];
        const T s1r = re[1] + re[3], s1i = im[1] + im[3], d1r = re[1] - re[3], d1i = im[1] - im[3];
        re[0] = s0r + s1r; im[0] = s0i + s1i;
        re[2] = s0r - s1r; im[2] = s0i - s1i;
        // Y1 = d0 - i d1, Y3 = d0 + i d1
        re[1] = d0r + d1i; im[1] = d0i - d1r;
        re[3] = d0r - d1i; im[3] = d0i + d1r;
    } else if (R == 3) {
        const T c1 = T(-0.5), s1 = T(-0.86602540378443864676);  // exp(-2 pi i / 3)
        const T sr = re[1] + re[2], si = im[1] + im[2], dr = re[1] - re[2], di = im[1] - im[2];
        const T mr = re[0] + c1 * sr, mi = im[0] + c1 * si;
        re[0] = re[0] + sr; im[0] = im[0] + si;
        // Y1 = m + i s1 d, Y2 = m - i s1 d
        re[1] = mr - s1 * di; im[1] = mi + s1 * dr;
        re[2] = mr + s1 * di; im[2] = mi - s1 * dr;
    } else {  // R == 5
        const T c1 = T(0.30901699437494742410), c2 = T(-0.80901699437494742410);   // cos(2 pi / 5), cos(4 pi / 5)
        const T s1 = T(-0.95105651629515357212), s2 = T(-0.58778525229247312917);  // -sin(2 pi / 5), -sin(4 pi / 5)
        const T a1r = re[1] + re[4], a1i = im[1] + im[4], b1r = re[1] - re[4], b1i = im[1] - im[4];
        const T a2r = re[2] + re[3], a2i = im[2] + im[3], b2r = re[2] - re[3], b2i = im[2] - im[3];
        const T m1r = re[0] + c1 * a1r + c2 * a2r, m1i = im[0] + c1 * a1i + c2 * a2i;
        const T m2r = re[0] + c2 * a1r + c1 * a2r, m2i = im[0] + c2 * a1i + c1 * a2i;
        const T n1r = s1 * b1r + s2 * b2r, n1i = s1 * b1i + s2 * b2i;   // Y1 = m1 + i n1, Y4 = m1 - i n1
        const T n2r = s2 * b1r - s1 * b2r, n2i = s2 * b1i - s1 * b2i;   // Y2 = m2 + i n2, Y3 = m2 - i n2
        re[0] = re[0] + a1r + a2r; im[0] = im[0] + a1i + a2i;
        re[1] = m1r - n1i; im[1] = m1i + n1r;
        re[4] = m1r + n1i; im[4] = m1i - n1r;
        re[2] = m2r - n2i; im[2] = m2i + n2r;
        re[3] = m2r + n2i; im[3] = m2i - n2r;
    }
}

// |X[k]|^mag_exp (pmode 0: re^2 + im^2; 1: its square root; 2: its power half_exp).
template <typename T>
__device__ __forceinline__ T am_mag(T re, T im, int pmode, T half_exp) {
    T p = re * re + im * im;
    if (pmode == 1) p = am_traits<T>::sqrt_(p);
    else if (pmode == 2) p = am_traits<T>::pow_(p, half_exp);
    return p;
}

// Block b: frames tile * fpb .. + fpb of row b / tiles. Shared memory: fpb frames of 2 * half + 2
// reals (half complex values plus the spare slot of X[half]'s power).
template <typename TIn, typename T>
__global__ void __launch_bounds__(AM_BLOCK)
am_fused_mel(const TIn* __restrict__ x, long long row_stride, long long sample_stride, long long n,
             long long seg_start, int hop, int frames, int tiles, int fpb, int half, int radices, int stages,
             const T* __restrict__ twiddles, const T* __restrict__ window, int has_window,
             int bin_lo, int pmode, T half_exp, const int* __restrict__ bands, const T* __restrict__ weights,
             int n_mels, T* __restrict__ out, long long out_row, long long out_band,
             int db, T min_power, T ref_db, int has_ref, am_key_t<T>* __restrict__ max_keys, int max_mode)
{
    extern __shared__ __align__(16) unsigned char am_dynamic_smem[];
    am_cplx<T>* buf = reinterpret_cast<am_cplx<T>*>(am_dynamic_smem);
    const am_cplx<T>* __restrict__ tw = reinterpret_cast<const am_cplx<T>*>(twiddles);
    const int fs = half + 1;  // complex slots per frame in shared memory
    const int n_fft = 2 * half;

    const int row = blockIdx.x / tiles;
    const int tile = blockIdx.x - row * tiles;
    const int f0 = tile * fpb;
    const TIn* __restrict__ xr = x + row * row_stride;

    // 1. load: windowed samples, two per complex value; frames past the end are zeros
    for (int i = threadIdx.x; i < fpb * half; i += blockDim.x) {
        const int fl = i / half;
        const int j = i - fl * half;
        T re = T(0), im = T(0);
        if (f0 + fl < frames) {
            const long long pos = seg_start + (long long)(f0 + fl) * hop + 2 * j;
            re = static_cast<T>(xr[am_reflect(pos, n) * sample_stride]);
            im = static_cast<T>(xr[am_reflect(pos + 1, n) * sample_stride]);
            if (has_window) {
                re *= window[2 * j];
                im *= window[2 * j + 1];
            }
        }
        buf[fl * fs + j] = am_cplx<T>{re, im};
    }
    __syncthreads();

    // 2. Stockham stages: butterfly j of a stage (ns points already combined) reads points
    //    j + r * half / R, twiddles point r by exp(-2 pi i r k / (ns R)) with k = j mod ns, and writes
    //    point r to (j / ns) * ns * R + k + r * ns.
    int ns = 1;
    for (int s = 0; s < stages; ++s) {
        const int R = (radices >> (3 * s)) & 7;
        const int q = half / R;
        const int items = fpb * q;
        const int tstep = n_fft / (ns * R);
        T vr[AM_FUSED_MAXB][5], vi[AM_FUSED_MAXB][5];
#pragma unroll
        for (int b = 0; b < AM_FUSED_MAXB; ++b) {
            const int it = threadIdx.x + b * AM_BLOCK;
            if (it < items) {
                const int fl = it / q;
                const int j = it - fl * q;
                const int k = j % ns;
                const am_cplx<T>* src = buf + fl * fs;
#pragma unroll
                for (int r = 0; r < 5; ++r) {
                    if (r < R) {
                        const am_cplx<T> v = src[j + r * q];
                        vr[b][r] = v.re;
                        vi[b][r] = v.im;
                    }
                }
#pragma unroll
                for (int r = 1; r < 5; ++r) {
                    if (r < R) {
                        const am_cplx<T> w = tw[k * r * tstep];
                        const T ar = vr[b][r], ai = vi[b][r];
                        vr[b][r] = ar * w.re - ai * w.im;
                        vi[b][r] = ar * w.im + ai * w.re;
                    }
                }
                am_dft<T>(R, vr[b], vi[b]);
            }
        }
        __syncthreads();
#pragma unroll
        for (int b = 0; b < AM_FUSED_MAXB; ++b) {
            const int it = threadIdx.x + b * AM_BLOCK;
            if (it < items) {
                const int fl = it / q;
                const int j = it - fl * q;
                const int k = j % ns;
                am_cplx<T>* dst = buf + fl * fs + (j - k) * R + k;
#pragma unroll
                for (int r = 0; r < 5; ++r) {
                    if (r < R) dst[r * ns] = am_cplx<T>{vr[b][r], vi[b][r]};
                }
            }
        }
        __syncthreads();
        ns *= R;
    }

    // 3. the real spectrum, two bins per thread, and its power over the pair's own real parts
    const int pairs = half / 2 + 1;
    for (int i = threadIdx.x; i < fpb * pairs; i += blockDim.x) {
        const int fl = i / pairs;
        const int k = i - fl * pairs;
        const int mk = k ? half - k : 0;
        am_cplx<T>* fr = buf + fl * fs;
        const am_cplx<T> z = fr[k], c = fr[mk];
        const T zr = z.re, zi = z.im, cr = c.re, ci = -c.im;  // Z[k], conj(Z[M - k])
        const T er = T(0.5) * (zr + cr), ei = T(0.5) * (zi + ci);
        const T orr = T(0.5) * (zi - ci), oi = T(-0.5) * (zr - cr);  // (Z[k] - conj Z[M-k]) / 2i
        const am_cplx<T> w = tw[k];
        const T tr = w.re * orr - w.im * oi, ti = w.re * oi + w.im * orr;
        const T pk = am_mag(er + tr, ei + ti, pmode, half_exp);
        const T pm = am_mag(er - tr, ti - ei, pmode, half_exp);  // X[M-k] = conj(E - W^k O)
        fr[k].re = pk;
        fr[half - k].re = pm;
    }
    __syncthreads();

    // 4. mel bands, dB, transposed store, block maximum (as am_mel_smem)
    am_mel_bands<T, 2>(reinterpret_cast<const T*>(buf) + 2 * bin_lo, 2 * fs, fpb, f0, frames, bin_lo, bands, weights, n_mels,
                       out + (long long)row * out_row + f0, out_band, db, min_power, ref_db, has_ref,
                       max_keys + (max_mode == 2 ? row : 0), max_mode);
}
