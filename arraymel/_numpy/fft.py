"""The real FFT used by the NumPy path: ``scipy.fft`` when installed (faster for float32, no GIL),
``numpy.fft`` otherwise. SciPy is imported on first use, never at ``import arraymel``. A frame's
transform does not depend on the frames transformed with it (tested), which a clip's batch
independence relies on: so SciPy's own backend is used whatever ``scipy.fft`` backend is set."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def rfft_impl() -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """``(name, rfft(frames) -> spectrum)`` over the last axis; ``frames`` may be overwritten."""
    try:
        import scipy.fft as sfft
    except ImportError:
        return "numpy.fft", _numpy_rfft

    def _scipy_rfft(frames: np.ndarray) -> np.ndarray:
        # SciPy's own pocketfft even where the user set another scipy.fft backend (pyFFTW, mkl_fft): those may
        # round a frame by the frames beside it, and a clip's numbers must not depend on its batch (0.5 us a call)
        with sfft.set_backend("scipy", only=True):
            return sfft.rfft(frames, axis=-1, overwrite_x=True, workers=1)

    return "scipy.fft", _scipy_rfft


def _numpy_rfft(frames: np.ndarray) -> np.ndarray:
    out = np.fft.rfft(frames, axis=-1)
    if frames.dtype == np.float32 and out.dtype != np.complex64:  # NumPy < 2 computes in double
        out = out.astype(np.complex64)
    return out
