"""The kernel text under AddressSanitizer + UBSan: the emulator's libraries built with
``-fsanitize=address,undefined`` and loaded into a Python subprocess with libasan preloaded.

Every buffer is then an exact-size heap block (no guard zones), so ASan reports any byte read or
written outside one, and UBSan any undefined behaviour (signed overflow, bad shifts, misaligned
access). The reduced grid: every configuration of tests/test_cupy_emulated.py's GRID in float32
and float64, each layout, one chunk and about three, plus short and strided input, integer input,
the direct mel kernel and per-example ``top_db``; each output is checked against the oracle. A
second run proves the sanitizer is live: the zero-length row the engine now rejects, launched on
``am_frames_window`` directly, must be reported as a heap-buffer-overflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent


def _libasan() -> str | None:
    try:
        out = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    path = out.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


LIBASAN = _libasan()

GRID_RUN = r"""
import warnings
import numpy as np
import oracle
from arraymel._config import MelConfig
from arraymel._cupy import kernels
from arraymel._cupy.chunking import work_bytes
from cuda_cpu import build_many, emulated_engine
from kernel_sources import with_layout
from spec_bands import assert_spec_close
from test_cupy_emulated import GRID, _signal

build_many([(kernels.SOURCE, kernels.name_expressions(dt, it)) for dt in ("float32", "float64")
            for it in (None, dt, "int16")], sanitize=True)

def engine(params, dt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return emulated_engine(MelConfig.create(**params), dt, sanitize=True)

def few_chunks(eng, x):
    prob = eng.problem(int(np.prod(x.shape[:-1], dtype=int)), x.shape[-1])
    return work_bytes(prob, "gather", 1, max(1, -(-prob.frames // 3)))

runs = 0
same = lambda a: a
cases = [(p, _signal(s, seed=i, gain_db=[0, -20, -45]), same) for i, (p, s) in enumerate(GRID)]
cases += [(dict(fft_length=2048, sequence_stride=512, num_mel_bins=64), np.full((2, n), 0.5), same) for n in (1, 3)]
cases += [(dict(fft_length=256, sequence_stride=64, num_mel_bins=32), _signal((4, 3001), seed=11), lambda a: a[:, ::-2])]
cases += [(dict(fft_length=32768, sequence_stride=8192, num_mel_bins=40), _signal((1, 40000), seed=6), same)]
for params, x, view in cases:
    ref = oracle.mel_spectrogram(np.ascontiguousarray(view(x)), **params)
    for dt in ("float32", "float64"):
        eng = engine(params, dt)
        xd = view(x.astype(dt))
        for layout in (["gather", "inplace"] if eng.p.inplace_ok else ["gather"]):
            for budget in (2**40, few_chunks(eng, xd)):
                out, _, _ = with_layout(eng, layout).compute(xd, budget)
                assert_spec_close(out, ref, dtype=dt, power_to_db=params.get("power_to_db", True),
                                  mag_exp=params.get("mag_exp", 2.0))
                runs += 1
x16 = np.round(_signal((2, 3000), seed=5) * 1000).astype(np.int16)
params = dict(fft_length=256, sequence_stride=100, num_mel_bins=32)
out, _, _ = engine(params, "float32").compute(x16, 2**40)
assert_spec_close(out, oracle.mel_spectrogram(x16.astype(np.float64), **params), dtype="float32")
print("ASAN-GRID-OK", runs + 1)
"""

EMPTY_ROW = r"""
import numpy as np
from arraymel._cupy import kernels
from cuda_cpu import EmuOps
from cuda_cpu.ops import kernel_modules

ops = EmuOps(sanitize=True)
mod = kernel_modules("float32", "float32", sanitize=True)
x = ops.empty((2, 0), "float32")
out = ops.empty(2 * 3 * 256, "float32")
args = kernels.pack_args("am_frames_window", "float32", "float32", dict(
    x=x, row_stride=0, sample_stride=1, n=0, seg_start=-128, hop=64, n_fft=256, frames=3, window=ops.zeros(1, "float32"),
    has_window=0, zero_pad=0, frame_step=0, win_len=256, preemph=0.0, out=out))
ops.launch_expr(mod, "am_frames_window<float, float>", (3, 2, 1), (256, 1, 1), 0, args)
print("NOT-REPORTED")
"""


def _run(code: str) -> subprocess.CompletedProcess:
    if LIBASAN is None:
        pytest.skip("libasan not found (g++ -print-file-name=libasan.so)")
    env = dict(os.environ, LD_PRELOAD=LIBASAN, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=23",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", PYTHONPATH=str(TESTS))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=TESTS,
                          timeout=600)


def test_reduced_grid_is_clean_under_asan_and_ubsan():
    r = _run(GRID_RUN)
    report = r.stdout[-3000:] + r.stderr[-6000:]
    assert r.returncode == 0 and "ASAN-GRID-OK" in r.stdout, report
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, report


def test_asan_reports_the_empty_row_read():
    r = _run(EMPTY_ROW)
    assert "NOT-REPORTED" not in r.stdout
    assert r.returncode == 23 and "heap-buffer-overflow" in r.stderr, r.stderr[-4000:]
    assert "am_reflect" in r.stderr or "am_frames_window" in r.stderr, r.stderr[-4000:]
