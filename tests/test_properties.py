"""Properties that must hold for any valid configuration and input (hypothesis)."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arraymel

settings.register_profile("arraymel", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("arraymel")


@st.composite
def configs(draw):
    fft = draw(st.sampled_from([16, 31, 64, 100, 128, 255, 256]))
    return dict(
        fft_length=fft,
        sequence_stride=draw(st.integers(1, 2 * fft)),
        sequence_length=draw(st.one_of(st.none(), st.integers(1, fft))),
        window=draw(st.sampled_from(["hann", "hamming", None])),
        sampling_rate=draw(st.sampled_from([8000, 16000, 22050])),
        num_mel_bins=draw(st.integers(1, 12)),
        mag_exp=draw(st.sampled_from([0.5, 1.0, 2.0])),
        top_db=draw(st.sampled_from([None, 0.0, 30.0, 80.0])),
    )


def _run(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return arraymel.mel_spectrogram(x, **kw)


@given(cfg=configs(), batch=st.integers(1, 4), samples=st.integers(1, 700), backend=st.sampled_from(["numpy", "generic"]),
       seed=st.integers(0, 2**16))
def test_batched_equals_per_item_with_example_scope(cfg, batch, samples, backend, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((batch, samples)) * np.logspace(0, -3, batch)[:, None]).astype(np.float32)
    cfg["min_power"] = 1e-6  # keep constant (1-sample) frames' FFT rounding noise under the floor
    whole = _run(x, top_db_scope="example", backend=backend, **cfg)
    for i in range(batch):
        one = _run(x[i], top_db_scope="example", backend=backend, **cfg)
        np.testing.assert_allclose(whole[i], one, atol=1e-3, rtol=0)


@given(cfg=configs(), lead=st.lists(st.integers(0, 3), max_size=2), samples=st.integers(1, 600),
       dtype=st.sampled_from([np.float32, np.float64, np.int16]))
def test_shape_is_compute_output_shape_and_dtype_is_kept(cfg, lead, samples, dtype):
    x = np.ones((*lead, samples), dtype=dtype)
    layer = arraymel.MelSpectrogram(**cfg)
    out = _run(x, **cfg)
    assert out.shape == layer.compute_output_shape(x.shape)
    assert out.dtype == (np.float64 if dtype == np.float64 else np.float32)


@given(cfg=configs(), a=st.floats(1e-2, 1e2), seed=st.integers(0, 2**16))
def test_scaling_the_input_shifts_unclipped_db_by_20_log10_a(cfg, a, seed):
    cfg.update(top_db=None, mag_exp=2.0, min_power=1e-30, num_mel_bins=min(cfg["num_mel_bins"], 4))
    x = np.random.default_rng(seed).standard_normal((2, 1000))  # float64: the shift is exact to rounding
    base = _run(x, **cfg)
    scaled = _run(x * a, **cfg)
    live = base > -250  # bands with signal (empty bands sit at the floor)
    np.testing.assert_allclose((scaled - base)[live], 20 * np.log10(a), atol=1e-6)
