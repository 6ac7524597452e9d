"""Each preset's options against its live reference, option by option (librosa, kaldi-native-fbank, transformers'
Whisper and Parakeet extractors; torchaudio and openai-whisper from goldens of the real libraries,
tests/presets_goldens/generate_options.py), on the NumPy path, the generic path and torch input; the defaults
against the references' own signatures; the inputs and options the references refuse.

Tolerance as tests/test_presets.py: 1e-3 in the output's units over the values within 60 dB (power) of the
reference's maximum (NeMo's normalised features: every value).
"""

from __future__ import annotations

import inspect
import json
import math
import pathlib

import numpy as np
import pytest
from presets_signal import speechlike
from test_presets import SPAN_60DB, assert_close_top

import arraymel.presets as presets

BACKENDS = ("numpy", "generic")
#: The bound of arraymel against real torchaudio (float32 goldens): torchaudio evaluates its filterbank and its
#: window in float32, up to 1.3e-3 dB from the float64 evaluation on these clips (measured here, against
#: torchaudio_float64); arraymel is held to 1e-3 of that float64 evaluation.
TORCHAUDIO_TOL = 2e-3
LN_60DB = 6.0 * math.log(10.0)


def options_goldens():
    return np.load(pathlib.Path(__file__).with_name("presets_goldens") / "options.npz")


def grid(cases, on_torch):
    """``(case, backend)`` for every case on the NumPy and generic paths, and the ``on_torch`` ones on torch input
    (a subset: torch input runs the NumPy path through DLPack, so it adds the steps' torch namespace only)."""
    return [(c, b) for c in cases for b in BACKENDS] + [(c, "torch") for c in on_torch]


def run(preset, x, backend):
    if backend == "torch":
        import torch

        out = preset(torch.from_numpy(np.ascontiguousarray(x)))
        assert isinstance(out, torch.Tensor)
        return out.numpy()
    return preset(x, backend=backend)


# ----------------------------------------------------------------------------------------------- librosa
def _hann_callable(n):
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


LIBROSA = {
    "defaults": {},
    "power": {"db": False},
    "ref_max": {"ref": np.max},
    "ref_callable": {"ref": np.median, "top_db": None},
    "norm1": {"norm": 1.0},
    "norm2": {"norm": 2},
    "norm_inf": {"norm": np.inf},
    "norm_inf_power": {"norm": np.inf, "db": False},
    "hamming": {"window": "hamming"},
    "blackman": {"window": "blackman"},
    "kaiser": {"window": ("kaiser", 8.0)},
    "window_callable": {"window": _hann_callable},
    "window_array": {"window": np.hanning(2048)},
    "edge": {"pad_mode": "edge"},
    "reflect": {"pad_mode": "reflect"},
    "symmetric": {"pad_mode": "symmetric"},
    "linear_ramp": {"pad_mode": "linear_ramp"},
    "no_center": {"center": False},
    "no_center_win": {"center": False, "win_length": 1000},
    "win_length": {"win_length": 1000, "pad_mode": "edge"},
    "float64": {"dtype": np.float64},
    "magnitude": {"power": 1.0},
    "htk_nonorm": {"htk": True, "norm": None},
    "sizes": {"n_fft": 1024, "hop_length": 256, "n_mels": 64, "fmin": 100.0, "fmax": 8000.0},
    "ref_amin_topdb": {"top_db": None, "amin": 1e-5, "ref": 2.0},
}
_DB_KEYS = ("ref", "amin", "top_db")


def librosa_reference(x, opts):
    import librosa

    mel = {k: v for k, v in opts.items() if k not in (*_DB_KEYS, "db")}
    S = librosa.feature.melspectrogram(y=x, sr=22050, **mel)
    if opts.get("db", True) is False:
        return S
    return librosa.power_to_db(S, **{k: v for k, v in opts.items() if k in _DB_KEYS})


def _as_db(a):
    return 10 * np.log10(np.maximum(np.asarray(a, np.float64), 1e-10))


@pytest.fixture(scope="module")
def x22():
    return speechlike(11025 + 313, 22050, seed=1)


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin", "ignore:Empty filters detected")
@pytest.mark.parametrize("case, backend", grid(LIBROSA, ("defaults", "ref_max", "norm2", "edge", "no_center_win", "power")))
def test_librosa_options(x22, case, backend):
    opts = LIBROSA[case]
    ref = librosa_reference(x22, opts)
    ours = run(presets.librosa(sr=22050, **opts), x22, backend)
    if opts.get("db", True) is False:
        ours, ref = _as_db(ours), _as_db(ref)
    assert ours.dtype == ref.dtype or backend == "torch", (ours.dtype, ref.dtype)
    span = SPAN_60DB["librosa"] * opts.get("power", 2.0) / 2.0  # 60 dB of power in |X| ** power's decibels
    assert_close_top(f"librosa {case}", ours, ref, span)


@pytest.mark.parametrize("opts", [{}, {"n_mels": 40, "ref": np.max}, {"norm": 2.0, "db": False}])
def test_librosa_precomputed_spectrogram(x22, opts):
    import librosa

    S = np.abs(librosa.stft(x22, n_fft=1024, hop_length=256)) ** 2  # n_fft is inferred from S, as librosa does
    ref = librosa.feature.melspectrogram(S=S, sr=22050, **{k: v for k, v in opts.items() if k not in (*_DB_KEYS, "db")})
    if opts.get("db", True):
        ref = librosa.power_to_db(ref, **{k: v for k, v in opts.items() if k in _DB_KEYS})
    ours = presets.librosa(sr=22050, **opts)(S=S)
    if not opts.get("db", True):
        ours, ref = _as_db(ours), _as_db(ref)
    assert_close_top("librosa S=", ours, ref, SPAN_60DB["librosa"])


def test_librosa_batch_with_ref_max_is_per_clip(x22):
    batch = np.stack([x22, 0.01 * x22])
    out = presets.librosa(ref=np.max)(batch)
    for i in range(2):
        assert_close_top("batch", out[i], librosa_reference(batch[i], {"ref": np.max}), SPAN_60DB["librosa"])


def test_librosa_batch_scope_with_a_numeric_norm_clips_the_batch_as_one_array(x22):
    """top_db_scope="batch": librosa on a 2-D array (one maximum for the batch), also where the preset takes the dB."""
    import librosa

    batch = np.stack([x22, 1e-4 * x22])
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=batch, sr=22050, norm=2.0))
    ours = presets.librosa(norm=2.0, top_db_scope="batch")(batch)
    assert_close_top("batch scope", ours, ref, SPAN_60DB["librosa"])
    assert float(ours[1].min()) == pytest.approx(float(ours.max()) - 80.0, abs=1e-3)


@pytest.mark.parametrize("bad, error", [
    (np.zeros(4096, np.int16), TypeError), (np.full(4096, np.nan, np.float32), ValueError),
    (np.r_[np.zeros(4095, np.float32), np.inf], ValueError)], ids=["int16", "nan", "inf"])
def test_librosa_refuses_what_librosa_refuses(bad, error):
    import librosa

    with pytest.raises(librosa.ParameterError):
        librosa.feature.melspectrogram(y=bad, sr=22050)
    with pytest.raises(error, match="arraymel.presets.librosa: x "):
        presets.librosa()(bad)


def test_librosa_center_false_needs_a_frame():
    import librosa

    with pytest.raises(librosa.ParameterError):
        librosa.feature.melspectrogram(y=np.zeros(1000, np.float32), sr=22050, center=False)
    with pytest.raises(ValueError, match="n_fft=2048"):
        presets.librosa(center=False)(np.zeros(1000, np.float32))


# ----------------------------------------------------------------------------------------------- torchaudio
TORCHAUDIO = {  # tests/presets_goldens/generate_options.py's cases as preset options
    "slaney_slaney": {"norm": "slaney", "mel_scale": "slaney"},
    "slaney_htk": {"norm": "slaney", "mel_scale": "htk"},
    "none_slaney": {"norm": None, "mel_scale": "slaney", "n_mels": 64},
    "hamming": {"window_fn": "hamming_window"},
    "blackman": {"window_fn": "blackman_window"},
    "kaiser": {"window_fn": "kaiser_window", "wkwargs": {"periodic": True, "beta": 8.0}},
    "pad": {"pad": 50},
    "no_center": {"center": False},
    "constant": {"pad_mode": "constant"},
    "replicate": {"pad_mode": "replicate"},
    "circular": {"pad_mode": "circular"},
    "normalized": {"normalized": True},
    "frame_length": {"normalized": "frame_length"},
    "magnitude": {"power": 1.0, "stype": "magnitude"},
    "power_only": {"db": False},
    "top_db": {"n_mels": 80, "top_db": 60.0},
    "win300": {"n_fft": 512, "win_length": 300, "hop_length": 128, "n_mels": 40},
    "no_center_win300": {"n_fft": 512, "win_length": 300, "hop_length": 128, "n_mels": 40, "center": False},
}


def torchaudio_float64(x, opts):
    """torchaudio's MelSpectrogram (+ AmplitudeToDB) as its source computes it, in float64: torch.stft with the
    same window, padding and normalisation, and ``melscale_fbanks``'s filterbank (librosa's formula, evaluated
    in float64 by librosa)."""
    import librosa
    import torch

    o = {"sample_rate": 16000, "n_fft": 400, "win_length": None, "hop_length": None, "f_min": 0.0, "f_max": None,
         "pad": 0, "n_mels": 128, "window_fn": torch.hann_window, "power": 2.0, "normalized": False,
         "wkwargs": None, "center": True, "pad_mode": "reflect", "norm": None, "mel_scale": "htk", "db": True,
         "stype": "power", "top_db": None, **opts}
    win = o["win_length"] or o["n_fft"]
    hop = o["hop_length"] or win // 2
    w = (o["window_fn"](win, **(o["wkwargs"] or {}))).to(torch.float64)
    t = torch.from_numpy(np.asarray(x, np.float64))
    if o["pad"]:
        t = torch.nn.functional.pad(t, (o["pad"], o["pad"]))
    spec = torch.stft(t, o["n_fft"], hop, win, w, center=o["center"], pad_mode=o["pad_mode"],
                      normalized=o["normalized"] == "frame_length", return_complex=True)
    if o["normalized"] is True or o["normalized"] == "window":
        spec = spec / w.pow(2.0).sum().sqrt()
    power = spec.abs().pow(o["power"]).numpy()
    fb = librosa.filters.mel(sr=o["sample_rate"], n_fft=o["n_fft"], n_mels=o["n_mels"], fmin=o["f_min"],
                             fmax=o["f_max"] if o["f_max"] is not None else o["sample_rate"] // 2,
                             htk=o["mel_scale"] == "htk", norm=o["norm"], dtype=np.float64)
    mel = fb @ power
    if not o["db"]:
        return mel
    out = (10.0 if o["stype"] == "power" else 20.0) * np.log10(np.maximum(mel, 1e-10))
    return out if o["top_db"] is None else np.maximum(out, out.max() - o["top_db"])


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin", "ignore:Empty filters detected")
@pytest.mark.parametrize("case, backend", grid(TORCHAUDIO, ("slaney_slaney", "kaiser", "pad", "replicate", "normalized",
                                                   "magnitude")))
def test_torchaudio_options(case, backend):
    """Against torchaudio's own output (goldens, float32) and against its computation in float64 (1e-3)."""
    import torch

    opts = dict(TORCHAUDIO[case])
    if "window_fn" in opts:
        opts["window_fn"] = getattr(torch, opts["window_fn"])
    x = speechlike(8000 + 77, 16000, seed=5)  # generate_options.py's input
    ref = options_goldens()[f"torchaudio_{case}"]
    exact = torchaudio_float64(x, opts)
    ours = run(presets.torchaudio(**opts), x, backend)
    if case == "power_only":
        ours, ref, exact = _as_db(ours), _as_db(ref), _as_db(exact)
    span = SPAN_60DB["torchaudio"] / (2 if case == "magnitude" else 1)
    assert_close_top(f"torchaudio {case} (float64)", ours, exact, span)
    assert_close_top(f"torchaudio {case}", ours, ref, span, tol=TORCHAUDIO_TOL)


def test_torchaudio_refuses_clips_too_short_to_reflect_pad():
    import torch

    with pytest.raises(RuntimeError):  # torch.stft's own refusal, as MelSpectrogram meets it
        torch.stft(torch.zeros(200), 400, 200, window=torch.hann_window(400), center=True, pad_mode="reflect",
                   return_complex=True)
    with pytest.raises(ValueError, match="x has 200 samples.*at least 201"):
        presets.torchaudio()(np.zeros(200, np.float32))
    assert presets.torchaudio()(np.ones(201, np.float32)).shape == (128, 2)
    assert presets.torchaudio(pad_mode="constant")(np.ones(10, np.float32)).shape == (128, 1)  # zeros: no limit


# ----------------------------------------------------------------------------------------------- whisper
WHISPER = {
    "feature_size_10_4khz": ({"feature_size": 10, "sampling_rate": 4000, "hop_length": 40}, 4000),
    "n_fft_512": ({"feature_size": 64, "n_fft": 512, "hop_length": 128}, 16000),
    "n_mels_128": ({"feature_size": 128}, 16000),
}


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin", "ignore:At least one mel filter")
@pytest.mark.parametrize("case, backend", grid(WHISPER, WHISPER))
def test_whisper_options(case, backend):
    from transformers import WhisperFeatureExtractor

    opts, sr = WHISPER[case]
    x = speechlike(sr + 77, sr, seed=3)
    fe = WhisperFeatureExtractor(**opts)
    ref = fe(x, sampling_rate=sr, return_tensors="np", padding="longest").input_features[0]
    assert_close_top(f"whisper {case}", run(presets.whisper(**opts), x, backend), ref, SPAN_60DB["whisper"])


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin", "ignore:At least one mel filter")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opts, sr", [({}, 16000), ({"feature_size": 10, "sampling_rate": 4000, "hop_length": 40}, 4000)],
                         ids=["16khz", "4khz"])
def test_whisper_pad_or_trim_with_chunk_length(backend, opts, sr):
    from transformers import WhisperFeatureExtractor

    x = speechlike(sr + 77, sr, seed=3)
    fe = WhisperFeatureExtractor(chunk_length=2, **opts)
    for clip in (x, np.tile(x, 3)):  # padded and trimmed
        ref = fe(clip, sampling_rate=sr, return_tensors="np").input_features[0]
        ours = presets.whisper(chunk_length=2, pad_or_trim=True, **opts)(clip, backend=backend)
        assert ours.shape == ref.shape == (opts.get("feature_size", 80), 200)
        assert_close_top("whisper chunk_length=2", ours, ref, SPAN_60DB["whisper"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_whisper_padding_matches_openai_whisper(backend):
    x = speechlike(8000 + 77, 16000, seed=5)
    ours = presets.whisper(padding=16000)(x, backend=backend)
    assert_close_top("whisper padding", ours, options_goldens()["whisper_padding"], SPAN_60DB["whisper"])


def test_whisper_refuses_clips_too_short_to_reflect_pad():
    from transformers import WhisperFeatureExtractor

    with pytest.raises(RuntimeError):
        WhisperFeatureExtractor()(np.zeros(200, np.float32), sampling_rate=16000, padding="longest")
    with pytest.raises(ValueError, match="x has 200 samples.*at least 201"):
        presets.whisper()(np.zeros(200, np.float32))
    assert presets.whisper(padding=200)(np.zeros(1, np.float32)).shape == (80, 1)
    assert presets.whisper(pad_or_trim=True)(np.zeros(1, np.float32)).shape == (80, 3000)
    # the extractor's call vocabulary for the same choice
    assert presets.whisper(padding="max_length").options["pad_or_trim"] is True
    assert presets.whisper(padding="longest").options == presets.whisper().options


def test_whisper_dither_statistics_match_transformers():
    """Dither on silence: the features are the noise's; transformers draws torch's unseeded noise, the preset
    NumPy's from its seed (the same each call): the mean feature agrees, not the values."""
    from transformers import WhisperFeatureExtractor

    x = np.zeros(16000, np.float32)
    ref = WhisperFeatureExtractor(dither=0.01)(x, sampling_rate=16000, return_tensors="np",
                                               padding="longest").input_features[0]
    ours = presets.whisper(dither=0.01, seed=1)(x)
    np.testing.assert_array_equal(ours, presets.whisper(dither=0.01, seed=1)(x))
    assert not np.array_equal(ours, presets.whisper(dither=0.01, seed=2)(x))
    assert abs(float(ours[:, 1:-1].mean()) - float(ref[:, 1:-1].mean())) < 0.01, (ours.mean(), ref.mean())


# ----------------------------------------------------------------------------------------------- nemo
NEMO = {
    "feature_size_64": {"feature_size": 64},
    "no_preemphasis": {"preemphasis": None},
    "preemphasis_05": {"preemphasis": 0.5},
    "n_fft_400": {"n_fft": 400, "win_length": 400, "hop_length": 100},
    "n_fft_1024": {"n_fft": 1024, "win_length": 800, "hop_length": 320, "feature_size": 128},
}


@pytest.mark.parametrize("case, backend", grid(NEMO, ("no_preemphasis", "n_fft_1024")))
def test_nemo_options(case, backend):
    from transformers import ParakeetFeatureExtractor

    opts = NEMO[case]
    x = speechlike(16000 + 77, 16000, seed=4)
    ref = ParakeetFeatureExtractor(**opts)(x, sampling_rate=16000, return_tensors="np").input_features[0].T
    assert_close_top(f"nemo {case}", run(presets.nemo(**opts), x, backend), ref, None)


# ----------------------------------------------------------------------------------------------- kaldi
KNF_NAMES = {  # kaldi-native-fbank option -> the preset's
    "frame_opts.samp_freq": "sample_frequency", "frame_opts.frame_shift_ms": "frame_shift_ms",
    "frame_opts.frame_length_ms": "frame_length_ms", "frame_opts.dither": "dither",
    "frame_opts.preemph_coeff": "preemph_coeff", "frame_opts.remove_dc_offset": "remove_dc_offset",
    "frame_opts.window_type": "window_type", "frame_opts.round_to_power_of_two": "round_to_power_of_two",
    "frame_opts.blackman_coeff": "blackman_coeff", "frame_opts.snip_edges": "snip_edges",
    "mel_opts.num_bins": "num_mel_bins", "mel_opts.low_freq": "low_freq", "mel_opts.high_freq": "high_freq",
    "mel_opts.vtln_low": "vtln_low", "mel_opts.vtln_high": "vtln_high", "mel_opts.debug_mel": "debug_mel",
    "mel_opts.htk_mode": "htk_mode", "mel_opts.is_librosa": "is_librosa", "use_energy": "use_energy",
    "energy_floor": "energy_floor", "raw_energy": "raw_energy", "htk_compat": "htk_compat",
    "use_log_fbank": "use_log_fbank", "use_log_floor": "use_log_floor", "eps": "eps", "use_power": "use_power",
}
#: kaldi-native-fbank options of its librosa mode only (is_librosa=True, refused: presets.librosa is that).
KNF_LIBROSA_MODE = ("mel_opts.norm", "mel_opts.use_slaney_mel_scale", "mel_opts.floor_to_int_bin")


def kaldi_native(x, opts):
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    for preset_name, value in opts.items():
        knf_name = next(k for k, v in KNF_NAMES.items() if v == preset_name)
        target = o
        *path, last = knf_name.split(".")
        for p in path:
            target = getattr(target, p)
        setattr(target, last, value)
    fb = knf.OnlineFbank(o)
    fb.accept_waveform(o.frame_opts.samp_freq, x.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)]).T


KALDI = {
    "defaults": {},
    **{f"window_{w}": {"window_type": w} for w in ("hamming", "hanning", "hann", "rectangular", "sine", "blackman")},
    "blackman_coeff": {"window_type": "blackman", "blackman_coeff": 0.5},
    "snip_false": {"snip_edges": False},
    "snip_false_hann_energy": {"snip_edges": False, "window_type": "hann", "use_energy": True},
    "preemph_0": {"preemph_coeff": 0.0},
    "preemph_05": {"preemph_coeff": 0.5},
    "no_dc": {"remove_dc_offset": False},
    "no_dc_no_preemph": {"remove_dc_offset": False, "preemph_coeff": 0.0},
    "no_pow2": {"round_to_power_of_two": False},
    "magnitude": {"use_power": False},
    "energy": {"use_energy": True},
    "energy_windowed": {"use_energy": True, "raw_energy": False},
    "energy_htk_floor": {"use_energy": True, "htk_compat": True, "energy_floor": 1.0},
    "no_log": {"use_log_fbank": False},
    "additive_guard": {"use_log_floor": False, "eps": 2.0**-24},
    "bins_80_8khz": {"num_mel_bins": 40, "sample_frequency": 8000.0, "low_freq": 60.0, "high_freq": -200.0},
    "frames_20_5": {"frame_length_ms": 20.0, "frame_shift_ms": 5.0},
}


@pytest.fixture(scope="module")
def xk():
    return (speechlike(8000 + 123, 16000, seed=6) * 32768).astype(np.float32)


@pytest.mark.parametrize("case, backend", grid(KALDI, ("defaults", "snip_false_hann_energy", "preemph_05", "energy_htk_floor")))
def test_kaldi_options(xk, case, backend):
    opts = KALDI[case]
    x = xk if opts.get("sample_frequency", 16000) == 16000 else xk[::2].copy()
    ref = kaldi_native(x, opts)
    ours = run(presets.kaldi(**opts), x, backend)
    span = LN_60DB / (2 if opts.get("use_power", True) is False else 1)  # 60 dB of power
    if opts.get("use_log_fbank", True) is False:
        ours, ref = np.log(np.maximum(ours, 1e-7)), np.log(np.maximum(ref, 1e-7))
    assert_close_top(f"kaldi {case}", ours, ref, span)


@pytest.mark.parametrize("case", ["subtract_mean", "energy_floor", "snip_false"])
def test_kaldi_options_match_torchaudio_compliance(case):
    opts = {"subtract_mean": {"subtract_mean": True, "num_mel_bins": 40},
            "energy_floor": {"use_energy": True, "energy_floor": 1.0},
            "snip_false": {"snip_edges": False, "num_mel_bins": 40}}[case]
    x = speechlike(8000 + 77, 16000, seed=5) * 32768
    ours = presets.kaldi(**opts)(x)
    ref = options_goldens()[f"kaldi_{case}"]
    if case != "subtract_mean":
        assert_close_top(f"kaldi {case}", ours, ref, LN_60DB)
        return
    # each band's mean over the frames includes the quiet frames, where float32 rounding dominates (there
    # kaldi-native-fbank and torchaudio differ by 0.07 from each other): the shifted values are held to 5e-3
    # where the features are within 60 dB, and the shift itself to the features less their mean, exactly
    plain = presets.kaldi(num_mel_bins=40)(x)
    np.testing.assert_allclose(ours, plain - plain.mean(axis=-1, keepdims=True), rtol=0, atol=1e-6)
    keep = plain >= plain.max() - LN_60DB
    assert float(np.abs(ours - ref)[keep].max()) <= 5e-3


def test_kaldi_framed_blocks_equal_the_whole():
    """The framed route works in blocks of frames (and draws the dither per block of FRAME_BLOCK frames): a call
    over several blocks equals the frames of the whole signal transformed at once (prepare / pipeline / finish)."""
    from arraymel.functional import compute

    p = presets.kaldi(snip_edges=False, dither=1.0, seed=3, num_mel_bins=40)
    x = speechlike(16000 * 25, 16000, seed=2) * 32768  # 2500 frames: three blocks
    whole = p.finish(compute(p.prepare(x), p.config), x.shape[-1])
    out = p(x, max_memory=1)  # blocks of FRAME_BLOCK = 1024 frames
    assert out.shape == whole.shape == (40, 2500)
    np.testing.assert_allclose(out, whole, rtol=0, atol=1e-5)


def test_kaldi_dither():
    """dither=0 is exact (the defaults test above); a nonzero dither is reproducible from its seed and has Kaldi's
    statistics: on silence, the log mel energies of dither noise agree with kaldi-native-fbank's on average."""
    x = np.zeros(16000 * 5, np.float32)
    p = presets.kaldi(dither=1.0, seed=7)
    ours = p(x)
    np.testing.assert_array_equal(ours, presets.kaldi(dither=1.0, seed=7)(x))
    assert not np.array_equal(ours, presets.kaldi(dither=1.0, seed=8)(x))
    ref = kaldi_native(x, {"dither": 1.0})
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.mean(axis=1), ref.mean(axis=1), rtol=0, atol=0.1)
    assert abs(float(ours.std()) - float(ref.std())) < 0.1


def test_kaldi_refuses_what_kaldi_refuses():
    x = speechlike(4000, 16000)
    for opts, match in (({"num_mel_bins": 200}, "receive no FFT bin"), ({"high_freq": 9000.0}, "Nyquist"),
                        ({"low_freq": 8000.0}, "Nyquist"), ({"num_mel_bins": 2}, "at least 3")):
        with pytest.raises(ValueError, match=match):
            presets.kaldi(**opts)
        if opts.get("num_mel_bins") != 2:  # (kaldi-native-fbank aborts on this one instead of raising)
            with pytest.raises(Exception):  # noqa: B017  (kaldi-native-fbank raises a bare RuntimeError or its own type)
                kaldi_native(x, opts)


@pytest.mark.parametrize("snip, short", [(True, 399), (False, 79)])
def test_kaldi_refuses_a_signal_kaldi_gives_no_frame(snip, short):
    """At the boundary, both ways of framing: one sample fewer and Kaldi returns no frame (the preset refuses it with
    the option and the length it needs), one more and both give one frame."""
    import kaldi_native_fbank as knf

    x = speechlike(short + 1, 16000, seed=4) * 32768
    o = knf.FbankOptions()
    o.frame_opts.dither, o.frame_opts.snip_edges = 0.0, snip
    fb = knf.OnlineFbank(o)
    fb.accept_waveform(16000, x[:short].tolist())
    fb.input_finished()
    assert fb.num_frames_ready == 0
    with pytest.raises(ValueError, match=rf"kaldi: x has {short} samples: with snip_edges={snip}.*at least {short + 1} "):
        presets.kaldi(snip_edges=snip)(x[:short])
    ref = kaldi_native(x, {"snip_edges": snip})
    assert ref.shape[1] == 1
    np.testing.assert_allclose(presets.kaldi(snip_edges=snip)(x), ref, rtol=0, atol=1e-3)


def test_an_empty_signal_is_refused_saying_why():
    with pytest.raises(ValueError, match=r"librosa: x has 0 samples: there is no signal to transform, so at least 1 "
                                         r"sample is needed\.$"):
        presets.librosa()(np.zeros(0, np.float32))


@pytest.mark.parametrize("make", [presets.whisper, presets.nemo])
def test_n_mels_and_feature_size_are_one_option(make):
    """openai-whisper's/NeMo's n_mels and transformers' feature_size: either, or both when equal; both given and
    different is an error, also when n_mels is given as 80 (its default: it was then silently overridden)."""
    assert make(feature_size=64).options["n_mels"] == 64 == make(n_mels=64, feature_size=64).options["n_mels"]
    assert make().options["n_mels"] == 80 == make(n_mels=80).options["n_mels"]
    for n_mels, feature_size in ((80, 128), (64, 128)):
        with pytest.raises(TypeError, match=rf"n_mels={n_mels} and feature_size={feature_size} are one option"):
            make(n_mels=n_mels, feature_size=feature_size)


@pytest.mark.parametrize("make, match", [
    (lambda: presets.librosa(window="no-such-window"), r"librosa: window='no-such-window' is not allowed: "
                                                       r"scipy.signal.get_window refuses it"),
    (lambda: presets.librosa(ref=np.max, top_db_scope="batch"), r"librosa: top_db_scope='batch' is not allowed with "
                                                                r"a callable ref \('max'\).*must be 'example'"),
])
def test_librosa_value_errors_name_the_option_and_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ----------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("make, option", [
    (lambda: presets.librosa(pad_mode=np.pad), "pad_mode"),
    (lambda: presets.librosa(pad_mode="empty"), "pad_mode"),
    (lambda: presets.librosa(dtype=np.int16), "dtype"),
    (lambda: presets.torchaudio(power=None), "power"),
    (lambda: presets.torchaudio(onesided=False), "onesided"),
    (lambda: presets.whisper(return_attention_mask=True), "return_attention_mask"),
    (lambda: presets.nemo(padding_value=1.0), "padding_value"),
    (lambda: presets.kaldi(vtln_warp=0.9), "vtln_warp"),
    (lambda: presets.kaldi(htk_mode=True), "htk_mode"),
    (lambda: presets.kaldi(is_librosa=True), "is_librosa"),
    (lambda: presets.kaldi(debug_mel=True), "debug_mel"),
    (lambda: presets.kaldi(min_duration=1.0), "min_duration"),
    (lambda: presets.kaldi(channel=0), "channel"),
    (lambda: presets.kaldi(frame_length=20.0, frame_length_ms=30.0), "frame_length"),
    (lambda: presets.kaldi(sample_rate=8000), "sample_rate"),
])
def test_options_that_cannot_be_honoured_are_type_errors_naming_them(make, option):
    with pytest.raises(TypeError, match=rf"{option}"):
        make()


@pytest.mark.parametrize("module", ["_common", "_librosa", "_torchaudio", "_whisper", "_kaldi", "_nemo"])
def test_docstring_examples_of_the_preset_modules(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"arraymel.presets.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and (result.attempted > 0 or module in ("_common",))


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin")
def test_option_presets_pickle():
    """DataLoader workers and Dask ship a preset to other processes, whatever its options."""
    import pickle

    x = speechlike(8000, 16000, seed=9)
    for p in (presets.librosa(sr=16000, pad_mode="edge", center=False, norm=2.0, ref=np.max, window="blackman"),
              presets.torchaudio(pad=10, pad_mode="circular", normalized=True, stype="magnitude"),
              presets.whisper(padding=100, dither=0.1, seed=1), presets.nemo(preemphasis=None),
              presets.kaldi(snip_edges=False, use_energy=True, dither=1.0, seed=2)):
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(p))(x), p(x))


def test_kaldi_takes_both_references_names():
    a = presets.kaldi(samp_freq=8000.0, frame_length=20.0, frame_shift=5.0, preemphasis_coefficient=0.5, num_bins=30)
    b = presets.kaldi(sample_frequency=8000.0, frame_length_ms=20.0, frame_shift_ms=5.0, preemph_coeff=0.5,
                      num_mel_bins=30)
    assert a.options == b.options


# ----------------------------------------------------------------------------------------------- defaults
def _signature_defaults(fn):
    return {n: p.default for n, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty and n != "self"}


def _assert_defaults(preset_fn, reference: dict, names: dict | None = None, differ: dict | None = None):
    """Each reference default equals the preset's (``names``: the preset's name for a reference option;
    ``differ``: the deliberate differences, option -> the preset's value)."""
    ours = _signature_defaults(preset_fn)
    names, differ = names or {}, differ or {}
    for ref_name, ref_default in reference.items():
        name = names.get(ref_name, ref_name)
        assert name in ours, f"{preset_fn.__name__}: the reference's option {ref_name!r} is missing"
        want = differ.get(ref_name, ref_default)
        got = ours[name]
        if callable(got) or callable(want):
            assert got == want or getattr(got, "__name__", None) == getattr(want, "__name__", want)
        else:
            assert got == want, f"{preset_fn.__name__}({name}=...): {got!r}, the reference's {ref_name}={ref_default!r}"


def test_librosa_defaults_are_librosas():
    import librosa

    ref = {**_signature_defaults(librosa.feature.melspectrogram), **_signature_defaults(librosa.filters.mel),
           **_signature_defaults(librosa.power_to_db)}
    ref.pop("y"), ref.pop("S")
    # hop_length: librosa's 512 whatever n_fft (the preset's None resolves to it: test_presets.py)
    _assert_defaults(presets.librosa, ref, differ={"hop_length": None})
    assert presets.librosa().options["hop_length"] == ref["hop_length"]


def test_torchaudio_defaults_are_torchaudios():
    d = json.loads(str(options_goldens()["defaults"]))
    ref = {**d["MelSpectrogram"], **d["AmplitudeToDB"]}
    # window_fn: None stands for torch.hann_window (importing torch is the caller's business)
    _assert_defaults(presets.torchaudio, ref, differ={"window_fn": None})
    assert presets.torchaudio().config.window == "hann"


def test_whisper_defaults_are_the_extractors():
    from transformers import WhisperFeatureExtractor

    ref = _signature_defaults(WhisperFeatureExtractor.__init__)
    _assert_defaults(presets.whisper, ref, differ={"feature_size": None})  # feature_size: an alias of n_mels
    assert presets.whisper().options["n_mels"] == ref["feature_size"]
    openai = json.loads(str(options_goldens()["defaults"]))["log_mel_spectrogram"]
    openai.pop("device")  # the call's device= (every preset takes it)
    _assert_defaults(presets.whisper, openai)


def test_nemo_defaults_are_parakeets():
    from transformers import ParakeetFeatureExtractor

    ref = _signature_defaults(ParakeetFeatureExtractor.__init__)
    _assert_defaults(presets.nemo, ref, differ={"feature_size": None})
    assert presets.nemo().options["n_mels"] == ref["feature_size"]


def test_kaldi_defaults_are_kaldi_native_fbanks_and_torchaudios():
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    ref = {}
    for knf_name in (*KNF_NAMES, *KNF_LIBROSA_MODE):
        target = o
        for part in knf_name.split("."):
            target = getattr(target, part)
        ref[knf_name] = target
    for knf_name in KNF_LIBROSA_MODE:  # only with is_librosa=True, which is refused
        ref.pop(knf_name)
    listed = {f"{group}.{k}" for group in ("frame_opts", "mel_opts") for k in getattr(o, group).as_dict()}
    listed |= {k for k in o.as_dict() if k not in ("frame_opts", "mel_opts")}
    assert listed == set(KNF_NAMES) | set(KNF_LIBROSA_MODE), listed ^ (set(KNF_NAMES) | set(KNF_LIBROSA_MODE))
    ours = _signature_defaults(presets.kaldi)
    for knf_name, value in ref.items():
        name = KNF_NAMES[knf_name]
        if knf_name == "frame_opts.dither":  # torchaudio's 0.0, reproducible (kaldi-native-fbank: 3e-5)
            assert ours[name] == 0.0 and value == pytest.approx(3e-5)
            continue
        assert ours[name] == pytest.approx(value, rel=1e-6) if isinstance(value, float) else ours[name] == value, name
    ta = json.loads(str(options_goldens()["defaults"]))["fbank"]
    aliases = {"frame_length": "frame_length_ms", "frame_shift": "frame_shift_ms",
               "preemphasis_coefficient": "preemph_coeff"}
    _assert_defaults(presets.kaldi, ta, names=aliases, differ={"energy_floor": 0.0})  # kaldi-native-fbank's 0.0
