"""The host plan: every constant a path needs for one (configuration, compute dtype), built once on the
host in float64 and cached.

Every path consumes it (the generic path in :mod:`arraymel.core.mel`, the NumPy path, the CuPy cuFFT
and fused paths), so a window, a filterbank or a band range is computed in one place only: the paths
differ in how they use the constants, never in what they are.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from arraymel._config import KALDI_PREEMPHASIS, MelConfig
from arraymel.core.db import reference_db
from arraymel.core.filterbank import config_filterbank
from arraymel.core.windows import config_window


def band_bin_ranges(fb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band (column of ``fb``, ``(bins, bands)``), the first and one-past-last bin with a non-zero
    weight; an empty band has ``first == last == 0``."""
    nz = fb != 0
    any_nz = nz.any(axis=0)
    first = np.where(any_nz, nz.argmax(axis=0), 0)
    last = np.where(any_nz, fb.shape[0] - nz[::-1].argmax(axis=0), 0)
    return first, last


@dataclass(frozen=True)
class BandTable:
    """The filterbank's non-zero weights, band by band (CSR over bands): its banded form.

    ``bands`` is ``(num_mel_bins, 3)`` int32 rows ``(first bin, bin count, offset into weights)``;
    ``weights`` the float64 weights of each band's bins, concatenated. ``bin_lo .. bin_lo + nbu``
    is the range of bins any band reads (at least one bin, so that shapes stay positive).
    """

    bands: np.ndarray
    weights: np.ndarray
    bin_lo: int
    nbu: int

    @property
    def nnz(self) -> int:
        return int(self.weights.shape[0])


def band_table(fb: np.ndarray) -> BandTable:
    """The :class:`BandTable` of a ``(bins, bands)`` filterbank (empty bands get a count of 0)."""
    first, last = band_bin_ranges(fb)
    n_bands = fb.shape[1]
    bands = np.zeros((n_bands, 3), dtype=np.int32)
    parts = []
    off = 0
    for m in range(n_bands):
        lo, hi = int(first[m]), int(last[m])
        cnt = max(0, hi - lo)
        bands[m] = (lo if cnt else 0, cnt, off)
        if cnt:
            parts.append(fb[lo:hi, m])
        off += cnt
    weights = np.concatenate(parts) if parts else np.zeros(1, dtype=np.float64)
    used = last > first
    if used.any():
        bin_lo, bin_hi = int(first[used].min()), int(last[used].max())
    else:
        bin_lo, bin_hi = 0, 1
    return BandTable(bands=bands, weights=np.ascontiguousarray(weights, dtype=np.float64),
                     bin_lo=bin_lo, nbu=max(1, bin_hi - bin_lo))


@dataclass(frozen=True, eq=False)
class HostPlan:
    """The host constants of one (configuration, compute dtype); build it with :func:`host_plan`.

    Arrays are float64 (read-only) whatever the compute dtype: each path casts them once, where it
    keeps them (its own buffers, or its device).
    """

    cfg: MelConfig
    dtype_name: str
    #: The ``fft_length`` analysis window (centred, or first without centring), None for no window.
    window: np.ndarray | None
    #: The dense ``(fft_length // 2 + 1, num_mel_bins)`` filterbank.
    filterbank: np.ndarray
    #: Per band, its first and one-past-last bin with a weight (:func:`band_bin_ranges`).
    band_first: np.ndarray
    band_last: np.ndarray

    # ------------------------------------------------------------------ frame geometry
    @property
    def fft_length(self) -> int:
        return self.cfg.fft_length

    @property
    def hop(self) -> int:
        return self.cfg.sequence_stride

    @property
    def n_bins(self) -> int:
        """One-sided FFT bins, ``fft_length // 2 + 1``."""
        return self.cfg.n_bins

    @property
    def pad(self) -> int:
        """Samples of padding on each side: ``fft_length // 2`` when centred, else 0."""
        return self.cfg.pad

    @property
    def frame_span(self) -> int:
        """Signal samples one frame needs (``fft_length``; ``sequence_length`` without centring)."""
        return self.cfg.frame_span

    def n_frames(self, samples: int) -> int:
        """Frames of a signal of ``samples`` samples (:meth:`arraymel.MelConfig.n_frames`)."""
        return self.cfg.n_frames(samples)

    @property
    def preemphasis(self) -> float:
        """Kaldi's pre-emphasis coefficient with ``frame_step="kaldi"``, else 0."""
        return KALDI_PREEMPHASIS if self.cfg.frame_step == "kaldi" else 0.0

    # ------------------------------------------------------------------ dB constants
    @property
    def ref_db(self) -> float:
        """``10 log10(max(|ref_power|, min_power))``, subtracted from every dB value."""
        return reference_db(self.cfg.ref_power, self.cfg.min_power)

    @property
    def clips_top_db(self) -> bool:
        """dB output with a ``top_db`` clip (which needs the maximum of the batch or of each example)."""
        return self.cfg.power_to_db and self.cfg.top_db is not None

    # ------------------------------------------------------------------ banded forms
    @property
    def bin_range(self) -> tuple[int, int]:
        """The bins any band reads: ``(first, one past the last)``; ``(0, 0)`` when every band is empty."""
        used = self.band_first < self.band_last
        if not used.any():
            return 0, 0
        return int(self.band_first[used].min()), int(self.band_last[used].max())

    @functools.cached_property
    def band_table(self) -> BandTable:
        """The filterbank's non-zero weights band by band (the GPU kernels' form)."""
        return band_table(self.filterbank)


_PLANS: OrderedDict = OrderedDict()
_LOCK = threading.Lock()
#: Plans kept (least recently used dropped first): each holds a filterbank of up to a few MB.
MAX_PLANS = 64


def host_plan(cfg: MelConfig, dtype_name: str) -> HostPlan:
    """The cached :class:`HostPlan` of ``cfg`` computed in ``dtype_name`` (``"float32"`` or ``"float64"``).

    Building it builds the filterbank, which warns once per configuration when a band receives no FFT bin.

    Examples
    --------
    >>> import arraymel
    >>> from arraymel.core.plan import host_plan
    >>> plan = host_plan(arraymel.MelConfig.create(fft_length=512, num_mel_bins=40), "float32")
    >>> plan.filterbank.shape, plan.window.shape, plan.n_frames(16000)
    ((257, 40), (512,), 32)
    >>> host_plan(arraymel.MelConfig.create(fft_length=512, num_mel_bins=40), "float32") is plan
    True
    """
    key = (cfg.key, dtype_name)
    with _LOCK:
        plan = _PLANS.get(key)
        if plan is not None:
            _PLANS.move_to_end(key)
            return plan
    fb = config_filterbank(cfg)
    first, last = band_bin_ranges(fb)
    for a in (first, last):
        a.setflags(write=False)
    window = config_window(cfg)
    if window is not None and window.flags.writeable:
        window.setflags(write=False)
    plan = HostPlan(cfg=cfg, dtype_name=dtype_name, window=window, filterbank=fb, band_first=first, band_last=last)
    with _LOCK:
        plan = _PLANS.setdefault(key, plan)
        _PLANS.move_to_end(key)
        while len(_PLANS) > MAX_PLANS:
            _PLANS.popitem(last=False)
    return plan
