"""arraymel: mel spectrograms with exactly the semantics of Keras 3's ``MelSpectrogram``.

NumPy, CuPy and any Array API namespace; a tuned NumPy path on the CPU and a fused CuPy
path on the GPU, chosen at run time. Importing this package imports neither CuPy nor SciPy.

>>> import numpy as np, arraymel
>>> x = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
>>> arraymel.mel_spectrogram(x).shape
(2, 128, 32)
"""

from arraymel._config import MelConfig
from arraymel._show_config import show_config
from arraymel._threads import get_workers, set_workers
from arraymel._version import __version__
from arraymel.core.db import power_to_db
from arraymel.core.filterbank import mel_filterbank
from arraymel.core.stft import stft
from arraymel.core.windows import get_window
from arraymel.functional import mel_spectrogram
from arraymel.transforms import MelSpectrogram

__all__ = [
    "MelConfig",
    "MelSpectrogram",
    "get_window",
    "get_workers",
    "mel_filterbank",
    "mel_spectrogram",
    "power_to_db",
    "set_workers",
    "show_config",
    "stft",
    "__version__",
]
