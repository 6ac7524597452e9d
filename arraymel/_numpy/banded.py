"""A banded form of the mel filterbank: dense blocks that skip its zeros.

Each FFT bin feeds at most two adjacent mel bands, so the ``(bins, bands)`` matrix is over 98%
zeros. The bands are split into contiguous groups; a group's block covers only the bins its
bands touch. Each group is one small BLAS product written straight into its rows of the
``(bands, frames)`` output, so no band is written twice and nothing is accumulated. The
grouping minimises ``sum(bins * bands) + overhead * groups`` by dynamic programming.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arraymel.core.plan import band_bin_ranges

#: Cost of one extra product call, in multiply-adds per frame (BLAS call + Python overhead).
CALL_OVERHEAD = 600


@dataclass(frozen=True)
class BandGroup:
    band_lo: int
    band_hi: int
    bin_lo: int
    bin_hi: int
    weights_t: np.ndarray  # (band_hi - band_lo, bin_hi - bin_lo), C-contiguous


@dataclass(frozen=True)
class BandedFilterbank:
    groups: tuple[BandGroup, ...]
    bin_lo: int  # first bin any band uses
    bin_hi: int  # one past the last
    num_bands: int


def banded(fb: np.ndarray, dtype: np.dtype, overhead: int | None = None,
           ranges: tuple[np.ndarray, np.ndarray] | None = None) -> BandedFilterbank:
    """Group the bands of ``fb`` (bins x bands, float64) into cheap dense blocks; ``ranges`` are its
    bands' bin ranges (:attr:`arraymel.core.plan.HostPlan.band_first` and ``band_last``), computed when None."""
    overhead = CALL_OVERHEAD if overhead is None else overhead
    n_bands = fb.shape[1]
    first, last = band_bin_ranges(fb) if ranges is None else ranges
    used = first < last
    # lo/hi of bins over band ranges [a, b): running min/max ignoring empty bands
    big = np.iinfo(np.int64).max
    lo_v = np.where(used, first, big)
    hi_v = np.where(used, last, -1)
    best = np.full(n_bands + 1, np.inf)
    best[0] = 0.0
    prev = np.zeros(n_bands + 1, dtype=np.int64)
    for b in range(1, n_bands + 1):
        # candidate groups [a, b) for all a < b, vectorised
        lo = np.minimum.accumulate(lo_v[:b][::-1])[::-1]
        hi = np.maximum.accumulate(hi_v[:b][::-1])[::-1]
        width = np.where(hi >= 0, hi - lo, 0).astype(np.float64)
        nb = b - np.arange(b)
        cost = best[:b] + nb * width + overhead
        a = int(np.argmin(cost))
        best[b], prev[b] = cost[a], a
    groups = []
    b = n_bands
    while b > 0:
        a = int(prev[b])
        u = used[a:b]
        if u.any():
            blo, bhi = int(first[a:b][u].min()), int(last[a:b][u].max())
        else:
            blo = bhi = 0
        w = np.ascontiguousarray(fb[blo:bhi, a:b].T, dtype=dtype)
        groups.append(BandGroup(a, b, blo, bhi, w))
        b = a
    groups.reverse()
    if used.any():
        lo_all, hi_all = int(first[used].min()), int(last[used].max())
    else:
        lo_all = hi_all = 0
    return BandedFilterbank(tuple(groups), lo_all, hi_all, n_bands)
