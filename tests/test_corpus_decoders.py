"""The device engine (``--engine decoders``: decode processes feeding one device through shared memory).

Against the threaded pipeline and the library on each file alone (outputs, manifest rows, failures);
a decode process killed with SIGKILL (its files retried once, then recorded failed; the run goes on);
a write whose process dies (given to another once); no shared-memory segment left behind after a
clean run, a stop by SIGINT, an error or a SIGKILLed driver; the CPU stand-in device.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

import corpus_data as cd  # noqa: E402
from test_corpus import corpus_cli, last_run, rows  # noqa: E402

from arraymel.corpus import decoders  # noqa: E402
from arraymel.corpus.decoders import leftover_segments  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEL = ["--num-mel-bins", str(cd.MEL["num_mel_bins"]), "--min-seconds", str(cd.MIN_SECONDS)]
DEC = ["--engine", "decoders", "--device", "cpu", "--decode-workers", "2"]


def _comparable(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("run_id", "updated_at")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad = cd.make_corpus(str(root))
    # long enough to be streamed by its decode process under --memory-per-worker 64 (8 MB of float32)
    import soundfile as sf

    sf.write(str(root / "long" / "stream_16k.wav"), cd.signal(140.0, 16000, 1, 7)[:, 0], 16000, subtype="PCM_16")
    return str(root), good + ["long/stream_16k.wav"], bad


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    root, _, _ = corpus
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("decoders", DEC), ("threads", ["--engine", "threads", "--device", "cpu"])):
        rc, stdout, stderr = corpus_cli(root, str(base / name), *MEL, *extra, "--memory-per-worker", "64")
        assert leftover_segments(os.getpid()) == [], "shared-memory segments left behind"
        out[name] = (str(base / name), rc, stdout, stderr)
    return out


def test_outputs_equal_the_library_and_the_threaded_pipeline(corpus, runs):
    root, good, bad = corpus
    out, rc, stdout, _ = runs["decoders"]
    assert rc == 2 and "decode processes" in stdout
    ref_out = runs["threads"][0]
    for key in good:
        got = np.load(os.path.join(out, key + ".npy"))
        assert np.array_equal(got, np.load(os.path.join(ref_out, key + ".npy"))), key
        if key != "long/stream_16k.wav":
            ref = cd.reference(os.path.join(root, key), **cd.MEL)
            assert got.shape == ref.shape and float(np.max(np.abs(got - ref))) <= 1e-3, key
    got_rows, ref_rows = rows(out), rows(ref_out)
    assert set(got_rows) == set(ref_rows) == set(good) | set(bad)
    assert {k: _comparable(r) for k, r in got_rows.items()} == {k: _comparable(r) for k, r in ref_rows.items()}
    for key, words in cd.bad_reasons().items():
        assert got_rows[key]["status"] == "failed" and words in got_rows[key]["error"], key
    assert got_rows["long/stream_16k.wav"]["frames"] == 1 + 140 * 16000 // 512


def test_resume_skips_what_is_done(corpus, runs):
    root, good, _ = corpus
    out = runs["decoders"][0]
    rc, _, _ = corpus_cli(root, out, *MEL, *DEC, "--memory-per-worker", "64", "-q")
    assert rc == 2
    assert last_run(out)["skipped"] == len(good)


def _killing_read(marker_dir: str | None):
    """A ``read_whole`` whose process SIGKILLs itself on a file named ``*KILL*``: every time, or (with
    ``marker_dir``) only the first time that file is read."""
    real = decoders.read_whole

    def read(opened, settings, alloc=None):
        if "KILL" in opened.source.key:
            mark = None if marker_dir is None else os.path.join(marker_dir, opened.source.key.replace("/", "_"))
            if mark is None or not os.path.exists(mark):
                if mark is not None:
                    open(mark, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
        return real(opened, settings, alloc)

    return read


def _small_tree(root, names):
    import soundfile as sf

    os.makedirs(root, exist_ok=True)
    for i, name in enumerate(names):
        sf.write(os.path.join(root, name), cd.signal(1.0, 16000, 1, i)[:, 0], 16000, subtype="PCM_16")


def _planted_run(plant: str, arg: str, in_dir: str, out_dir: str) -> int:
    """``arraymel corpus IN OUT`` (decoders) in a fresh interpreter (one thread: its decode processes are
    forked and inherit the planted function) with ``plant`` (a function of this module) installed."""
    code = (f"import sys, test_corpus_decoders as t; t.{plant}({arg!r}); from arraymel.cli import main; "
            f"sys.exit(main(['corpus', {in_dir!r}, {out_dir!r}, *t.MEL, *t.DEC, '-q']))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 2), err
    assert "leaked shared_memory" not in err, err  # removed by the engine, not by the resource tracker
    assert leftover_segments(proc.pid) == []
    return proc.returncode


def plant_killing_decoder(marker_dir: str) -> None:
    """Decode processes SIGKILL themselves on a file named ``*KILL*``: every time (``marker_dir`` empty) or
    only the first time that file is read."""
    decoders.read_whole = _killing_read(marker_dir or None)


def plant_dying_writer(mark: str) -> None:
    """The first write task SIGKILLs its process."""
    real = decoders._Worker.write

    def write(self, segment, at, n):
        if not os.path.exists(mark):
            open(mark, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, segment, at, n)

    decoders._Worker.write = write


@pytest.mark.parametrize("always", [True, False])
def test_a_sigkilled_decoder_is_replaced_and_its_files_retried_once(tmp_path, always):
    names = [f"a{i:02d}.wav" for i in range(20)]
    names[5] = "a05_KILL.wav"
    _small_tree(str(tmp_path / "in"), names)
    marks = tmp_path / "marks"
    marks.mkdir()
    rc = _planted_run("plant_killing_decoder", "" if always else str(marks), str(tmp_path / "in"),
                      str(tmp_path / "out"))
    r = rows(str(tmp_path / "out"))
    assert len(r) == 20
    others = [k for k in r if "KILL" not in k]
    # its task's files too
    assert all(r[k]["status"] == "ok" for k in others), {k: r[k]["error"] for k in others if r[k]["error"]}
    run = last_run(str(tmp_path / "out"))
    if always:
        assert rc == 2 and run["failed"] == 1
        err = r["a05_KILL.wav"]["error"]
        assert r["a05_KILL.wav"]["status"] == "failed" and "SIGKILL" in err and "retried alone" in err
    else:
        assert rc == 0 and r["a05_KILL.wav"]["status"] == "ok"
        assert os.listdir(marks) == ["a05_KILL.wav"]
    # every ok file has the bytes of an undisturbed run
    corpus_cli(str(tmp_path / "in"), str(tmp_path / "ref"), *MEL, "--engine", "threads", "--device", "cpu", "-q")
    ref = rows(str(tmp_path / "ref"))
    for k in r:
        if r[k]["status"] == "ok":
            assert r[k]["sha256"] == ref[k]["sha256"], k


def test_a_writer_that_dies_is_replaced_and_the_write_retried(tmp_path):
    _small_tree(str(tmp_path / "in"), [f"w{i}.wav" for i in range(6)])
    mark = str(tmp_path / "wrote-once")
    rc = _planted_run("plant_dying_writer", mark, str(tmp_path / "in"), str(tmp_path / "out"))
    assert rc == 0 and os.path.exists(mark)
    r = rows(str(tmp_path / "out"))
    assert len(r) == 6 and all(v["status"] == "ok" for v in r.values())


def test_an_error_in_the_device_stops_the_run_and_removes_the_segments(tmp_path, monkeypatch):
    from arraymel.corpus import compute

    _small_tree(str(tmp_path / "in"), [f"e{i}.wav" for i in range(6)])

    def broken(self, batch, x):
        raise RuntimeError("planted device failure")

    monkeypatch.setattr(compute.Computer, "launch", broken)
    rc, _, stderr = corpus_cli(str(tmp_path / "in"), str(tmp_path / "out"), *MEL, *DEC)
    assert rc == 1 and "planted device failure" in stderr
    assert leftover_segments(os.getpid()) == []


def _cli_process(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "arraymel.cli", "corpus", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_segments(proc: subprocess.Popen, timeout: float = 60.0) -> list[str]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = leftover_segments(proc.pid)
        if found:
            return found
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the run made no shared-memory segment")


@pytest.fixture(scope="module")
def slow_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    _small_tree(str(root), [f"s{i:03d}.wav" for i in range(60)])
    return str(root)


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_no_segment_is_left_after_ctrl_c_or_a_killed_driver(slow_tree, tmp_path, how):
    # the stand-in at 0.01 audio-hours/s takes 0.03 s per second of audio: the run lasts seconds
    proc = _cli_process(slow_tree, str(tmp_path / "out"), *MEL, "--engine", "decoders", "--device", "stand-in:0.01",
                        "--decode-workers", "2", "--batch-seconds", "2")
    found = _wait_for_segments(proc)
    assert all(n.startswith(f"arraymel-{proc.pid}-") for n in found)
    time.sleep(0.3)
    proc.send_signal(getattr(signal, how))
    out, err = proc.communicate(timeout=60)
    if how == "SIGINT":  # removed by the engine itself, not by the resource tracker after the exit
        assert proc.returncode == 1 and "interrupted" in (out + err)
        assert "leaked shared_memory" not in err, err
    t0 = time.monotonic()
    while leftover_segments(proc.pid) and time.monotonic() - t0 < 10:  # the resource tracker after a SIGKILL
        time.sleep(0.05)
    assert leftover_segments(proc.pid) == []


def test_the_stand_in_device(slow_tree, tmp_path):
    """``--device stand-in``: the GPU's batch sizes and time, zero-filled outputs of the right shapes."""
    rc, stdout, _ = corpus_cli(slow_tree, str(tmp_path / "out"), *MEL, "--device", "stand-in:50", "--decode-workers", "1")
    assert rc == 0 and "stand-in:50 (1 decode processes + a writer process)" in stdout
    r = rows(str(tmp_path / "out"))
    assert len(r) == 60
    for _k, row in r.items():
        a = np.load(os.path.join(str(tmp_path / "out"), row["output"]))
        assert a.shape == (cd.MEL["num_mel_bins"], 1 + 16000 // 512) and a.dtype == np.float32 and not a.any()


def test_the_stand_in_models_the_device_time():
    from arraymel.corpus.batching import Batch
    from arraymel.corpus.compute import DeviceError, StandInComputer, parse_stand_in, resolve_device
    from arraymel.corpus.decode import Decoded
    from arraymel.corpus.discover import Source
    from arraymel.corpus.settings import CorpusSettings

    assert resolve_device("stand-in") == "stand-in:1400" and parse_stand_in("stand-in:20") == 20.0
    with pytest.raises(DeviceError, match="stand-in"):
        resolve_device("stand-in:-1")
    settings = CorpusSettings.create({"num_mel_bins": 16})
    c = StandInComputer(settings, rate=1.0)  # one audio-hour per second: 3.6 s of audio take 1 ms
    item = Decoded(source=Source("k", "k", 0, 0), audio=np.zeros((1, 57600), np.float32), sampling_rate=16000.0,
                   channels=1, samples=57600, size=0, mtime_ns=0)
    batch = Batch(length=57600, items=[item] * 10)
    assert c.seconds(batch) == pytest.approx(0.01)
    t = time.perf_counter()
    pend = [c.launch(batch, None) for _ in range(5)]  # queued one after the other, as on one device
    outs = [c.collect(p) for p in pend]
    assert time.perf_counter() - t >= 0.05 and c.device_seconds == pytest.approx(0.05)
    assert outs[0][0].array.shape == (16, 1 + 57600 // 512)


class _FakeCupy:
    """Just enough of CuPy for :meth:`Computer._launch_cuda`, with CuPy's pool rule: a device array's memory
    returns to the pool when the array is freed, whatever work other streams still have queued on it."""

    float32 = np.float32

    def __init__(self):
        import types
        import weakref

        self.inputs: list = []  # weakrefs to the device arrays the batches are copied into
        self._weakref = weakref
        fake = self

        class Array:
            def __init__(self, shape, dtype):
                self.shape, self.dtype = tuple(shape), np.dtype(dtype)
                self.size = int(np.prod(self.shape))
                self.data = np.zeros(self.shape, self.dtype)

            def set(self, host, stream=None):
                self.data[...] = host

            def get(self, stream=None, out=None, blocking=True):
                if out is None:
                    return self.data.copy()
                out[...] = self.data
                return out

        class Event:
            def __init__(self, stream=None):
                self.stream = stream

            def synchronize(self):
                pass

        class Stream:
            def __init__(self, non_blocking=False):
                pass

            def record(self):
                return Event(self)

            def wait_event(self, event):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        class Device(Stream):
            def __init__(self, index):
                pass

        def alloc_pinned_memory(nbytes):
            raise RuntimeError("no pinned memory here")

        self.Array = Array
        self.cuda = types.SimpleNamespace(Device=Device, Stream=Stream, alloc_pinned_memory=alloc_pinned_memory,
                                          get_elapsed_time=lambda a, b: 0.0)

        def empty(shape, dtype=np.float32):
            a = Array(shape, dtype)
            fake.inputs.append(weakref.ref(a))
            return a

        self.empty = empty


def test_the_device_input_of_a_launched_batch_lives_until_it_is_collected(monkeypatch):
    """The compute thread launches batch n+1 before it collects batch n. CuPy's pool hands the memory of a freed
    array to the next allocation at once, ordered only on the stream it was allocated on: had the device input
    been freed when ``launch`` returned, the next batch's host-to-device copy (on the copy stream) could
    overwrite it while batch n's kernels (on the compute stream) still read it."""
    from arraymel.corpus.batching import Batch
    from arraymel.corpus.compute import Computer
    from arraymel.corpus.decode import Decoded
    from arraymel.corpus.discover import Source
    from arraymel.corpus.settings import CorpusSettings

    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    settings = CorpusSettings.create({"num_mel_bins": 16})
    c = Computer(settings, device="cuda:0")
    c.mel = lambda x, output=None: fake.Array((x.shape[0], 16, 1 + x.shape[1] // 512), np.float32)
    item = Decoded(source=Source("k", "k", 0, 0), audio=np.zeros((1, 4096), np.float32), sampling_rate=16000.0,
                   channels=1, samples=4096, size=0, mtime_ns=0)
    batch = Batch(length=4096, items=[item])
    x = np.ones((1, 4096), np.float32)
    pending = c.launch(batch, x)
    assert pending[0] == "cuda", "the asynchronous path was not taken"
    inputs = [r for r in fake.inputs if r() is not None and r().shape == x.shape]
    assert len(inputs) == 1, "the device input was freed before its batch was collected"
    start, done = pending[3], pending[4]
    assert start.stream is done.stream, ("the batch's device time must be timed on the compute stream: an event on "
                                         "the copy stream fires while the previous batch still computes")
    out = c.collect(pending)
    assert out[0].array.shape == (16, 1 + 4096 // 512)
    del pending, inputs
    assert all(r() is None for r in fake.inputs), "the device input outlived its batch"


def test_a_decode_process_does_not_keep_removed_output_segments_mapped(tmp_path):
    """The driver replaces output segments now and then (it keeps the largest few); a process that kept its
    mapping of each removed one would keep its memory allocated (an unlinked segment lives while mapped)."""
    from multiprocessing import shared_memory

    from arraymel.corpus.settings import CorpusSettings

    w = decoders._Worker(CorpusSettings.create({"num_mel_bins": 16}), str(tmp_path), "{}")
    tag = f"{decoders.SHM_PREFIX}{os.getpid()}-test-"
    slot = shared_memory.SharedMemory(name=tag + "slot", create=True, size=1 << 16)
    try:
        w.segment(slot.name)
        for i in range(40):  # each output segment written once, then removed by the driver
            seg = shared_memory.SharedMemory(name=f"{tag}{i}", create=True, size=1 << 20)
            w.segment(seg.name, "output")[:] = 1
            seg.close()
            seg.unlink()
        with open("/proc/self/maps") as f:
            removed = {line.split()[-2] for line in f if tag in line and line.rstrip().endswith("(deleted)")}
        assert len(removed) <= 2 * decoders.OUTPUT_SEGMENTS, f"{len(removed)} removed segments still mapped"
        assert slot.name in w.maps["slot"], "an input slot's mapping was dropped"
    finally:
        w.maps = {"slot": {}, "output": {}}
        slot.close()
        slot.unlink()


@pytest.mark.parametrize("engine", [("--engine", "decoders", "--decode-workers", "1"), ("--engine", "threads")],
                         ids=["decoders", "threads"])
def test_a_stand_in_run_never_passes_for_computed_features(tmp_path, engine):
    """The stand-in writes zero-filled outputs (it measures the engine): a later run on the same OUT_DIR must compute
    those files, not skip them as done, whichever engine ran the stand-in."""
    _small_tree(str(tmp_path / "in"), [f"s{i}.wav" for i in range(3)])
    out = str(tmp_path / "out")
    rc, _, stderr = corpus_cli(str(tmp_path / "in"), out, *MEL, *engine, "--device", "stand-in")
    assert rc == 0, stderr
    assert all(not np.load(os.path.join(out, k + ".npy")).any() for k in rows(out))
    rc, _, stderr = corpus_cli(str(tmp_path / "in"), out, *MEL, *DEC)
    assert rc == 0, stderr
    r = rows(out)
    assert len(r) == 3 and all(v["status"] == "ok" for v in r.values())
    assert all(np.load(os.path.join(out, k + ".npy")).any() for k in r), "zero-filled stand-in outputs were kept"


@pytest.mark.parametrize("preset", [None, "whisper", "librosa", "nemo"])
def test_the_stand_in_outputs_have_the_computers_shapes(preset):
    """Zero-filled, but of the shapes and dtype the real computation gives (a preset's frame drop included)."""
    from arraymel.corpus.batching import Batch
    from arraymel.corpus.compute import Computer, StandInComputer
    from arraymel.corpus.decode import Decoded
    from arraymel.corpus.discover import Source
    from arraymel.corpus.settings import CorpusSettings

    settings = CorpusSettings.create({} if preset else {"num_mel_bins": 16}, preset=preset)
    sr = int(settings.mel.sampling_rate)
    items = [Decoded(source=Source(f"k{n}", f"k{n}", 0, 0), audio=np.full((1, n), 0.1, np.float32), sampling_rate=sr,
                     channels=1, samples=n, size=0, mtime_ns=0) for n in (sr, sr + 777)]
    batch = Batch(length=sr + 777 + 1000, items=items)
    real = Computer(settings, device="cpu")(batch)
    stand_in = StandInComputer(settings, rate=1e9)(batch)
    assert [(c.array.shape, c.array.dtype) for c in stand_in] == [(c.array.shape, c.array.dtype) for c in real]
