"""``arraymel.torch.MelSpectrogram``: the transform as a ``torch.nn.Module`` (imports torch; import it on demand).

>>> import torch, arraymel.torch
>>> mel = arraymel.torch.MelSpectrogram(num_mel_bins=80, fft_length=400, sequence_stride=160)
>>> mel(torch.zeros(2, 16000)).shape
torch.Size([2, 80, 101])

The module computes where its input lives: a CPU tensor on arraymel's NumPy path, a CUDA tensor with
arraymel's CuPy kernels on the tensor's device and in torch's current stream, both through DLPack
without copies (:mod:`arraymel._dlpack`). The output is a tensor on the input's device, in its dtype
(float32 for integer and half input), and is **not differentiable**: nothing is recorded by
autograd, as for any feature extraction run in a ``Dataset`` or before a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arraymel.core.filterbank import config_filterbank
from arraymel.core.windows import config_window
from arraymel.transforms import MelSpectrogram as _Transform

__all__ = ["MelSpectrogram"]


class MelSpectrogram(torch.nn.Module):
    """Keras 3's ``MelSpectrogram`` as a torch module: ``(..., samples)`` -> ``(..., num_mel_bins, frames)``.

    Parameters are those of :class:`arraymel.MelSpectrogram` (Keras's 13 plus ``top_db_scope``,
    ``dtype`` and ``filterbank``), validated here.

    Buffers (not saved in the ``state_dict``: they follow from the parameters): ``window``, the padded
    analysis window ``(fft_length,)``, and ``filterbank``, ``(fft_length // 2 + 1, num_mel_bins)``, in
    float32. ``.to(device)`` moves them like any buffer. The computation itself uses arraymel's fast
    paths, which build their own form of the same constants once per device and keep it.

    Picklable, so it works in a ``DataLoader`` worker (fork or spawn).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.transform = _Transform(**params)
        cfg = self.transform.config
        window = config_window(cfg)  # the window the pipeline applies (None: ones over the frame)
        if window is None:
            window = np.ones(cfg.fft_length)
        self.register_buffer("window", torch.tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer("filterbank", torch.tensor(config_filterbank(cfg), dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The mel spectrogram of ``x``, on ``x``'s device (not differentiable: a plain tensor)."""
        return self.transform(x)

    def get_config(self) -> dict[str, Any]:
        """As :meth:`arraymel.MelSpectrogram.get_config` (loads into ``keras.layers.MelSpectrogram``)."""
        return self.transform.get_config()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MelSpectrogram":
        """From :meth:`get_config`'s dict or a Keras ``MelSpectrogram`` config."""
        return cls(**config)

    def extra_repr(self) -> str:
        return repr(self.transform)[len("MelSpectrogram("):-1]
