// out = max(out, peak - top_db) in place over rows rows of row_elems elements; the peak
// is max_keys[row] (per-example scope) or max_keys[0] (batch scope). A NaN peak makes
// the whole row NaN (np.maximum semantics); a NaN element stays NaN.
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
