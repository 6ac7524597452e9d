"""The CuPy fast path against the float64 oracle, the generic path (on CuPy) and the NumPy path.

GPU only (every test is marked ``gpu``; tests/conftest.py skips them where CuPy finds no device).
The grids: every case of tests/test_parity_oracle.py (Keras goldens' inputs, extensions, seeded
random configurations) through the public API and through each frame layout the config allows
(pitched in-place FFT and gathered frames), in one chunk and in several time chunks; the Keras
goldens themselves; and the grid of tests/test_cupy_emulated.py plus short inputs, ranks and
input dtypes. Tolerances are SPEC.md's (float32: 1e-3 dB within 80 dB of the maximum, 1e-2 dB
below; float64: 1e-9 dB; power: 1e-4 relative + 1e-6 of the maximum).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import arraymel
import oracle
from _helpers import assert_db_close, assert_meta, assert_power_close, to_numpy
from arraymel._config import MelConfig
from test_cupy_emulated import GRID, _signal
from test_parity_oracle import CASE_NAMES, CASES, KNOWN_F32_NEAR, check, input_as, oracle_output, run_arraymel

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def make_state(params: dict, dtype: str, layout: str | None = None):
    import cupy

    from arraymel._cupy.pipeline import CupyState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        st = CupyState(MelConfig.create(**params), dtype, cupy.cuda.Device().id)
    st.force_path = layout
    return st


def layouts_of(state) -> list[str]:
    return ["gather", "inplace"] if state.params.inplace_ok else ["gather"]


def few_chunks_budget(state, x) -> int:
    from arraymel._cupy.chunking import work_bytes

    prob = state.engine.problem(int(np.prod(x.shape[:-1], dtype=int)), x.shape[-1])
    return work_bytes(prob, "gather", 1, max(1, -(-prob.frames // 3)))


# ------------------------------------------------------------------------------------ oracle grid
@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_path_matches_oracle(cp, name, dtype):
    """Public API, CuPy input: computed on the GPU, returned as CuPy on the same device."""
    x = cp.asarray(input_as(name, dtype))
    out = run_arraymel(name, x, backend="auto")
    assert isinstance(out, cp.ndarray) and out.device.id == x.device.id
    check(name, out, oracle_output(name, dtype), xp=cp, dtype=dtype, label=f"cupy {dtype}",
          near_tol=KNOWN_F32_NEAR.get(("auto", name), 1e-3))


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_layouts_and_chunks_match_oracle(cp, name, dtype):
    """Each frame layout the config allows, whole and in about three time chunks per row."""
    x = cp.asarray(input_as(name, dtype))
    st = make_state(CASES[name]["params"], dtype)
    for layout in layouts_of(st):
        st.force_path = layout
        for budget in (2**34, few_chunks_budget(st, x)):
            out = st(x, max_memory=budget)
            assert st.last_call.path == layout
            check(name, out, oracle_output(name, dtype), xp=cp, dtype=dtype, label=f"cupy {layout} {dtype}",
                  near_tol=KNOWN_F32_NEAR.get(("auto", name), 1e-3))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cupy_float64_equals_generic_on_cupy(cp, name):
    """float64: the fast path and the generic path (run on CuPy) within 1e-9 dB of each other."""
    x = cp.asarray(input_as(name, "float64"))
    fast = run_arraymel(name, x, backend="auto")
    generic = run_arraymel(name, x, backend="generic")
    assert_meta(fast, generic)
    if CASES[name]["params"].get("power_to_db", True):
        assert_db_close(fast, generic, 1e-9)
    else:
        assert_power_close(fast, generic, rtol=1e-10, atol_frac=1e-13)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cupy_float32_agrees_with_numpy_path(cp, name):
    """float32: the CuPy path and the tuned NumPy path, each within SPEC.md of float64, so within twice of each other."""
    x = input_as(name, "float32")
    gpu = to_numpy(run_arraymel(name, cp.asarray(x), backend="auto"))
    cpu = run_arraymel(name, x, backend="auto")
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    if CASES[name]["params"].get("power_to_db", True):
        finite = ~np.isnan(cpu)
        assert np.array_equal(np.isnan(gpu), ~finite)
        if finite.any():
            near = finite & (cpu >= cpu[finite].max() - 80)
            assert_db_close(gpu[near], cpu[near], 2 * KNOWN_F32_NEAR.get(("auto", name), 1e-3))
            assert_db_close(gpu[finite & ~near], cpu[finite & ~near], 2e-2)
    else:
        assert_power_close(gpu, cpu, rtol=2e-4, atol_frac=2e-6)


# ------------------------------------------------------------------------------------ Keras goldens
def test_cupy_matches_keras_goldens(cp):
    from test_parity_keras import CASE_NAMES as KERAS_CASES
    from test_parity_keras import CASES as KCASES
    from test_parity_keras import case_golden, case_input, check_against_keras, run_arraymel as run_keras_case

    for name in KERAS_CASES:
        case = KCASES[name]
        x = cp.asarray(case_input(case))
        out = run_keras_case(case, x, backend="auto")
        check_against_keras(case, out, case_golden(case), xp=cp, label="cupy")


# ------------------------------------------------------------------------------------ issue 4's grid
@pytest.mark.parametrize("i", range(len(GRID)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_grid(cp, i, dtype):
    params, shape = GRID[i]
    x = _signal(shape, seed=i, gain_db=[0, -20, -45]).astype(dtype)
    ref = oracle.mel_spectrogram(x, **params)
    st = make_state(params, dtype)
    xd = cp.asarray(x)
    for layout in layouts_of(st):
        st.force_path = layout
        for budget in (2**34, few_chunks_budget(st, x)):
            out = st(xd, max_memory=budget)
            assert isinstance(out, cp.ndarray) and out.shape == ref.shape and out.dtype == np.dtype(dtype)
            if params.get("power_to_db", True):
                assert_db_close(out, ref, 1e-9 if dtype == "float64" else 1e-3)
            else:
                rtol, frac = (1e-10, 1e-13) if dtype == "float64" else (1e-4, 1e-6)
                assert_power_close(out, ref, rtol=rtol, atol_frac=frac)
    if dtype == "float64":  # and the generic path on CuPy, same dtype: 1e-9 dB
        generic = arraymel.mel_spectrogram(xd, backend="generic", **params)
        out = arraymel.mel_spectrogram(xd, **params)
        if params.get("power_to_db", True):
            assert_db_close(out, generic, 1e-9)
        else:
            assert_power_close(out, generic, rtol=1e-10, atol_frac=1e-13)


@pytest.mark.parametrize("samples", [1, 3, 1024])
@pytest.mark.parametrize("window", ["hann", "hamming", None, "array"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_cupy_short_inputs_and_ranks(cp, samples, window, rank):
    """1, 3 and fft // 2 samples (reflect padding longer than the signal), 1-D/2-D/3-D input, float64."""
    fft = 2048
    w = np.linspace(0.1, 1.0, fft) if window == "array" else window
    params = dict(fft_length=fft, sequence_stride=512, num_mel_bins=64, window=w)
    shape = {1: (samples,), 2: (2, samples), 3: (2, 2, samples)}[rank]
    x = (0.5 + _signal(shape, seed=samples)).astype(np.float64)
    ref = oracle.mel_spectrogram(x, **params)
    st = make_state(params, "float64")
    for layout in layouts_of(st):
        st.force_path = layout
        out = st(cp.asarray(x))
        assert out.shape == ref.shape
        assert_db_close(out, ref, 1e-9)


@pytest.mark.parametrize("in_dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                                      "float16", "float32", "float64"])
def test_cupy_input_dtypes(cp, in_dtype):
    x = _signal((2, 3000), seed=5)
    if np.dtype(in_dtype).kind in "iu":
        x = np.round((x + (1.0 if np.dtype(in_dtype).kind == "u" else 0.0)) * 100).astype(in_dtype)
    else:
        x = x.astype(in_dtype)
    params = dict(fft_length=256, sequence_stride=100, num_mel_bins=32)
    out = arraymel.mel_spectrogram(cp.asarray(x), **params)
    want = "float64" if in_dtype == "float64" else "float32"
    assert out.dtype == np.dtype(want)
    assert_db_close(out, oracle.mel_spectrogram(x.astype(np.float64), **params), 1e-9 if want == "float64" else 1e-3)


def test_cupy_strided_inputs(cp):
    base = cp.asarray(_signal((4, 6001), seed=11).astype(np.float32))
    params = dict(fft_length=256, sequence_stride=64, num_mel_bins=32)
    for x in (base[::2, ::2], base[:, ::-1], base[1:3, 5:], cp.asfortranarray(base)):
        out = arraymel.mel_spectrogram(x, **params)
        ref = oracle.mel_spectrogram(cp.asnumpy(x).astype(np.float64), **params)
        assert_db_close(out, ref, 1e-3)


@pytest.mark.parametrize("scope", ["batch", "example"])
def test_cupy_nan_propagates(cp, scope):
    x = _signal((3, 4000), seed=2).astype(np.float32)
    x[1, 1234] = np.nan
    params = dict(fft_length=256, sequence_stride=64, num_mel_bins=32, top_db_scope=scope)
    ref = oracle.mel_spectrogram(x.astype(np.float64), **params)
    st = make_state(params, "float32")
    for layout in layouts_of(st):
        st.force_path = layout
        out = cp.asnumpy(st(cp.asarray(x)))
        assert np.array_equal(np.isnan(out), np.isnan(ref))


def test_cupy_empty_batch(cp):
    out = arraymel.mel_spectrogram(cp.zeros((0, 16000), cp.float32))
    assert isinstance(out, cp.ndarray) and out.shape == (0, 128, 32)
