"""The CuPy path's behaviour on a GPU: where the output lives, caching (no new plan, no new
allocation on a repeated call), streams without host synchronisation, bounded memory on a 1-hour
clip and a batch of 4,096 ten-second clips, out-of-memory retry, and the peak-memory target.

GPU only: every test is marked ``gpu`` and skipped where CuPy finds no device.
"""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from _helpers import assert_db_close, assert_meta
from kernel_sources import force_layout
from test_cupy_emulated import _signal

import arraymel
from arraymel._config import MelConfig

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def state_of(cp, dtype="float32", **params):
    from arraymel._cupy.pipeline import CupyState

    return CupyState(MelConfig.create(**params), dtype, cp.cuda.Device().id)


_BATCHES: dict = {}


def bench_batch(cp, batch, seconds, config="keras", seed=0):
    """The shared benchmark signal (arraymel.bench.workloads), on the device; built once per module."""
    from arraymel.bench.workloads import config_params, make_batch

    p = config_params(config)
    key = (batch, seconds, config, seed)
    if key not in _BATCHES:
        _BATCHES[key] = make_batch(batch, seconds, p["sampling_rate"], xp=cp, seed=seed)
    return _BATCHES[key], p


# ------------------------------------------------------------------------------------ device= / output=
def test_cupy_in_cupy_out_same_device(cp):
    x = cp.asarray(_signal((2, 8000)).astype(np.float32))
    out = arraymel.mel_spectrogram(x)
    assert_meta(out, xp=cp, dtype=cp.float32, shape=(2, 128, 16))
    assert out.device.id == x.device.id


def test_numpy_with_device_cuda(cp):
    x = _signal((2, 8000)).astype(np.float32)
    out = arraymel.mel_spectrogram(x, device="cuda")  # NumPy in: NumPy back (the copy was asked for)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    on_device = arraymel.mel_spectrogram(x, device="cuda", output="device")
    assert isinstance(on_device, cp.ndarray)
    cpu = arraymel.mel_spectrogram(x)
    assert_db_close(out, cpu, 2e-3)
    assert_db_close(on_device, cpu, 2e-3)
    back = arraymel.mel_spectrogram(cp.asarray(x), output="numpy")
    assert isinstance(back, np.ndarray)
    layer = arraymel.MelSpectrogram()
    assert isinstance(layer(x, device="cuda:0"), np.ndarray)


def test_bad_device_index_is_a_clear_error(cp):
    n = cp.cuda.runtime.getDeviceCount()
    with pytest.raises(ValueError, match=f"cuda:{n}"):
        arraymel.mel_spectrogram(np.ones(4000, np.float32), device=f"cuda:{n}")


def test_state_refuses_an_array_on_another_device(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    st = state_of(cp)
    with cp.cuda.Device(1):
        x = cp.ones(4000, cp.float32)
    with pytest.raises(ValueError, match="cuda:1"):
        st(x)


def test_second_gpu(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    x_host = _signal((2, 8000)).astype(np.float32)
    with cp.cuda.Device(1):
        x = cp.asarray(x_host)
    out = arraymel.mel_spectrogram(x)
    assert out.device.id == 1
    moved = arraymel.mel_spectrogram(cp.asarray(x_host), device="cuda:1")
    assert moved.device.id == 1
    assert_db_close(out, moved, 1e-5)


# ------------------------------------------------------------------------------------ caches
def test_repeated_call_creates_no_plan_and_allocates_nothing(cp):
    from arraymel._cupy.kernels import KERNELS
    from arraymel._cupy.plans import PLANS

    x, params = bench_batch(cp, 64, 10.0)
    mel = arraymel.MelSpectrogram(**params)
    pool = cp.get_default_memory_pool()
    out = mel(x)
    del out
    cp.cuda.Device().synchronize()
    total, used = pool.total_bytes(), pool.used_bytes()
    plans, compiled, hits = PLANS.created, KERNELS.compiled, PLANS.hits
    for _ in range(3):
        out = mel(x)
        del out
    cp.cuda.Device().synchronize()
    assert pool.total_bytes() == total, "a repeated call grew the memory pool"
    assert pool.used_bytes() == used
    assert PLANS.created == plans and KERNELS.compiled == compiled
    assert PLANS.hits > hits


def test_kernels_compile_once_per_device_and_dtype(cp):
    from arraymel._cupy.kernels import KERNELS

    x = cp.asarray(_signal((2, 4000)))
    for dt in ("float32", "float64"):
        arraymel.mel_spectrogram(x, dtype=dt, fft_length=512, sequence_stride=128)
    before = KERNELS.compiled
    for dt in ("float32", "float64"):
        arraymel.mel_spectrogram(x, dtype=dt, fft_length=256, sequence_stride=64, num_mel_bins=40, window="hamming")
    assert KERNELS.compiled == before


def test_results_are_deterministic(cp):
    x, params = bench_batch(cp, 16, 10.0)
    a = arraymel.mel_spectrogram(x, **params)
    b = arraymel.mel_spectrogram(x, **params)
    assert bool((a == b).all()), "two runs differ: a race"


def test_every_output_element_is_written(cp):
    """Poison every buffer the engine allocates (NaN): no NaN may survive into the output."""
    st = state_of(cp, fft_length=512, sequence_stride=128, num_mel_bins=64, top_db=None)
    real_empty = st.ops.empty

    def poisoned(shape, dtype_name):
        a = real_empty(shape, dtype_name)
        a.fill(np.nan)
        return a

    st.ops.empty = poisoned
    x = cp.asarray(_signal((5, 12345)).astype(np.float32))
    for layout in ("gather", "inplace"):
        force_layout(st, layout)
        for budget in (2**30, 60_000):
            out = st(x, max_memory=budget)
            assert not bool(cp.isnan(out).any())


# ------------------------------------------------------------------------------------ streams
SPIN = r"""
extern "C" __global__ void arraymel_test_spin(long long cycles) {
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) { }
}
"""


def test_runs_in_the_current_stream_without_waiting(cp):
    """Queue ~0.3 s of busy work on a stream, then compute on it: the call returns while the stream
    is still busy (no host synchronisation), and the result is right once the stream drains."""
    x_host = _signal((4, 16000)).astype(np.float32)
    mel = arraymel.MelSpectrogram()
    spin = cp.RawKernel(SPIN, "arraymel_test_spin")
    clock_khz = cp.cuda.Device().attributes.get("ClockRate", 1_500_000)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        x = cp.asarray(x_host)
        mel(x)  # warm-up: compile, plans for this stream
        stream.synchronize()
        spin((1,), (1,), (np.int64(clock_khz * 300),))
        out = mel(x)
        busy = not stream.done
        stream.synchronize()
    assert busy, "the call waited for the stream"
    assert_db_close(out, arraymel.mel_spectrogram(x_host), 2e-3)


# ------------------------------------------------------------------------------------ bounded memory
def test_one_hour_clip_chunked_equals_whole(cp):
    x, params = bench_batch(cp, 1, 3600.0)
    st = state_of(cp, **params)
    chunked = st(x)
    assert st.last_call.chunks > 1 and st.last_call.rows == 1
    whole = st(x, max_memory=64 * 2**30)
    assert st.last_call.chunks == 1
    assert_db_close(chunked, whole, 1e-4)
    # and the first minute against the float64 oracle (frames 0..1869 lie inside it); batch scope:
    # the clip floor is 80 dB under the hour's maximum, taken from a float64 GPU run without clipping
    unclipped = state_of(cp, "float64", **{**params, "top_db": None})(x.astype(cp.float64))
    peak = float(unclipped.max())
    ref = oracle.mel_spectrogram(cp.asnumpy(x[..., :60 * 16000]).astype(np.float64), **{**params, "top_db": None})
    ref = np.maximum(ref[..., :1870], peak - 80.0)
    assert_db_close(chunked[..., :1870], ref, 1e-3)


@pytest.mark.parametrize("scope", ["batch", "example"])
def test_batch_of_4096_ten_second_clips(cp, scope):
    x, params = bench_batch(cp, 4096, 10.0)
    params = {**params, "top_db_scope": scope}
    st = state_of(cp, **params)
    chunked = st(x)  # the default work area: hundreds of chunks
    n_small = st.last_call.chunks
    # the fewest chunks cuFFT's 32-bit sizes allow (a single plan cannot hold 4,096 x 316 transforms)
    few = st(x, max_memory=64 * 2**30)
    assert n_small > st.last_call.chunks >= 1
    assert_db_close(chunked, few, 1e-4)
    if scope == "example":  # each spectrogram is then independent of the batch: compare a few on the CPU
        cpu = arraymel.mel_spectrogram(cp.asnumpy(x[:8]), **params)
        assert_db_close(chunked[:8], cpu, 2e-3)


def test_out_of_memory_retries_with_a_smaller_chunk(cp):
    x, params = bench_batch(cp, 64, 10.0)
    st = state_of(cp, **params)
    ref = st(x, max_memory=2**20 * 8)
    pool = cp.get_default_memory_pool()
    cp.cuda.Device().synchronize()
    pool.free_all_blocks()
    limit = pool.get_limit()
    try:
        # room for the input, the output and ~64 MiB, but a 1 GiB work area was asked for
        pool.set_limit(size=pool.used_bytes() + ref.nbytes + 64 * 2**20)
        out = st(x, max_memory=2**30)
        assert st.last_call.retries >= 1 and st.last_call.budget < 2**30
    finally:
        pool.set_limit(size=limit)
    assert_db_close(out, ref, 1e-4)


def test_peak_memory_at_512x10s(cp):
    """Issue 4's target: peak device memory for 512 x 10 s <= 2 x output + cuFFT work area."""
    from arraymel._cupy.plans import PLANS

    x, params = bench_batch(cp, 512, 10.0)
    mel = arraymel.MelSpectrogram(**params)
    mel(x)  # plans made (their work areas are pool memory held by the cache)
    pool = cp.get_default_memory_pool()
    cp.cuda.Device().synchronize()
    pool.free_all_blocks()
    base = pool.total_bytes()
    out = mel(x)
    cp.cuda.Device().synchronize()
    grown = pool.total_bytes() - base
    fft_work = sum(e.work_bytes for e in PLANS._d.values())
    print(f"\npeak growth {grown / 2**20:.1f} MiB, output {out.nbytes / 2**20:.1f} MiB, cuFFT work {fft_work / 2**20:.1f} MiB")
    assert grown <= 2 * out.nbytes + fft_work
