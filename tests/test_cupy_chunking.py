"""The GPU path's planning logic, on the CPU: chunks under a budget, the default budget, the
out-of-memory retry, the plan cache bounds, the band table and launch shapes. No CuPy needed."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from arraymel._config import MelConfig
from arraymel._cupy import chunking
from arraymel._cupy.chunking import (
    MAX_ELEMS,
    Problem,
    RetryLog,
    default_budget,
    is_oom_error,
    min_budget,
    plan_chunks,
    run_with_retry,
    work_bytes,
)
from arraymel._cupy.params import mel_launch, mel_params
from arraymel._cupy.plans import PlanCache
from arraymel.core.filterbank import filterbank_host
from arraymel.core.plan import band_table

MiB = 2**20

pytestmark = pytest.mark.filterwarnings("ignore:.*mel bands receive no FFT bin:UserWarning")


#: CUDA's limit on gridDim.y (and z): the signal kernels put rows there.
CUDA_GRID_Y_MAX = 65535


def problem(batch=4, seconds=1.0, fft=2048, hop=512, mels=128, itemsize=4, inplace_ok=True, sr=16000) -> Problem:
    n = max(1, int(seconds * sr))
    return Problem(batch=batch, samples=n, frames=1 + (n + 2 * (fft // 2) - fft) // hop, n_fft=fft, hop=hop,
                   nb=fft // 2 + 1, n_mels=mels, itemsize=itemsize, inplace_ok=inplace_ok)


def check_cover(plan) -> None:
    """Every (row, frame) exactly once; chunks within the plan's sizes; time chunks on the hop grid."""
    p = plan.problem
    if plan.n_chunks > 20_000:  # one frame at a time over thousands of clips: check a smaller problem
        small = Problem(**{**p.__dict__, "batch": min(p.batch, 2), "samples": min(p.samples, 5 * p.hop),
                           "frames": 1 + (min(p.samples, 5 * p.hop) + 2 * (p.n_fft // 2) - p.n_fft) // p.hop})
        plan = type(plan)(small, plan.path, min(plan.rows, small.batch), min(plan.frames, small.frames), plan.budget)
        p = small
    seen = np.zeros((p.batch, p.frames), dtype=np.int64)
    for c in plan.chunks():
        assert 0 < c.rows <= plan.rows and 0 < c.frames <= plan.frames
        seen[c.b0:c.b1, c.t0:c.t1] += 1
        if plan.path == "inplace":
            # the chunk's padded segment starts at frame t0's first sample: a multiple of the hop
            assert (c.t0 * p.hop) % p.hop == 0
            assert plan.pitch(c.frames) % p.hop == 0
            assert plan.pitch(c.frames) >= (c.frames - 1) * p.hop + p.n_fft
            last = (plan.fft_batch(c.rows, c.frames) - 1) * p.hop + p.n_fft
            assert last <= plan.input_elems(c.rows, c.frames) <= plan.max_input_elems
        assert plan.spectrum_elems(c.rows, c.frames) <= plan.max_spectrum_elems
    assert (seen == 1).all()
    assert plan.n_chunks == sum(1 for _ in plan.chunks())


# ------------------------------------------------------------------------------------ planner
@pytest.mark.parametrize("budget", [1, 10_000, 1 * MiB, 16 * MiB, 50 * MiB, 2**34])
@pytest.mark.parametrize("case", [
    dict(batch=512, seconds=10.0),
    dict(batch=512, seconds=10.0, fft=400, hop=160, mels=80),
    dict(batch=1, seconds=3600.0),
    dict(batch=4096, seconds=10.0),
    dict(batch=3, seconds=0.0001, fft=2048, hop=512),  # 1 sample, 1 frame
    dict(batch=7, seconds=0.01, fft=63, hop=5, mels=16, itemsize=8),
    dict(batch=2, seconds=0.5, fft=1024, hop=1, mels=40),  # hop 1: pitched layout wastes too much
    dict(batch=5, seconds=1.0, fft=512, hop=700, mels=40),  # hop > fft
    dict(batch=3, seconds=1.0, fft=1, hop=1, mels=1),
    dict(batch=6, seconds=1.0, fft=256, hop=64, inplace_ok=False),
])
def test_plan_covers_everything_within_budget(case, budget):
    p = problem(**case)
    plan = plan_chunks(p, budget)
    check_cover(plan)
    assert plan.path in chunking.PATHS
    if not p.inplace_ok:
        assert plan.path == "gather"
    if plan.path == "inplace":
        assert p.extra <= chunking.INPLACE_MAX_WASTE * plan.frames
    smallest = work_bytes(p, plan.path, 1, 1)
    if budget >= smallest:
        assert plan.work_bytes <= budget, (plan, budget)
    else:  # a budget under one frame's work still makes progress, one frame at a time
        assert plan.rows == 1 and plan.frames == 1
    assert plan.rows <= CUDA_GRID_Y_MAX
    assert plan.max_input_elems <= MAX_ELEMS and plan.max_spectrum_elems <= MAX_ELEMS


def test_whole_rows_first_then_time():
    p = problem(batch=512, seconds=10.0)
    plan = plan_chunks(p, 50 * MiB)
    assert plan.frames == p.frames and 1 < plan.rows < 512 and plan.path == "inplace"
    one_hour = problem(batch=1, seconds=3600.0)
    plan = plan_chunks(one_hour, 50 * MiB)
    assert plan.rows == 1 and plan.n_time_chunks > 1 and plan.path == "inplace"
    assert plan.work_bytes <= 50 * MiB


def test_chunks_are_balanced():
    p = problem(batch=100, seconds=1.0)
    per_row = work_bytes(p, "inplace", 1, p.frames)
    plan = plan_chunks(p, 30 * per_row + per_row // 2)  # 30 rows fit: 4 chunks of 25, not 30+30+30+10
    sizes = [c.rows for c in plan.chunks()]
    assert max(sizes) - min(sizes) <= 1 and len(sizes) == 4
    long = problem(batch=1, seconds=600.0)
    plan = plan_chunks(long, 8 * MiB)
    sizes = [c.frames for c in plan.chunks()]
    assert max(sizes) - min(sizes) <= 1


def test_pitched_layout_falls_back_to_gather_when_wasteful():
    p = problem(batch=1, seconds=0.01, fft=2048, hop=512)  # 2 frames per row, 3 spare transforms each
    assert plan_chunks(p, 2**30).path == "gather"
    p = problem(batch=1, seconds=10.0, fft=2048, hop=512)
    assert plan_chunks(p, 2**30).path == "inplace"
    assert plan_chunks(p, work_bytes(p, "inplace", 1, 8)).path == "gather"  # 8 frames: 3 spare is too many


def test_empty_batch_and_bad_budget():
    p = problem(batch=0)
    assert list(plan_chunks(p, MiB).chunks()) == []
    with pytest.raises(ValueError, match="max_memory"):
        plan_chunks(problem(), 0)


def test_int32_limits_respected_for_huge_budgets():
    p = problem(batch=65536 * 3, seconds=10.0)
    plan = plan_chunks(p, 2**40)
    assert plan.rows <= CUDA_GRID_Y_MAX
    assert plan.max_spectrum_elems <= MAX_ELEMS and plan.max_input_elems <= MAX_ELEMS
    check_cover(plan)


def test_rows_per_chunk_stop_at_cuda_s_grid_y_limit():
    """Rows are gridDim.y of the signal kernels: CUDA allows 65,535 (not the planner's own constant)."""
    for path_ok in (True, False):
        for batch in (65535, 65536, 131071):
            p = problem(batch=batch, seconds=0.002, fft=64, hop=16, mels=8, inplace_ok=path_ok)
            plan = plan_chunks(p, 2**40)
            assert plan.rows <= CUDA_GRID_Y_MAX and max(c.rows for c in plan.chunks()) <= CUDA_GRID_Y_MAX
            assert plan.n_row_chunks == -(-batch // CUDA_GRID_Y_MAX)  # no more chunks than the limit needs
            check_cover(plan)


# ------------------------------------------------------------------------------------ budget
def test_default_budget():
    L2 = 50 * MiB
    target = int(chunking.DEFAULT_L2_FACTOR * L2)
    assert default_budget(80 * 2**30, 0, L2) == target
    assert default_budget(80 * 2**30, 0, 4 * MiB) == chunking.DEFAULT_MIN_WORK
    assert default_budget(40 * MiB, 0, L2) == 10 * MiB  # a quarter of what is free
    assert default_budget(40 * MiB, 4 * target, L2) == target  # the pool's free blocks count as free
    assert default_budget(0, 0, L2) == 1


def test_default_budget_meets_the_peak_memory_target_at_512x10s():
    """Issue 4's target: peak <= 2x output + cuFFT work area for 512 x 10 s (Keras defaults, H100's 50 MB L2)."""
    p = problem(batch=512, seconds=10.0)
    budget = default_budget(80 * 2**30, 0, 50 * MiB)
    plan = plan_chunks(p, budget)
    output = p.batch * p.n_mels * p.frames * p.itemsize
    fft_work_estimate = plan.max_spectrum_elems * p.itemsize * chunking.FFT_WORK_FACTOR
    buffers = plan.work_bytes - fft_work_estimate  # padded signal + spectrum of the largest chunk
    assert buffers <= output  # so the peak (output + buffers + cuFFT work) is under 2 x output + cuFFT work


# ------------------------------------------------------------------------------------ retry
class FakeOOM(MemoryError):
    pass


def test_retry_halves_until_it_fits():
    calls = []

    def run(budget):
        calls.append(budget)
        if budget > 1000:
            raise FakeOOM("out of memory allocating")
        return budget

    freed = []
    log = RetryLog([], [])
    got = run_with_retry(run, 8000, is_oom=lambda e: isinstance(e, FakeOOM), on_oom=lambda: freed.append(1),
                         min_budget=10, log=log)
    assert got == 1000 and calls == [8000, 4000, 2000, 1000]
    assert len(freed) == 3 and log.retries == 3 and log.budgets == calls


def test_retry_gives_up_at_the_smallest_chunk():
    def run(budget):
        raise FakeOOM("still out of memory")

    with pytest.raises(FakeOOM):
        run_with_retry(run, 100, is_oom=lambda e: isinstance(e, FakeOOM), min_budget=30)


def test_retry_does_not_swallow_other_errors():
    def run(budget):
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="real bug"):
        run_with_retry(run, 100, is_oom=lambda e: isinstance(e, FakeOOM))


def test_is_oom_error_classifies():
    class CuFFTError(RuntimeError):
        pass

    class CUDARuntimeError(RuntimeError):
        pass

    assert is_oom_error(FakeOOM(), (FakeOOM,))
    assert is_oom_error(CuFFTError("CUFFT_ALLOC_FAILED"), (FakeOOM,), CuFFTError)
    assert not is_oom_error(CuFFTError("CUFFT_INVALID_SIZE"), (FakeOOM,), CuFFTError)
    assert is_oom_error(CUDARuntimeError("cudaErrorMemoryAllocation: out of memory"), (), None, CUDARuntimeError)
    assert not is_oom_error(ValueError("out of memory"), (FakeOOM,), CuFFTError, CUDARuntimeError)


def test_min_budget_is_one_frame():
    p = problem()
    assert plan_chunks(p, min_budget(p)).rows == 1 and plan_chunks(p, min_budget(p)).frames == 1


# ------------------------------------------------------------------------------------ plan cache
def test_plan_cache_is_a_bounded_lru():
    made = []

    def factory(key):
        made.append(key)
        return object(), 100

    cache = PlanCache(maxsize=3, max_work_bytes=10_000)
    keys = [(0, "float32", 2048, 512, b, 1025, 7) for b in range(5)]
    for k in keys[:3]:
        cache.get(k, factory)
    assert cache.created == 3 and len(cache) == 3
    p0 = cache.get(keys[0], factory)  # a hit: no new plan, moves to the end
    assert cache.created == 3 and cache.hits == 1 and p0 is cache.get(keys[0], factory)
    cache.get(keys[3], factory)  # evicts the least recently used: keys[1]
    assert keys[1] not in cache.keys() and keys[0] in cache.keys() and cache.evicted == 1
    assert len(cache) == 3


def test_plan_cache_bounds_work_bytes_and_clears_by_device():
    cache = PlanCache(maxsize=10, max_work_bytes=250)
    for b in range(4):
        cache.get((b % 2, "float32", 64, 16, b, 33, 0), lambda k: (object(), 100))
    assert cache.work_bytes <= 250 and len(cache) == 2
    n_dev1 = sum(1 for k in cache.keys() if k[0] == 1)
    assert cache.clear(device_id=1) == n_dev1
    assert all(k[0] == 0 for k in cache.keys())


def test_plan_cache_keeps_an_oversized_newest_plan():
    cache = PlanCache(maxsize=4, max_work_bytes=10)
    cache.get((0, "a"), lambda k: ("plan", 1000))
    assert len(cache) == 1  # the plan just made is never evicted by its own insertion


# ------------------------------------------------------------------------------------ params
@pytest.mark.parametrize("fft,mels,sr,fmin", [(2048, 128, 16000, 20.0), (400, 80, 16000, 0.0), (64, 30, 8000, 150.0),
                                              (7, 3, 22050, 0.0)])
def test_band_table_reproduces_the_filterbank(fft, mels, sr, fmin):
    fb = filterbank_host(mels, fft, float(sr), fmin, float(sr // 2))
    t = band_table(fb)
    dense = np.zeros_like(fb)
    for m, (lo, cnt, off) in enumerate(t.bands):
        dense[lo:lo + cnt, m] = t.weights[off:off + cnt]
        if cnt:
            assert t.bin_lo <= lo and lo + cnt <= t.bin_lo + t.nbu
    np.testing.assert_array_equal(dense, fb)
    assert t.nnz <= 2 * fb.shape[0] + mels  # at most two bands per bin (plus interior zeros)


def test_mel_launch_shapes():
    keras = mel_launch(1023, 4, 313)
    assert keras.kernel == "am_mel_smem" and keras.fpb == 8 and keras.stride_s % 2 == 1
    assert keras.smem <= 47 * 1024
    assert mel_launch(1023, 8, 313).fpb == 4
    assert mel_launch(200, 4, 1001).fpb == 32
    assert mel_launch(200, 4, 3).fpb == 4  # no wider than the frames need
    assert mel_launch(20000, 8, 100).kernel == "am_mel_direct"
    # one 10 s clip on a 132-multiprocessor GPU: one frame per block, 313 blocks, not 40
    assert mel_launch(1023, 4, 313, rows=1, min_blocks=264).fpb == 1
    assert mel_launch(1023, 4, 313, rows=17, min_blocks=264).fpb == 8  # a batch fills the GPU anyway
    for nbu, isz, frames in itertools.product([1, 2, 63, 1024, 5000], [4, 8], [1, 7, 64]):
        ml = mel_launch(nbu, isz, frames)
        if ml.kernel == "am_mel_smem":
            assert 256 % ml.fpb == 0 and ml.stride_s >= nbu and ml.smem == ml.fpb * ml.stride_s * isz


def test_mel_params_window_modes():
    p = mel_params(MelConfig.create(), "float32")
    assert p.inplace_ok and p.taps == 1 and (p.tap_a, p.tap_b) == (0.5, -0.25) and p.pmode == 0
    p = mel_params(MelConfig.create(window="hamming", mag_exp=1.0), "float64")
    assert p.taps == 1 and (p.tap_a, p.tap_b) == (0.54, -0.23) and p.pmode == 1 and p.key_dtype == np.uint64
    p = mel_params(MelConfig.create(window=None, mag_exp=0.5), "float32")
    assert p.inplace_ok and p.taps == 0 and p.window is None and p.pmode == 2 and p.half_exp == 0.25
    p = mel_params(MelConfig.create(fft_length=512, sequence_length=400), "float32")
    assert not p.inplace_ok and p.window.shape == (512,)
    p = mel_params(MelConfig.create(fft_length=8, window=np.ones(8)), "float32")
    assert not p.inplace_ok
    p = mel_params(MelConfig.create(power_to_db=False), "float32")
    assert not p.needs_max and p.db == 0
    p = mel_params(MelConfig.create(top_db=None), "float32")
    assert not p.needs_max and p.db == 1
    p = mel_params(MelConfig.create(ref_power=10.0, top_db_scope="example"), "float32")
    assert p.has_ref and p.ref_db == pytest.approx(10.0) and p.per_example


def test_three_tap_window_is_exact_in_float64():
    """The identity the pitched layout relies on: rfft(w * x) == a X[k] + b (X[k-1] + X[k+1]) for the
    periodic Hann/Hamming window, with X[-1] = conj(X[1]) and X[N/2+1] = conj(X[N/2-1]), odd and even N."""
    rng = np.random.default_rng(1)
    from arraymel._cupy.params import WINDOW_TAPS
    from arraymel.core.windows import periodic_window

    for n in (2, 3, 4, 5, 8, 63, 64, 400, 2048):
        x = rng.standard_normal(n)
        X = np.fft.rfft(x)
        full = np.fft.fft(x)
        for name, (a, b) in WINDOW_TAPS.items():
            want = np.fft.rfft(periodic_window(name, n) * x)
            got = a * X + b * (full[(np.arange(X.size) - 1) % n] + full[(np.arange(X.size) + 1) % n])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1.0, np.abs(full).max()))
    # length 1: scipy (so Keras) gives [1.0], which is no window at all: no taps
    assert mel_params(MelConfig.create(fft_length=1, num_mel_bins=1, window="hann"), "float32").taps == 0


# ------------------------------------------------------------------------------------ imports
def test_planning_modules_do_not_import_cupy():
    code = ("import sys\nimport arraymel._cupy.kernels, arraymel._cupy.chunking, arraymel._cupy.plans, "
            "arraymel._cupy.params, arraymel._cupy.engine\n"
            "print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
