// Phase 2 of the shared-memory mel kernels (am_mel_smem in mel_smem.cuh, am_fused_mel in
// fused.cuh): the power rows of fpb consecutive frames are in shared
// memory, frame fl's bin bin_lo + j at pw[fl * frame_stride + j * PS]. Thread t takes frame
// t % fpb and bands t / fpb, + 256 / fpb, ..., so a warp stores runs of consecutive frames of
// one band (the output is (rows, mels, frames)); then the block's maximum key for top_db.
// bands holds (first bin, bin count, weight offset) per band; weights the non-zero weights
// band after band. max_mode: 0 none, 1 one key (batch scope), 2 one key per row.
// Every thread of the block must call it (it ends in a block-wide reduction).
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
