"""The presets on the GPU path's engine, its kernel text run by the CPU emulator (tests/cuda_cpu), and by the
independent NumPy model of the kernels (tests/kernel_model.py), against the presets on the NumPy path
(which tests/test_presets.py holds to the reference libraries).

What the presets add to the kernels: zero padding (``am_pad_reflect``, ``am_frames_window``), frames
without centring, and Kaldi's frame step (a block per frame in ``am_frames_window``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cuda_cpu import emulated_engine
from kernel_model import emulated_engine as model_engine
from kernel_sources import with_layout
from presets_signal import speechlike

import arraymel.presets as presets
from arraymel._cupy.chunking import work_bytes

TOL = 1e-3
SPAN_60DB = {"whisper": 1.5, "librosa": 60.0, "torchaudio": 60.0, "kaldi": 6.0 * math.log(10.0), "nemo": None}

CASES = {
    "whisper": presets.whisper(),
    "librosa": presets.librosa(sr=16000, n_fft=512, hop_length=128, n_mels=64),
    "torchaudio": presets.torchaudio(n_mels=64),
    "kaldi": presets.kaldi(num_mel_bins=80),
    "nemo": presets.nemo(),
}


def run_engine(engine, preset, x, budget, path=None):
    xp_ = preset.prepare(x)
    rows = xp_.reshape(-1, xp_.shape[-1])  # a framed preset's frames: (..., frames, samples) -> rows of one frame
    out, plan, _ = with_layout(engine, path).compute(rows, budget)
    return preset.finish(out.reshape(*xp_.shape[:-1], *out.shape[1:]), x.shape[-1]), plan


def check(name, ours, ref):
    keep = np.ones(ref.shape, bool) if SPAN_60DB[name] is None else ref >= ref.max() - SPAN_60DB[name]
    worst = float(np.abs(np.asarray(ours, np.float64) - ref)[keep].max())
    assert worst <= TOL, f"{name}: {worst:.3g}"


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin")
@pytest.mark.parametrize("name", CASES)
def test_preset_on_the_emulated_gpu_path(name):
    preset = CASES[name]
    x = np.stack([speechlike(8000 + 57, 16000, seed=7), 0.3 * speechlike(8000 + 57, 16000, seed=8)])
    ref = preset(x, backend="numpy")
    engine = emulated_engine(preset.config, "float32", fft="float32")
    prob = engine.problem(2, preset.prepare(x).shape[-1])
    budget = work_bytes(prob, "gather", 1, max(1, -(-prob.frames // 3)))  # about three time chunks per row
    for path in ("gather", "inplace") if engine.p.inplace_ok else ("gather",):  # both signal kernels
        ours, plan = run_engine(engine, preset, x, budget, path)
        assert plan.n_chunks >= 3 and plan.path == path
        assert ours.shape == ref.shape and ours.dtype == np.float32
        check(name, ours, ref)
    if preset.config.frame_step or preset.config.pad_mode == "constant":  # the independent model of the kernels
        model, _plan = run_engine(model_engine(preset.config, "float32"), preset, x, budget)
        check(name, model, ref)


#: Options beyond the pipeline's own steps (signal steps, output rules, the Kaldi frames built by the preset).
OPTION_CASES = {
    "librosa edge, ref=max, norm=2": presets.librosa(sr=16000, n_fft=512, hop_length=128, n_mels=64, pad_mode="edge",
                                                    ref=np.max, norm=2.0),
    "librosa center=False, win_length": presets.librosa(sr=16000, n_fft=512, win_length=400, hop_length=128,
                                                       n_mels=64, center=False),
    "torchaudio pad, replicate, normalized": presets.torchaudio(n_mels=64, pad=30, pad_mode="replicate",
                                                                normalized=True, norm="slaney", mel_scale="slaney"),
    "whisper 10 bands at 4 kHz": presets.whisper(feature_size=10, sampling_rate=4000, hop_length=40),
    "nemo n_fft 400": presets.nemo(n_fft=400, win_length=400, hop_length=100, preemphasis=None),
    "kaldi framed": presets.kaldi(snip_edges=False, preemph_coeff=0.5, window_type="hann", num_mel_bins=40),
}
OPTION_SPANS = {"librosa": 60.0, "torchaudio": 60.0, "whisper": 1.5, "nemo": None, "kaldi": 6.0 * math.log(10.0)}


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin")
@pytest.mark.parametrize("case", OPTION_CASES)
def test_preset_options_on_the_emulated_gpu_path(case):
    preset = OPTION_CASES[case]
    x = np.stack([speechlike(8000 + 57, 16000, seed=7), 0.3 * speechlike(8000 + 57, 16000, seed=8)])
    ref = preset(x, backend="numpy")
    ours, _plan = run_engine(emulated_engine(preset.config, "float32", fft="float32"), preset, x, 2**30)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    span = OPTION_SPANS[preset.name]
    keep = np.ones(ref.shape, bool) if span is None else ref >= ref.max() - span
    worst = float(np.abs(np.asarray(ours, np.float64) - ref)[keep].max())
    assert worst <= TOL, f"{case}: {worst:.3g}"


def test_kaldi_frame_step_on_float64_and_int16_input():
    preset = presets.kaldi(num_mel_bins=40)
    x = (speechlike(4000, 16000, seed=9) * 32767).astype(np.int16)
    ref = preset(x.astype(np.float64), backend="numpy")
    out, _plan = run_engine(emulated_engine(preset.config, "float64", fft="exact"), preset, x.astype(np.float64), 2**30)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)
    out, _plan = run_engine(emulated_engine(preset.config, "float32", fft="float32"), preset, x, 2**30)
    check("kaldi", out, preset(x, backend="numpy"))


@pytest.mark.parametrize("frame_step", [None, "kaldi"])
@pytest.mark.parametrize("window", [None, "hamming"])
def test_frames_without_centring_float64(window, frame_step):
    """center=False (with and without the frame step, window=None: ones over sequence_length) in float64 with an
    exact FFT, against the NumPy path (itself checked against a float64 evaluation in tests/test_presets.py)."""
    from arraymel._config import MelConfig
    from arraymel.functional import compute

    cfg = MelConfig.create(fft_length=64, sequence_length=50, sequence_stride=20, window=window, num_mel_bins=8,
                           sampling_rate=8000, min_freq=100.0, power_to_db=False, filterbank="kaldi", center=False,
                           frame_step=frame_step)
    x = np.random.default_rng(4).standard_normal((2, 333)) + 0.5
    out, plan, _ = emulated_engine(cfg, "float64", fft="exact").compute(x, 2**30)
    assert plan.path == "gather"
    ref = compute(x, cfg, backend="numpy")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12 * ref.max())


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin")
def test_the_fused_kernel_leaves_the_presets_framing_to_cufft():
    from arraymel._cupy.fused import FusedEngine, framing_unsupported
    from arraymel._cupy.params import mel_params

    reasons = {name: framing_unsupported(mel_params(p.config, "float32")) for name, p in CASES.items()}
    assert reasons["whisper"] is None and reasons["torchaudio"] is None  # centred, reflect-padded: fused can run them
    assert "Kaldi frame step" in reasons["kaldi"]
    assert "constant" in reasons["librosa"] and "constant" in reasons["nemo"]
    with pytest.raises(ValueError, match="Kaldi frame step"):
        FusedEngine(mel_params(CASES["kaldi"].config, "float32"), None, None, None)


def test_kaldi_frame_step_under_shuffled_schedules():
    """The block sum (shuffles, shared memory, __syncthreads) with the emulator's randomised thread schedules."""
    preset = presets.kaldi(num_mel_bins=40)
    x = speechlike(4000, 16000, seed=11)
    ref = preset(x, backend="numpy")
    for seed in (1, 2):
        out, _plan = run_engine(emulated_engine(preset.config, "float32", fft="float32", shuffle=True, seed=seed),
                                preset, x, 2**30)
        check("kaldi", out, ref)
