// The reflect-padded, cast signal of a chunk: row r (blockIdx.y) holds signal positions
// seg_start .. seg_start + pitch at out + r * pitch; the last row runs on for tail
// more samples so that the overlapped FFT's spare frames of that row stay inside the buffer.
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
