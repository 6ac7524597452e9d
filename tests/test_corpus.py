"""``arraymel corpus`` end to end on a generated corpus: exact outputs, recorded failures, resume, refusals.

Every output is compared with an independent computation: soundfile + soxr decoding in the test,
then ``arraymel.mel_spectrogram(file_alone, top_db_scope="example")`` (docs/semantics.md: 1e-3 dB).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

import corpus_data as cd  # noqa: E402

from arraymel.cli import main  # noqa: E402

TOL_DB = 1e-3  # docs/semantics.md: float32 dB tolerance
MEL_FLAGS = ["--num-mel-bins", str(cd.MEL["num_mel_bins"])]


def corpus_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(["corpus", *args])
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def rows(out_dir) -> dict[str, dict]:
    db = sqlite3.connect(os.path.join(out_dir, "manifest.sqlite"))
    db.row_factory = sqlite3.Row
    return {r["key"]: dict(r) for r in db.execute("SELECT * FROM files")}


def last_run(out_dir) -> dict:
    db = sqlite3.connect(os.path.join(out_dir, "manifest.sqlite"))
    db.row_factory = sqlite3.Row
    return dict(db.execute("SELECT * FROM runs ORDER BY run_id DESC LIMIT 1").fetchone())


def output_files(out_dir) -> dict[str, int]:
    """Every file under OUT_DIR (relative path -> mtime_ns)."""
    found = {}
    for d, _, files in os.walk(out_dir):
        for f in files:
            p = os.path.join(d, f)
            found[os.path.relpath(p, out_dir).replace(os.sep, "/")] = os.stat(p).st_mtime_ns
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad = cd.make_corpus(str(root))
    return str(root), good, bad


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory):
    root, good, bad = corpus
    out = str(tmp_path_factory.mktemp("out") / "features")
    rc, stdout, stderr = corpus_cli(root, out, *MEL_FLAGS, "--min-seconds", str(cd.MIN_SECONDS))
    return out, rc, stdout, stderr


# ------------------------------------------------------------------------------------------------ the first run


def test_every_good_file_equals_the_library_on_that_file_alone(corpus, first_run):
    root, good, _ = corpus
    out, rc, stdout, stderr = first_run
    assert len(good) >= 13
    worst = 0.0
    for key in good:
        got = np.load(os.path.join(out, key + ".npy"))
        ref = cd.reference(os.path.join(root, key), **cd.MEL)
        assert got.dtype == np.float32 and got.shape == ref.shape, key
        assert got.shape[0] == cd.MEL["num_mel_bins"]
        diff = float(np.max(np.abs(got.astype(np.float64) - ref)))
        worst = max(worst, diff)
        assert diff <= TOL_DB, f"{key}: {diff} dB"
        assert float(got.max() - got.min()) <= 80.0 + 1e-3  # top_db per file
    assert worst < 1e-4  # in practice a few 1e-6 dB (float32 rounding of the padded batch)


def test_frame_counts_and_manifest_columns(corpus, first_run):
    root, good, _ = corpus
    out, *_ = first_run
    r = rows(out)
    import soundfile as sf

    for key in good:
        row = r[key]
        info = sf.info(os.path.join(root, key))
        st = os.stat(os.path.join(root, key))
        assert row["status"] == "ok" and row["error"] is None
        assert row["output"] == key + ".npy"
        assert row["source_size"] == st.st_size and row["source_mtime_ns"] == st.st_mtime_ns
        assert row["source_mtime"] == pytest.approx(st.st_mtime)
        assert row["sampling_rate"] == info.samplerate and row["channels"] == info.channels
        assert row["samples"] == info.frames
        assert row["duration_s"] == pytest.approx(info.frames / info.samplerate)
        assert row["frames"] == 1 + row["mel_samples"] // 512  # docs/semantics.md: centred frames, even fft_length
        assert json.loads(row["shape"]) == [cd.MEL["num_mel_bins"], row["frames"]]
        assert row["dtype"] == "float32"
        import hashlib

        with open(os.path.join(out, row["output"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == row["sha256"]
        v = json.loads(row["versions"])
        assert {"arraymel", "numpy", "soundfile", "libsndfile", "soxr"} <= set(v)
    assert len({row["config_hash"] for row in r.values()}) == 1


def test_the_tiny_files_and_the_minute(first_run):
    out, *_ = first_run
    r = rows(out)
    assert r["wav/tiny_8k.wav"]["mel_samples"] == 200 and r["wav/tiny_8k.wav"]["frames"] == 1  # 100 samples at 8 kHz
    assert r["wav/sub_frame_16k.wav"]["mel_samples"] == 200
    assert r["long/minute_16k.flac"]["frames"] == 1 + 60 * 16000 // 512


def test_bad_files_are_failed_with_their_reason_and_the_run_exits_2(corpus, first_run):
    root, good, bad = corpus
    out, rc, stdout, stderr = first_run
    assert rc == 2
    r = rows(out)
    assert set(bad) == set(cd.bad_reasons())
    for key, words in cd.bad_reasons().items():
        assert r[key]["status"] == "failed", key
        assert words in r[key]["error"], (key, r[key]["error"])
        assert r[key]["sha256"] is None and r[key]["output"] is None
        assert not os.path.exists(os.path.join(out, key + ".npy"))
    assert "non-finite samples: 1 NaN" in r["bad/nan.wav"]["error"] and "0.312 s" in r["bad/nan.wav"]["error"]
    assert "1 infinite" in r["bad/inf.wav"]["error"] and "channel 1" in r["bad/inf.wav"]["error"]
    assert "0.005 s < --min-seconds 0.01" in r["bad/short.wav"]["error"]
    assert set(r) == set(good) | set(bad)  # ignored names (.txt, .md) are not discovered
    discovered = len(good) + len(bad)
    assert f"discovered {discovered} = ok {len(good)} + failed {len(bad)} + skipped 0" in stdout
    assert "audio-hours/s" in stdout and "files/s" in stdout
    for key in bad:
        assert key in stdout


def test_outputs_are_named_after_the_source_and_nothing_else_is_written(corpus, first_run):
    root, good, _ = corpus
    out, *_ = first_run
    names = set(output_files(out))
    assert names == {k + ".npy" for k in good} | {"manifest.sqlite", ".arraymel-corpus.lock"}
    assert {"same/b.wav.npy", "same/b.flac.npy", "UPPER/LOUD.WAV.npy"} <= names


def test_status_reports_counts_and_failures(corpus, first_run):
    root, good, bad = corpus
    out, *_ = first_run
    rc, stdout, _ = corpus_cli("status", out)
    assert rc == 2
    assert f"files {len(good) + len(bad)} = ok {len(good)}" in stdout and f"failed {len(bad)}" in stdout
    for key in bad:
        assert key in stdout
    rc, stdout, _ = corpus_cli("status", out, "--json")
    data = json.loads(stdout)
    assert rc == 2 and data["counts"]["ok"] == len(good) and data["counts"]["failed"] == len(bad)
    assert {f["key"] for f in data["failures"]} == set(bad)
    assert data["mel_config"]["num_mel_bins"] == cd.MEL["num_mel_bins"]
    assert data["mel_config"]["top_db_scope"] == "example"


# ------------------------------------------------------------------------------------------------ resume


def test_a_second_run_skips_everything_done_and_retries_the_failures(corpus, first_run):
    root, good, bad = corpus
    out, *_ = first_run
    before = output_files(out)
    rc, stdout, _ = corpus_cli(root, out, *MEL_FLAGS, "--min-seconds", str(cd.MIN_SECONDS))
    assert rc == 2
    run = last_run(out)
    assert (run["skipped"], run["ok"], run["failed"]) == (len(good), 0, len(bad))
    after = output_files(out)
    assert {k: v for k, v in after.items() if k.endswith(".npy")} == {k: v for k, v in before.items() if k.endswith(".npy")}
    assert f"+ skipped {len(good)}" in stdout


def test_resume_recomputes_changed_sources_and_damaged_outputs(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    files = {f"f{i}.wav": ("WAV", "PCM_16", 16000, 1, 1.0 + 0.25 * i) for i in range(4)}
    cd.write_good(root, files)
    assert corpus_cli(root, out, *MEL_FLAGS, "--quiet")[0] == 0
    # f0: source rewritten (new content); f1: output corrupted; f2: output deleted; f3 untouched
    cd.write_good(root, {"f0.wav": ("WAV", "PCM_16", 16000, 1, 2.0)}, seed=99)
    with open(os.path.join(out, "f1.wav.npy"), "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    os.unlink(os.path.join(out, "f2.wav.npy"))
    rc, stdout, _ = corpus_cli(root, out, *MEL_FLAGS)
    assert rc == 0
    run = last_run(out)
    assert (run["ok"], run["skipped"]) == (3, 1)
    r = rows(out)
    assert r["f3.wav"]["run_id"] == 1 and all(r[k]["run_id"] == run["run_id"] for k in ("f0.wav", "f1.wav", "f2.wav"))
    for key in files:
        ref = cd.reference(os.path.join(root, key), **cd.MEL)
        assert np.max(np.abs(np.load(os.path.join(out, key + ".npy")) - ref)) <= TOL_DB
    # --verify size trusts an existing output: a silently damaged one would then be kept
    with open(os.path.join(out, "f3.wav.npy"), "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    corpus_cli(root, out, *MEL_FLAGS, "--quiet", "--verify", "size")
    assert last_run(out)["skipped"] == 4
    corpus_cli(root, out, *MEL_FLAGS, "--quiet")
    assert last_run(out)["ok"] == 1


def test_a_different_config_is_refused_and_force_recomputes(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 1.0), "b/c.flac": ("FLAC", "PCM_16", 8000, 2, 0.7)})
    assert corpus_cli(root, out, *MEL_FLAGS, "-q")[0] == 0
    sha = {k: r["sha256"] for k, r in rows(out).items()}
    # the same configuration spelt differently is the same configuration
    assert corpus_cli(root, out, "--num-mel-bins", "64", "--max-freq", "8000", "--window", "hann", "-q")[0] == 0
    assert last_run(out)["skipped"] == 2
    rc, stdout, stderr = corpus_cli(root, out, "--num-mel-bins", "80", "--top-db", "none")
    assert rc == 1
    assert "different configuration" in stderr and "mel.num_mel_bins: 64 -> 80" in stderr
    assert "mel.top_db: 80.0 -> null" in stderr and "--force" in stderr
    assert {k: r["sha256"] for k, r in rows(out).items()} == sha  # nothing touched
    rc, stdout, _ = corpus_cli(root, out, "--num-mel-bins", "80", "--top-db", "none", "--force")
    assert rc == 0 and last_run(out)["ok"] == 2
    for key in ("a.wav", "b/c.flac"):
        y = np.load(os.path.join(out, key + ".npy"))
        ref = cd.reference(os.path.join(root, key), num_mel_bins=80, top_db=None)
        assert y.shape[0] == 80 and np.max(np.abs(y - ref)) <= TOL_DB
    # --force with the same configuration recomputes everything
    assert corpus_cli(root, out, "--num-mel-bins", "80", "--top-db", "none", "--force", "-q")[0] == 0
    assert (last_run(out)["ok"], last_run(out)["skipped"]) == (2, 0)


def test_a_held_lock_refuses_a_second_run(tmp_path):
    from arraymel.corpus.storage import Lock

    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.5)})
    os.makedirs(out)
    with Lock(out):
        rc, _, stderr = corpus_cli(root, out, "-q")
    assert rc == 1 and "holds the lock" in stderr and f"pid {os.getpid()}" in stderr
    assert not os.path.exists(os.path.join(out, "manifest.sqlite"))
    assert corpus_cli(root, out, "-q")[0] == 0  # released


# ------------------------------------------------------------------------------------------------ options


def test_channels_all_and_first_and_float16(corpus, tmp_path):
    root, good, _ = corpus
    keys = ["wav/f32_stereo_48k.wav", "ogg/stereo_44k.ogg", "wav/s16_mono_16k.wav"]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(keys + ["missing/file.wav"]) + "\n")
    for mode in ("all", "first"):
        out = str(tmp_path / mode)
        rc, _, _ = corpus_cli(root, out, *MEL_FLAGS, "--channels", mode, "--files", str(lst), "-q")
        assert rc == 2  # the missing listed file
        r = rows(out)
        assert r["missing/file.wav"]["status"] == "failed" and "not found" in r["missing/file.wav"]["error"]
        for key in keys:
            got = np.load(os.path.join(out, key + ".npy"))
            ref = cd.reference(os.path.join(root, key), channels=mode, **cd.MEL)
            assert got.shape == ref.shape and np.max(np.abs(got - ref)) <= TOL_DB
            if mode == "all":
                assert got.ndim == 3 and got.shape[0] == r[key]["channels"]
                # top_db per channel: each channel spans at most 80 dB from its own maximum
                assert np.all(got.max(axis=(1, 2)) - got.min(axis=(1, 2)) <= 80.0 + 1e-3)
    out = str(tmp_path / "f16")
    assert corpus_cli(root, out, *MEL_FLAGS, "--out-dtype", "float16", "--files", str(lst), "-q")[0] == 2
    got = np.load(os.path.join(out, keys[0] + ".npy"))
    ref = cd.reference(os.path.join(root, keys[0]), **cd.MEL)
    assert got.dtype == np.float16 and np.max(np.abs(got.astype(np.float64) - ref)) <= 0.07  # float16 spacing


def test_float16_overflow_fails_the_file_instead_of_writing_inf(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    import soundfile as sf

    os.makedirs(root)
    t = np.arange(8000) / 16000
    sf.write(os.path.join(root, "loud.wav"), 0.99 * np.sin(2 * np.pi * 1000 * t), 16000, subtype="FLOAT")
    rc, _, _ = corpus_cli(root, out, "--no-power-to-db", "--out-dtype", "float16", "-q")
    assert rc == 2
    r = rows(out)["loud.wav"]
    assert r["status"] == "failed" and "float16 range" in r["error"]


def test_no_resample_fails_a_rate_mismatch(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"ok.wav": ("WAV", "PCM_16", 16000, 1, 0.5), "hi.wav": ("WAV", "PCM_16", 48000, 1, 0.5)})
    rc, _, _ = corpus_cli(root, out, "--no-resample", "-q")
    assert rc == 2
    r = rows(out)
    assert r["ok.wav"]["status"] == "ok"
    assert "48000 Hz differs from the configured 16000 Hz" in r["hi.wav"]["error"]


def test_include_exclude_and_config_file(corpus, tmp_path):
    import arraymel

    root, good, _ = corpus
    cfg = tmp_path / "mel.json"
    m = arraymel.MelSpectrogram(num_mel_bins=40, fft_length=512, sequence_stride=160, sampling_rate=16000)
    cfg.write_text(json.dumps({**m.get_config(), "name": "mel", "trainable": False}))
    out = str(tmp_path / "out")
    rc, _, _ = corpus_cli(root, out, "--config", str(cfg), "--include", "*.FLAC", "--exclude", "long/*",
                            "--exclude", "bad/*", "-q")
    assert rc == 0
    r = rows(out)
    assert set(r) == {k for k in good if k.endswith(".flac") and not k.startswith("long/")}
    assert len(r) == 3
    for key in r:
        got = np.load(os.path.join(out, key + ".npy"))
        ref = cd.reference(os.path.join(root, key), num_mel_bins=40, fft_length=512, sequence_stride=160)
        assert got.shape == ref.shape and np.max(np.abs(got - ref)) <= TOL_DB
    # a flag overrides the file (and then differs from OUT_DIR's configuration)
    rc, _, stderr = corpus_cli(root, out, "--config", str(cfg), "--num-mel-bins", "41", "--include", "*.flac",
                                "--exclude", "bad/*", "-q")
    assert rc == 1 and "mel.num_mel_bins: 40 -> 41" in stderr


def test_max_failures_stops_the_run_with_status_1(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_bad(root)
    rc, stdout, stderr = corpus_cli(root, out, "--max-failures", "0", "--workers", "1")
    assert rc == 1
    assert "more than --max-failures 0" in stdout + stderr
    run = last_run(out)
    assert run["state"] == "stopped" and run["failed"] >= 1


def test_the_threaded_pipeline_gives_the_same_bytes(corpus, first_run, tmp_path):
    """The engine used on a GPU (decode threads -> compute thread -> writers), run on the CPU."""
    from arraymel.corpus.runner import RunOptions, run
    from arraymel.corpus.settings import CorpusSettings

    root, good, bad = corpus
    out = str(tmp_path / "threads")
    settings = CorpusSettings.create(dict(cd.MEL), min_seconds=cd.MIN_SECONDS, device="cpu", batch_seconds=5.0)
    rc = run(RunOptions(in_dir=root, out_dir=out, settings=settings, engine="threads", workers=2, quiet=True))
    assert rc == 2
    a, b = rows(first_run[0]), rows(out)
    assert {k: (r["status"], r["sha256"], r["error"]) for k, r in a.items()} == \
           {k: (r["status"], r["sha256"], r["error"]) for k, r in b.items()}


def test_bad_arguments_exit_1(tmp_path):
    assert corpus_cli(str(tmp_path), str(tmp_path / "o"), "--bogus")[0] == 1
    assert corpus_cli(str(tmp_path), str(tmp_path / "o"), "--fft-length", "0")[0] == 1
    assert corpus_cli(str(tmp_path), str(tmp_path / "o"), "--channels", "left")[0] == 1
    assert corpus_cli(str(tmp_path / "nope"), str(tmp_path / "o"))[0] == 1
    assert not os.path.exists(tmp_path / "o")  # nothing created for a run that cannot start
    assert corpus_cli(str(tmp_path), str(tmp_path))[0] == 1
    assert corpus_cli("status", str(tmp_path), "--force")[0] == 1
    assert corpus_cli("status", str(tmp_path / "none"))[0] == 1
    assert corpus_cli(str(tmp_path), str(tmp_path / "o2"), "--json")[0] == 1
    bad_cfg = tmp_path / "bad.json"
    bad_cfg.write_text('{"num_mel_bins": 64, "colour": "red"}')
    rc, _, err = corpus_cli(str(tmp_path), str(tmp_path / "o3"), "--config", str(bad_cfg))
    assert rc == 1 and "colour" in err
