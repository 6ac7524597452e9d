"""The golden grid: outputs of a grid of configurations, inputs and paths, recorded once so that a
refactoring can prove it changed no number (tests/test_golden_grid.py).

Run ``python tests/golden_grid.py`` to (re)write ``tests/golden_grid.npz``: only when a change of the
numbers is intended, and say so in the commit. Each entry is ``"<case>/<path>"``:

- ``numpy`` and ``generic``: :func:`arraymel.mel_spectrogram` (or the preset) with ``backend="numpy"``
  or ``"generic"`` on NumPy input; the test asks for byte-identical output (float equality, NaN in
  the same places);
- ``emu-cufft`` and ``emu-fused``: the GPU path's engines with their CUDA kernel text run on the CPU
  emulator (tests/cuda_cpu); the emulator's code generation follows the compiler and the CPU (FMA), so
  the test holds these to docs/semantics.md's bounds instead of byte identity.

Inputs are short and deterministic (made from a seed here, not stored), so the file stays small.
"""

from __future__ import annotations

import pathlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
GOLDEN = HERE / "golden_grid.npz"


def signal(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """A tone plus noise (and, across the batch, different levels) in ``dtype``; int16 full-scale."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    t = np.arange(n) / 16000.0
    level = np.logspace(0, -2, int(np.prod(shape[:-1], dtype=int)) or 1)[: int(np.prod(shape[:-1], dtype=int))]
    x = (0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.standard_normal(shape)).reshape(-1, n)
    x = (x * level[:, None]).reshape(shape)
    if dtype == "int16":
        return np.round(x * 32767).astype(np.int16)
    return x.astype(dtype)


#: name -> (parameters of mel_spectrogram, input shape, input dtype). Keras's parameters only, so that
#: every case runs on every path; the presets are below.
CASES: dict[str, tuple[dict, tuple, str]] = {
    "keras-defaults": ({}, (2, 8000), "float32"),
    "keras-defaults-f64": ({}, (2, 8000), "float64"),
    "speech": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80), (3, 4000), "float32"),
    "speech-f64": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80), (2, 4000), "float64"),
    "speech-f16": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80), (2, 4000), "float16"),
    "speech-int16": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80), (2, 4000), "int16"),
    "odd-nfft": (dict(fft_length=401, sequence_stride=100, num_mel_bins=40, sampling_rate=8000), (2, 3000), "float32"),
    "odd-nfft-f64": (dict(fft_length=255, sequence_stride=64, num_mel_bins=32, window="hamming"), (2, 2000),
                     "float64"),
    "large-nfft": (dict(fft_length=8192, sequence_stride=2048, num_mel_bins=256, sampling_rate=44100), (1, 20000),
                   "float32"),
    "empty-batch": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80), (0, 4000), "float32"),
    "multichannel": (dict(fft_length=512, sequence_stride=128, num_mel_bins=64), (2, 3, 3000), "float32"),
    "filterbank-keras": (dict(filterbank="keras", num_mel_bins=64, sampling_rate=22050), (2, 6000), "float32"),
    "scope-example": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80, top_db_scope="example", top_db=40.0),
                      (3, 4000), "float32"),
    "short-window": (dict(fft_length=512, sequence_stride=128, sequence_length=300, window="hamming"), (2, 4000),
                     "float32"),
    "no-window-magnitude": (dict(fft_length=256, sequence_stride=64, num_mel_bins=32, window=None, mag_exp=1.0,
                                 power_to_db=False), (2, 2000), "float32"),
    "no-top-db-ref": (dict(fft_length=320, sequence_stride=80, num_mel_bins=40, top_db=None, ref_power=3.0,
                           min_power=1e-6, mag_exp=1.5), (2, 2500), "float64"),
    "short-clip": (dict(fft_length=400, sequence_stride=160, num_mel_bins=80), (4, 150), "float32"),
}

#: name -> (preset name, its options, input shape, input dtype). Each preset at the defaults it had when the
#: grid was recorded: librosa's default hop is 512 for every n_fft (as librosa) and was n_fft // 4 then, which
#: agree at its default n_fft=2048; Kaldi's default is 23 bins (as Kaldi) and was 80, so 80 is given.
PRESET_CASES: dict[str, tuple[str, dict, tuple, str]] = {
    "preset-whisper": ("whisper", {}, (2, 4000), "float32"),
    "preset-librosa": ("librosa", {}, (2, 8000), "float32"),
    "preset-torchaudio": ("torchaudio", {}, (2, 4000), "float32"),
    "preset-kaldi": ("kaldi", {"num_mel_bins": 80}, (2, 4000), "float32"),  # 80 bins, as recorded (the default is 23)
    "preset-nemo": ("nemo", {}, (2, 4000), "float32"),
}

#: The cases the emulator runs (each launch compiles nothing new after the first; the emulator runs a
#: thread per CUDA thread, so the biggest cases are left to the NumPy and generic paths).
EMU_CUFFT = ("keras-defaults", "speech", "speech-f64", "speech-int16", "odd-nfft", "multichannel", "scope-example",
             "short-window", "no-window-magnitude", "no-top-db-ref", "empty-batch", "preset-kaldi", "preset-librosa",
             "preset-nemo")
EMU_FUSED = ("keras-defaults", "speech", "speech-f64", "scope-example", "no-top-db-ref")

PATHS = ("numpy", "generic")


def case_input(name: str) -> np.ndarray:
    shape, dtype = (PRESET_CASES[name][2:] if name in PRESET_CASES else CASES[name][1:])
    return signal(shape, dtype, seed=sum(map(ord, name)))


def case_config(name: str) -> Any:
    """The case's :class:`arraymel.MelConfig` (a preset's pipeline config for the presets)."""
    import arraymel
    import arraymel.presets

    if name in PRESET_CASES:
        preset, options = PRESET_CASES[name][:2]
        return arraymel.presets.get(preset, **options).config
    return arraymel.MelConfig.create(**CASES[name][0])


def run_path(name: str, path: str) -> np.ndarray:
    """The output of case ``name`` on ``path`` (``numpy``/``generic`` through the public API)."""
    import arraymel
    import arraymel.presets

    x = case_input(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-band notices of the small configurations
        if name in PRESET_CASES:
            preset, options = PRESET_CASES[name][:2]
            return np.asarray(arraymel.presets.get(preset, **options)(x, backend=path))
        return np.asarray(arraymel.mel_spectrogram(x, backend=path, **CASES[name][0]))


def run_emulated(name: str, fft: str) -> np.ndarray:
    """The pipeline output of case ``name`` (the mel dB or power before a preset's own log rule) on the
    GPU path's engine, its kernels run by the CPU emulator: ``fft="cufft"`` or ``"fused"``."""
    from cuda_cpu import emulated_engine, emulated_fused_engine

    x = case_input(name)
    cfg = case_config(name)
    dtype = cfg.dtype or ("float64" if x.dtype == np.float64 else "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eng = emulated_engine(cfg, dtype) if fft == "cufft" else emulated_fused_engine(cfg, dtype)
        out, _, _ = eng.compute(x, 2**40) if fft == "cufft" else eng.compute(x)
    return np.array(out)


def entries() -> dict[str, Callable[[], np.ndarray]]:
    """Every golden entry's key and how to compute it."""
    out: dict[str, Callable[[], np.ndarray]] = {}
    for name in (*CASES, *PRESET_CASES):
        for path in PATHS:
            out[f"{name}/{path}"] = (lambda n=name, p=path: run_path(n, p))
    for name in EMU_CUFFT:
        out[f"{name}/emu-cufft"] = (lambda n=name: run_emulated(n, "cufft"))
    for name in EMU_FUSED:
        out[f"{name}/emu-fused"] = (lambda n=name: run_emulated(n, "fused"))
    return out


def main() -> None:
    sys.path.insert(0, str(HERE))
    arrays = {key: compute() for key, compute in entries().items()}
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {len(arrays)} entries, {GOLDEN.stat().st_size / 1e6:.2f} MB, to {GOLDEN}")


if __name__ == "__main__":
    main()
