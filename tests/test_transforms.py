"""MelSpectrogram: the Keras layer interface, config round trip, output shape, caching."""

from __future__ import annotations

import json

import numpy as np
import pytest

import arraymel
from arraymel import MelSpectrogram

KERAS_KEYS = ["fft_length", "sequence_stride", "sequence_length", "window", "sampling_rate", "num_mel_bins",
              "min_freq", "max_freq", "power_to_db", "top_db", "mag_exp", "min_power", "ref_power"]


def test_defaults_are_keras_defaults():
    cfg = MelSpectrogram().get_config()
    assert cfg == {"fft_length": 2048, "sequence_stride": 512, "sequence_length": None, "window": "hann",
                   "sampling_rate": 16000, "num_mel_bins": 128, "min_freq": 20.0, "max_freq": None,
                   "power_to_db": True, "top_db": 80.0, "mag_exp": 2.0, "min_power": 1e-10, "ref_power": 1.0}


def test_get_config_round_trips_through_json():
    m = MelSpectrogram(fft_length=400, sequence_stride=160, num_mel_bins=80, window=np.hamming(400), top_db=None,
                       top_db_scope="example", dtype="float64")
    cfg = json.loads(json.dumps(m.get_config()))
    m2 = MelSpectrogram.from_config(cfg)
    assert m2 == m and m2.get_config() == cfg
    x = np.random.default_rng(1).standard_normal((2, 3000))
    np.testing.assert_array_equal(m(x), m2(x))


def test_a_keras_layer_config_loads():
    # the shape of keras.layers.MelSpectrogram(...).get_config() in Keras 3
    keras_cfg = {"name": "mel_spectrogram", "trainable": True,
                 "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                           "registered_name": None},
                 "fft_length": 1024, "sequence_stride": 256, "sequence_length": None, "window": "hann",
                 "sampling_rate": 22050, "num_mel_bins": 64, "min_freq": 20.0, "max_freq": None, "power_to_db": True,
                 "top_db": 80.0, "mag_exp": 2.0, "min_power": 1e-10, "ref_power": 1.0}
    m = MelSpectrogram.from_config(keras_cfg)
    assert m.config.fft_length == 1024 and m.config.max_freq == 11025.0
    assert m.get_config()["name"] == "mel_spectrogram"
    assert {k: m.get_config()[k] for k in KERAS_KEYS} == {k: keras_cfg[k] for k in KERAS_KEYS}


def test_call_equals_function():
    m = MelSpectrogram(num_mel_bins=40, fft_length=512)
    x = np.random.default_rng(2).standard_normal((3, 5000)).astype(np.float32)
    np.testing.assert_array_equal(m(x), arraymel.mel_spectrogram(x, num_mel_bins=40, fft_length=512))


def keras_frames(samples: int, stride: int) -> int:
    """Keras 3's compute_output_shape frame count."""
    return (samples + stride + 1) // stride


@pytest.mark.parametrize("samples", [1, 510, 511, 512, 1023, 16000, 16383])
def test_compute_output_shape_is_the_true_frame_count(samples):
    m = MelSpectrogram(sequence_stride=512, num_mel_bins=16, fft_length=1024)
    shape = m.compute_output_shape((2, samples))
    assert shape == m(np.zeros((2, samples), np.float32)).shape
    assert shape[-1] == 1 + samples // 512
    if (samples + 1) % 512 == 0:  # Keras counts one frame too many exactly here
        assert keras_frames(samples, 512) == shape[-1] + 1
    else:
        assert keras_frames(samples, 512) == shape[-1]


def test_compute_output_shape_keeps_unknown_dims_and_rejects_bad_shapes():
    m = MelSpectrogram(num_mel_bins=8, fft_length=64, sequence_stride=16)
    assert m.compute_output_shape((None, 100)) == (None, 8, 7)
    assert m.compute_output_shape((4, None)) == (4, 8, None)
    assert m.compute_output_shape((100,)) == (8, 7)
    with pytest.raises(ValueError, match="input_shape"):
        m.compute_output_shape(())
    with pytest.raises(ValueError, match="samples must be >= 1"):
        m.compute_output_shape((2, 0))


def test_repr_shows_what_differs_from_keras():
    assert repr(MelSpectrogram()) == "MelSpectrogram()"
    r = repr(MelSpectrogram(num_mel_bins=80, window=np.ones(2048), top_db=None))
    assert r == "MelSpectrogram(window=<array (2048,)>, num_mel_bins=80, top_db=None)"


def test_constants_built_once_per_namespace_and_dtype(xp):
    m = MelSpectrogram(num_mel_bins=20, fft_length=256)
    x32 = xp.asarray(np.ones((2, 1000), np.float32))
    m(x32)
    m(x32)
    assert len(m._cache) == 1
    def constants(state):
        return state.banded if hasattr(state, "banded") else state.filterbank

    (state,) = m._cache._d.values()
    fb = constants(state)
    m(x32)
    (again,) = m._cache._d.values()
    assert again is state and constants(again) is fb
    m(xp.asarray(np.ones((2, 1000), np.float64)))
    assert len(m._cache) == 2


def test_generic_output_keeps_namespace_dtype_and_device(xp):
    from tests._helpers import assert_meta

    x = xp.asarray(np.random.default_rng(3).standard_normal((2, 3000)).astype(np.float32))
    out = arraymel.mel_spectrogram(x, num_mel_bins=16, fft_length=256)
    from array_api_compat import device

    assert_meta(out, xp=xp, dtype=xp.float32, shape=(2, 16, 1 + 3000 // 512), device=device(x))


def test_get_config_adds_an_extension_only_when_it_is_not_its_default():
    from arraymel._config import EXTENSION_DEFAULTS

    assert not set(EXTENSION_DEFAULTS) & set(MelSpectrogram().get_config())
    assert not set(EXTENSION_DEFAULTS) & set(MelSpectrogram(top_db_scope="batch", filterbank="exact").get_config())
    changed = {"top_db_scope": "example", "dtype": "float64", "filterbank": "keras"}
    for key, value in changed.items():
        cfg = MelSpectrogram(**{key: value}).get_config()
        assert set(cfg) - set(KERAS_KEYS) == {key} and cfg[key] == value
    assert MelSpectrogram(dtype=np.float64).get_config()["dtype"] == "float64"  # JSON-friendly
    assert MelSpectrogram.from_config(MelSpectrogram(**changed).get_config()).get_config() == {
        **MelSpectrogram().get_config(), **changed}


def test_to_keras_config_is_plain_keras_or_says_what_keras_cannot_express():
    cfg = MelSpectrogram(fft_length=512.0, sequence_stride=128.0, num_mel_bins=40, dtype="float64", name="mel").to_keras_config()
    assert cfg == {**{k: MelSpectrogram().get_config()[k] for k in KERAS_KEYS}, "fft_length": 512, "sequence_stride": 128,
                   "num_mel_bins": 40, "dtype": "float64", "name": "mel"}
    assert type(cfg["fft_length"]) is int and type(cfg["sequence_stride"]) is int
    assert "filterbank" not in MelSpectrogram(filterbank="keras").to_keras_config()
    with pytest.raises(ValueError, match=r"top_db=None .*; top_db_scope='example'"):
        MelSpectrogram(top_db=None, top_db_scope="example").to_keras_config()


def test_a_keras_dtype_policy_sets_the_dtype_and_round_trips_as_given():
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float64"}, "registered_name": None}
    m = MelSpectrogram.from_config({"dtype": policy})
    assert m.config.dtype == "float64" and m(np.zeros(4000, np.float32)).dtype == np.float64
    assert m.get_config()["dtype"] == policy and m.to_keras_config()["dtype"] == policy
    for bad in ("mixed_float16", "bfloat16", {**policy, "config": {"name": "mixed_bfloat16"}}):
        with pytest.raises(ValueError, match=r"dtype=.* is not allowed: dtype must be .*float32"):
            MelSpectrogram(dtype=bad)


def test_compute_output_shape_takes_an_int():
    m = MelSpectrogram()
    assert m.compute_output_shape(16000) == (128, 32) == m.compute_output_shape((16000,))
    with pytest.raises(TypeError, match=r"input_shape=1.5 is not allowed: input_shape must be an int"):
        m.compute_output_shape(1.5)


def test_pickles_after_use_without_its_cache():
    import pickle

    m = MelSpectrogram(num_mel_bins=40, fft_length=512)
    x = np.random.default_rng(4).standard_normal((2, 50000)).astype(np.float32)
    ref = m(x)
    m2 = pickle.loads(pickle.dumps(m))
    assert len(m2._cache) == 0 and m2 == m
    np.testing.assert_array_equal(m2(x), ref)


def test_get_config_gives_plain_json_values_and_ints_where_keras_needs_them():
    m = MelSpectrogram(fft_length=512.0, sequence_stride=np.int64(128), num_mel_bins=np.int32(40),
                       ref_power=np.float32(2.0), window=np.hanning(512))
    cfg = json.loads(json.dumps(m.get_config()))  # NumPy scalars would not serialise
    assert [type(cfg[k]) for k in ("fft_length", "sequence_stride", "num_mel_bins")] == [int, int, int]
    assert cfg["ref_power"] == 2.0 and len(cfg["window"]) == 512
    assert MelSpectrogram.from_config(cfg) == m
