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

__all__ = ["CorpusDataset", "MelSpectrogram"]


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
    def from_config(cls, config: dict[str, Any]) -> MelSpectrogram:
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


class CorpusDataset(torch.utils.data.Dataset):
    """The features written by ``arraymel corpus`` (any ``--format``) as a map-style torch dataset.

    Item ``i`` is the float32 tensor of the ``i``-th file in the manifest's order (sorted keys),
    ``(num_mel_bins, frames)``, read through :func:`arraymel.corpus.open` (so a damaged file raises
    :class:`arraymel.corpus.CorpusError` naming it). :meth:`collate` pads a batch on the right along
    frames and returns the lengths; pass it as the ``DataLoader``'s ``collate_fn``. Picklable: works in
    ``DataLoader`` workers (fork or spawn), each opening the files it reads.

    Parameters
    ----------
    out_dir : str or path-like
        The run's OUT_DIR.
    keys : sequence of str, optional
        A subset of the files (keys relative to IN_DIR), in the order given; default all.

    Attributes
    ----------
    corpus : arraymel.corpus.Corpus
        The underlying mapping (``corpus.config``: the mel configuration).
    keys : list of str
        The key of each index.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os, torch
    >>> from arraymel.cli import main
    >>> from arraymel.torch import CorpusDataset
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(f"{d}/in")
    >>> for name, n in [("a.wav", 16000), ("b.wav", 8000)]:
    ...     sf.write(f"{d}/in/{name}", np.zeros(n, np.float32), 16000)
    >>> main(["corpus", f"{d}/in", f"{d}/out", "-q", "--workers", "1", "--format", "kaldi"])
    0
    >>> ds = CorpusDataset(f"{d}/out")
    >>> len(ds), ds[1].shape
    (2, torch.Size([128, 16]))
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=CorpusDataset.collate)
    >>> features, lengths = next(iter(loader))
    >>> features.shape, lengths.tolist()
    (torch.Size([2, 128, 32]), [32, 16])
    """

    def __init__(self, out_dir: Any, keys: Any = None) -> None:
        import arraymel.corpus

        self.corpus = arraymel.corpus.open(out_dir)
        self.keys = list(self.corpus) if keys is None else list(keys)
        missing = [k for k in self.keys if k not in self.corpus]
        if missing:
            raise KeyError(f"keys not in the corpus {out_dir}: {missing[:3]}{' ...' if len(missing) > 3 else ''}")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.corpus[self.keys[i]])

    @staticmethod
    def collate(batch: list, pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad a list of features to one tensor: a ``collate_fn`` for ``torch.utils.data.DataLoader``.

        Parameters
        ----------
        batch : list of torch.Tensor
            Features ``(..., num_mel_bins, frames)`` of one dtype and device, as the dataset returns them;
            they may differ in frames only.
        pad_value : float, optional
            What the frames past an item's end hold. Default 0.0 (give the features' floor, such as the
            log of the smallest power, with ``functools.partial``).

        Returns
        -------
        features : torch.Tensor
            ``(batch, ..., num_mel_bins, max_frames)``, the batch's dtype and device: each item padded with
            ``pad_value`` along its last (frames) axis to the longest item's frames.
        lengths : torch.Tensor
            ``(batch,)`` int64: each item's frames (a mask is ``arange(max_frames) < lengths[:, None]``).

        See Also
        --------
        arraymel.corpus.Corpus.frames : The frames of a key without reading it (for bucketing).

        Examples
        --------
        >>> import torch
        >>> from arraymel.torch import CorpusDataset
        >>> features, lengths = CorpusDataset.collate([torch.ones(2, 3), torch.ones(2, 1)], pad_value=-1.0)
        >>> features[1].tolist(), lengths.tolist()
        ([[1.0, -1.0, -1.0], [1.0, -1.0, -1.0]], [3, 1])
        """
        lengths = torch.tensor([int(x.shape[-1]) for x in batch], dtype=torch.int64)
        width = int(lengths.max()) if len(batch) else 0
        out = batch[0].new_full((len(batch), *batch[0].shape[:-1], width), pad_value) if batch else torch.empty(0)
        for i, x in enumerate(batch):
            out[i, ..., : x.shape[-1]] = x
        return out, lengths
