"""Every row of the parameters of docs/semantics.md: its error (naming parameter, value and what is allowed) or its meaning."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import arraymel
from arraymel import MelSpectrogram, mel_spectrogram

X = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)


def mel(x=X, **kw):
    kw.setdefault("num_mel_bins", 32)
    kw.setdefault("fft_length", 512)
    kw.setdefault("sequence_stride", 128)
    return mel_spectrogram(x, **kw)


BAD = [
    ("fft_length", 0, ValueError), ("fft_length", -4, ValueError), ("fft_length", 2.5, TypeError),
    ("fft_length", True, TypeError),
    ("sequence_stride", 0, ValueError), ("sequence_stride", "8", TypeError),
    ("sequence_length", -1, ValueError), ("sequence_length", 513, ValueError), ("sequence_length", 1.5, TypeError),
    ("window", "blackman", ValueError), ("window", np.ones(100), ValueError), ("window", 3, TypeError),
    ("window", ("kaiser", 8.0), TypeError),
    ("sampling_rate", 0, ValueError), ("sampling_rate", -16000, ValueError), ("sampling_rate", float("inf"), ValueError),
    ("sampling_rate", "16k", TypeError),
    ("num_mel_bins", 0, ValueError), ("num_mel_bins", 12.5, TypeError), ("sequence_stride", 128.5, TypeError),
    ("min_freq", -1.0, ValueError), ("min_freq", float("nan"), ValueError), ("min_freq", 9000.0, ValueError),
    ("max_freq", 10.0, ValueError), ("max_freq", "high", TypeError),
    ("power_to_db", "yes", TypeError), ("power_to_db", 2, TypeError), ("filterbank", "float32", ValueError),
    ("top_db", -1.0, ValueError), ("top_db", float("inf"), ValueError),
    ("mag_exp", 0.0, ValueError), ("mag_exp", -2.0, ValueError),
    ("min_power", 0.0, ValueError), ("min_power", -1e-10, ValueError),
    ("ref_power", float("nan"), ValueError), ("ref_power", None, TypeError),
    ("top_db_scope", "file", ValueError),
    ("dtype", "float16", ValueError), ("dtype", "int32", ValueError),
]


@pytest.mark.parametrize(("name", "value", "exc"), BAD, ids=[f"{n}={v!r}"[:40] for n, v, _ in BAD])
def test_bad_parameter_names_parameter_value_and_rule(name, value, exc):
    with pytest.raises(exc) as info:
        mel(**{name: value})
    msg = str(info.value)
    assert name in msg, msg
    assert "must" in msg, msg
    shown = repr(value) if not hasattr(value, "shape") else "shape"
    if not hasattr(value, "shape") and name not in ("min_freq", "max_freq") or name == "min_freq" and value != 9000.0:
        assert shown in msg or str(value) in msg, msg
    with pytest.raises(exc):  # the layer validates at construction
        MelSpectrogram(**{"fft_length": 512, "num_mel_bins": 32, name: value})


def test_min_freq_not_below_max_freq_names_both_and_resolved_value():
    with pytest.raises(ValueError, match=r"min_freq=9000.0 and max_freq=None \(resolved to 8000 Hz\)"):
        mel(min_freq=9000.0)


def test_unknown_parameter_is_a_type_error_listing_the_parameters():
    with pytest.raises(TypeError, match="unknown parameter.*fft_lenght.*the parameters are: fft_length"):
        MelSpectrogram(fft_lenght=512)


# ------------------------------------------------------------------ meanings
def test_sequence_length_none_means_fft_length():
    np.testing.assert_array_equal(mel(sequence_length=None), mel(sequence_length=512))


def test_window_none_is_ones_over_fft_length_and_ignores_sequence_length():
    ones = mel(window=np.ones(512), sequence_length=512)
    np.testing.assert_allclose(mel(window=None), ones, atol=1e-4)
    np.testing.assert_allclose(mel(window=None, sequence_length=300), ones, atol=1e-4)


@pytest.mark.parametrize("name", ["hann", "hamming"])
def test_named_windows_are_scipy_periodic_windows(name):
    sig = pytest.importorskip("scipy.signal")
    w = arraymel.get_window(name, 400)
    np.testing.assert_allclose(w, sig.get_window(name, 400), rtol=0, atol=1e-15)
    padded = arraymel.get_window(name, 400, fft_length=512)
    assert padded.shape == (512,)
    np.testing.assert_array_equal(padded[:56], 0)
    np.testing.assert_array_equal(padded[456:], 0)
    np.testing.assert_allclose(padded[56:456], w, atol=0)
    # the named window gives the same spectrogram as the same values passed as an array
    np.testing.assert_array_equal(mel(window=name, sequence_length=400), mel(window=np.asarray(w), sequence_length=400))


def test_max_freq_falsy_means_int_half_sampling_rate():
    default = mel(sampling_rate=11025)
    np.testing.assert_array_equal(mel(sampling_rate=11025, max_freq=0), default)
    np.testing.assert_array_equal(mel(sampling_rate=11025, max_freq=5512), default)  # int(11025 / 2)
    assert np.abs(mel(sampling_rate=11025, max_freq=5512.5) - default).max() > 1e-3


def test_max_freq_above_nyquist_is_allowed_and_only_uses_existing_bins():
    with pytest.warns(UserWarning, match=r"bands 15\)"):
        fb = arraymel.mel_filterbank(num_mel_bins=16, fft_length=256, sampling_rate=8000, max_freq=6000)
    assert fb.shape == (129, 16)
    assert fb[:, -1].max() == 0  # the top band lies above Nyquist: no bin reaches it
    assert fb[:, -2].max() > 0
    with pytest.warns(UserWarning, match=r"bands 15\)"):
        out = mel(max_freq=12000.0, num_mel_bins=16)
    assert out.shape[1] == 16


def test_power_to_db_false_returns_mel_power_and_true_its_db():
    p = mel(power_to_db=False, top_db=None)
    d = mel(top_db=None)
    assert p.min() >= 0
    np.testing.assert_allclose(d, 10 * np.log10(np.maximum(p, 1e-10)), atol=2e-4)


def test_top_db_clips_relative_to_the_maximum_and_none_does_not_clip():
    quiet = X * np.array([[1.0], [1e-5]], dtype=np.float32)  # 100 dB apart
    free = mel(quiet, top_db=None)
    assert free.max() - free.min() > 80
    for top in (0.0, 20.0, 80.0):
        c = mel(quiet, top_db=top)
        assert abs((c.max() - c.min()) - min(top, free.max() - free.min())) < 1e-3
        np.testing.assert_allclose(c, np.maximum(free, free.max() - top), atol=1e-4)


@pytest.mark.parametrize("mag_exp", [0.5, 1.0, 2.0, 3.0])
def test_mag_exp_is_the_exponent_of_the_magnitude(mag_exp):
    x64 = X.astype(np.float64)
    spec = arraymel.stft(x64, fft_length=512, sequence_stride=128)  # (..., frames, bins)
    fb = arraymel.mel_filterbank(num_mel_bins=32, fft_length=512)
    expected = np.swapaxes(np.abs(spec) ** mag_exp @ fb, -1, -2)
    got = mel(x64, mag_exp=mag_exp, power_to_db=False)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * expected.max())


def test_min_power_floors_the_power_before_the_log():
    zero = np.zeros((1, 4000), dtype=np.float32)
    np.testing.assert_allclose(mel(zero, min_power=1e-6), -60.0, atol=1e-4)
    np.testing.assert_allclose(mel(zero), -100.0, atol=1e-4)


def test_ref_power_shifts_by_its_db_and_its_sign_is_ignored():
    base = mel(top_db=None)
    np.testing.assert_allclose(mel(top_db=None, ref_power=10.0), base - 10.0, atol=2e-4)
    np.testing.assert_array_equal(mel(ref_power=-10.0), mel(ref_power=10.0))
    np.testing.assert_allclose(mel(top_db=None, ref_power=1e-12), base + 100.0, atol=2e-4)  # floored by min_power


def test_top_db_scope_example_clips_each_spectrogram_against_its_own_maximum():
    quiet = X * np.array([[1.0], [1e-3]], dtype=np.float32)  # 60 dB apart
    batch = mel(quiet, top_db=30.0)
    example = mel(quiet, top_db=30.0, top_db_scope="example")
    assert np.ptp(batch[1]) == 0  # Keras: the quiet clip is clipped flat by the loud one's maximum
    own = mel(quiet[1:], top_db=None)[0]
    assert np.ptp(own) > 10  # its own spread, kept (it is under 30 dB, so nothing is clipped)
    np.testing.assert_allclose(example[1], np.maximum(own, own.max() - 30.0), atol=1e-5)
    np.testing.assert_allclose(example[1], mel(quiet[1:], top_db=30.0)[0], atol=1e-5)


def test_dtype_parameter_chooses_compute_and_output_dtype():
    assert mel().dtype == np.float32
    assert mel(X.astype(np.float64)).dtype == np.float64
    assert mel(dtype="float64").dtype == np.float64
    assert mel(X.astype(np.float64), dtype="float32").dtype == np.float32
    assert mel((X * 1000).astype(np.int16)).dtype == np.float32
    assert mel(X.astype(np.float16)).dtype == np.float32


# ------------------------------------------------------------------ input
def test_complex_input_is_a_type_error():
    with pytest.raises(TypeError, match="complex"):
        mel(X.astype(np.complex64))


def test_bool_input_is_a_type_error():
    with pytest.raises(TypeError, match="bool"):
        mel(X > 0)


def test_zero_d_input_is_a_value_error():
    with pytest.raises(ValueError, match="0-d"):
        mel(np.float32(1.0))


def test_zero_samples_is_a_value_error():
    with pytest.raises(ValueError, match="at least 1 sample"):
        mel(np.zeros((3, 0), np.float32))


@pytest.mark.parametrize("backend", ["numpy", "generic"])
def test_empty_batch_returns_empty_output_of_the_right_shape(backend):
    out = mel(np.zeros((0, 4000), np.float32), backend=backend)
    assert out.shape == (0, 32, 1 + 4000 // 128) and out.dtype == np.float32


@pytest.mark.parametrize("backend", ["numpy", "generic"])
def test_nan_in_input_propagates_and_is_not_hidden(backend):
    x = X.copy()
    x[1, 2000] = np.nan
    per_example = mel(x, backend=backend, top_db_scope="example")
    assert np.isnan(per_example[1]).any() and not np.isnan(per_example[0]).any()
    assert np.isnan(mel(x, backend=backend)).all()  # batch scope: the maximum is NaN, as in Keras
    assert np.isnan(mel(x, backend=backend, top_db=None)[1]).any()


def test_list_input_is_accepted_as_numpy():
    out = mel(X[0].tolist())
    assert isinstance(out, np.ndarray) and out.dtype == np.float64


def test_bad_call_options_name_the_option():
    for kw, pat in [({"backend": "torch"}, "backend='torch'"), ({"output": "list"}, "output='list'"),
                    ({"device": "tpu"}, "device='tpu'"), ({"max_memory": 0}, "max_memory=0"),
                    ({"max_memory": 1.5}, "max_memory=1.5")]:
        with pytest.raises(ValueError, match=re.escape(pat)):
            mel(**kw)


def test_empty_band_warning_names_the_bands_and_the_remedy():
    arraymel.core.filterbank.filterbank_host.cache_clear()
    with pytest.warns(UserWarning, match=r"receive no FFT bin.*bands 0, 1.*larger fft_length or fewer num_mel_bins"):
        arraymel.mel_filterbank(num_mel_bins=64, fft_length=64, sampling_rate=16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arraymel.mel_filterbank(num_mel_bins=40, fft_length=512)


# ------------------------------------------------------------------ what Keras accepts
def test_keras_falsy_sequence_length_integral_floats_and_0_1_booleans_are_accepted():
    base = mel()
    np.testing.assert_array_equal(mel(sequence_length=0), base)  # Keras: `sequence_length or fft_length`
    np.testing.assert_array_equal(mel(sequence_stride=128.0, fft_length=512.0, num_mel_bins=32.0), base)
    np.testing.assert_array_equal(mel(power_to_db=1), base)
    np.testing.assert_array_equal(mel(power_to_db=0), mel(power_to_db=False))
    assert MelSpectrogram(sequence_stride=128.0).config.sequence_stride == 128
    assert type(MelSpectrogram(sequence_stride=128.0).config.sequence_stride) is int


def test_min_freq_not_below_max_freq_says_what_keras_really_returns():
    # Keras 3.15 (checked live in tests/test_parity_keras.py): NaN when equal, reversed bands when above
    with pytest.raises(ValueError, match=r"min_freq=8000.0 and max_freq=None \(resolved to 8000 Hz\).*NaN everywhere"):
        mel(min_freq=8000.0)
    with pytest.raises(ValueError, match=r"the bands of \[3000, 6000\] Hz in reverse order, or a constant -100 dB"):
        mel(min_freq=6000.0, max_freq=3000.0)


def test_a_scipy_window_spec_names_window_and_the_way_to_pass_it():
    with pytest.raises(TypeError, match=re.escape("window=('kaiser', 8.0) is not allowed: window must be one of "
                                                  "('hann', 'hamming'), a 1-D array of length sequence_length, or None")) as info:
        mel(window=("kaiser", 8.0))
    assert "scipy.signal.get_window(('kaiser', 8.0), sequence_length)" in str(info.value)


def test_samples_channels_layout_warns_once(monkeypatch):
    import arraymel.core.inputs as inputs

    monkeypatch.setattr(inputs, "_channels_last_warned", False)
    stereo = np.zeros((16000, 2), np.float32)
    with pytest.warns(UserWarning, match=r"x has shape \(16000, 2\).*16000 spectrograms of 2 sample\(s\).*np.moveaxis") as rec:
        mel(stereo)
    assert rec[0].filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mel(stereo)  # once
        monkeypatch.setattr(inputs, "_channels_last_warned", False)
        mel(np.zeros((1000, 400), np.float32))  # many short clips: the axis before is not 100x longer
        mel(np.zeros((16000, 600), np.float32))  # clips longer than a frame (fft_length 512)
