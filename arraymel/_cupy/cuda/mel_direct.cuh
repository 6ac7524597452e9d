// The mel pass without shared memory (very long spectra): thread j of chunk row b / tiles
// computes band j / frames of frame j % frames straight from the spectrum.
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
