"""``arraymel corpus --preset NAME``: every file's output is the preset on that file alone (batched with
files of other lengths, padded as the preset pads), streamed long files where the preset allows it, and a
clear per-file failure where it does not (or where a file is too short for the preset)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

import soundfile as sf  # noqa: E402
from presets_signal import speechlike  # noqa: E402
from test_corpus import corpus_cli, rows  # noqa: E402

import arraymel.presets as presets  # noqa: E402

LENGTHS = {"a.wav": 16000, "b.wav": 23456, "c.wav": 5000, "d.wav": 40000, "short.wav": 300}
OPTIONS = {"librosa": {"sr": 16000}, "whisper": {"n_mels": 128}}


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("preset_audio")
    for i, (name, n) in enumerate(LENGTHS.items()):
        sf.write(d / name, speechlike(n, 16000, seed=i), 16000, subtype="FLOAT")
    return d


#: --preset-options in each reference's vocabulary (steps on the output and options of the pipeline's own framing)
VOCABULARY = [
    ("librosa", {"sr": 16000, "norm": 2.0, "window": "hamming", "ref": 2.0, "top_db": 60.0}),
    ("torchaudio", {"norm": "slaney", "mel_scale": "slaney", "normalized": True, "power": 1.0, "stype": "magnitude",
                    "top_db": 50.0}),
    ("whisper", {"feature_size": 64, "n_fft": 512, "hop_length": 128}),
    ("kaldi", {"window_type": "hann", "num_mel_bins": 40, "use_power": False, "use_log_floor": False, "eps": 1e-6}),
    ("nemo", {"n_fft": 400, "win_length": 400, "preemphasis": None}),
]


@pytest.mark.filterwarnings("ignore:.*receive no FFT bin")
@pytest.mark.parametrize("name, opts", [(n, OPTIONS.get(n, {})) for n in presets.PRESETS] + VOCABULARY,
                         ids=[*presets.PRESETS, *(f"{n}-options" for n, _ in VOCABULARY)])
def test_corpus_preset_equals_the_preset_on_each_file(audio_dir, tmp_path, name, opts):
    args = [str(audio_dir), str(tmp_path / "out"), "--preset", name, "--device", "cpu", "-q"]
    if opts:
        args += ["--preset-options", json.dumps(opts)]
    rc, _, err = corpus_cli(*args)
    preset = presets.get(name, **opts)
    recs = rows(tmp_path / "out")
    too_short = {"kaldi": "sequence_length=400", "nemo": "at least 320 samples"}
    assert rc == (2 if name in too_short else 0), err
    for fname in LENGTHS:
        x, _ = sf.read(audio_dir / fname, dtype="float32")
        if fname == "short.wav" and name in too_short:
            assert recs[fname]["status"] == "failed" and too_short[name] in recs[fname]["error"]
            continue
        out = np.load(tmp_path / "out" / (fname + ".npy"))
        ref = preset(x)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)


def test_corpus_preset_errors(audio_dir, tmp_path):
    rc, _, err = corpus_cli(str(audio_dir), str(tmp_path / "o1"), "--preset", "kaldi", "--num-mel-bins", "40", "-q")
    assert rc == 1 and "--preset kaldi fixes the mel configuration" in err
    rc, _, err = corpus_cli(str(audio_dir), str(tmp_path / "o2"), "--preset-options", '{"n_mels": 128}', "-q")
    assert rc == 1 and "--preset-options needs --preset" in err
    rc, _, err = corpus_cli(str(audio_dir), str(tmp_path / "o3"), "--preset", "whisper", "--preset-options",
                            '{"n_mels": 0}', "-q")
    assert rc == 1 and "n_mels=0" in err
    rc, _, err = corpus_cli(str(audio_dir), str(tmp_path / "o5"), "--preset", "kaldi", "--preset-options",
                            '{"snip_edges": false}', "-q")
    assert rc == 1 and "snip_edges=False" in err and "builds its own frames" in err
    rc, _, err = corpus_cli(str(audio_dir), str(tmp_path / "o6"), "--preset", "torchaudio", "--preset-options",
                            '{"pad": 3}', "-q")
    assert rc == 1 and "pad=3" in err and "changes each file's length" in err
    rc, _, err = corpus_cli(str(audio_dir), str(tmp_path / "o4"), "--preset", "whisper", "--preset-options",
                            '{"pad_or_trim": true}', "-q")
    assert rc == 1 and "pad_or_trim=true is not supported" in err  # every file would be 30 s: refused up front


def test_corpus_preset_resume_takes_spelled_out_defaults_as_the_same_run(audio_dir, tmp_path):
    out = str(tmp_path / "out")
    assert corpus_cli(str(audio_dir), out, "--preset", "whisper", "--device", "cpu", "-q")[0] == 0
    rc, summary, err = corpus_cli(str(audio_dir), out, "--preset", "whisper", "--preset-options",
                                  '{"n_mels": 80, "pad_or_trim": false}', "--device", "cpu")
    assert rc == 0, err  # the preset's resolved options name the run, not their spelling
    assert f"skipped {len(LENGTHS)} files already done" in summary and "computed 0 files" in summary, summary


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("preset_long")
    sf.write(d / "long.wav", speechlike(140 * 16000, 16000, seed=9), 16000, subtype="PCM_16")  # 9 MB decoded
    return d


def test_a_long_file_streams_with_librosa_and_fails_clearly_with_whisper(long_dir, tmp_path):
    """Above --memory-per-worker 64 / 8 MB a file is computed block by block: the librosa preset (the pipeline's dB
    and per-file top_db) streams; whisper's rule needs the whole file, so the file fails, saying how to fix it."""
    x, _ = sf.read(long_dir / "long.wav", dtype="float32")
    out = tmp_path / "lib"
    rc, _, err = corpus_cli(str(long_dir), str(out), "--preset", "librosa", "--preset-options", '{"sr": 16000}',
                            "--memory-per-worker", "64", "--device", "cpu", "-q")
    assert rc == 0, err
    np.testing.assert_allclose(np.load(out / "long.wav.npy"), presets.librosa(sr=16000)(x), rtol=0, atol=1e-3)
    rc, _, _ = corpus_cli(str(long_dir), str(tmp_path / "wh"), "--preset", "whisper", "--memory-per-worker", "64",
                          "--device", "cpu", "-q")
    rec = rows(tmp_path / "wh")["long.wav"]
    assert rc == 2 and rec["status"] == "failed" and "raise --memory-per-worker" in rec["error"]
    assert not os.path.exists(tmp_path / "wh" / "long.wav.npy")
