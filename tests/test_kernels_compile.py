"""Every CUDA kernel of the GPU path compiles, for sm_80 (A100) and sm_90 (H100/H200), float32 and
float64, every input type: a broken kernel cannot land even where CI has no GPU.

``nvcc`` builds :data:`arraymel._cupy.kernels.SOURCE` plus a table of the addresses of every
instantiation the GPU path can ask for, straight to machine code (``-cubin``: ptxas runs too),
warnings as errors, both architectures at once in two processes. ptxas's resource report must
show no spills and no stack frame (a local-memory array would show here). Skipped without nvcc.
When CuPy's NVRTC binding loads (the runtime compiler), the same name expressions are compiled
with it as well. Neither test needs a GPU or imports CuPy unless it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from arraymel._cupy import kernels

ARCHS = ("sm_80", "sm_90")


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and Path(root, "bin", "nvcc").is_file():
            return str(Path(root, "bin", "nvcc"))
    return None


NVCC = _nvcc()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile once per module for both architectures in parallel; returns {arch: (returncode, report)}."""
    if NVCC is None:
        pytest.skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    d = tmp_path_factory.mktemp("kernels")
    unit = d / "arraymel_kernels.cu"
    unit.write_text(kernels.nvcc_translation_unit())
    procs = {
        arch: subprocess.Popen(
            [NVCC, "-std=c++14", f"-arch={arch}", "-cubin", "-o", str(d / f"am_{arch}.cubin"), str(unit),
             "--resource-usage", "-Werror", "all-warnings"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for arch in ARCHS
    }
    out = {}
    for arch, p in procs.items():
        report, _ = p.communicate(timeout=300)
        out[arch] = (p.returncode, report, d / f"am_{arch}.cubin")
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles(compiled, arch):
    rc, report, cubin = compiled[arch]
    assert rc == 0, f"nvcc failed for {arch}:\n{report}"
    assert cubin.is_file() and cubin.stat().st_size > 0
    entries = re.findall(r"Compiling entry function '(\w+)' for '(\w+)'", report)
    assert {a for _, a in entries} == {arch}
    assert len(entries) == len(kernels.all_name_expressions()), "an instantiation is missing"
    for name in ("am_pad_reflect", "am_frames_window", "am_mel_smem", "am_mel_direct", "am_clip_top_db"):
        assert any(name in e for e, _ in entries), name


@pytest.mark.parametrize("arch", ARCHS)
def test_no_spills_no_stack(compiled, arch):
    rc, report, _ = compiled[arch]
    assert rc == 0
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert frames and all(f == ("0", "0", "0") for f in frames), report
    regs = [int(r) for r in re.findall(r"Used (\d+) registers", report)]
    assert regs and max(regs) <= 64, f"register use {max(regs)}: 256-thread blocks would lose occupancy"


def test_sources_are_self_contained():
    """No #include: NVRTC compiles the text as is, without the CUDA headers on its path."""
    assert "#include" not in kernels.SOURCE
    for name in kernels.KERNEL_PARAMS:
        assert f"{name}(" in kernels.SOURCE


def test_nvrtc_compiles_every_module():
    """The runtime compiler CuPy uses, with the options CuPy adds (-ftz=true) and each module's name expressions."""
    pytest.importorskip("cupy", reason="CuPy (and its NVRTC) is not installed")
    try:
        from cupy.cuda import nvrtc  # cupy_backends.cuda.libs.nvrtc

        nvrtc.getVersion()
    except Exception as e:  # the binding imports, but libnvrtc is missing
        pytest.skip(f"NVRTC is not loadable: {e}")
    for dt in kernels.COMPUTE_CTYPES:
        for it in [None, *kernels.INPUT_CTYPES]:
            exprs = kernels.name_expressions(dt, it)
            prog = nvrtc.createProgram(kernels.SOURCE, "arraymel.cu", [], [])
            for e in exprs:
                nvrtc.addNameExpression(prog, e)
            try:
                nvrtc.compileProgram(prog, ["--std=c++14", "-ftz=true", "-arch=compute_80"])
            except nvrtc.NVRTCError as err:
                pytest.fail(f"NVRTC failed for {exprs}: {err}\n{nvrtc.getProgramLog(prog)}")
            assert all(nvrtc.getLoweredName(prog, e) for e in exprs)
