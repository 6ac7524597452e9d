"""The project's own checks, in every `make test`: the import contracts of pyproject.toml (the layers of
docs/architecture.md, no import cycle, lazy imports included) and ruff's rules."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    exe = BIN / tool
    if not exe.exists():
        pytest.skip(f"{tool} is not installed (it comes with the test extra: pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, env=env)


def test_import_contracts_are_kept():
    r = _run("lint-imports", "--no-cache")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_ruff_finds_nothing():
    r = _run("ruff", "check", "--no-cache", "arraymel", "tests", "benchmarks", "docs")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
