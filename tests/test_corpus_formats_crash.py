"""SIGKILL during a 2,500-file sharded run, then resume: every shard byte-identical to an uninterrupted run.

The run is a real ``arraymel corpus`` process (two worker processes); it is killed at several moments
(as soon as a shard is committed, half-way, and after a seeded random delay), each time in the middle of
assembling or writing a shard. After the kill, every shard the manifest calls committed is on disk with
the recorded size and SHA-256; the resumed run recomputes only the files of the shards not committed,
and the final shards, Kaldi index and manifest rows equal the uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

from test_corpus_formats import MEL, cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 2500
SHARD = 100
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """2,500 files of 0.1-0.4 s (16 kHz WAV) in 25 directories: the file count matters here, not the audio."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(7)
    clips = [(0.2 * rng.standard_normal(int(rng.integers(1600, 6400)))).astype(np.float32) for _ in range(50)]
    for i in range(N):
        d = root / f"s{i % 25:02d}"
        d.mkdir(exist_ok=True)
        sf.write(str(d / f"u{i:05d}.wav"), clips[i % 50] * (1 + (i % 7) / 10), 16000)
    return str(root)


def _args(tree: str, out: str, fmt: str) -> list[str]:
    return [tree, out, *MEL, "-q", "--format", fmt, "--shard-size", str(SHARD), "--workers", "2"]


@pytest.fixture(scope="module")
def reference(big_tree, tmp_path_factory):
    outs = {}
    for fmt in ("shar", "kaldi"):
        out = str(tmp_path_factory.mktemp(f"ref_{fmt}") / "out")
        rc, _, err = cli(*_args(big_tree, out, fmt))
        assert rc == 0, err
        outs[fmt] = out
    return outs


def _committed(out: str) -> dict[int, list]:
    try:
        db = sqlite3.connect(f"file:{out}/manifest.sqlite?mode=ro", uri=True, timeout=5)
        try:
            import json

            return {k: json.loads(p) for k, p in db.execute("SELECT shard, parts FROM shards")}
        finally:
            db.close()
    except sqlite3.Error:
        return {}


def _planned(out: str) -> bool:
    try:
        db = sqlite3.connect(f"file:{out}/manifest.sqlite?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT value FROM meta WHERE name = 'shards_planned'").fetchone() is not None
        finally:
            db.close()
    except sqlite3.Error:
        return False


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _shard_files(out: str, fmt: str) -> dict[str, bytes]:
    d = os.path.join(out, fmt)
    files = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        if name == "feats.scp":  # holds the absolute path of its own OUT_DIR
            data = data.replace(os.path.realpath(out).encode(), b"OUT_DIR")
        files[name] = data
    return files


def _rows(out: str) -> dict:
    db = sqlite3.connect(os.path.join(out, "manifest.sqlite"))
    rows = {k: r for k, *r in db.execute("SELECT key, status, shard, member, offset, nbytes, frames, shape FROM files")}
    shards = {k: r for k, *r in db.execute("SELECT shard, parts, slots_sha256, files, members FROM shards")}
    db.close()
    return {"files": rows, "shards": shards}


@pytest.mark.parametrize("fmt,moment", [("shar", "first shard"), ("shar", "half"), ("shar", "random"),
                                        ("kaldi", "first shard")])
def test_sigkill_then_resume_gives_byte_identical_shards(big_tree, reference, tmp_path, fmt, moment):
    out = str(tmp_path / "out")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "arraymel.cli", "corpus", *_args(big_tree, out, fmt)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    want = {"first shard": 1, "half": N // SHARD // 2}.get(moment)
    delay = random.Random(19).uniform(0.2, 1.5)  # "random": this long after the run has planned its shards
    planned_at = None
    while True:
        assert proc.poll() is None, ("the run ended before it could be killed", proc.communicate())
        if planned_at is None and _planned(out):
            planned_at = time.monotonic()
        done = len(_committed(out)) if want is not None or planned_at is not None else 0
        if (want is not None and done >= want) or (want is None and planned_at is not None and (
                time.monotonic() - planned_at >= delay or done >= N // SHARD - 3)):
            break  # "random": the delay, or 3 shards before the end where the run is faster than the delay
        assert time.monotonic() - t0 < 300
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # a worker that outlived the run would show up as a change below

    before = _committed(out)
    assert len(before) < N // SHARD
    for k, parts in before.items():  # committed means complete on disk
        for p in parts:
            path = os.path.join(out, p["path"])
            assert os.path.getsize(path) == p["size"] and _sha(path) == p["sha256"], (k, p["path"])
    mtimes = {p["path"]: os.stat(os.path.join(out, p["path"])).st_mtime_ns for parts in before.values() for p in parts}
    rc, out_text, err = cli("status", out)
    assert rc == 2 and f"{len(before)} committed, {N // SHARD - len(before)} pending" in out_text, (rc, out_text, err)

    rc, _, err = cli(*_args(big_tree, out, fmt))
    assert rc == 0, err
    db = sqlite3.connect(os.path.join(out, "manifest.sqlite"))
    ok, skipped = db.execute("SELECT ok, skipped FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    states = [s for (s,) in db.execute("SELECT state FROM runs ORDER BY run_id")]
    db.close()
    print(f"\n{fmt}, killed at {moment}: {len(before)} shards committed before SIGKILL; resume computed {ok}, "
          f"skipped {skipped}")
    assert skipped == len(before) * SHARD and ok == N - skipped, "only the shards not committed are recomputed"
    assert states == ["interrupted", "finished"]
    assert {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in mtimes} == mtimes, "committed shards left alone"
    assert _shard_files(out, fmt) == _shard_files(reference[fmt], fmt)
    assert _rows(out) == _rows(reference[fmt])
    assert not [f for _, _, fs in os.walk(out) for f in fs if "arraymel-tmp" in f]
