"""Every CUDA kernel of the GPU path compiles, for sm_80 (A100) and sm_90 (H100/H200), float32 and
float64, every input type: a broken kernel cannot land even where CI has no GPU.

``nvcc`` builds :data:`arraymel._cupy.kernels.SOURCE` plus a table of the addresses of every
instantiation the GPU path can ask for, straight to machine code (``-cubin``: ptxas runs too),
warnings as errors, both architectures at once in two processes. The fused kernels
(:data:`arraymel._cupy.fused_kernels.FUSED_SOURCE`, every input type) are a second translation unit,
built the same way. ptxas's resource report must show no spills and no stack frame (a
local-memory array would show here: the fused kernel's butterfly registers must stay registers).
Skipped without nvcc.
When CuPy's NVRTC binding loads (the runtime compiler), the same name expressions are compiled
with it as well. Neither test needs a GPU or imports CuPy unless it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kernel_sources
import pytest

from arraymel._cupy import fused_kernels, kernels

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


def nvcc_unit(source: str, expressions: list[str]) -> str:
    """``source`` plus a host table of kernel addresses, which makes ``nvcc`` instantiate each one (NVRTC uses
    the name expressions instead)."""
    table = ",\n    ".join(f"(const void*)&{e}" for e in expressions)
    return source + f"\n// instantiations (nvcc only)\nconst void* am_instantiated[] = {{\n    {table}\n}};\n"


#: The translation units: the cuFFT path's kernels and the fused kernels.
UNITS = {"kernels": lambda: nvcc_unit(kernels.SOURCE, kernel_sources.all_name_expressions()),
         "fused": lambda: nvcc_unit(fused_kernels.FUSED_SOURCE, kernel_sources.all_fused_name_expressions())}


def _build_all(d: Path) -> dict:
    """Every (unit, arch) in parallel; returns {(unit, arch): (returncode, report, cubin)}."""
    procs = {}
    for unit, text in UNITS.items():
        src = d / f"arraymel_{unit}.cu"
        src.write_text(text())
        for arch in ARCHS:
            procs[unit, arch] = subprocess.Popen(
                [NVCC, "-std=c++14", f"-arch={arch}", "-cubin", "-o", str(d / f"{unit}_{arch}.cubin"), str(src),
                 "--resource-usage", "-Werror", "all-warnings"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
    out = {}
    for key, p in procs.items():
        report, _ = p.communicate(timeout=300)
        out[key] = (p.returncode, report, d / f"{key[0]}_{key[1]}.cubin")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Compile once per module, every unit for both architectures in parallel."""
    if NVCC is None:
        pytest.skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    return _build_all(tmp_path_factory.mktemp("kernels"))


@pytest.fixture(scope="module")
def compiled(built):
    """{arch: (returncode, report, cubin)} of the cuFFT path's kernels."""
    return {arch: built["kernels", arch] for arch in ARCHS}


def entry_resources(report: str) -> dict[str, tuple[int, int]]:
    """``{mangled entry: (registers, static shared bytes)}`` from ptxas's ``--resource-usage`` report."""
    out = {}
    for m in re.finditer(r"Compiling entry function '(\w+)' for '\w+'.*?Used (\d+) registers[^\n]*?(?:(\d+) bytes smem)?\n",
                         report, re.S):
        out[m.group(1)] = (int(m.group(2)), int(m.group(3) or 0))
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles(compiled, arch):
    rc, report, cubin = compiled[arch]
    assert rc == 0, f"nvcc failed for {arch}:\n{report}"
    assert cubin.is_file() and cubin.stat().st_size > 0
    entries = re.findall(r"Compiling entry function '(\w+)' for '(\w+)'", report)
    assert {a for _, a in entries} == {arch}
    assert len(entries) == len(kernel_sources.all_name_expressions()), "an instantiation is missing"
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
    modules = [(kernels.SOURCE, kernels.name_expressions(dt, it))
               for dt in kernels.COMPUTE_CTYPES for it in [None, *kernels.INPUT_CTYPES]]
    modules += [(fused_kernels.FUSED_SOURCE, fused_kernels.fused_name_expressions(dt, it))
                for dt in kernels.COMPUTE_CTYPES for it in kernels.INPUT_CTYPES]
    for source, exprs in modules:
        prog = nvrtc.createProgram(source, "arraymel.cu", [], [])
        for e in exprs:
            nvrtc.addNameExpression(prog, e)
        try:
            nvrtc.compileProgram(prog, ["--std=c++14", "-ftz=true", "-arch=compute_80"])
        except nvrtc.NVRTCError as err:
            pytest.fail(f"NVRTC failed for {exprs}: {err}\n{nvrtc.getProgramLog(prog)}")
        assert all(nvrtc.getLoweredName(prog, e) for e in exprs)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_fused_kernel_compiles_without_spills(built, arch):
    """Every input type x float/double; no spills, no stack frame (the butterflies' register arrays are
    fully unrolled); registers: float <= 64 (four 256-thread blocks per SM), double <= 128 (two)."""
    rc, report, cubin = built["fused", arch]
    assert rc == 0, f"nvcc failed for the fused kernels on {arch}:\n{report}"
    assert cubin.is_file() and cubin.stat().st_size > 0
    res = entry_resources(report)
    assert len(res) == len(kernel_sources.all_fused_name_expressions()), "an instantiation is missing"
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert frames and all(f == ("0", "0", "0") for f in frames), report
    for entry, (regs, _smem) in res.items():
        t = re.match(r"_Z12am_fused_melI\w(\w)E", entry).group(1)
        assert regs <= (64 if t == "f" else 128), f"{entry}: {regs} registers"


def test_fused_source_is_self_contained():
    assert "#include" not in fused_kernels.FUSED_SOURCE
    assert kernel_sources.parse_signatures(fused_kernels.FUSED_SOURCE) == fused_kernels.FUSED_PARAMS
