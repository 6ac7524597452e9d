"""A labelled picture of a mel spectrogram (matplotlib, imported only when called)."""

from __future__ import annotations

from typing import Any

import numpy as np

from arraymel._config import MelConfig
from arraymel.core.filterbank import MEL_BREAK_FREQUENCY_HERTZ, MEL_HIGH_FREQUENCY_Q, hertz_to_mel


def band_centres_hz(cfg: MelConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band (the peak of its triangle).

    Parameters
    ----------
    cfg : MelConfig
        The configuration whose bands are wanted (HTK mel scale, as Keras's filterbank).

    Returns
    -------
    centres : numpy.ndarray of shape ``(num_mel_bins,)``
        Increasing frequencies in Hz, between ``min_freq`` and ``max_freq``.

    Examples
    --------
    >>> import arraymel, arraymel.plot
    >>> c = arraymel.plot.band_centres_hz(arraymel.MelConfig.create(num_mel_bins=4, min_freq=0, max_freq=8000))
    >>> c.round(1).tolist()
    [458.7, 1218.1, 2475.1, 4555.8]
    """
    edges = np.linspace(hertz_to_mel(cfg.min_freq), hertz_to_mel(cfg.max_freq), cfg.num_mel_bins + 2)
    return MEL_BREAK_FREQUENCY_HERTZ * np.expm1(edges[1:-1] / MEL_HIGH_FREQUENCY_Q)


def _host(S: Any) -> np.ndarray:
    if isinstance(S, np.ndarray):
        return S
    if type(S).__module__.split(".")[0] == "cupy":
        return S.get()  # a picture needs the values on the host
    return np.from_dlpack(S)


def specshow(S: Any, *, ax: Any = None, title: str | None = None, colorbar: bool = True, cmap: str = "magma",
             **params: Any) -> Any:
    """Draw one mel spectrogram ``(num_mel_bins, frames)``: time in seconds, bands labelled in Hz.

    Parameters
    ----------
    S : array of shape ``(num_mel_bins, frames)``
        dB (``power_to_db=True``) or power values, any namespace (copied to the host to draw).
    ax : matplotlib.axes.Axes, optional, default None
        Where to draw; a new figure when None.
    title : str, optional, default None
        Title of the axes.
    colorbar : bool, default True
        Add a colour bar labelled in dB (or "power").
    cmap : str, default "magma"
        A matplotlib colour map name.
    **params : optional
        The mel parameters that produced ``S`` (``sampling_rate``, ``sequence_stride``,
        ``num_mel_bins``, ``min_freq``, ``max_freq``, ``power_to_db``, ...), for the axes.

    Returns
    -------
    image : matplotlib.image.AxesImage
        The drawn image.

    Raises
    ------
    ValueError
        ``S`` is not 2-D, or ``num_mel_bins`` does not match ``S.shape[0]``.

    See Also
    --------
    arraymel.mel_spectrogram : Computes ``S``.

    Notes
    -----
    matplotlib (the ``plot`` extra) is imported when this is called, not with the module.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, arraymel, arraymel.plot
    >>> x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> S = arraymel.mel_spectrogram(x, num_mel_bins=64)
    >>> image = arraymel.plot.specshow(S, num_mel_bins=64, title="noise")
    >>> image.get_array().shape, image.axes.get_xlabel()
    ((64, 32), 'time (s)')
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    S = _host(S)
    if S.ndim != 2:
        raise ValueError(f"S has shape {S.shape}: specshow draws one spectrogram of shape (num_mel_bins, frames).")
    params.setdefault("num_mel_bins", S.shape[0])
    cfg = MelConfig.create(**params)
    if cfg.num_mel_bins != S.shape[0]:
        raise ValueError(f"num_mel_bins={cfg.num_mel_bins} does not match S.shape[0]={S.shape[0]}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4), constrained_layout=True)
    seconds = S.shape[1] * cfg.sequence_stride / cfg.sampling_rate
    img = ax.imshow(S, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest",
                    extent=(0.0, seconds, -0.5, S.shape[0] - 0.5))
    centres = band_centres_hz(cfg)

    def band_label(y: float, _pos: int) -> str:
        i = int(round(y))
        if not 0 <= i < len(centres):
            return ""
        f = centres[i]
        return f"{f / 1000:.1f}k" if f >= 1000 else f"{f:.0f}"

    n_ticks = min(8, S.shape[0])
    ax.set_yticks(np.unique(np.linspace(0, S.shape[0] - 1, n_ticks).round().astype(int)))
    ax.yaxis.set_major_formatter(FuncFormatter(band_label))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band centre (Hz)")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(img, ax=ax, label="dB" if cfg.power_to_db else "power", format="%+.0f" if cfg.power_to_db else None)
    return img
