"""The CUDA emulator itself (tests/cuda_cpu): it runs the exact kernel text, and it reports what a GPU
would get silently wrong.

Small kernels written here break one rule each (a write past a buffer, a shared array overrun,
threads at different barriers, a shuffle with an exited lane, a deadlock, an argument of the wrong C
type, a grid past CUDA's limits); each must be reported, and the correct variant must pass.
"""

from __future__ import annotations

import difflib

import numpy as np
import pytest
from cuda_cpu import EmuOps, KernelError, build, build_all_kernels
from cuda_cpu.build import library_path, translate

from arraymel._cupy import kernels

RULES = r"""
// mode 0: correct. 1: threads at two different __syncthreads. 2: lane 5 exits before the shuffle.
// 3: warp 0 shuffles while its lane 3 waits at a barrier (deadlock). 4: a write one past `out`.
// 5: a write past the __shared__ array. 6: a write past the dynamic shared memory. 7: a write before `out`.
// 8: a read far outside every buffer (a memory fault). 9: a read one past `x`.
template <typename T>
__global__ void rule_sum(const T* __restrict__ x, T* __restrict__ out, int n, int mode)
{
    extern __shared__ __align__(16) unsigned char dyn[];
    __shared__ T part[8];
    T v = (int)threadIdx.x < n ? x[threadIdx.x] : T(0);
    if (mode == 2 && threadIdx.x == 5) return;
    if (mode == 3 && threadIdx.x == 3) __syncthreads();
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    if (mode == 1 && threadIdx.x < 64) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        T s = 0;
        for (int w = 0; w < (int)(blockDim.x / 32); ++w) s += part[w];
        out[blockIdx.x] = s;
        if (mode == 4) out[gridDim.x] = s;
        if (mode == 7) out[-1] = s;
        if (mode == 8) out[0] = x[1LL << 40];
        if (mode == 9) out[0] = x[n];
    }
    if (mode == 5 && threadIdx.x == 9) part[8] = T(1);
    if (mode == 6 && threadIdx.x == 0) dyn[64] = 1;
}

template <typename T>
__global__ void halve(const T* x, T* y)
{
    y[threadIdx.x] = x[threadIdx.x] * T(0.5);
}
"""
EXPRS = ["rule_sum<float>", "rule_sum<double>", "halve<float>", "halve<double>"]


@pytest.fixture(scope="module")
def mod():
    return build(RULES, EXPRS)


def run(mod, mode: int, dtype="float32", grid=2, shuffle=False):
    ops = EmuOps(shuffle=shuffle, seed=5)
    x = ops.to_device(np.arange(256, dtype=dtype))
    out = ops.empty(grid, dtype)
    expr = f"rule_sum<{'float' if dtype == 'float32' else 'double'}>"
    ops.launch_expr(mod, expr, (grid, 1, 1), (256, 1, 1), 64, (x, out, np.int32(256), np.int32(mode)))
    return out


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_correct_kernel_runs(mod, dtype, shuffle):
    np.testing.assert_array_equal(run(mod, 0, dtype, shuffle=shuffle), [32640, 32640])


@pytest.mark.parametrize("mode, message", [
    (1, "divergent __syncthreads"),
    (2, "lane 5 of warp 0 has exited"),
    (3, "deadlock"),
    (4, r"memory fault at address 0x[0-9a-f]+ \(block \(\d, 0, 0\), thread 0\): byte 8 of a buffer of 8 bytes"),
    (5, "__shared__ array written outside its bounds"),
    (6, "dynamic shared memory written outside its size"),
    (7, "out of bounds: a write 4 bytes before a buffer of 8 bytes"),
    (8, r"out of bounds: memory fault at address 0x[0-9a-f]+ \(block \(0, 0, 0\), thread 0\)"),
    (9, r"memory fault .*: byte 1024 of a buffer of 1024 bytes"),
])
def test_broken_rules_are_reported(mod, mode, message):
    with pytest.raises(KernelError, match=message):
        run(mod, mode)
    np.testing.assert_array_equal(run(mod, 0), [32640, 32640])  # a failed launch leaves the emulator usable


def test_unwritten_memory_reads_as_nan(mod):
    ops = EmuOps()
    assert np.isnan(ops.empty(5, "float32")).all() and np.isnan(ops.empty(5, "float64")).all()
    assert (ops.zeros(5, "uint32") == 0).all()


def test_argument_types_must_be_the_parameters(mod):
    assert mod.signature("rule_sum<float>") == ["Pf", "Pf", "i", "i"]
    ops = EmuOps()
    x, out = ops.to_device(np.zeros(256, np.float32)), ops.empty(1, "float32")
    with pytest.raises(TypeError, match="argument 2 has type code q, the parameter is i"):
        ops.launch_expr(mod, "rule_sum<float>", (1,), (256,), 64, (x, out, np.int64(256), np.int32(0)))
    with pytest.raises(TypeError, match="argument 1 has type code Pd, the parameter is Pf"):
        ops.launch_expr(mod, "rule_sum<float>", (1,), (256,), 64, (x, out.astype(np.float64), np.int32(256), np.int32(0)))
    with pytest.raises(TypeError, match="exact C type"):
        ops.launch_expr(mod, "rule_sum<float>", (1,), (256,), 64, (x, out, 256, np.int32(0)))


@pytest.mark.parametrize("grid, block", [((1, 65536, 1), (32, 1, 1)), ((2**31, 1, 1), (32, 1, 1)), ((1, 1, 1), (2048, 1, 1))])
def test_launch_limits_are_cuda_s(mod, grid, block):
    ops = EmuOps()
    x, out = ops.to_device(np.zeros(256, np.float32)), ops.empty(1, "float32")
    with pytest.raises(KernelError, match="outside CUDA's limits"):
        ops.launch_expr(mod, "rule_sum<float>", grid, block, 0, (x, out, np.int32(256), np.int32(0)))


def test_float32_flushes_denormals_float64_keeps_them(mod):
    """NVRTC's -ftz=true: float32 denormal inputs and results are zero; float64 is IEEE."""
    ops = EmuOps()
    x = ops.to_device(np.array([1e-39, 2e-38, 1.0], np.float32))
    xd = ops.to_device(np.array([1e-310, 2e-308, 1.0]))
    y, yd = ops.empty(3, "float32"), ops.empty(3, "float64")
    ops.launch_expr(mod, "halve<float>", (1,), (3,), 0, (x, y))
    ops.launch_expr(mod, "halve<double>", (1,), (3,), 0, (xd, yd))
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.5])  # 1e-39 is denormal in; 1e-38 denormal out
    np.testing.assert_array_equal(yd, [5e-311, 1e-308, 0.5])


def test_only_shared_declarations_are_rewritten():
    """The emulator compiles the kernel text as NVRTC gets it, but for the __shared__ declarations."""
    before = kernels.SOURCE.splitlines()
    after = translate(kernels.SOURCE).splitlines()
    changed = [line for line in difflib.ndiff(before, after) if line[:2] in ("- ", "+ ")]
    assert changed and all("__shared__" in line or "cuemu::" in line for line in changed)
    assert sum(line.startswith("- ") for line in changed) == kernels.SOURCE.count("__shared__")


def test_the_library_follows_the_kernel_text():
    """A one-character change to the kernel text is a different library (the cache key is the text)."""
    exprs = kernels.name_expressions("float32")
    assert library_path(kernels.SOURCE, exprs) != library_path(kernels.SOURCE.replace("T(10)", "T(11)"), exprs)
    assert library_path(kernels.SOURCE, exprs) == library_path(kernels.SOURCE, list(exprs))


def test_every_instantiation_builds():
    """All of the GPU path's instantiations (both compute dtypes, every input dtype), compiled in parallel."""
    build_all_kernels()
    for dt in kernels.COMPUTE_CTYPES:
        for it in (None, *kernels.INPUT_CTYPES):
            exprs = kernels.name_expressions(dt, it)
            mod = build(kernels.SOURCE, exprs)
            for e in exprs:
                kernel = e.split("<")[0]
                assert len(mod.signature(e)) == len(kernels.KERNEL_PARAMS[kernel])
