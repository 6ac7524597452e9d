// Frames of a chunk, gathered from the (virtually) reflect-padded signal and windowed: frame f of
// row r (blockIdx.y) starts at signal position seg_start + f * hop and is stored at
// out + (r * frames + f) * n_fft. Every sample is multiplied, also by the window's zero
// padding, so that a NaN anywhere in a frame reaches its spectrum as in Keras.
// frame_step (Kaldi): one block per frame (gridDim.x == frames); the mean of the frame's first
// win_len samples is removed and they are pre-emphasised, y[k] = d[k] - preemph d[k - 1]
// (y[0] = d[0] - preemph d[0]), before the window.
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
