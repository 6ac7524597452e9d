// Power, window taps, sparse mel, dB, transposed store and the top_db maximum in one pass.
// Block b handles fpb consecutive frames of chunk row b / tiles: phase 1 writes their
// power rows (bins bin_lo .. bin_lo + nbu) to shared memory with coalesced spectrum reads;
// phase 2 is am_mel_bands (mel_bands.cuh).
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
