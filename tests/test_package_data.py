"""The GPU path's CUDA sources are package data: each file the kernels read is in the wheel."""

from __future__ import annotations

import fnmatch
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib

from arraymel._cupy import fused_kernels, kernels

ROOT = pathlib.Path(__file__).resolve().parents[1]
CUDA = ROOT / "arraymel" / "_cupy" / "cuda"


def test_every_cuda_file_is_read_and_declared_package_data():
    on_disk = sorted(p.name for p in CUDA.glob("*.cuh"))
    assert on_disk == sorted(set(kernels.SOURCE_FILES) | set(fused_kernels.FUSED_SOURCE_FILES))
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in on_disk:
        assert any(fnmatch.fnmatch(f"cuda/{name}", pat) for pat in patterns.get("arraymel._cupy", [])), name
    assert kernels.SOURCE == "".join((CUDA / n).read_text() for n in kernels.SOURCE_FILES)


def _setuptools_builds_this_project() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.mark.skipif(not _setuptools_builds_this_project(), reason="needs setuptools >= 77 to build the wheel offline")
def test_the_wheel_ships_the_cuda_sources(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "arraymel", src / "arraymel", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    code = f"from setuptools import build_meta as b; print(b.build_wheel({str(out)!r}))"
    name = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, check=True)
    wheel = out / name.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in CUDA.glob("*.cuh"):
        assert f"arraymel/_cupy/cuda/{f.name}" in names
