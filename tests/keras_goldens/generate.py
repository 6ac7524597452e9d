"""Generate golden outputs of the real Keras 3 ``keras.layers.MelSpectrogram`` layer.

Writes, beside this file:

* ``goldens.npz``: for every case ``<name>__x`` (the input, stored so that CI never has to
  reproduce random numbers), ``<name>__y`` (what Keras returned, untouched) and, for
  array windows, ``<name>__window``.
* ``cases.json``: the versions used, the input recipe, and per case its parameters, input
  shape/dtype/recipe, Keras's output shape/dtype, the dtype arraymel must return, the
  mel bands that are empty (Keras is silent about them, arraymel warns), and notes.

Run it with Keras 3 on the NumPy backend. The NumPy backend imports jax at import time
(``keras.src.backend.numpy.math`` borrows jax's complex ``fft``), although the layer's
computation itself (``np.pad``, ``scipy.signal.stft``, ``np.tensordot``) never calls jax.
So a venv with keras, jax[cpu] and scipy is needed, e.g.::

    python3 -m venv /tmp/kenv
    /tmp/kenv/bin/pip install keras==3.15.1 "jax[cpu]" scipy numpy
    KERAS_BACKEND=numpy /tmp/kenv/bin/python tests/keras_goldens/generate.py          # write
    KERAS_BACKEND=numpy /tmp/kenv/bin/python tests/keras_goldens/generate.py --check  # compare only

The goldens are whatever Keras outputs, quirks included (one top_db maximum over the whole
input, NaN spreading through that maximum, int(sampling_rate / 2) as the default max_freq,
a float32 filterbank even for a float64 layer, ...). Cases where docs/semantics.md deliberately
differs from Keras (top_db=None, min_freq >= max_freq, compute_output_shape) are not here.

3-D inputs: Keras documents 1-D and 2-D inputs only. With the default top_db_scope="batch"
the top_db maximum is over the whole input, so a 3-D case is computed by feeding Keras the
2-D batch with the leading dims flattened and reshaping the result back. (Keras 3.15's
NumPy backend also accepts the 3-D array directly and returns the identical result; the
generator asserts that.) Running Keras per 2-D slice would give a different answer
(per-slice maxima), so that is not what is stored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "numpy")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
NPZ = HERE / "goldens.npz"
CASES_JSON = HERE / "cases.json"

INPUT_RECIPE = (
    "Each input row (the leading dims flattened) is synthesised in float64 from its item recipe: "
    "t = arange(n) / sampling_rate; rng = numpy.random.default_rng(seed); "
    "for each tone [freq_hz, amplitude]: += amplitude * sin(2*pi*freq_hz*t + rng.uniform(0, 2*pi)); "
    "chirp [f0, f1, amplitude]: += amplitude * cos(2*pi*(f0*t + (f1 - f0) * t**2 / (2*n/sampling_rate))); "
    "noise a: += a * rng.standard_normal(n) (drawn after the tone phases); dc d: += d; "
    "tail [start_fraction, gain_db]: samples from int(start_fraction*n) on are multiplied by 10**(gain_db/20); "
    "gain_db g: everything is multiplied by 10**(g/20); const c: the row is c everywhere (other fields ignored); "
    "nan_at i: sample i is set to NaN. Rows are stacked and reshaped to the case's shape, then cast: "
    "float32/float64 directly, int16 as round(y * int_scale) clipped to the int16 range. "
    "The cast arrays are what goldens.npz stores under <name>__x; the tests use the stored arrays."
)


# --------------------------------------------------------------------------- signals
def synth_row(item: dict, sampling_rate: float) -> np.ndarray:
    n = int(item["n"])
    if "const" in item:
        return np.full(n, float(item["const"]))
    t = np.arange(n) / float(sampling_rate)
    rng = np.random.default_rng(int(item.get("seed", 0)))
    y = np.zeros(n)
    for freq, amp in item.get("tones", []):
        y += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    if item.get("chirp"):
        f0, f1, amp = item["chirp"]
        dur = n / float(sampling_rate)
        y += amp * np.cos(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur)))
    if item.get("noise"):
        y += item["noise"] * rng.standard_normal(n)
    if item.get("dc"):
        y += item["dc"]
    if item.get("tail"):
        start, gain_db = item["tail"]
        y[int(start * n) :] *= 10.0 ** (gain_db / 20.0)
    if item.get("gain_db"):
        y *= 10.0 ** (item["gain_db"] / 20.0)
    if "nan_at" in item:
        y[int(item["nan_at"])] = np.nan
    return y


def make_input(spec: dict, sampling_rate: float) -> np.ndarray:
    rows = [synth_row(item, sampling_rate) for item in spec["items"]]
    x = np.stack(rows).reshape(spec["shape"])
    dtype = spec.get("dtype", "float32")
    if dtype == "int16":
        scaled = np.round(x * float(spec["int_scale"]))
        return np.clip(scaled, -32768, 32767).astype(np.int16)
    return x.astype(dtype)


def mix(n, seed, *, tones=((440.0, 0.5), (1250.0, 0.25), (3100.0, 0.1)), chirp=(100.0, 6000.0, 0.2), noise=0.01, **extra):
    item = {"n": n, "seed": seed, "tones": [list(t) for t in tones], "noise": noise}
    if chirp is not None:
        item["chirp"] = list(chirp)
    item.update(extra)
    return item


def one(n, seed, dtype="float32", **kw):
    return {"shape": [n], "dtype": dtype, "items": [mix(n, seed, **kw)]}


# --------------------------------------------------------------------------- cases
def build_cases() -> list[dict]:
    """The case grid: (name, Keras parameters, input spec, notes). Parameters not given are Keras's defaults."""
    C: list[dict] = []

    def add(name, params, inp, note="", keras_dtype=None, window_array=None):
        C.append(
            {
                "name": name,
                "params": params,
                "input": inp,
                "note": note,
                "keras_layer_dtype": keras_dtype,
                "window_array": window_array,
            }
        )

    # Defaults, 1-D and 2-D.
    add("default_1d", {}, one(8000, 1), "Keras defaults (fft 2048, hop 512, hann, 128 mels, sr 16000), 0.5 s mix")
    add(
        "default_2d_batch3",
        {},
        {"shape": [3, 6000], "dtype": "float32", "items": [mix(6000, 2), mix(6000, 3, noise=0.1), mix(6000, 4, chirp=None)]},
        "2-D batch of three, one shared top_db maximum",
    )
    # fft_length: odd, even non power of two, tiny.
    add("fft_odd_511", {"fft_length": 511, "sequence_stride": 128, "num_mel_bins": 48}, one(4000, 5), "odd fft_length")
    add(
        "fft_odd_255_hamming",
        {"fft_length": 255, "sequence_stride": 100, "window": "hamming", "num_mel_bins": 32},
        one(3000, 6),
        "odd fft_length, hamming, stride not dividing anything",
    )
    add("fft_600_not_pow2", {"fft_length": 600, "sequence_stride": 150, "num_mel_bins": 64}, one(4000, 7), "even fft_length, not a power of two")
    add(
        "fft_16_tiny",
        {"fft_length": 16, "sequence_stride": 4, "num_mel_bins": 4, "min_freq": 500.0},
        one(120, 8),
        "tiny fft (9 bins, 4 mels)",
    )
    # sequence_length < fft_length.
    add(
        "seqlen_400_fft_512",
        {"fft_length": 512, "sequence_length": 400, "sequence_stride": 128, "num_mel_bins": 64},
        one(4000, 9),
        "window 400 centred in 512 (56 zeros each side)",
    )
    add(
        "seqlen_300_fft_513_hamming",
        {"fft_length": 513, "sequence_length": 300, "sequence_stride": 111, "window": "hamming", "num_mel_bins": 40},
        one(4000, 10),
        "odd gap: 106 zeros left, 107 right",
    )
    add(
        "seqlen_1_hann_fft_64",
        {"fft_length": 64, "sequence_length": 1, "sequence_stride": 16, "num_mel_bins": 8},
        one(600, 90),
        "sequence_length 1: scipy.signal.get_window('hann', 1) is [1.] (not the formula's [0.]), one tap at 31",
    )
    add(
        "seqlen_1_hamming_fft_63",
        {"fft_length": 63, "sequence_length": 1, "sequence_stride": 16, "window": "hamming", "num_mel_bins": 8},
        one(600, 91),
        "sequence_length 1: get_window('hamming', 1) is [1.] (not 0.08)",
    )
    add(
        "seqlen_2_hann_fft_64",
        {"fft_length": 64, "sequence_length": 2, "sequence_stride": 16, "num_mel_bins": 8},
        one(600, 92),
        "sequence_length 2: periodic hann [0, 1]",
    )
    # Windows.
    add("hamming_1024", {"fft_length": 1024, "sequence_stride": 256, "window": "hamming", "num_mel_bins": 96}, one(6000, 11), "periodic hamming")
    add(
        "array_window_kaiser_384_in_512",
        {"fft_length": 512, "sequence_length": 384, "sequence_stride": 128, "num_mel_bins": 64},
        one(4000, 12),
        "array window (np.kaiser(384, 8.0), float64, Keras casts it to float32), length sequence_length",
        window_array=("kaiser", 384),
    )
    add(
        "array_window_asymmetric_256",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 32},
        one(3000, 13),
        "asymmetric array window sin(pi*(i+0.5)/256) * (0.5 + 0.5*i/255): catches a reversed window",
        window_array=("asym", 256),
    )
    add("window_none_512", {"fft_length": 512, "sequence_stride": 128, "window": None, "num_mel_bins": 64}, one(4000, 14), "no window (ones)")
    add(
        "window_none_seqlen_256_fft_512",
        {"fft_length": 512, "sequence_length": 256, "sequence_stride": 128, "window": None, "num_mel_bins": 64},
        one(4000, 15),
        "window=None ignores sequence_length on the NumPy/JAX backends: ones over all 512",
    )
    # mag_exp, power_to_db=False.
    add("mag_exp_0.5_db", {"fft_length": 1024, "sequence_stride": 256, "mag_exp": 0.5, "num_mel_bins": 64}, one(6000, 16), "")
    add("mag_exp_1_db", {"fft_length": 1024, "sequence_stride": 256, "mag_exp": 1.0, "num_mel_bins": 64}, one(6000, 17), "")
    add("power_mag_exp_2", {"fft_length": 512, "sequence_stride": 128, "power_to_db": False, "num_mel_bins": 64}, one(4000, 18), "power output")
    add("power_mag_exp_1", {"fft_length": 512, "sequence_stride": 128, "power_to_db": False, "mag_exp": 1.0, "num_mel_bins": 64}, one(4000, 19), "magnitude output")
    add(
        "power_mag_exp_0.5_batch",
        {"fft_length": 400, "sequence_stride": 100, "power_to_db": False, "mag_exp": 0.5, "num_mel_bins": 40},
        {"shape": [2, 3000], "dtype": "float32", "items": [mix(3000, 20), mix(3000, 21, gain_db=-30.0)]},
        "mag_exp 0.5 without dB, batch",
    )
    # ref_power, min_power.
    add("ref_power_10", {"fft_length": 512, "sequence_stride": 128, "ref_power": 10.0, "num_mel_bins": 64}, one(4000, 22), "")
    add("ref_power_negative", {"fft_length": 512, "sequence_stride": 128, "ref_power": -2.5, "num_mel_bins": 64}, one(4000, 23), "|ref_power| is used")
    add(
        "ref_power_below_min_power",
        {"fft_length": 512, "sequence_stride": 128, "ref_power": 1e-12, "num_mel_bins": 64},
        one(4000, 24),
        "ref_power clamped to min_power: +100 dB",
    )
    add(
        "min_power_1e-6_quiet_tail",
        {"fft_length": 512, "sequence_stride": 128, "min_power": 1e-6, "top_db": 200.0, "num_mel_bins": 64},
        one(4000, 25, noise=0.0, tail=[0.5, -120.0]),
        "floor at min_power visible (top_db 200)",
    )
    # top_db.
    add("top_db_20", {"fft_length": 512, "sequence_stride": 128, "top_db": 20.0, "num_mel_bins": 64}, one(4000, 26), "")
    add("top_db_0", {"fft_length": 512, "sequence_stride": 128, "top_db": 0.0, "num_mel_bins": 64}, one(4000, 27), "everything clipped to the maximum")
    add(
        "top_db_120_quiet_tail",
        {"fft_length": 512, "sequence_stride": 128, "top_db": 120.0, "num_mel_bins": 64},
        one(4000, 28, noise=1e-3, tail=[0.5, -70.0]),
        "values more than 80 dB below the max (looser tolerance there)",
    )
    add(
        "top_db_1000_floor",
        {"fft_length": 256, "sequence_stride": 64, "top_db": 1000.0, "num_mel_bins": 32},
        one(3000, 29, noise=3e-4, tail=[0.6, -200.0], gain_db=-40.0),
        "no effective clipping: the min_power floor (-100 dB) shows; levels chosen so that nothing above the "
        "floor is more than ~90 dB below the max (float32 FFT rounding makes values ~120 dB down unreproducible)",
    )
    # min_freq / max_freq.
    add("min_freq_0_max_8000", {"fft_length": 512, "sequence_stride": 128, "min_freq": 0.0, "max_freq": 8000.0, "num_mel_bins": 64}, one(4000, 30), "")
    add("telephone_300_3400", {"fft_length": 512, "sequence_stride": 128, "min_freq": 300.0, "max_freq": 3400.0, "num_mel_bins": 40}, one(4000, 31), "")
    add(
        "max_freq_above_nyquist",
        {"fft_length": 512, "sequence_stride": 128, "max_freq": 12000.0, "num_mel_bins": 64},
        one(4000, 32),
        "max_freq 12 kHz at sr 16 kHz: top bands lie above Nyquist and are empty (Keras silent)",
    )
    add(
        "max_freq_0_sr_11025",
        {"fft_length": 512, "sequence_stride": 128, "sampling_rate": 11025, "max_freq": 0, "num_mel_bins": 48},
        one(3000, 33, tones=((300.0, 0.5), (2000.0, 0.3)), chirp=(50.0, 5000.0, 0.2)),
        "max_freq=0 means the default int(11025 / 2) = 5512 (not 5512.5)",
    )
    add(
        "max_freq_none_sr_11025",
        {"fft_length": 512, "sequence_stride": 128, "sampling_rate": 11025, "max_freq": None, "num_mel_bins": 48},
        one(3000, 33, tones=((300.0, 0.5), (2000.0, 0.3)), chirp=(50.0, 5000.0, 0.2)),
        "max_freq=None: same as max_freq=0",
    )
    add(
        "sr_22050",
        {"fft_length": 1024, "sequence_stride": 256, "sampling_rate": 22050, "num_mel_bins": 80, "min_freq": 30.0, "max_freq": 9000.0},
        one(6000, 34, tones=((220.0, 0.4), (5000.0, 0.2)), chirp=(100.0, 10000.0, 0.2)),
        "",
    )
    add(
        "sr_8000",
        {"fft_length": 256, "sequence_stride": 80, "sampling_rate": 8000, "num_mel_bins": 40},
        one(2000, 35, tones=((300.0, 0.4), (1000.0, 0.2)), chirp=(50.0, 3800.0, 0.2)),
        "",
    )
    add(
        "sr_44100_chirp",
        {"sampling_rate": 44100},
        {"shape": [11025], "dtype": "float32", "items": [{"n": 11025, "seed": 36, "chirp": [50.0, 20000.0, 0.5], "noise": 0.001}]},
        "defaults at 44.1 kHz, 0.25 s chirp",
    )
    add("mel_bins_1", {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 1}, one(2000, 37), "a single band")
    add(
        "empty_bands_fft_256_mels_128",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 128},
        one(2000, 38),
        "many low bands contain no FFT bin: all-zero rows (Keras silent, arraymel warns)",
    )
    # Strides.
    add("stride_1", {"fft_length": 64, "sequence_stride": 1, "num_mel_bins": 16}, one(200, 39), "201 frames")
    add("stride_300_gt_fft_256", {"fft_length": 256, "sequence_stride": 300, "num_mel_bins": 32}, one(3000, 40), "hop longer than the frame")
    # Short inputs (reflect padding repeats).
    add("input_1_sample", {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 32}, {"shape": [1], "dtype": "float32", "items": [{"n": 1, "const": 0.7}]}, "padded input is constant")
    add(
        "input_3_samples",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 32},
        {"shape": [3], "dtype": "float32", "items": [{"n": 3, "seed": 41, "noise": 1.0}]},
        "reflect padding repeats many times",
    )
    add(
        "input_half_fft_256_of_512",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 32},
        one(256, 42),
        "samples == fft_length // 2: pad equals length, np.pad reflects twice",
    )
    add(
        "input_half_fft_255_of_511",
        {"fft_length": 511, "sequence_stride": 100, "num_mel_bins": 32},
        one(255, 43),
        "odd fft, samples == fft_length // 2",
    )
    add(
        "input_2d_5_samples",
        {"fft_length": 64, "sequence_stride": 16, "num_mel_bins": 8},
        {"shape": [3, 5], "dtype": "float32", "items": [{"n": 5, "seed": 44 + i, "noise": 1.0} for i in range(3)]},
        "2-D batch of 5-sample rows",
    )
    # Ranks.
    add(
        "input_3d_2x3",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 40},
        {"shape": [2, 3, 2000], "dtype": "float32", "items": [mix(2000, 50 + i, gain_db=-12.0 * i) for i in range(6)]},
        "3-D input (2, 3, 2000), batch scope: Keras fed the flattened (6, 2000) batch, reshaped back",
    )
    # dtypes.
    add(
        "int16_input",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 64},
        {**one(4000, 60), "dtype": "int16", "int_scale": 12000.0},
        "int16 cast to float32 without scaling (values up to ~12000)",
    )
    add(
        "int16_input_power",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 32, "power_to_db": False},
        {**one(2000, 61), "dtype": "int16", "int_scale": 3000.0},
        "int16 without scaling, power output",
    )
    add(
        "float64_input_float32_layer",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 64},
        one(4000, 62, dtype="float64"),
        "Keras casts float64 input to float32 and returns float32; arraymel computes and returns float64",
    )
    add(
        "float64_layer",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 64, "top_db": 120.0},
        one(4000, 63, dtype="float64"),
        "Keras layer dtype='float64': output dtype float64, but Keras 3.15's NumPy backend still computes in float32 "
        "(convert_to_tensor without a dtype inside stft demotes float64 to float32; the filterbank is float32 too), "
        "so the values are float32 values; arraymel computes in float64",
        keras_dtype="float64",
    )
    # Batches with different levels.
    add(
        "batch_60db_apart",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 64},
        {"shape": [2, 4000], "dtype": "float32", "items": [mix(4000, 70), mix(4000, 71, gain_db=-60.0)]},
        "item 1 is 60 dB below item 0; one top_db maximum over the batch (Keras)",
    )
    add(
        "batch_60db_apart_top_db_40",
        {"fft_length": 512, "sequence_stride": 128, "num_mel_bins": 64, "top_db": 40.0},
        {"shape": [2, 4000], "dtype": "float32", "items": [mix(4000, 72), mix(4000, 73, gain_db=-60.0)]},
        "the quiet item is clipped to a constant by the loud one's maximum (Keras batch scope)",
    )
    # Speech.
    add(
        "speech_fft400_hop160_mels80",
        {"fft_length": 400, "sequence_stride": 160, "num_mel_bins": 80, "sampling_rate": 16000},
        {"shape": [2, 8000], "dtype": "float32", "items": [mix(8000, 80, tones=((150.0, 0.3), (300.0, 0.2), (450.0, 0.1), (2500.0, 0.05)), chirp=(200.0, 4000.0, 0.1), noise=0.005), mix(8000, 81, gain_db=-20.0)]},
        "speech configuration, 0.5 s",
    )
    # Special values.
    add("zeros_input", {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 32}, {"shape": [2, 1000], "dtype": "float32", "items": [{"n": 1000, "const": 0.0}] * 2}, "all -100 dB")
    add(
        "dc_offset",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 32, "min_freq": 0.0},
        one(2000, 82, dc=0.8),
        "DC row of the filterbank is zero even with min_freq 0",
    )
    add(
        "nan_input_power",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 32, "power_to_db": False},
        {"shape": [2, 2000], "dtype": "float32", "items": [mix(2000, 83, nan_at=1000), mix(2000, 84)]},
        "NaN reaches every mel bin of the frames containing it (NaN * 0 in the matmul), nothing else",
    )
    add(
        "nan_input_db_batch",
        {"fft_length": 256, "sequence_stride": 64, "num_mel_bins": 32},
        {"shape": [2, 2000], "dtype": "float32", "items": [mix(2000, 85, nan_at=1000), mix(2000, 86)]},
        "Keras quirk: the batch maximum is NaN, so top_db makes the whole output NaN",
    )
    return C


def window_array(kind: str, n: int) -> np.ndarray:
    if kind == "kaiser":
        return np.kaiser(n, 8.0)
    if kind == "asym":
        i = np.arange(n)
        return np.sin(np.pi * (i + 0.5) / n) * (0.5 + 0.5 * i / (n - 1))
    raise ValueError(kind)


# --------------------------------------------------------------------------- keras
def keras_layer(params: dict, window, layer_dtype):
    import keras

    kw = dict(params)
    if window is not None:
        kw["window"] = window
    if layer_dtype:
        kw["dtype"] = layer_dtype
    return keras.layers.MelSpectrogram(**kw)


def run_keras(params: dict, x: np.ndarray, window=None, layer_dtype=None) -> np.ndarray:
    """Keras's output; inputs of rank > 2 go in as the flattened 2-D batch and are reshaped back."""
    layer = keras_layer(params, window, layer_dtype)
    if x.ndim <= 2:
        return np.asarray(layer(x))
    y2 = np.asarray(layer(x.reshape(-1, x.shape[-1])))
    y = y2.reshape(x.shape[:-1] + y2.shape[-2:])
    direct = np.asarray(layer(x))  # the NumPy backend takes 3-D directly; it must agree
    assert direct.shape == y.shape and np.array_equal(direct, y, equal_nan=True), "3-D direct != flattened"
    return y


def keras_empty_bands(params: dict) -> list[int]:
    """Indices of all-zero columns of Keras's own (float32) filterbank."""
    layer = keras_layer(params, None, None)
    m = np.asarray(
        layer.linear_to_mel_weight_matrix(
            num_mel_bins=layer.num_mel_bins,
            num_spectrogram_bins=layer.fft_length // 2 + 1,
            sampling_rate=layer.sampling_rate,
            lower_edge_hertz=layer.min_freq,
            upper_edge_hertz=layer.max_freq,
        )
    )
    return [int(i) for i in np.flatnonzero(~np.any(m > 0, axis=0))]


def oracle_vs_keras(params: dict, x: np.ndarray, y: np.ndarray, window) -> dict:
    """How far the float64 evaluation of docs/semantics.md (tests/oracle.py) is from Keras, for the record."""
    sys.path.insert(0, str(HERE.parent))
    import oracle

    kw = dict(params)
    if window is not None:
        kw["window"] = window
    o = oracle.mel_spectrogram(x, **kw)
    y = y.astype(np.float64)
    assert o.shape == y.shape, (o.shape, y.shape)
    nan_equal = bool(np.array_equal(np.isnan(o), np.isnan(y)))
    finite = ~np.isnan(y)
    if not finite.any():
        return {"nan_positions_equal": nan_equal, "all_nan": True}
    diff = np.where(finite, np.abs(o - y), 0.0)
    if params.get("power_to_db", True):
        near = finite & (y >= np.max(y[finite]) - 80.0)
        far = finite & ~near
        return {
            "nan_positions_equal": nan_equal,
            "max_db_within_80": float(diff[near].max()) if near.any() else 0.0,
            "max_db_below_80": float(diff[far].max()) if far.any() else 0.0,
            "db_range": [float(np.min(y[finite])), float(np.max(y[finite]))],
        }
    scale = np.max(np.abs(y[finite]))
    tol = 1e-4 * np.abs(y) + 1e-6 * scale
    return {
        "nan_positions_equal": nan_equal,
        "max_rel_diff": float(np.max(np.where(finite, diff / (np.abs(y) + 1e-6 * scale), 0.0))),
        "worst_excess_over_spec_tol": float(np.max(np.where(finite, diff - tol, -np.inf))),
    }


def generate() -> tuple[dict, dict]:
    import jax
    import keras
    import scipy

    assert keras.backend.backend() == "numpy", "run with KERAS_BACKEND=numpy"
    arrays: dict[str, np.ndarray] = {}
    out_cases = []
    for case in build_cases():
        name, params = case["name"], case["params"]
        sr = params.get("sampling_rate", 16000)
        x = make_input(case["input"], sr)
        win = None
        if case["window_array"]:
            win = window_array(*case["window_array"])
            arrays[f"{name}__window"] = win
        y = run_keras(params, x, win, case["keras_layer_dtype"])
        arrays[f"{name}__x"] = x
        arrays[f"{name}__y"] = y
        json_params = dict(params)
        if win is not None:
            json_params["window"] = {"array": f"{name}__window", "recipe": list(case["window_array"])}
        out_cases.append(
            {
                "name": name,
                "params": json_params,
                "input": {
                    "shape": list(x.shape),
                    "dtype": str(x.dtype),
                    "recipe": case["input"],
                },
                "keras_layer_dtype": case["keras_layer_dtype"] or "float32",
                "keras_output": {"shape": list(y.shape), "dtype": str(y.dtype)},
                "arraymel_dtype": "float64" if x.dtype == np.float64 else "float32",
                "keras_empty_bands": keras_empty_bands(params),
                "oracle_vs_keras": oracle_vs_keras(params, x, y, win),
                "note": case["note"],
            }
        )
    meta = {
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "jax_version": jax.__version__,
        "jax_note": "imported by keras's NumPy backend at import time only; the layer's computation is NumPy + scipy",
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "python": sys.version.split()[0],
        "generated_by": "tests/keras_goldens/generate.py",
        "input_recipe": INPUT_RECIPE,
        "three_d_note": (
            "Inputs of rank > 2 were fed to Keras as the 2-D batch with leading dims flattened and the output "
            "reshaped back, so the top_db maximum is over the whole input (Keras's batch scope); Keras 3.15's "
            "NumPy backend accepts them directly with an identical result (asserted at generation)."
        ),
        "excluded": "top_db=None (Keras TypeError), min_freq >= max_freq (Keras constant -100 dB), compute_output_shape: docs/semantics.md differs there on purpose",
        "cases": out_cases,
    }
    return meta, arrays


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with the stored goldens")
    args = ap.parse_args(argv)
    meta, arrays = generate()
    if args.check:
        stored = np.load(NPZ)
        bad = 0
        for k, v in arrays.items():
            s = stored[k]
            same = s.shape == v.shape and s.dtype == v.dtype and np.array_equal(s, v, equal_nan=True)
            if not same:
                bad += 1
                print(f"DIFFERS: {k}")
        missing = set(stored.files) - set(arrays)
        for k in sorted(missing):
            print(f"STALE: {k}")
        print(f"{len(arrays)} arrays checked, {bad} differ, {len(missing)} stale")
        return 1 if bad or missing else 0
    np.savez_compressed(NPZ, **arrays)
    CASES_JSON.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(meta['cases'])} cases -> {NPZ} ({NPZ.stat().st_size / 1e6:.2f} MB), {CASES_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
