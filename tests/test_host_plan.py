"""The host plan (arraymel.core.plan): built once per (configuration, dtype) and what every path consumes."""

from __future__ import annotations

import numpy as np
import pytest

import arraymel
from arraymel.core.plan import band_bin_ranges, host_plan

pytestmark = pytest.mark.filterwarnings("ignore:.*receive no FFT bin:UserWarning")


def test_one_plan_per_configuration_and_dtype():
    a = host_plan(arraymel.MelConfig.create(fft_length=512, num_mel_bins=40), "float32")
    assert host_plan(arraymel.MelConfig.create(fft_length=512, num_mel_bins=40), "float32") is a
    assert host_plan(arraymel.MelConfig.create(fft_length=512, num_mel_bins=40), "float64") is not a
    assert host_plan(arraymel.MelConfig.create(fft_length=512, num_mel_bins=41), "float32") is not a
    assert not a.filterbank.flags.writeable and not a.window.flags.writeable
    assert not a.band_first.flags.writeable


@pytest.mark.parametrize("params", [{}, dict(fft_length=400, num_mel_bins=80, window=None),
                                    dict(fft_length=256, num_mel_bins=128, sampling_rate=8000, min_freq=0.0)])
def test_band_ranges_are_the_nonzero_span_of_each_band(params):
    plan = host_plan(arraymel.MelConfig.create(**params), "float64")
    fb = plan.filterbank
    for m in range(fb.shape[1]):
        nz = np.flatnonzero(fb[:, m])
        want = (nz[0], nz[-1] + 1) if nz.size else (0, 0)
        assert (plan.band_first[m], plan.band_last[m]) == want
    t = plan.band_table
    dense = np.zeros_like(fb)
    for m, (lo, cnt, off) in enumerate(t.bands):
        dense[lo:lo + cnt, m] = t.weights[off:off + cnt]
    np.testing.assert_array_equal(dense, fb)
    lo, hi = plan.bin_range
    assert not fb[:lo].any() and not fb[hi:].any()


def test_every_path_consumes_the_same_plan():
    import array_api_compat.numpy as xp

    from arraymel._cupy.params import mel_params
    from arraymel._numpy.pipeline import NumpyState
    from arraymel.core.mel import GenericState

    cfg = arraymel.MelConfig.create(fft_length=400, sequence_stride=160, num_mel_bins=80, window="hamming")
    plan = host_plan(cfg, "float32")
    assert NumpyState(cfg, "float32").filterbank is plan.filterbank
    assert mel_params(cfg, "float32").table is plan.band_table and mel_params(cfg, "float32").window is plan.window
    generic = GenericState(cfg, xp, None, "float32")
    np.testing.assert_array_equal(generic.filterbank, plan.filterbank.astype(np.float32))
    np.testing.assert_array_equal(generic.window, plan.window.astype(np.float32))


def test_band_bin_ranges_of_an_empty_band():
    fb = np.zeros((5, 2))
    fb[1:3, 1] = 1.0
    first, last = band_bin_ranges(fb)
    assert first.tolist() == [0, 1] and last.tolist() == [0, 3]
