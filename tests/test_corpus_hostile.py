"""``arraymel corpus`` under hostile conditions (issue 12, F1-F8): every failure of the run's own machinery
ends with one clear line, no property of one file stops the run, a damaged manifest is refused, ``status``
tells the truth, and a long file is computed in bounded memory with the library's numbers.

Disk full is a real 256 KB tmpfs where the tests run as root (skipped otherwise); every other failure
of the file system is injected.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

import corpus_data as cd  # noqa: E402
from test_corpus import MEL_FLAGS, TOL_DB, corpus_cli, last_run, output_files, rows  # noqa: E402

import arraymel  # noqa: E402
from arraymel.corpus import decode as decode_mod  # noqa: E402
from arraymel.corpus import discover as discover_mod  # noqa: E402
from arraymel.corpus import storage  # noqa: E402
from arraymel.corpus.manifest import Manifest  # noqa: E402
from arraymel.corpus.runner import RunOptions, run  # noqa: E402
from arraymel.corpus.settings import CorpusSettings  # noqa: E402


def one_line_error(stderr: str, *words: str) -> None:
    """The failure is said on one line holding ``words``, and no traceback is shown."""
    assert "Traceback" not in stderr, stderr
    assert any(all(w in ln for w in words) for ln in stderr.splitlines()), (words, stderr)


def threads_run(root: str, out: str, **kw) -> int:
    """A run in this process (the threaded engine on the CPU), so that an injected fault reaches its writers."""
    settings = CorpusSettings.create(dict(cd.MEL), device="cpu", **kw.pop("settings", {}))
    return run(RunOptions(in_dir=root, out_dir=out, settings=settings, engine="threads", workers=1, **kw))


# ------------------------------------------------------------------------------------------------ F1: machinery


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KB tmpfs (root only: mount(2) needs it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_f1_disk_full_stops_with_one_line_naming_the_cause_and_the_file(small_tmpfs, tmp_path):
    root = str(tmp_path / "in")
    cd.write_good(root, {"a_small.wav": ("WAV", "PCM_16", 16000, 1, 0.5), "b_long.wav": ("WAV", "PCM_16", 16000, 1, 30.0)})
    out = os.path.join(small_tmpfs, "out")
    rc, _, stderr = corpus_cli(root, out, "--workers", "1")  # 128 mel bins x 938 frames: 480 KB > 256 KB
    assert rc == 1
    one_line_error(stderr, "No space left on device", "b_long.wav.npy")
    run_row = last_run(out)
    assert run_row["state"] == "stopped" and "ENOSPC" in run_row["message"]
    assert not [n for n in output_files(out) if storage.TMP_MARK in n]  # the partial output was removed
    assert "b_long.wav" not in rows(out)
    # the disk already full when a run starts: the lock file cannot even be written
    with open(os.path.join(small_tmpfs, "filler"), "wb", buffering=0) as f:
        with pytest.raises(OSError) as full:
            while True:
                f.write(b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
    rc, _, stderr = corpus_cli(root, os.path.join(small_tmpfs, "out2"), "--workers", "1")
    assert rc == 1
    one_line_error(stderr, "No space left on device", "out2")


def test_f1_a_disk_that_fills_before_a_commit_stops_the_run_and_status_says_interrupted(small_tmpfs, tmp_path,
                                                                                      monkeypatch):
    root, out = str(tmp_path / "in"), os.path.join(small_tmpfs, "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.5)})
    filler = os.path.join(small_tmpfs, "filler")
    record = Manifest.record

    def fill_then_record(self, records, run_id):
        with open(filler, "wb", buffering=0) as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)
        return record(self, records, run_id)

    monkeypatch.setattr(Manifest, "record", fill_then_record)
    rc, _, stderr = corpus_cli(root, out, *MEL_FLAGS, "--workers", "1")
    assert rc == 1
    one_line_error(stderr, "cannot write the manifest", "manifest.sqlite", "full")
    one_line_error(stderr, "could not be marked stopped")
    os.unlink(filler)
    rc, report, _ = corpus_cli("status", out)
    assert rc == 2 and "run 1 interrupted" in report


def test_f1_an_io_error_while_writing_an_output_stops_the_run_cleanly(tmp_path, monkeypatch, capsys):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.5)})

    def broken(fd, data):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(storage, "_write_all", broken)
    assert threads_run(root, out) == 1
    one_line_error(capsys.readouterr().err, "Input/output error (EIO)", "a.wav.npy")
    assert last_run(out)["state"] == "stopped"
    assert not [n for n in output_files(out) if storage.TMP_MARK in n]


def test_f1_a_manifest_that_cannot_be_written_stops_the_run_cleanly(tmp_path, monkeypatch, capsys):
    """SQLite's own "database or disk is full" (its page limit reached), not a mock of the manifest."""
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {f"f{i:02d}.wav": ("WAV", "PCM_16", 16000, 1, 0.1) for i in range(20)})
    start_run = Manifest.start_run

    def full_after_start(self, **kw):
        run_id = start_run(self, **kw)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages}")  # 20 rows need more pages than the run row left
        return run_id

    monkeypatch.setattr(Manifest, "start_run", full_after_start)
    assert threads_run(root, out) == 1
    one_line_error(capsys.readouterr().err, "cannot write the manifest", "manifest.sqlite", "full")


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.2)})

    def bug(*a, **k):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr("arraymel.corpus.runner.walk", bug)
    rc, _, stderr = corpus_cli(root, out, *MEL_FLAGS)
    assert rc == 1
    one_line_error(stderr, "unexpected error: ZeroDivisionError: planted", "--debug")
    with pytest.raises(ZeroDivisionError):
        corpus_cli(root, out, *MEL_FLAGS, "--debug")


# ------------------------------------------------------------------------------------------------ F2, F3: names


def test_f2_f3_any_name_is_processed_or_failed_with_its_reason_and_stored_without_loss(tmp_path):
    root, out = tmp_path / "in", str(tmp_path / "out")
    latin1 = os.fsdecode(b"caf\xe9.wav")  # not UTF-8
    newline = "new\nline.wav"
    longest = "L" * 247 + ".wav"  # 251 bytes: its output is 255, the most a name may have
    too_long = "T" * 248 + ".wav"  # 252 bytes: legal, but its output (256) is not
    odd_dir = os.fsdecode(b"dir\xff")
    files = {latin1: 0.4, newline: 0.3, longest: 0.3, too_long: 0.3, f"{odd_dir}/x.wav": 0.2, "plain.wav": 0.2}
    staged = str(tmp_path / "staged")  # soundfile cannot name them itself: written under plain names, then renamed
    cd.write_good(staged, {f"{i}.wav": ("WAV", "PCM_16", 16000, 1, v) for i, v in enumerate(files.values())})
    for i, key in enumerate(files):
        os.makedirs(os.path.dirname(os.path.join(root, key)), exist_ok=True)
        os.rename(os.path.join(staged, f"{i}.wav"), os.path.join(root, key))
    odd_bad = os.fsdecode(b"bad\xfe\n.wav")  # not UTF-8, with a newline, and not audio
    with open(root / odd_bad, "wb") as f:
        f.write(b"not audio at all")
    files[odd_bad] = None
    rc, stdout, stderr = corpus_cli(str(root), out, *MEL_FLAGS, "--workers", "1")
    assert rc == 2, stderr
    r = rows(out)
    assert set(r) == {os.fsencode(k) if isinstance(k, str) and not _utf8(k) else k for k in files}  # BLOB keys
    m = Manifest(os.path.join(out, "manifest.sqlite"), readonly=True)
    stored = {row["key"]: row for row in m.rows()}
    m.close()
    assert set(stored) == set(files)  # read back as the very same names
    assert stored[too_long]["status"] == "failed" and "256 bytes" in stored[too_long]["error"]
    assert stored[odd_bad]["status"] == "failed" and "not a readable audio file" in stored[odd_bad]["error"]
    for key in set(files) - {too_long, odd_bad}:
        assert stored[key]["status"] == "ok", (key, stored[key]["error"])
        got = np.load(os.path.join(out, *key.split("/")) + ".npy")
        with open(os.path.join(root, *key.split("/")), "rb") as source:  # soundfile cannot open such names itself
            ref = cd.reference(source, **cd.MEL)
        assert np.max(np.abs(got - ref)) <= TOL_DB
    # printed on one line each, undecodable bytes and control characters escaped
    assert "\n    bad\\xfe\\n.wav: not a readable audio file" in stdout
    assert f"    {'T' * 248}.wav: the output name" in stdout
    assert not [n for n in output_files(out) if storage.TMP_MARK in n]
    # a second run finds every name in the manifest: all done, the long one retried
    rc, _, _ = corpus_cli(str(root), out, *MEL_FLAGS, "--workers", "1", "-q")
    assert rc == 2 and (last_run(out)["skipped"], last_run(out)["failed"]) == (len(files) - 2, 2)
    rc, report, _ = corpus_cli("status", out)
    assert rc == 2 and "T" * 248 in report and "\n    " + "T" * 248 in report


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def test_f3_temporary_names_are_never_longer_than_the_final_name_allows(tmp_path):
    w = storage.Writer(str(tmp_path / "out"))
    key = "N" * 251  # output name: 255 bytes, the limit
    path, _ = w.write(key, b"data")
    assert os.path.basename(path) == key + ".npy" and open(path, "rb").read() == b"data"
    seen = []
    real_open = os.open

    def spy(p, *a, **k):
        seen.append(os.path.basename(p))
        return real_open(p, *a, **k)

    os.open = spy
    try:
        w.write(key, b"more")
    finally:
        os.open = real_open
    assert seen and all(len(os.fsencode(n)) <= 46 for n in seen)


# ------------------------------------------------------------------------------------------------ F4: collisions


def test_f4_output_path_collisions_are_found_before_the_run_and_each_reported(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    spec = ("WAV", "PCM_16", 16000, 1, 0.2)
    cd.write_good(str(root), {"m.wav": spec, "manifest.sqlite/a.wav": spec, "x.wav": spec, "x.wav.npy/y.wav": spec,
                              "ok.wav": spec})
    (out / "m.wav.npy").mkdir(parents=True)  # a directory where an output belongs
    (out / "m.wav.npy" / "keep").write_text("someone's file")
    rc, stdout, stderr = corpus_cli(str(root), str(out), *MEL_FLAGS)
    assert rc == 2, stderr
    r = rows(str(out))
    assert "is not a regular file" in r["m.wav"]["error"]
    assert "reserved" in r["manifest.sqlite/a.wav"]["error"]
    assert "would also have to be the directory" in r["x.wav"]["error"]
    assert r["x.wav.npy/y.wav"]["status"] == "ok" and r["ok.wav"]["status"] == "ok"
    for key in ("m.wav", "manifest.sqlite/a.wav", "x.wav"):
        assert f"    {key}: " in stdout
    assert (out / "m.wav.npy" / "keep").read_text() == "someone's file"
    assert os.path.isfile(out / "manifest.sqlite")


# ------------------------------------------------------------------------------------------------ F5: damaged manifest


def test_f5_a_damaged_or_empty_manifest_is_refused_with_a_way_to_recover(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {f"f{i}.wav": ("WAV", "PCM_16", 16000, 1, 0.2) for i in range(3)})
    assert corpus_cli(root, out, *MEL_FLAGS, "-q")[0] == 0
    path = os.path.join(out, "manifest.sqlite")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # garbage over every page but the first (the header stays valid)
        f.seek(4096)
        f.write(np.random.default_rng(0).integers(0, 256, size - 4096, dtype=np.uint8).tobytes())
    for args in ((root, out, *MEL_FLAGS), ("status", out)):
        rc, _, stderr = corpus_cli(*args)
        assert rc == 1
        one_line_error(stderr, "damaged", path, "mv ")
    open(path, "wb").close()  # 0 bytes: damaged, not new
    rc, _, stderr = corpus_cli(root, out, *MEL_FLAGS)
    assert rc == 1
    one_line_error(stderr, "empty (0 bytes)", "mv ")
    assert os.path.getsize(path) == 0  # refused, not silently recreated


# ------------------------------------------------------------------------------------------------ F6: status


def test_f6_status_shows_a_killed_run_as_interrupted_and_orphans_and_prune(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {f"f{i}.wav": ("WAV", "PCM_16", 16000, 1, 0.2) for i in range(3)})
    assert corpus_cli(root, out, *MEL_FLAGS, "-q")[0] == 0
    assert corpus_cli("status", out)[0] == 0
    db = sqlite3.connect(os.path.join(out, "manifest.sqlite"))
    with db:  # what a SIGKILL leaves: the run's row still 'running', no end
        db.execute("UPDATE runs SET state = 'running', finished_at = NULL, message = NULL")
    db.close()
    pid = last_run(out)["pid"]
    rc, report, _ = corpus_cli("status", out)
    assert rc == 2 and "run 1 interrupted" in report and f"pid {pid} on" in report and "ended without finishing" in report
    with storage.Lock(out):  # while a run holds the lock it is running, and nothing else is wrong
        rc, report, _ = corpus_cli("status", out)
        assert rc == 0 and "run 1 running" in report
    assert corpus_cli(root, out, *MEL_FLAGS, "-q")[0] == 0
    os.unlink(os.path.join(root, "f1.wav"))
    rc, report, _ = corpus_cli("status", out)
    assert rc == 2 and "orphaned outputs (1;" in report and "\n    f1.wav" in report and "--prune" in report
    rc, summary, _ = corpus_cli(root, out, *MEL_FLAGS)
    assert rc == 0 and "1 output(s) in OUT_DIR whose source is gone" in summary
    rc, summary, _ = corpus_cli(root, out, *MEL_FLAGS, "--prune")
    assert rc == 0 and "removed 1 output(s) whose source is gone" in summary
    assert "f1.wav" not in rows(out) and not os.path.exists(os.path.join(out, "f1.wav.npy"))
    assert corpus_cli("status", out)[0] == 0


def test_prune_interrupted_between_outputs_and_rows_leaves_nothing_that_a_later_prune_cannot_find(tmp_path, monkeypatch):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {f"f{i}.wav": ("WAV", "PCM_16", 16000, 1, 0.2) for i in range(2)})
    assert corpus_cli(root, out, *MEL_FLAGS, "-q")[0] == 0
    os.unlink(os.path.join(root, "f1.wav"))

    def crash(self, keys):  # the run stops between the two halves of the prune
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(Manifest, "delete", crash)
        assert threads_run(root, out, prune=True) != 0
    assert "f1.wav" in rows(out) and not os.path.exists(os.path.join(out, "f1.wav.npy"))  # the row, not the output
    rc, report, _ = corpus_cli("status", out)  # what is left is still visible, and the next prune finishes it
    assert rc == 2 and "orphaned outputs (1;" in report and "\n    f1.wav" in report, report
    assert corpus_cli(root, out, *MEL_FLAGS, "--prune", "-q")[0] == 0
    assert "f1.wav" not in rows(out) and not os.path.exists(os.path.join(out, "f1.wav.npy"))
    assert corpus_cli("status", out)[0] == 0


def test_f6_a_directory_that_cannot_be_listed_gives_status_2_and_is_listed_by_status(tmp_path, monkeypatch):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.2), "locked/b.wav": ("WAV", "PCM_16", 16000, 1, 0.2)})
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(discover_mod.os, "scandir", scandir)
    rc, stdout, _ = corpus_cli(root, out, *MEL_FLAGS)
    assert rc == 2 and "could not list locked: Permission denied" in stdout
    assert rows(out)["a.wav"]["status"] == "ok" and "locked/b.wav" not in rows(out)
    rc, report, _ = corpus_cli("status", out)
    assert rc == 2 and "directories the last run could not list (1" in report and "locked: Permission denied" in report


# ------------------------------------------------------------------------------------------------ F7: permission


def test_f7_a_source_that_cannot_be_opened_is_failed_with_the_systems_reason(tmp_path, monkeypatch):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.2), "secret.wav": ("WAV", "PCM_16", 16000, 1, 0.2)})
    real_open = os.open

    def guarded(path, flags, *a, **k):  # what chmod 000 does to a user who is not root
        if str(path).endswith("secret.wav"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(decode_mod.os, "open", guarded)
    assert threads_run(root, out) == 2
    r = rows(out)
    assert r["secret.wav"]["error"] == "cannot open the source: Permission denied (EACCES)"
    assert r["a.wav"]["status"] == "ok"


# ------------------------------------------------------------------------------------------------ F8: long files


@pytest.mark.parametrize("params", [
    {},
    {"fft_length": 401, "sequence_length": 400, "sequence_stride": 160},  # odd fft
    {"fft_length": 512, "sequence_stride": 700},  # hop > fft: frames skip samples
])
def test_f8_the_framer_gives_the_whole_signals_frames_from_pieces_of_any_size(params):
    from arraymel.corpus.stream import Framer

    cfg = arraymel.MelConfig.create(top_db=None, num_mel_bins=32, **params)
    mel = arraymel.MelSpectrogram(top_db=None, num_mel_bins=32, **params)
    rng = np.random.default_rng(1)
    for n in (3, 1500, 40_000):
        x = rng.standard_normal((2, n)).astype(np.float32)
        framer = Framer(cfg, 2, lambda y: mel(y), block=3000)
        got, i = [], 0
        while i < n:
            k = int(rng.integers(1, 5000))
            got.append(framer.add(x[:, i : i + k]))
            i += k
        got.append(framer.finish())
        y = np.concatenate([g for g in got if g is not None], axis=-1)
        ref = mel(x)
        assert y.shape == ref.shape and np.max(np.abs(y - ref)) <= 1e-4, (params, n)


LONG = {  # decoded above an eighth of --memory-per-worker 64 (8 MB): computed in blocks
    "mono_16k.wav": ("WAV", "PCM_16", 16000, 1, 140.0),
    "stereo_48k.flac": ("FLAC", "PCM_24", 48000, 2, 25.0),  # resampled by soxr's stream
    "stereo_44k.wav": ("WAV", "FLOAT", 44100, 2, 25.0),
}


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("long"))
    cd.write_good(root, LONG)
    return root


@pytest.mark.parametrize("channels", ["mean", "all"])
def test_f8_a_long_file_in_blocks_equals_the_library_on_the_whole_decoded_file(long_files, tmp_path, channels):
    out = str(tmp_path / "out")
    rc, _, stderr = corpus_cli(long_files, out, *MEL_FLAGS, "--memory-per-worker", "64", "--channels", channels, "-q")
    assert rc == 0, stderr
    worst = 0.0
    for key in LONG:
        got = np.load(os.path.join(out, key + ".npy"))
        ref = cd.reference(os.path.join(long_files, key), channels=channels, **cd.MEL)  # soxr one-shot, whole file
        assert got.shape == ref.shape and got.dtype == np.float32
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
        per = got.reshape(-1, *got.shape[-2:])  # top_db per file, per channel with --channels all
        assert np.all(per.max(axis=(1, 2)) - per.min(axis=(1, 2)) <= 80.0 + 1e-3)
    print(f"\nstreamed ({channels}) vs the library on the whole decoded file: max {worst:.3g} dB")
    assert worst <= TOL_DB


def test_f8_the_threaded_engine_streams_long_files_too(long_files, tmp_path):
    """The GPU engine's pipeline (run here on the CPU) computes a long file in blocks on a decode thread."""
    out = str(tmp_path / "out")
    assert threads_run(long_files, out, settings={"memory_per_worker": 64}) == 0
    for key in LONG:
        got = np.load(os.path.join(out, key + ".npy"))
        ref = cd.reference(os.path.join(long_files, key), **cd.MEL)
        assert got.shape == ref.shape and np.max(np.abs(got - ref)) <= TOL_DB


def test_f8_a_streamed_files_memory_does_not_grow_with_its_length(tmp_path):
    """Python-visible allocations (NumPy's included) while one file is computed: the same peak for a file
    four times as long, and far below the file's decoded size."""
    from arraymel.corpus.decode import open_audio
    from arraymel.corpus.discover import Source
    from arraymel.corpus.stream import stream_file

    root = str(tmp_path / "in")
    cd.write_good(root, {"short.wav": ("WAV", "PCM_16", 16000, 1, 120.0), "long.wav": ("WAV", "PCM_16", 16000, 1, 480.0)})
    settings = CorpusSettings.create(dict(cd.MEL), memory_per_worker=64)
    writer = storage.Writer(str(tmp_path / "out"))
    mel = arraymel.MelSpectrogram(**dict(settings.mel_params, top_db=None))
    peaks = {}
    for name in ("short.wav", "long.wav"):
        path = os.path.join(root, name)
        st = os.stat(path)
        with open_audio(Source(name, path, st.st_size, st.st_mtime_ns)) as opened:
            tracemalloc.start()
            rec = stream_file(opened, settings, writer, lambda y: mel(y, output="numpy"), None)
            peaks[name] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert rec.status == "ok" and rec.samples == int(st.st_size // 2) - 22
    decoded_long = 480 * 16000 * 4
    print(f"\ntraced peak: {peaks['short.wav'] / 2**20:.1f} MB (2 min), {peaks['long.wav'] / 2**20:.1f} MB (8 min); "
          f"the 8-minute file decoded: {decoded_long / 2**20:.1f} MB")
    assert peaks["long.wav"] < 1.3 * peaks["short.wav"]
    assert peaks["long.wav"] < decoded_long / 2


# ------------------------------------------------------------------------------------------------ resume and durability


def test_resume_sees_a_rewritten_source_of_the_same_size_and_a_file_that_now_fails_loses_its_output(tmp_path):
    root, out = str(tmp_path / "in"), str(tmp_path / "out")
    spec = ("WAV", "PCM_16", 16000, 1, 1.0)
    cd.write_good(root, {"same.wav": spec, "broken.wav": spec, "kept.wav": spec})
    assert corpus_cli(root, out, *MEL_FLAGS, "-q")[0] == 0
    sizes = {k: os.path.getsize(os.path.join(root, k)) for k in ("same.wav", "broken.wav")}
    stamp = os.stat(os.path.join(root, "same.wav")).st_mtime_ns
    cd.write_good(root, {"same.wav": spec}, seed=42)  # re-recorded: other audio, the same size
    os.utime(os.path.join(root, "same.wav"), ns=(stamp + 10**9, stamp + 10**9))
    with open(os.path.join(root, "broken.wav"), "wb") as f:  # now unreadable, the same size
        f.write(b"\0" * sizes["broken.wav"])
    assert {k: os.path.getsize(os.path.join(root, k)) for k in sizes} == sizes
    rc, _, _ = corpus_cli(root, out, *MEL_FLAGS, "-q")
    assert rc == 2
    r = rows(out)
    assert r["same.wav"]["status"] == "ok" and r["same.wav"]["run_id"] == 2 and r["kept.wav"]["run_id"] == 1
    ref = cd.reference(os.path.join(root, "same.wav"), **cd.MEL)
    assert np.max(np.abs(np.load(os.path.join(out, "same.wav.npy")) - ref)) <= TOL_DB  # the new audio's features
    assert r["broken.wav"]["status"] == "failed"
    assert not os.path.exists(os.path.join(out, "broken.wav.npy"))  # no stale output of the old audio


def test_every_output_is_fsynced_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    events = []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace
    names = {}

    def spy_open(path, flags, *a, **k):
        fd = real_open(path, flags, *a, **k)
        names[fd] = os.fspath(path)
        return fd

    def spy_fsync(fd):
        events.append(("fsync", names.get(fd)))
        return real_fsync(fd)

    def spy_replace(src, dst):
        events.append(("replace", os.fspath(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "open", spy_open)
    monkeypatch.setattr(storage.os, "fsync", spy_fsync)
    monkeypatch.setattr(storage.os, "replace", spy_replace)
    w = storage.Writer(str(tmp_path / "out"))
    w.write("a/b.wav", b"x" * 1000)
    w.write_with("c.wav", lambda fd: os.write(fd, b"y" * 10))
    replaced = [p for e, p in events if e == "replace"]
    assert len(replaced) == 2
    for tmp in replaced:
        i = events.index(("replace", tmp))
        assert ("fsync", tmp) in events[:i], events


def test_f8_only_a_file_too_long_for_the_memory_setting_is_streamed(long_files):
    from arraymel.corpus.decode import Decoded
    from arraymel.corpus.discover import Source
    from arraymel.corpus.manifest import FileRecord
    from arraymel.corpus.stream import decode_or_stream

    path = os.path.join(long_files, "stereo_48k.flac")  # 25 s, 48 kHz stereo: 9.6 MB decoded
    st = os.stat(path)
    src = Source("stereo_48k.flac", path, st.st_size, st.st_mtime_ns)
    mel = arraymel.MelSpectrogram(**dict(cd.MEL, top_db=None))
    for memory, kind in ((64, FileRecord), (384, Decoded)):
        settings = CorpusSettings.create(dict(cd.MEL), memory_per_worker=memory)
        writer = storage.Writer(os.path.join(long_files, f"out{memory}"))
        assert isinstance(decode_or_stream(src, settings, writer, lambda y: mel(y, output="numpy"), None), kind)
