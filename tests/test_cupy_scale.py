"""The GPU path at GPU sizes on the emulator (scale mode, tests/cuda_cpu/scale.py): the engine's real
chunk plan and launch geometry for a 1-hour clip, 4096 clips of 10 s, more than 65,535 rows, more
than 2^31 samples and more than 2^31 output elements, on sparse buffers, executing the corner blocks,
a few random blocks and every block that produces a sampled set of output frames (first, last, chunk
boundaries, random; first, last and a random row). The sampled frames are compared with the float64
oracle evaluated on an excerpt of the input around each frame (a frame depends on its own samples
only; the excerpt keeps the real reflection at the signal's ends).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import oracle
import pytest
from cuda_cpu.scale import ScaleOps
from kernel_sources import decode_key, with_layout
from spec_bands import assert_spec_close

from arraymel._config import MelConfig
from arraymel._cupy.engine import Constants, Engine, consts_host
from arraymel._cupy.params import mel_params

pytestmark = pytest.mark.slow

GiB = 2**30


def sampled_frames(plan, frames: int, rng) -> list[int]:
    out = {0, 1, frames - 2, frames - 1, *(int(v) for v in rng.integers(0, frames, 2))}
    starts = sorted({c.t0 for c in plan.chunks() if c.b0 == 0})
    for t0 in starts[1:3] + starts[-1:]:  # both sides of time-chunk boundaries
        out |= {t0 - 1, t0}
    return sorted(f for f in out if 0 <= f < frames)



def sampled_signal(ops, shape: tuple, in_dtype: str, rows: list, fs: list, params: dict, rng) -> np.ndarray:
    """A sparse input of ``shape`` with signal only where the sampled frames of the sampled rows read
    (the rest stays zero pages): noise plus a tone, rounded to int16-like values for integer input."""
    x = ops.sparse(shape, in_dtype)
    samples, fft, hop = shape[1], params["fft_length"], params["sequence_stride"]
    for b in rows:
        for f in fs:
            lo, hi = max(0, f * hop - fft), min(samples, f * hop + fft)
            sig = rng.standard_normal(hi - lo) * 0.3 + np.sin(np.arange(lo, hi) * 0.05)
            x[b, lo:hi] = np.round(sig * 3000) if np.dtype(in_dtype).kind == "i" else sig
    return x


def frame_oracle(row: np.ndarray, f: int, params: dict) -> np.ndarray:
    """Frame ``f`` of the float64 evaluation of ``row``, from an excerpt around the frame."""
    fft, hop = params["fft_length"], params["sequence_stride"]
    pad = fft // 2
    q = math.ceil(pad / hop) + 1
    s = max(0, f - q) * hop
    e = min(row.shape[0], s + (2 * q + 1) * hop + fft)
    mel = oracle.mel_spectrogram(np.asarray(row[s:e], dtype=np.float64), **{**params, "top_db": None})
    return mel[:, f - s // hop]


def scale_setup(batch: int, samples: int, params: dict, ops) -> tuple:
    """The seeded generator, the float32 kernel parameters and their constants on ``ops``'s device."""
    rng = np.random.default_rng(batch + samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mp = mel_params(MelConfig.create(**params), "float32")
    consts = Constants(**{k: ops.to_device(v) if isinstance(v, np.ndarray) else v for k, v in consts_host(mp).items()})
    return rng, mp, consts


def run_scale(batch: int, samples: int, in_dtype: str, params: dict, budget: int, path: str | None = None):
    ops = ScaleOps(seed=1)
    rng, mp, consts = scale_setup(batch, samples, params, ops)
    eng = Engine(mp, ops, consts)
    plan = with_layout(eng, path).plan(batch, samples, budget)
    frames = plan.problem.frames
    rows = sorted({0, batch - 1, int(rng.integers(0, batch))})
    fs = sampled_frames(plan, frames, rng)
    x = sampled_signal(ops, (batch, samples), in_dtype, rows, fs, params, rng)
    out = ops.sparse((batch, mp.n_mels, frames), "float32")
    ops.begin(eng, plan, {(b, f) for b in rows for f in fs})
    eng.run(x, out, plan)
    got = np.stack([out[b][:, fs] for b in rows])
    want = np.stack([np.stack([frame_oracle(x[b], f, params) for f in fs], axis=1) for b in rows])
    if params.get("top_db") is not None:  # the clip against the maximum the sampled blocks found
        scope_rows = rows if params.get("top_db_scope") == "example" else [0] * len(rows)
        floor = np.array([decode_key(ops.keys[r], "float32") for r in scope_rows]) - params["top_db"]
        want = np.maximum(want, floor[:, None, None])
    assert_spec_close(got, want, dtype="float32")
    return plan, ops


def describe(plan, ops) -> str:
    grids = {k: sorted(v)[-1] for k, v in ops.grids.items()}
    return (f"{plan.problem.batch} x {plan.problem.samples} samples, {plan.problem.frames} frames, path {plan.path}, "
            f"{plan.n_row_chunks} row x {plan.n_time_chunks} time chunks; largest grids {grids}; blocks run {ops.blocks_run}")


def test_one_hour_clip():
    params = dict(fft_length=2048, sequence_stride=512, num_mel_bins=128, top_db=80.0)
    plan, ops = run_scale(1, 3600 * 16000, "float32", params, 2 * GiB)
    assert plan.n_time_chunks >= 1 and ops.blocks_run["am_pad_reflect"] > 0
    print(describe(plan, ops))


def test_4096_clips_of_10_s():
    params = dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db=80.0, top_db_scope="example")
    plan, ops = run_scale(4096, 10 * 16000, "float32", params, 2 * GiB)
    assert plan.n_row_chunks > 1
    print(describe(plan, ops))


@pytest.mark.parametrize("path", ["gather", "inplace"])
def test_more_rows_than_grid_y_allows(path):
    """70,000 rows: the signal kernels' gridDim.y is at most 65,535, so rows are chunked."""
    params = dict(fft_length=512, sequence_stride=128, num_mel_bins=64, top_db=None)
    plan, ops = run_scale(70_000, 2000, "int16", params, 64 * GiB, path=path)
    assert plan.n_row_chunks >= 2 and max(g[1] for k in ("am_pad_reflect", "am_frames_window")
                                          for g in ops.grids.get(k, ())) <= 65535
    print(describe(plan, ops))


def test_more_than_2_31_samples():
    params = dict(fft_length=1024, sequence_stride=256, num_mel_bins=64, top_db=None)
    plan, ops = run_scale(1, 2**31 + 3, "float32", params, 2 * GiB)
    assert plan.problem.samples > 2**31
    print(describe(plan, ops))


def test_more_than_2_31_output_elements():
    params = dict(fft_length=256, sequence_stride=64, num_mel_bins=128, top_db=80.0)
    plan, ops = run_scale(2, 2**30, "float32", params, 4 * GiB)
    assert 2 * 128 * plan.problem.frames > 2**31 and ops.blocks_run["am_clip_top_db"] > 0
    print(describe(plan, ops))
