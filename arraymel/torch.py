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

    Parameters
    ----------
    **params : optional
        The parameters of :class:`arraymel.MelSpectrogram`, by name.

    Attributes
    ----------
    transform : arraymel.MelSpectrogram
        The transform that computes.
    window : torch.Tensor of shape ``(fft_length,)``
        The analysis window centred in ``fft_length`` (a buffer).
    filterbank : torch.Tensor of shape ``(fft_length // 2 + 1, num_mel_bins)``
        The filterbank (a buffer).

    Raises
    ------
    ValueError, TypeError
        As :class:`arraymel.MelSpectrogram`, for a bad parameter.

    See Also
    --------
    arraymel.MelSpectrogram : The same transform for any array library.

    Examples
    --------
    >>> import torch, arraymel.torch
    >>> mel = arraymel.torch.MelSpectrogram(num_mel_bins=40)
    >>> S = mel(torch.zeros(3, 8000))
    >>> S.shape, S.dtype, mel.filterbank.shape
    (torch.Size([3, 40, 16]), torch.float32, torch.Size([1025, 40]))
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
        """The mel spectrogram of ``x``, on ``x``'s device (not differentiable: a plain tensor).

        Parameters
        ----------
        x : torch.Tensor of shape ``(..., samples)``
            Real audio on any device; integer and half-precision input is computed in float32.

        Returns
        -------
        S : torch.Tensor of shape ``(..., num_mel_bins, frames)``
            On ``x``'s device, not attached to autograd.

        Examples
        --------
        >>> import torch, arraymel.torch
        >>> arraymel.torch.MelSpectrogram()(torch.zeros(16000)).shape
        torch.Size([128, 32])
        """
        return self.transform(x)

    def get_config(self) -> dict[str, Any]:
        """As :meth:`arraymel.MelSpectrogram.get_config` (loads into ``keras.layers.MelSpectrogram``).

        Returns
        -------
        config : dict
            Keyword arguments that rebuild this module (:meth:`from_config`).

        Examples
        --------
        >>> import arraymel.torch
        >>> arraymel.torch.MelSpectrogram(num_mel_bins=80).get_config()["num_mel_bins"]
        80
        """
        return self.transform.get_config()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MelSpectrogram":
        """From :meth:`arraymel.torch.MelSpectrogram.get_config`'s dict or a Keras ``MelSpectrogram`` config.

        Parameters
        ----------
        config : dict
            The parameters by name (Keras layer keys are kept).

        Returns
        -------
        MelSpectrogram

        Examples
        --------
        >>> import arraymel.torch
        >>> arraymel.torch.MelSpectrogram.from_config({"num_mel_bins": 64}).filterbank.shape
        torch.Size([1025, 64])
        """
        return cls(**config)

    def extra_repr(self) -> str:
        """The parameters that differ from Keras's defaults, as ``print(module)`` shows them.

        Returns
        -------
        text : str

        Examples
        --------
        >>> import arraymel.torch
        >>> arraymel.torch.MelSpectrogram(num_mel_bins=80)
        MelSpectrogram(num_mel_bins=80)
        """
        return repr(self.transform)[len("MelSpectrogram("):-1]
