"""Importing arraymel (and building its command line) imports no optional backend."""

import subprocess
import sys

HEAVY = ("cupy", "scipy", "matplotlib", "torch", "jax", "keras", "librosa", "soundfile", "soxr", "dask", "rich")


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_arraymel_imports_no_optional_backend():
    assert _imported_after("import arraymel") == []


def test_building_the_cli_imports_no_optional_backend():
    assert _imported_after("import arraymel.cli; arraymel.cli.build_parser()") == []


def test_a_numpy_call_imports_no_gpu_or_plotting_library():
    mods = _imported_after("import numpy as np, arraymel; arraymel.mel_spectrogram(np.ones(4000, np.float32))")
    assert "cupy" not in mods and "matplotlib" not in mods and "torch" not in mods


def test_a_torch_call_imports_neither_cupy_nor_jax():
    mods = _imported_after("import torch, arraymel; arraymel.mel_spectrogram(torch.ones(4000))")
    assert "torch" in mods and "cupy" not in mods and "jax" not in mods
