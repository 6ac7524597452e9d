"""``arraymel.show_config()``: what arraymel computes with, read when asked, and what ``arraymel bench`` names."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

import arraymel
from arraymel import _show_config


def test_show_config_reports_version_fft_workers_blas_and_cuda(capsys):
    with arraymel.set_workers(1):
        cfg = arraymel.show_config(mode="dicts")
        arraymel.show_config()
    assert cfg["arraymel"] == arraymel.__version__
    assert cfg["workers"] == {**cfg["workers"], "default": 1, "source": "set_workers()"}
    expected_fft = "scipy.fft" if importlib.util.find_spec("scipy") else "numpy.fft"
    assert cfg["fft"]["name"] == expected_fft
    if importlib.util.find_spec("threadpoolctl"):
        assert cfg["blas"] and all(isinstance(b["threads"], int) and b["threads"] >= 1 for b in cfg["blas"])
    assert isinstance(cfg["cuda"]["devices"], list)
    text = capsys.readouterr().out
    assert f"arraymel {arraymel.__version__}" in text and "workers: 1 (from set_workers()" in text
    assert f"fft: {expected_fft}" in text and "cuda:" in text
    assert arraymel.get_workers() == arraymel.show_config(mode="dicts")["workers"]["default"]


def test_show_config_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="mode='json' is not allowed"):
        arraymel.show_config(mode="json")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed: it is then imported")
def test_show_config_does_not_import_cupy_when_it_is_not_installed():
    code = "import sys, arraymel; arraymel.show_config(mode='dicts'); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_names_its_threads_through_show_config(monkeypatch):
    from arraymel.bench import devices

    fake = {"workers": {"default": 7}, "fft": {"name": "some.fft"},
            "blas": [{"api": "openblas", "library": "libx.so", "threads": 3}]}
    monkeypatch.setattr(_show_config, "config", lambda: fake)
    info = devices.cpu_threads()
    assert info["arraymel"] == {"threads": 7, "fft": "some.fft"}
    assert info["pools"] == [{"api": "openblas", "library": "libx.so", "threads": 3}]


def test_show_config_says_whether_a_call_binds_its_threads(monkeypatch):
    import os

    from arraymel._threads import binding

    monkeypatch.delenv(binding.PIN_ENV, raising=False)
    off = arraymel.show_config(mode="dicts")["workers"]["binding"]
    monkeypatch.setenv(binding.PIN_ENV, "1")
    on = arraymel.show_config(mode="dicts")["workers"]["binding"]
    if hasattr(os, "sched_setaffinity"):
        assert on.startswith("a call on every CPU binds") and off == "off (set ARRAYMEL_PIN_THREADS=1 to bind)"
    else:
        assert on == off == "not available here"
