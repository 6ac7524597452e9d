"""The presets against the live reference libraries (transformers' Whisper and Parakeet feature extractors,
librosa, kaldi-native-fbank; all in the test extra), on the NumPy and the generic path.

Tolerance (docs/semantics.md's, in each output's own units): at most 1e-3 over the values within 60 dB (power) of
the reference's maximum; for NeMo's normalised features, over every value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from presets_signal import speechlike

import arraymel
import arraymel.presets as presets

BACKENDS = ("numpy", "generic")
TOL = 1e-3
#: 60 dB of power in each output's units.
SPAN_60DB = {"whisper": 6.0 / 4.0, "librosa": 60.0, "torchaudio": 60.0, "kaldi": 6.0 * math.log(10.0)}


def assert_close_top(name: str, ours: np.ndarray, ref: np.ndarray, span: float | None, tol: float = TOL) -> None:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    keep = np.ones(ref.shape, bool) if span is None else ref >= ref.max() - span
    worst = float(np.abs(ours - ref)[keep].max())
    assert worst <= tol, f"{name}: max |arraymel - reference| = {worst:.3g} > {tol} (in its units)"


@pytest.fixture(scope="module")
def x16() -> np.ndarray:
    return speechlike(3 * 16000 + 77, 16000)


# ----------------------------------------------------------------------------------------------- whisper
@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("backend", BACKENDS)
def test_whisper_matches_transformers(x16, n_mels, backend):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels)  # built from parameters: nothing is downloaded
    padded = fe(x16, sampling_rate=16000, return_tensors="np").input_features[0]
    assert_close_top("whisper 30 s", presets.whisper(n_mels, pad_or_trim=True)(x16, backend=backend), padded,
                     SPAN_60DB["whisper"])
    longest = fe(x16, sampling_rate=16000, return_tensors="np", padding="longest").input_features[0]
    assert_close_top("whisper", presets.whisper(n_mels)(x16, backend=backend), longest, SPAN_60DB["whisper"])


def test_whisper_max_is_taken_after_the_last_frame_is_dropped():
    """A burst in the last frame only: openai-whisper drops that frame before ``max - 8``, so the rest keeps its floor."""
    x = np.zeros(16000, np.float32)
    x[100:15900] = 1e-4 * np.sin(np.arange(15800) * 0.3)
    x[-5:] = 1.0  # reaches only the last frame (centred at sample 16000)
    out = presets.whisper()(x)
    assert out.shape == (80, 100)
    from transformers import WhisperFeatureExtractor

    ref = WhisperFeatureExtractor().__call__(x, sampling_rate=16000, return_tensors="np",
                                              padding="longest").input_features[0]
    assert_close_top("whisper, loud last frame", out, ref, None)


def test_whisper_batched_equals_per_clip(x16):
    batch = np.stack([x16, 0.01 * x16[::-1].copy()])
    out = presets.whisper()(batch)
    for i in range(2):
        np.testing.assert_array_equal(out[i], presets.whisper()(batch[i]))
    assert presets.whisper().n_frames(x16.shape[-1]) == out.shape[-1]
    assert presets.whisper(pad_or_trim=True).n_frames(123) == 3000


# ----------------------------------------------------------------------------------------------- librosa
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [{}, {"htk": True, "norm": None}, {"pad_mode": "reflect", "n_mels": 64, "fmax": 8000.0}],
                         ids=["defaults", "htk-nonorm", "reflect"])
def test_librosa_matches_librosa(options, backend):
    import librosa

    x = speechlike(22050 + 313, 22050, seed=1)
    lib = {k: v for k, v in options.items()}
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=22050, **lib), ref=1.0, amin=1e-10, top_db=80.0)
    assert_close_top(f"librosa {options}", presets.librosa(**options)(x, backend=backend), ref, SPAN_60DB["librosa"])


@pytest.mark.parametrize("n_fft", [256, 512, 1024, 2048, 4096])
def test_librosa_default_hop_is_512_for_every_n_fft(n_fft):
    """librosa.feature.melspectrogram's hop_length defaults to 512 whatever n_fft (not n_fft // 4)."""
    import librosa

    x = speechlike(2 * 22050, 22050, seed=2)
    ref = librosa.feature.melspectrogram(y=x, sr=22050, n_fft=n_fft, n_mels=40)
    preset = presets.librosa(n_fft=n_fft, n_mels=40, db=False)
    ours = preset(x)
    assert ours.shape == ref.shape and preset.n_frames(x.shape[-1]) == ref.shape[-1]
    assert preset.options["hop_length"] == 512
    assert_close_top(f"librosa n_fft={n_fft}", 10 * np.log10(np.maximum(ours, 1e-10)),
                     10 * np.log10(np.maximum(ref, 1e-10)), SPAN_60DB["librosa"])


def test_librosa_filterbanks_are_librosas():
    import librosa

    for htk in (False, True):
        for norm in ("slaney", None):
            ours = arraymel.mel_filterbank(num_mel_bins=40, fft_length=512, sampling_rate=16000, min_freq=0.0,
                                           max_freq=8000.0, filterbank="librosa" + ("-htk" if htk else "") +
                                           ("" if norm else "-nonorm"))
            ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, htk=htk, norm=norm, dtype=np.float64).T
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------- torchaudio
@pytest.mark.filterwarnings("ignore:.*receive no FFT bin", "ignore:Empty filters detected")
def test_torchaudio_is_librosa_htk_without_norm_reflect_padded(x16):
    """No torchaudio in the test extra: its MelSpectrogram defaults are librosa's HTK filterbank without norm
    (the same formula as ``melscale_fbanks``), reflect-padded periodic Hann 400 / hop 200, and AmplitudeToDB's
    ``10 log10(clamp(1e-10))`` without clipping (goldens of real torchaudio: tests/presets_goldens/)."""
    import librosa

    S = librosa.feature.melspectrogram(y=x16, sr=16000, n_fft=400, hop_length=200, n_mels=128, htk=True, norm=None,
                                       pad_mode="reflect", fmax=8000.0)
    ref = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)
    for backend in BACKENDS:
        assert_close_top("torchaudio", presets.torchaudio()(x16, backend=backend), ref, SPAN_60DB["torchaudio"])


def goldens():
    import pathlib

    return np.load(pathlib.Path(__file__).with_name("presets_goldens") / "goldens.npz")


def golden_input() -> np.ndarray:
    return speechlike(16000 + 77, 16000, seed=5)  # tests/presets_goldens/generate.py's SAMPLES, SEED


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("backend", BACKENDS)
def test_whisper_matches_openai_whisper_goldens(n_mels, backend):
    """openai-whisper's own log_mel_spectrogram (goldens: its install pulls triton), beside transformers' live."""
    ours = presets.whisper(n_mels)(golden_input(), backend=backend)
    assert_close_top("openai-whisper", ours, goldens()[f"whisper{n_mels}"], SPAN_60DB["whisper"])


GOLDEN_CASES = {  # tests/presets_goldens/generate.py's cases as preset options
    "defaults": {},
    "n80_hop160_topdb80": {"n_mels": 80, "hop_length": 160, "top_db": 80.0},
    "n1024_win800": {"n_fft": 1024, "win_length": 800, "n_mels": 64, "f_min": 50.0, "f_max": 7600.0},
}


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_torchaudio_matches_torchaudio_goldens(case, backend):
    ours = presets.torchaudio(**GOLDEN_CASES[case])(golden_input(), backend=backend)
    assert_close_top(f"torchaudio {case}", ours, goldens()[case], SPAN_60DB["torchaudio"])


# ----------------------------------------------------------------------------------------------- kaldi
def kaldi_native(x: np.ndarray, **mel: float) -> np.ndarray:
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    for k, v in mel.items():
        setattr(opts.mel_opts, k, v)
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, x.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)]).T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1.0, 32768.0], ids=["float", "int16-scale"])
def test_kaldi_matches_kaldi_native_fbank(x16, backend, scale):
    x = (x16[: 16000 + 123] * scale).astype(np.float32)
    ref = kaldi_native(x)
    ours = presets.kaldi(num_mel_bins=80)(x, backend=backend)
    assert ours.shape == ref.shape == (80, 1 + (x.shape[-1] - 400) // 160)
    assert_close_top("kaldi", ours, ref, SPAN_60DB["kaldi"])


def test_kaldi_band_edges_and_floor():
    x = speechlike(8000, 16000, seed=3)
    x[2000:4000] = 0.0  # silent frames: every band at the floor, ln(FLT_EPSILON)
    ref = kaldi_native(x, low_freq=100.0, high_freq=-400.0)
    ours = presets.kaldi(num_mel_bins=80, low_freq=100.0, high_freq=-400.0)(x)
    assert_close_top("kaldi low/high", ours, ref, SPAN_60DB["kaldi"])
    floor = math.log(np.finfo(np.float32).eps)  # Kaldi's floor, FLT_EPSILON
    assert np.isclose(ref.min(), floor, rtol=0, atol=1e-5) and np.isclose(ours.min(), floor, rtol=0, atol=1e-5)


def test_kaldi_short_signal_is_an_error():
    with pytest.raises(ValueError, match="frame_length_ms=25 ms = 400 samples"):
        presets.kaldi()(np.zeros(399, np.float32))


# ----------------------------------------------------------------------------------------------- nemo
@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nemo_matches_parakeet_feature_extractor(x16, n_mels, backend):
    from transformers import ParakeetFeatureExtractor

    fe = ParakeetFeatureExtractor(feature_size=n_mels)
    ref = fe(x16, sampling_rate=16000, return_tensors="np").input_features[0].T
    assert_close_top("nemo", presets.nemo(n_mels)(x16, backend=backend), ref, None)


# ----------------------------------------------------------------------------------------------- the API
def test_nemo_short_signal_is_an_error():
    presets.nemo()(np.ones(320, np.float32))  # two valid frames: fine
    with pytest.raises(ValueError, match="at least 320 samples"):
        presets.nemo()(np.ones(319, np.float32))


def test_presets_take_torch_tensors_and_keep_their_kind(x16):
    import torch

    for name in presets.PRESETS:
        out = presets.get(name)(torch.from_numpy(x16[:8000]))
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), presets.get(name)(x16[:8000]), rtol=0, atol=1e-4)


def test_presets_pickle(x16):
    """DataLoader workers and Dask ship a preset to other processes."""
    import pickle

    for name in presets.PRESETS:
        p = presets.get(name)
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(p))(x16[:4000]), p(x16[:4000]))


def test_get_and_errors():
    assert presets.get("kaldi", num_mel_bins=40).config.num_mel_bins == 40
    with pytest.raises(ValueError, match="preset='mfcc'"):
        presets.get("mfcc")
    with pytest.raises(ValueError, match="n_mels=0"):
        presets.whisper(0)
    with pytest.raises(ValueError, match="pad_mode='edge'"):
        arraymel.MelConfig.create(pad_mode="edge")
    with pytest.raises(ValueError, match="frame_step='htk'"):
        arraymel.MelConfig.create(frame_step="htk")
    # the step works on the frame's first sequence_length samples: with centring the window is elsewhere
    with pytest.raises(ValueError, match=r"frame_step='kaldi' with center=True is not allowed.*center=False"):
        arraymel.MelSpectrogram(frame_step="kaldi", sequence_length=400, fft_length=512, window=None)
    assert "whisper(n_mels=80" in repr(presets.whisper())
    with pytest.raises(ValueError, match=r"arraymel.presets.librosa: num_mel_bins=0 .* \(n_mels -> num_mel_bins\)"):
        presets.librosa(n_mels=0)
    with pytest.raises(ValueError, match=r"low_freq=-1 .*Kaldi needs 0 <= low_freq"):
        presets.kaldi(low_freq=-1.0)


def test_preset_configs_are_not_keras_configs():
    mel = arraymel.MelSpectrogram(**{k: v for k, v in presets.librosa().config.given.items()})
    with pytest.raises(ValueError, match="filterbank='librosa'"):
        mel.to_keras_config()


# ----------------------------------------------------------------------------------------------- arraymel bench
@pytest.mark.parametrize("name", ["whisper", "kaldi"])
def test_bench_runs_a_preset_against_its_reference(name):
    from arraymel.bench.run import run_benchmark

    doc = run_benchmark(device_specs=["cpu"], peer_names=["preset-reference", "librosa"], configs=[name], batches=[2],
                        seconds=1.0, repeat=1, measure_memory=False)
    rows = {r["library"]: r for r in doc["results"]}
    assert set(rows) == {"arraymel", "preset-reference"}
    assert rows["arraymel"]["frames"] == presets.get(name).n_frames(16000)
    # agreement is over every value (also the floor, where float32 FFTs differ most): a loose bound that
    # still fails for a wrong preset (a different log rule or filterbank is off by > 0.1)
    agreement = rows["preset-reference"]["agreement"]
    assert agreement["unit"] == "output" and agreement["value"] < 0.01
    skipped = {s["library"]: s["reason"] for s in doc["skipped"]}
    assert f"not the {name} preset's" in skipped["librosa"]


# ----------------------------------------------------------------------------------------------- the frame step
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("window", [None, "hamming"])  # non-zero at sample 0, unlike povey: y[0] is seen
def test_kaldi_frame_step_against_a_float64_evaluation(backend, window):
    """center=False + frame_step="kaldi" against the steps written out in float64 here."""
    from arraymel.core.filterbank import kaldi_filterbank_host
    from arraymel.core.windows import periodic_window
    from arraymel.functional import compute

    fft, seq, hop, mels = 64, 50, 20, 8
    cfg = arraymel.MelConfig.create(fft_length=fft, sequence_length=seq, sequence_stride=hop, window=window,
                                    num_mel_bins=mels, sampling_rate=8000, min_freq=100.0, power_to_db=False,
                                    filterbank="kaldi", center=False, frame_step="kaldi")
    x = np.random.default_rng(4).standard_normal((2, 333)) + 0.5  # a DC offset for the mean removal to remove
    frames = 1 + (333 - seq) // hop
    fr = np.stack([x[:, t * hop : t * hop + seq] for t in range(frames)], axis=1)
    d = fr - fr.mean(axis=-1, keepdims=True)
    y = np.concatenate([0.03 * d[..., :1], d[..., 1:] - 0.97 * d[..., :-1]], axis=-1)
    if window is not None:
        y = y * periodic_window(window, seq)
    power = np.abs(np.fft.rfft(y, n=fft, axis=-1)) ** 2
    ref = np.swapaxes(power @ kaldi_filterbank_host(mels, fft, 8000.0, 100.0, 4000.0), -1, -2)
    out = compute(x, cfg, backend=backend)
    assert out.shape == ref.shape == (2, mels, frames)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12 * ref.max())
