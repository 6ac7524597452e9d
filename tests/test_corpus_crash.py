"""Crash safety of ``arraymel corpus``: SIGKILL part-way, SIGTERM, leftovers, a worker that dies.

The kill test runs the real command in a subprocess, kills it with SIGKILL once the manifest holds
some committed rows, runs it again, and compares everything with an uninterrupted run: the same
output bytes, the same manifest rows, no partial file, and no file committed before the kill
computed again.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

import corpus_data as cd  # noqa: E402
from test_corpus import corpus_cli, last_run, output_files, rows  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_FILES = 400
OPTS = ["--num-mel-bins", "64", "--workers", "2"]


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """400 files (8 distinct Ogg Vorbis clips, 3 s, 48 kHz stereo, copied) in 10 directories."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("many")
    src = tmp_path_factory.mktemp("src")
    for i in range(8):
        sf.write(str(src / f"{i}.ogg"), cd.signal(3.0, 48000, 2, 100 + i), 48000, format="OGG", subtype="VORBIS")
    for j in range(N_FILES):
        d = root / f"d{j % 10}"
        d.mkdir(exist_ok=True)
        shutil.copy(src / f"{j % 8}.ogg", d / f"f{j:04d}.ogg")
    return str(root)


@pytest.fixture(scope="module")
def reference_run(many, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "out")
    rc, _, _ = corpus_cli(many, out, *OPTS, "-q")
    assert rc == 0
    return out


def _cli_process(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "arraymel.cli", "corpus", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _ok_rows(out: str) -> int:
    try:
        db = sqlite3.connect(f"file:{out}/manifest.sqlite?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _wait_for_rows(proc: subprocess.Popen, out: str, timeout: float = 120.0) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        n = _ok_rows(out)
        if n >= 1:
            return n
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no committed row in time")


def _comparable(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("run_id", "updated_at")}


def test_sigkill_part_way_then_resume_equals_an_uninterrupted_run(many, reference_run, tmp_path):
    out = str(tmp_path / "out")
    proc = _cli_process(many, out, *OPTS, "-q")
    _wait_for_rows(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)
    done_before = {k: r for k, r in rows(out).items() if r["status"] == "ok"}
    files_after_kill = output_files(out)
    time.sleep(0.5)
    assert output_files(out) == files_after_kill, "a worker outlived the killed run and kept writing"
    assert 0 < len(done_before) < N_FILES, len(done_before)
    # what the manifest committed before the kill is on disk, complete
    for _key, r in done_before.items():
        assert files_after_kill[r["output"]]
    mtimes = {k: os.stat(os.path.join(out, r["output"])).st_mtime_ns for k, r in done_before.items()}

    rc, stdout, _ = corpus_cli(many, out, *OPTS)
    assert rc == 0
    run = last_run(out)
    recomputed = [k for k in done_before if rows(out)[k]["run_id"] == run["run_id"]]
    print(f"\nkill test: {len(done_before)} of {N_FILES} files done before SIGKILL; after it: skipped "
          f"{run['skipped']}, computed {run['ok']}, recomputed among the done ones: {len(recomputed)}")
    assert recomputed == []
    assert run["skipped"] == len(done_before) and run["ok"] == N_FILES - len(done_before)
    assert {k: os.stat(os.path.join(out, r["output"])).st_mtime_ns for k, r in done_before.items()} == mtimes

    # the final state equals the uninterrupted run's, byte for byte
    ref_rows, got_rows = rows(reference_run), rows(out)
    assert {k: _comparable(r) for k, r in got_rows.items()} == {k: _comparable(r) for k, r in ref_rows.items()}
    ref_files, got_files = output_files(reference_run), output_files(out)
    assert set(got_files) == set(ref_files)
    for name in ref_files:
        if name.endswith(".npy"):
            with open(os.path.join(out, name), "rb") as a, open(os.path.join(reference_run, name), "rb") as b:
                assert a.read() == b.read(), name
    assert not any("arraymel-tmp" in n for n in got_files)
    db = sqlite3.connect(os.path.join(out, "manifest.sqlite"))
    states = [s for (s,) in db.execute("SELECT state FROM runs ORDER BY run_id")]
    assert states == ["interrupted", "finished"]


def test_a_second_concurrent_run_is_refused_and_sigterm_stops_cleanly(many, reference_run, tmp_path):
    out = str(tmp_path / "out")
    proc = _cli_process(many, out, *OPTS, "--progress-interval", "0.2")
    _wait_for_rows(proc, out)
    rc, _, stderr = corpus_cli(many, out, *OPTS, "-q")  # while the first one runs
    assert proc.poll() is None
    assert rc == 1 and "holds the lock" in stderr and f"pid {proc.pid}" in stderr
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    r = rows(out)
    done = [k for k, v in r.items() if v["status"] == "ok"]
    assert 0 < len(done) < N_FILES  # stopped part-way, as asked
    assert proc.returncode == 1, (stdout, stderr)
    assert "SIGTERM" in stderr and "interrupted by SIGTERM" in stdout
    assert last_run(out)["state"] == "interrupted"
    assert not any("arraymel-tmp" in n for n in output_files(out))
    ref = rows(reference_run)
    assert all(r[k]["sha256"] == ref[k]["sha256"] for k in done)
    assert {n for n in output_files(out) if n.endswith(".npy")} == {r[k]["output"] for k in done}
    rc, _, _ = corpus_cli(many, out, *OPTS, "-q")
    assert rc == 0 and last_run(out)["skipped"] == len(done)


def test_leftovers_of_an_interrupted_run_are_removed(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a/x.wav": ("WAV", "PCM_16", 16000, 1, 0.5)})
    os.makedirs(os.path.join(out, "a"))
    junk = os.path.join(out, "a", ".x.wav.npy.arraymel-tmp-" + "0123456789abcdef" * 2)
    mine = os.path.join(out, "a", "keep.arraymel-tmp-notours")
    for p in (junk, mine):
        with open(p, "wb") as f:
            f.write(b"partial")
    rc, stdout, _ = corpus_cli(root, out)
    assert rc == 0
    assert not os.path.exists(junk) and os.path.exists(mine)
    assert "removed 1 partial output" in stdout


def test_a_file_that_kills_its_worker_is_isolated_and_recorded(tmp_path):
    """A decoder crash (simulated: the worker exits abruptly) fails that file only."""
    from arraymel.corpus.discover import default_include, walk
    from arraymel.corpus.local import ProcessEngine
    from arraymel.corpus.settings import CorpusSettings

    root = str(tmp_path / "in")
    files = {f"d/f{i:02d}.wav": ("WAV", "PCM_16", 16000, 1, 0.3) for i in range(12)}
    files["d/f05-CRASH.wav"] = ("WAV", "PCM_16", 16000, 1, 0.3)
    cd.write_good(root, files)
    settings = CorpusSettings.create({"num_mel_bins": 32}, device="cpu")
    sources = walk(root, None, default_include(), ()).sources
    engine = ProcessEngine(settings, str(tmp_path / "out"), workers=2, chunk_fn=cd.crashing_chunk)
    try:
        records = [r for group in engine.run(sources) for r in group]
    finally:
        engine.close()
    by_key = {r.key: r for r in records}
    assert set(by_key) == set(files)
    assert by_key["d/f05-CRASH.wav"].status == "failed"
    assert "worker process died" in by_key["d/f05-CRASH.wav"].error
    assert all(r.status == "ok" for k, r in by_key.items() if "CRASH" not in k)
    assert engine.crashes >= 2
    for k, r in by_key.items():
        if r.status == "ok":
            y = np.load(os.path.join(tmp_path, "out", k + ".npy"))
            assert y.shape == (32, 1 + int(0.3 * 16000) // 512)
