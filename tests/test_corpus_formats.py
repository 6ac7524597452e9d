"""``arraymel corpus --format shar|kaldi`` (and npy's extras), read back ONLY with the stacks' own readers.

Every array that Lhotse (``CutSet.from_shar`` + ``cut.load_features``, its sampler and collation),
WebDataset (``WebDataset(tars).decode()``) and kaldiio (``load_scp``) return is compared with the
``npy`` output of the same tree (byte-equal float32, in their ``(frames, features)`` layout).
Crash safety: the order of fsync / rename / directory fsync / manifest commit is recorded in-process
for every format; a full disk and an I/O error are injected mid-shard; shard membership never follows
completion order. The SIGKILL test of a 2,500-file run is in ``test_corpus_formats_crash.py``.
"""

from __future__ import annotations

import contextlib
import doctest
import errno
import importlib
import io
import json
import os
import random
import re
import sqlite3
import stat

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")
lhotse = pytest.importorskip("lhotse")
kaldiio = pytest.importorskip("kaldiio")
wds = pytest.importorskip("webdataset")

import arraymel.corpus  # noqa: E402
from arraymel.cli import main  # noqa: E402
from arraymel.corpus.formats import member_id  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TREE = 300
#: a small configuration: short files compute fast, and every format stores the same numbers
MEL = ["--fft-length", "512", "--sequence-stride", "160", "--num-mel-bins", "40"]
SHARD = 37  # not a divisor of the file count: the last shard is short


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(["corpus", *args])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


NAMES = ["sp ace.wav", "dots.in.name.flac", "pct%20.wav", "ünï/cödé.wav", "a/b.wav", "a/b.flac", "a_b.wav", "a/b%2Ewav.wav"]


def write_tree(root: str, n: int, seed: int = 0) -> list[str]:
    """``n`` short files (0.1-0.6 s, 16 kHz mono; WAV and FLAC) in a few directories, names that need
    escaping among them, and one empty file (which fails)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    keys = list(NAMES) + [f"d{i % 7}/f{i:04d}.{'wav' if i % 3 else 'flac'}" for i in range(n - len(NAMES) - 1)]
    for k in keys:
        p = os.path.join(root, k)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        m = int(rng.integers(1600, 9600))
        t = np.arange(m) / 16000.0
        x = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(m)).astype(np.float32)
        sf.write(p, x, 16000)
    open(os.path.join(root, "d0", "empty.wav"), "wb").close()
    return sorted(keys)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tree"))
    keys = write_tree(root, N_TREE)
    return root, keys


@pytest.fixture(scope="module")
def outs(tree, tmp_path_factory):
    """The same tree in every format."""
    root, _ = tree
    base = tmp_path_factory.mktemp("outs")
    res = {}
    for name, extra in [("npy", ["--nemo-manifest"]), ("shar", ["--format", "shar", "--shard-size", str(SHARD)]),
                        ("kaldi", ["--format", "kaldi", "--shard-size", str(SHARD)]),
                        ("lilcom", ["--format", "shar", "--shard-size", str(SHARD), "--shar-compression", "lilcom"])]:
        out = str(base / name)
        rc, _, err = cli(root, out, *MEL, "-q", *extra)
        assert rc == 2, err  # the empty file fails; everything else is ok
        res[name] = out
    return res


@pytest.fixture(scope="module")
def ref(outs, tree):
    """key -> the npy output (arraymel's layout)."""
    _, keys = tree
    return {k: np.load(os.path.join(outs["npy"], k + ".npy")) for k in keys}


def _ids(ref):
    return {member_id(k): k for k in ref}


# ------------------------------------------------------------------------------------------ the readers

def test_lhotse_from_shar_reads_every_cut_equal_to_npy(outs, ref):
    ids = _ids(ref)
    cuts = lhotse.CutSet.from_shar(in_dir=os.path.join(outs["shar"], "shar"))
    seen = []
    db = sqlite3.connect(os.path.join(outs["shar"], "manifest.sqlite"))
    meta = {k: (sr, n, ch) for k, sr, n, ch in db.execute("SELECT key, sampling_rate, samples, channels FROM files")}
    for cut in cuts:
        key = ids[cut.id]
        feats = cut.load_features()
        expected = ref[key].T
        assert feats.dtype == np.float32 and feats.shape == expected.shape, (key, feats.shape, expected.shape)
        assert np.array_equal(feats, expected), key
        assert cut.num_frames == expected.shape[0] and cut.num_features == expected.shape[1]
        assert cut.custom["source"] == key
        assert "arraymel" in cut.features.type and cut.features.type.endswith(db.execute(
            "SELECT value FROM meta WHERE name='config_hash'").fetchone()[0][:16])
        sr, n, ch = meta[key]
        assert cut.recording.sampling_rate == sr and cut.recording.num_samples == n and cut.recording.num_channels == ch
        assert cut.recording.duration == pytest.approx(n / sr)
        seen.append(key)
    assert seen == sorted(ref), "every ok file, once, in key order"


def test_lhotse_sampler_and_collation_on_the_shar_output(outs, ref):
    from lhotse.dataset import DynamicBucketingSampler
    from lhotse.dataset.collation import collate_features

    ids = _ids(ref)
    cuts = lhotse.CutSet.from_shar(in_dir=os.path.join(outs["shar"], "shar"))
    sampler = DynamicBucketingSampler(cuts, max_duration=8.0, num_buckets=3, shuffle=True, seed=1)
    n = 0
    for batch in sampler:
        feats, lens = collate_features(batch)
        assert feats.shape[0] == len(batch) == lens.shape[0]
        for i, cut in enumerate(batch):
            expected = ref[ids[cut.id]].T
            assert int(lens[i]) == expected.shape[0]
            np.testing.assert_array_equal(feats[i, : expected.shape[0]].numpy(), expected)
        n += len(batch)
    assert n == len(ref)


def test_webdataset_reads_the_shar_tars(outs, ref):
    ids = _ids(ref)
    tars = sorted(os.path.join(outs["shar"], "shar", f) for f in os.listdir(os.path.join(outs["shar"], "shar"))
                  if f.endswith(".tar"))
    got = {}
    for sample in wds.WebDataset(tars, shardshuffle=False).decode():
        got[ids[sample["__key__"]]] = sample["npy"]
        assert sample["json"]["num_frames"] == sample["npy"].shape[0]
    assert sorted(got) == sorted(ref)
    for k, a in got.items():
        assert np.array_equal(a, ref[k].T), k


def test_kaldiio_reads_feats_scp_and_utt2num_frames(outs, ref):
    ids = _ids(ref)
    kdir = os.path.join(outs["kaldi"], "kaldi")
    feats = kaldiio.load_scp(os.path.join(kdir, "feats.scp"))
    assert sorted(ids[u] for u in feats) == sorted(ref)
    for uid in feats:
        a = feats[uid]
        assert a.dtype == np.float32 and np.array_equal(a, ref[ids[uid]].T), uid
    with open(os.path.join(kdir, "feats.scp"), "rb") as f:
        order = [line.split(b" ")[0] for line in f]
    assert order == sorted(order), "Kaldi expects feats.scp sorted by id (byte order)"
    with open(os.path.join(kdir, "utt2num_frames")) as f:
        u2n = dict(line.split() for line in f)
    assert {u: int(n) for u, n in u2n.items()} == {u: ref[ids[u]].shape[1] for u in feats}
    # every ark read sequentially too (kaldiio's ark reader)
    seq = {}
    for ark in sorted(x for x in os.listdir(kdir) if x.endswith(".ark")):
        seq.update(dict(kaldiio.load_ark(os.path.join(kdir, ark))))
    assert sorted(seq) == sorted(feats)


def test_lilcom_shards_decode_within_the_documented_error(outs, ref):
    ids = _ids(ref)
    worst = 0.0
    for cut in lhotse.CutSet.from_shar(in_dir=os.path.join(outs["lilcom"], "shar")):
        a, b = cut.load_features(), ref[ids[cut.id]].T
        assert a.shape == b.shape
        worst = max(worst, float(np.max(np.abs(a - b))))
    print(f"\nlilcom (tick_power -5): max |error| {worst:.4g} dB over {len(ref)} log-mel files")
    assert 0 < worst <= 0.02  # docs/corpus.md: at most 0.0156 dB measured (half a step of 2^-5)
    for k, a in arraymel.corpus.open(outs["lilcom"]).items():
        assert np.max(np.abs(a - ref[k])) <= 0.02


def test_nemo_manifest_lists_every_npy(outs, ref, tree):
    root, _ = tree
    with open(os.path.join(outs["npy"], "nemo_manifest.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert [os.path.relpath(x["feature_filepath"], outs["npy"])[:-4] for x in lines] == sorted(ref)
    db = sqlite3.connect(os.path.join(outs["npy"], "manifest.sqlite"))
    dur = dict(db.execute("SELECT key, duration_s FROM files WHERE status = 'ok'"))
    for x in lines:
        key = os.path.relpath(x["feature_filepath"], outs["npy"])[:-4]
        assert np.array_equal(np.load(x["feature_filepath"]), ref[key])  # NeMo's [features, frames]
        assert x["duration"] == dur[key] and x["audio_filepath"] == os.path.join(os.path.realpath(root), key)


# ------------------------------------------------------------------------------------------ our reader

@pytest.mark.parametrize("fmt", ["npy", "shar", "kaldi"])
def test_open_reads_every_format_equal_to_npy(outs, ref, fmt):
    c = arraymel.corpus.open(outs[fmt])
    assert c.format == fmt and list(c) == sorted(ref) and len(c) == len(ref)
    assert "d0/empty.wav" not in c
    for k in c:
        assert np.array_equal(c[k], ref[k]), k
        assert c.frames(k) == ref[k].shape[1]
    assert c.config["num_mel_bins"] == 40 and c.config["sequence_stride"] == 160
    with pytest.raises(KeyError):
        c["nope.wav"]


@pytest.mark.parametrize("fmt,part", [("shar", "shar/features.000002.tar"), ("kaldi", "kaldi/feats.000002.ark"),
                                      ("npy", "a/b.wav.npy")])
def test_open_names_a_damaged_file(outs, tmp_path, fmt, part):
    import shutil

    out = str(tmp_path / "o")
    shutil.copytree(outs[fmt], out)
    path = os.path.join(out, part)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    c = arraymel.corpus.open(out)
    with pytest.raises(arraymel.corpus.CorpusError, match=re.escape(path) + ".*damaged.*SHA-256"):
        for k in c:
            c[k]
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(arraymel.corpus.CorpusError, match=re.escape(path) + (".*bytes" if fmt != "npy" else ".*SHA-256")):
        for k in arraymel.corpus.open(out):
            arraymel.corpus.open(out)[k]
    with pytest.raises(arraymel.corpus.CorpusError, match="holds no corpus"):
        arraymel.corpus.open(str(tmp_path))


def test_corpus_dataset_pads_and_returns_lengths(outs, ref):
    import pickle

    import torch

    from arraymel.torch import CorpusDataset

    ds = CorpusDataset(outs["kaldi"])
    ds = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=CorpusDataset.collate)
    i = 0
    for feats, lens in loader:
        for j in range(feats.shape[0]):
            expected = ref[ds.keys[i]]
            assert int(lens[j]) == expected.shape[1]
            assert np.array_equal(feats[j, :, : lens[j]].numpy(), expected)
            assert not feats[j, :, lens[j]:].any()
            i += 1
    assert i == len(ref)


# ------------------------------------------------------------------------------------------ options

@pytest.mark.parametrize("args,message", [
    (["--format", "parquet"], "--format 'parquet': must be one of npy, shar, kaldi"),
    (["--format", "shar", "--shard-size", "0"], "--shard-size 0: must be a whole number of files >= 1"),
    (["--format", "kaldi", "--shard-size", "ten"], "--shard-size 'ten'"),
    (["--format", "kaldi", "--out-dtype", "float16"], "Kaldi's binary matrices are float32"),
    (["--format", "shar", "--channels", "all"], "--channels all with --format shar"),
    (["--shar-compression", "lilcom"], "only with --format shar"),
    (["--format", "shar", "--nemo-manifest"], "--nemo-manifest: only with --format npy"),
])
def test_bad_options_one_line_status_1_nothing_written(tree, tmp_path, args, message):
    root, _ = tree
    out = str(tmp_path / "never")
    rc, stdout, err = cli(root, out, *args)
    assert rc == 1 and stdout == ""
    assert err.count("\n") == 1 and message in err, err
    assert not os.path.exists(out)


def test_switching_format_or_shard_size_is_refused_without_force(tree, outs, tmp_path):
    import shutil

    root, _ = tree
    out = str(tmp_path / "o")
    shutil.copytree(outs["shar"], out)
    def snapshot():  # the lock file is rewritten by every attempt; nothing else may change
        return {os.path.join(d, p): os.stat(os.path.join(d, p)).st_mtime_ns for d, _, fs in os.walk(out) for p in fs
                if p != ".arraymel-corpus.lock"}

    before = snapshot()
    for extra in (["--format", "kaldi", "--shard-size", str(SHARD)], ["--format", "shar", "--shard-size", "50"], []):
        rc, _, err = cli(root, out, *MEL, "-q", *extra)
        assert rc == 1 and "different configuration" in err and "--force" in err, err
    assert snapshot() == before


def test_a_changed_source_rewrites_only_its_shard(tree, tmp_path, ref):
    import shutil

    import soundfile as sf

    root = str(tmp_path / "in")
    shutil.copytree(tree[0], root)
    out = str(tmp_path / "o")
    args = [root, out, *MEL, "-q", "--format", "kaldi", "--shard-size", str(SHARD)]
    assert cli(*args)[0] == 2
    arks = {f: os.stat(os.path.join(out, "kaldi", f)).st_mtime_ns for f in os.listdir(os.path.join(out, "kaldi"))
            if f.endswith(".ark")}
    key = sorted(ref)[SHARD * 2 + 3]  # in shard 2
    x, sr = sf.read(os.path.join(root, key), dtype="float32")
    sf.write(os.path.join(root, key), x[::-1].copy(), sr)
    assert cli(*args)[0] == 2
    db = sqlite3.connect(os.path.join(out, "manifest.sqlite"))
    ok, skipped = db.execute("SELECT ok, skipped FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert ok == SHARD and skipped == N_TREE - SHARD
    now = {f: os.stat(os.path.join(out, "kaldi", f)).st_mtime_ns for f in arks}
    assert [f for f in arks if now[f] != arks[f]] == ["feats.000002.ark"]
    c = arraymel.corpus.open(out)
    assert not np.array_equal(c[key], ref[key])
    assert all(np.array_equal(c[k], ref[k]) for k in c if k != key)


def test_status_reports_shards(outs):
    rc, out, _ = cli("status", outs["shar"])
    n = -(-N_TREE // SHARD)
    assert f"shards (shar, {SHARD} files each): {n} committed, 0 pending; {N_TREE - 1} files in them" in out
    assert rc == 2  # the empty file failed


# ------------------------------------------------------------------------------------------ shards by sorted order

def test_shard_membership_follows_sorted_order_not_completion_order(tree, tmp_path):
    """The store is fed the same records in key order and shuffled: both write the same bytes, and each
    shard holds exactly its slice of the sorted keys."""
    from arraymel.corpus.discover import Source
    from arraymel.corpus.formats import ShardedStore, plan, shard_writer
    from arraymel.corpus.manifest import FileRecord, Manifest
    from arraymel.corpus.settings import CorpusSettings
    from arraymel.corpus.storage import serialize

    settings = CorpusSettings.create({"num_mel_bins": 8}, output_format="shar", shard_size=4)
    rng = np.random.default_rng(3)
    keys = [f"k{i:02d}.wav" for i in range(10)]
    srcs = [Source(k, "", 100 + i, 7) for i, k in enumerate(keys)]
    arrays = {k: rng.standard_normal((8, 5 + i)).astype(np.float32) for i, k in enumerate(keys)}

    def records():
        return [FileRecord(key=k, status="ok", source_size=100 + i, source_mtime_ns=7, sampling_rate=16000.0, channels=1,
                           samples=512 * (5 + i), duration_s=0.1, frames=5 + i, payload=serialize(arrays[k]))
                for i, k in enumerate(keys)]

    results = []
    for order in ("sorted", "shuffled"):
        out = str(tmp_path / order)
        os.makedirs(out)
        m = Manifest(os.path.join(out, "manifest.sqlite"))
        store = ShardedStore(m, shard_writer(settings, out, "/in"), plan(list(reversed(srcs)), 4), out, settings)
        store.run_id = 1
        recs = records()
        if order == "shuffled":
            random.Random(5).shuffle(recs)
        for i in range(0, len(recs), 3):  # groups of 3, as an engine hands them over
            store.commit(recs[i:i + 3])
        assert sorted(m.shards()) == [0, 1, 2]
        m.close()
        cuts = lhotse.CutSet.from_shar(in_dir=os.path.join(out, "shar"))
        shards = {}
        for cut in cuts:
            shards.setdefault(cut.shard_origin.name, []).append(cut.custom["source"])
            assert np.array_equal(cut.load_features(), arrays[cut.custom["source"]].T)
        assert list(shards.values()) == [keys[0:4], keys[4:8], keys[8:10]]
        results.append({f: open(os.path.join(out, "shar", f), "rb").read() for f in os.listdir(os.path.join(out, "shar"))})
    assert results[0] == results[1]


# ------------------------------------------------------------------------------------------ commit order (spies)

class Spy:
    """Records, in this process, fsyncs (of files and of directories), renames and manifest commits."""

    def __init__(self, monkeypatch):
        from arraymel.corpus.manifest import Manifest

        self.events: list[tuple] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}")
            kind = "dirsync" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync"
            self.events.append((kind, path))
            return real_fsync(fd)

        def replace(a, b, *args, **kw):
            r = real_replace(a, b, *args, **kw)
            self.events.append(("rename", os.fspath(a), os.path.realpath(os.fspath(b))))
            return r

        real_record, real_commit_shard = Manifest.record, Manifest.commit_shard

        def record(m, records, run_id):
            records = list(records)
            root = os.path.dirname(m.path)
            self.events.append(("commit", [os.path.join(root, r.output) for r in records if r.status == "ok" and r.output]))
            return real_record(m, records, run_id)

        def commit_shard(m, shard, **kw):
            root = os.path.dirname(m.path)
            self.events.append(("commit", [os.path.join(root, p["path"]) for p in kw["parts"]]))
            return real_commit_shard(m, shard, **kw)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(Manifest, "record", record)
        monkeypatch.setattr(Manifest, "commit_shard", commit_shard)

    def check(self, out_root: str) -> int:
        """Every committed path was fsynced under its temporary name, renamed, and its directory fsynced
        after the rename and before the commit; the number of committed paths checked."""
        checked = 0
        for i, ev in enumerate(self.events):
            if ev[0] != "commit":
                continue
            for path in ev[1]:
                path = os.path.realpath(path)
                renames = [j for j in range(i) if self.events[j][0] == "rename" and self.events[j][2] == path]
                assert renames, f"{path} committed before it was renamed into place"
                j = renames[-1]
                tmp = self.events[j][1]
                assert any(e == ("fsync", tmp) for e in self.events[:j]), f"{path}: not fsynced before its rename"
                d = os.path.dirname(path)
                assert any(e == ("dirsync", d) for e in self.events[j + 1:i]), (
                    f"{path}: its directory {d} was not fsynced between the rename and the manifest commit")
                checked += 1
        return checked


@pytest.mark.parametrize("fmt", ["npy", "shar", "kaldi"])
def test_fsync_rename_directory_fsync_then_commit(tree, tmp_path, monkeypatch, fmt):
    """In-process (the threaded engine, so that every write is seen): for every output or shard file, the
    order is fsync (temporary name), rename, directory fsync, manifest commit."""
    from arraymel.corpus.runner import RunOptions, run
    from arraymel.corpus.settings import CorpusSettings

    root = str(tmp_path / "in")
    write_tree(root, 40, seed=4)
    out = str(tmp_path / "out")
    settings = CorpusSettings.create({"fft_length": 512, "sequence_stride": 160, "num_mel_bins": 40}, device="cpu",
                                     output_format=fmt, shard_size=9)
    spy = Spy(monkeypatch)
    assert run(RunOptions(in_dir=root, out_dir=out, settings=settings, engine="threads", workers=2, quiet=True)) == 2
    n = spy.check(out)
    assert n == (39 if fmt == "npy" else (5 if fmt == "kaldi" else 10)), n


def test_a_worker_chunk_fsyncs_directories_before_returning(tree, tmp_path, monkeypatch):
    """The process engine's chunk (what a worker process or a Dask task runs), in-process: the outputs it
    returns are renamed and their directories fsynced before it returns."""
    from arraymel.corpus.chunks import process_chunk
    from arraymel.corpus.discover import walk
    from arraymel.corpus.settings import CorpusSettings

    root = str(tmp_path / "in")
    write_tree(root, 20, seed=5)
    out = str(tmp_path / "out")
    os.makedirs(out)
    settings = CorpusSettings.create({"fft_length": 512, "sequence_stride": 160, "num_mel_bins": 40}, device="cpu")
    spy = Spy(monkeypatch)
    found = walk(root, out, ("*.wav", "*.flac"), ())
    records = process_chunk(found.sources, settings, os.path.realpath(out))
    spy.events.append(("commit", [os.path.join(os.path.realpath(out), r.output) for r in records if r.status == "ok"]))
    assert spy.check(os.path.realpath(out)) == 19


# ------------------------------------------------------------------------------------------ a full disk, an I/O error

@pytest.mark.parametrize("fmt,code", [("shar", errno.ENOSPC), ("kaldi", errno.EIO)])
def test_disk_full_or_io_error_mid_shard(tree, outs, tmp_path, monkeypatch, fmt, code):
    """The 4th shard's data file fails part-way (its other file is then never renamed into place either):
    status 1, one line naming the file and the cause, nothing under
    the shard's final name, the manifest consistent (3 shards committed, their rows only); then a run
    without the fault completes with the same bytes as an uninterrupted run."""
    root, keys = tree
    out = str(tmp_path / "out")
    real_write = os.write
    victim = "features.000003.tar" if fmt == "shar" else "feats.000003.ark"
    state = {"armed": False, "written": 0}
    from arraymel.corpus import formats

    real_stage = formats.Staging.write

    def stage(self, rel, produce):
        state["armed"] = rel.endswith(victim)
        try:
            return real_stage(self, rel, produce)
        finally:
            state["armed"] = False

    def write(fd, data):
        if state["armed"]:
            state["written"] += len(data)
            if state["written"] > 4096:
                raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(formats.Staging, "write", stage)
    monkeypatch.setattr(os, "write", write)
    rc, stdout, err = cli(root, out, *MEL, "--format", fmt, "--shard-size", str(SHARD), "--workers", "1")
    monkeypatch.undo()
    assert rc == 1
    lines = [x for x in err.strip().splitlines() if not x.startswith("[")]  # progress lines start with [h:mm:ss]
    name = errno.errorcode[code]
    assert len(lines) == 1 and lines[0].startswith("arraymel corpus: stopped: cannot write the shard file "), lines
    assert victim in lines[0] and f"({name})" in lines[0], lines
    assert not os.path.exists(os.path.join(out, fmt, victim))
    assert not [f for f in os.listdir(os.path.join(out, fmt)) if ".000003." in f]
    assert not [f for _, _, fs in os.walk(out) for f in fs if "arraymel-tmp" in f]
    db = sqlite3.connect(os.path.join(out, "manifest.sqlite"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [s for (s,) in db.execute("SELECT shard FROM shards ORDER BY shard")] == [0, 1, 2]
    assert {s for (s,) in db.execute("SELECT DISTINCT shard FROM files")} <= {0, 1, 2, None}
    assert db.execute("SELECT state FROM runs").fetchone()[0] == "stopped"
    db.close()
    c = arraymel.corpus.open(out)
    assert len(c) == 3 * SHARD - ("d0/empty.wav" in sorted([*keys, "d0/empty.wav"])[:3 * SHARD])
    rc, _, err = cli(root, out, *MEL, "-q", "--format", fmt, "--shard-size", str(SHARD))
    assert rc == 2, err
    ref_dir = os.path.join(outs[fmt], fmt)
    for f in sorted(os.listdir(ref_dir)):
        if f in ("feats.scp",):  # absolute paths of its own OUT_DIR
            continue
        with open(os.path.join(ref_dir, f), "rb") as a, open(os.path.join(out, fmt, f), "rb") as b:
            assert a.read() == b.read(), f


# ------------------------------------------------------------------------------------------ docs and docstrings

@pytest.mark.parametrize("module", ["arraymel.corpus.reader", "arraymel.corpus.formats", "arraymel.corpus.formats.kaldi"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def _doc_snippets() -> dict[str, str]:
    with open(os.path.join(ROOT, "docs", "corpus.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Reading the outputs", 1)[1].split("\n## ", 1)[0]
    out = {}
    for title, body in re.findall(r"\n### ([^\n]+)\n(.*?)(?=\n### |\Z)", section, re.S):
        code = re.findall(r"```python\n(.*?)```", body, re.S)
        if code:
            out[title.strip()] = "\n".join(code)
    return out


def test_docs_have_one_snippet_per_stack():
    assert len(_doc_snippets()) >= 5, sorted(_doc_snippets())


@pytest.mark.parametrize("title", sorted(_doc_snippets()))
def test_docs_snippets_run(title, outs, ref):
    """docs/corpus.md's snippets, run on this tree's outputs (``OUT_DIR``: the run's output directory); each
    leaves ``features`` (key -> array, arraymel's layout) for the check."""
    code = _doc_snippets()[title]
    fmt = ("shar" if title.startswith(("Lhotse", "WebDataset")) else "kaldi" if "Kaldi" in title else "npy")
    ns: dict = {"OUT_DIR": outs[fmt]}
    exec(compile(code, f"docs/corpus.md: {title}", "exec"), ns)
    got = ns["features"]
    assert sorted(got) == sorted(ref), title
    for k, a in got.items():
        assert np.array_equal(np.asarray(a), ref[k]), (title, k)


@pytest.mark.slow
def test_dask_writes_the_same_shards(tree, outs):
    """``--dask local:2``: the workers compute, the client writes the shards: the same bytes as the local run."""
    pytest.importorskip("distributed")
    import tempfile

    root, _ = tree
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        rc, _, err = cli(root, out, *MEL, "-q", "--format", "shar", "--shard-size", str(SHARD), "--dask", "local:2")
        assert rc == 2, err
        ref_dir, got_dir = os.path.join(outs["shar"], "shar"), os.path.join(out, "shar")
        assert sorted(os.listdir(got_dir)) == sorted(os.listdir(ref_dir))
        for f in os.listdir(ref_dir):
            with open(os.path.join(ref_dir, f), "rb") as a, open(os.path.join(got_dir, f), "rb") as b:
                assert a.read() == b.read(), f


def test_status_and_open_after_a_kill_inside_a_manifest_transaction(outs, tmp_path):
    """A run killed inside a manifest transaction leaves a hot journal: status and the reader roll it back
    (to the last commit) instead of calling the manifest damaged."""
    import shutil
    import signal
    import subprocess
    import sys

    out = str(tmp_path / "o")
    shutil.copytree(outs["kaldi"], out)
    code = ("import sqlite3, sys, time\n"
            f"db = sqlite3.connect({os.path.join(out, 'manifest.sqlite')!r}, isolation_level=None)\n"
            "db.execute('PRAGMA cache_size=1')\n"  # spill the transaction's pages into the file
            "db.execute('BEGIN IMMEDIATE')\n"
            "db.execute('DELETE FROM files')\n"
            "db.executemany('INSERT INTO meta VALUES (?, ?)', [(str(i), 'x' * 200) for i in range(20000)])\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert os.path.exists(os.path.join(out, "manifest.sqlite-journal"))
    rc, text, err = cli("status", out)
    assert rc == 2 and f"files {N_TREE} = ok {N_TREE - 1}" in text, (rc, err)
    assert len(arraymel.corpus.open(out)) == N_TREE - 1


# ------------------------------------------------------------------------ every engine, every sharded format
N_SMALL = 40
SMALL_SHARD = 7


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small tree, and the process engine's outputs of it (npy and every sharded format): the reference
    the other engines' shards are compared with, byte for byte."""
    root = str(tmp_path_factory.mktemp("small"))
    keys = write_tree(root, N_SMALL, seed=3)
    base = tmp_path_factory.mktemp("small-processes")
    res = {}
    for fmt in ("npy", "shar", "kaldi"):
        out = str(base / fmt)
        extra = [] if fmt == "npy" else ["--format", fmt, "--shard-size", str(SMALL_SHARD)]
        rc, _, err = cli(root, out, *MEL, "-q", "--engine", "processes", "--workers", "2", *extra)
        assert rc == 2, err  # the empty file fails
        res[fmt] = out
    return root, keys, res


def _shard_files(out: str, fmt: str) -> dict[str, bytes]:
    """file name -> bytes of every file of the format's directory (feats.scp's absolute paths made relative)."""
    d = os.path.join(out, fmt)
    got = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            got[name] = f.read().replace(os.fsencode(os.path.realpath(out)), b"OUT")
    return got


def _read_with_the_stack(out: str, fmt: str) -> dict[str, np.ndarray]:
    """member id -> features (frames, bins), as lhotse or kaldiio reads them."""
    if fmt == "shar":
        return {cut.id: cut.load_features() for cut in lhotse.CutSet.from_shar(in_dir=os.path.join(out, "shar"))}
    return dict(kaldiio.load_scp(os.path.join(out, "kaldi", "feats.scp")))


@pytest.mark.parametrize("fmt", ["shar", "kaldi"])
@pytest.mark.parametrize("engine,device", [("threads", "cpu"), ("decoders", "cpu"), ("decoders", "stand-in")])
def test_every_engine_writes_the_sharded_formats(small, tmp_path, fmt, engine, device):
    """Each engine hands its outputs to the shard writer: the stack's reader finds every ok file with the
    numbers of that engine's own npy output; on the CPU the shards are the process engine's, byte for byte
    (the stand-in device computes nothing: its outputs are zero-filled, so its own npy output is the oracle)."""
    root, keys, procs = small
    opts = ["--engine", engine, "--device", device, "--workers", "2"]
    if engine == "decoders":
        opts += ["--decode-workers", "2"]
    out = str(tmp_path / fmt)
    rc, _, err = cli(root, out, *MEL, "-q", *opts, "--format", fmt, "--shard-size", str(SMALL_SHARD))
    assert rc == 2, err
    if device == "cpu":
        npy_dir = procs["npy"]
        assert _shard_files(out, fmt) == _shard_files(procs[fmt], fmt)
    else:
        npy_dir = str(tmp_path / "npy")
        rc, _, err = cli(root, npy_dir, *MEL, "-q", *opts)
        assert rc == 2, err
    ok = [k for k in keys if os.path.exists(os.path.join(npy_dir, k + ".npy"))]
    assert len(ok) == N_SMALL - 1  # all but the empty file
    ids = {member_id(k): k for k in ok}
    got = _read_with_the_stack(out, fmt)
    assert sorted(got) == sorted(ids), "every ok file, once"
    for uid, a in got.items():
        expected = np.load(os.path.join(npy_dir, ids[uid] + ".npy")).T
        assert a.dtype == np.float32 and a.shape == expected.shape and np.array_equal(a, expected), ids[uid]
    opened = arraymel.corpus.open(out)
    assert sorted(opened.keys()) == sorted(ok)


def test_decode_processes_shard_a_streamed_long_file(tmp_path):
    """A file too long to hold (``--memory-per-worker 64``: streamed in blocks by its decode process) goes into
    its shard like any other: the decoders engine's shard equals the process engine's, byte for byte."""
    import soundfile as sf

    root = str(tmp_path / "tree")
    write_tree(root, 12, seed=5)
    rng = np.random.default_rng(5)
    sf.write(os.path.join(root, "long.wav"), (0.1 * rng.standard_normal(16000 * 140)).astype(np.float32), 16000)
    outs = {}
    for engine in ("processes", "decoders"):
        outs[engine] = out = str(tmp_path / engine)
        rc, _, err = cli(root, out, *MEL, "-q", "--engine", engine, "--device", "cpu", "--workers", "2",
                         "--decode-workers", "2", "--memory-per-worker", "64", "--format", "shar", "--shard-size", "5")
        assert rc == 2, err
    assert _shard_files(outs["decoders"], "shar") == _shard_files(outs["processes"], "shar")
    got = arraymel.corpus.open(outs["decoders"])
    assert got["long.wav"].shape[-1] > 10000  # the long file is there, whole
    assert not [n for n in os.listdir(outs["decoders"]) if ".arraymel-tmp-" in n], "no staged file left behind"


def test_an_engine_that_returns_no_output_stops_the_run_naming_it(small, tmp_path, monkeypatch):
    """An ok record without its staged output (an engine wired without ``Writer.attach``) stops the run with a
    message naming the file, before a shard is written without that member."""
    from arraymel.corpus.storage import Writer

    monkeypatch.setattr(Writer, "attach", lambda self, records: None)
    root, _, _ = small
    out = str(tmp_path / "out")
    rc, _, err = cli(root, out, *MEL, "-q", "--engine", "threads", "--device", "cpu", "--workers", "2",
                     "--format", "kaldi", "--shard-size", str(SMALL_SHARD))
    assert rc == 1 and "as done without its output" in err and "nothing of this shard was written" in err, err
    assert not os.path.exists(os.path.join(out, "kaldi", "feats.scp"))
