"""``arraymel bench``: the harness end to end on a tiny workload, and its parts.

Every test runs on the CPU in a few seconds; peers that are not installed are expected to be
reported as skipped (torch, CuPy here), and a peer made up for the test proves it for any machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from arraymel.bench import peers as bench_peers
from arraymel.bench import report, timing, workloads
from arraymel.bench.devices import cpu_device, parse_device_id, resolve
from arraymel.bench.run import run_benchmark

TINY = ["--device", "cpu", "--config", "keras", "--batch", "2", "--seconds", "1", "--repeat", "2"]


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class _MissingPeer(bench_peers.Peer):
    """A peer whose library cannot exist: it must be listed as skipped with the reason."""

    name = "not-installed"
    kinds = ("cpu", "cuda")

    def unavailable(self) -> str | None:
        return bench_peers._import_reason("arraymel_no_such_peer_library")

    def build(self, params, device, x_host):  # pragma: no cover - must never be called
        raise AssertionError("an unavailable peer was built")


class _BrokenPeer(bench_peers.Peer):
    """A peer that raises inside its call: reported as an error, the run goes on."""

    name = "broken"

    def build(self, params, device, x_host):
        def fn(x):
            raise RuntimeError("deliberately broken")

        return bench_peers.Runner(fn=fn, x=x_host, to_numpy=np.asarray)


@pytest.fixture
def fake_peers(monkeypatch):
    peers = dict(bench_peers.PEERS)
    peers["not-installed"] = _MissingPeer()
    peers["broken"] = _BrokenPeer()
    monkeypatch.setattr(bench_peers, "PEERS", peers)
    return peers


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``arraymel bench`` through the real command line on 2 clips x 1 s, with JSON, PNG and Markdown."""
    from arraymel.cli import main

    out = tmp_path_factory.mktemp("bench")
    paths = {"json": out / "bench.json", "png": out / "bench.png", "md": out / "bench.md"}
    peers = ["arraymel-generic", "torchaudio", "naive-cupy"]
    rc = main(["bench", *TINY, "--peers", *peers, "--json", str(paths["json"]), "--plot", str(paths["png"]),
               "--markdown", str(paths["md"]), "--quiet"])
    doc = json.loads(paths["json"].read_text())
    return rc, doc, paths


# ---------------------------------------------------------------------- end to end
def test_tiny_run_end_to_end(tiny_run):
    rc, doc, paths = tiny_run
    assert rc == 0
    rows = {(r["device"], r["library"]): r for r in doc["results"]}
    assert set(rows) >= {("cpu", "arraymel"), ("cpu", "arraymel-generic")}
    for r in rows.values():
        assert r["config"] == "keras" and r["batch"] == 2 and r["seconds"] == 1.0
        assert r["samples"] == 16000 and r["frames"] == 1 + 16000 // 512
        assert r["repeat"] == 2 and len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"])
        assert r["median_s"] == pytest.approx(float(np.median(r["times_s"])))
        assert r["audio_hours_per_s"] == pytest.approx(2 * 1.0 / 3600 / r["median_s"])
        assert r["timer"] == "cpu"
        if os.path.exists("/proc/stat"):  # competing CPU use is measured for every row
            assert isinstance(r["other_processes_share"], float) and r["other_processes_share"] >= 0
    ref = rows[("cpu", "arraymel")]
    assert ref["speed_vs_arraymel"] == pytest.approx(1.0)
    assert ref["agreement"] is None  # the reference itself
    gen = rows[("cpu", "arraymel-generic")]
    assert gen["speed_vs_arraymel"] == pytest.approx(ref["median_s"] / gen["median_s"])
    # NumPy buffers are traced: one call of the generic path allocates at least its output.
    assert gen["memory_method"] == "tracemalloc"
    assert gen["peak_memory_bytes"] >= 2 * 128 * 32 * 4


def test_tiny_run_agreement_generic_vs_numpy_path(tiny_run):
    _, doc, _ = tiny_run
    gen = next(r for r in doc["results"] if r["library"] == "arraymel-generic")
    a = gen["agreement"]
    assert a["unit"] == "dB" and a["reference"] == "arraymel@cpu"
    assert 0.0 <= a["value"] <= 1e-3


def test_tiny_run_json_validates_against_schema(tiny_run):
    pytest.importorskip("jsonschema")
    from arraymel.bench.schema import validate

    _, doc, paths = tiny_run
    validate(doc)
    assert doc["schema"] == "arraymel-bench/1"
    assert doc["versions"]["numpy"] == np.__version__
    assert doc["devices"][0]["id"] == "cpu" and doc["devices"][0]["name"]
    assert doc["configs"]["keras"]["fft_length"] == 2048
    act = doc["cpu_activity"]  # competing CPU use is measured, so a busy machine shows in the report
    assert act["wall_s"] > 0 and act["cpu_s_this_process"] > 0 and act["cpu_s_other_processes"] >= 0
    assert doc["command"] == ("arraymel bench --device cpu --peers arraymel-generic torchaudio naive-cupy --batch 2 "
                              f"--seconds 1 --repeat 2 --json {paths['json']} --plot {paths['png']} "
                              f"--markdown {paths['md']}")


def test_schema_rejects_a_broken_document(tiny_run):
    jsonschema = pytest.importorskip("jsonschema")
    from arraymel.bench.schema import validate

    _, doc, _ = tiny_run
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["median_s"] = -1.0
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(doc))
    del bad["results"][0]["times_s"]
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_tiny_run_png_written(tiny_run):
    pytest.importorskip("matplotlib")
    _, _, paths = tiny_run
    data = paths["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # a real chart, not an empty canvas


def test_tiny_run_missing_peers_are_skipped_with_reason(tiny_run):
    _, doc, paths = tiny_run
    skipped = {(s["device"], s["library"]): s for s in doc["skipped"]}
    # naive-cupy never runs on the CPU, whatever is installed.
    assert skipped[("cpu", "naive-cupy")]["status"] == "skipped"
    assert skipped[("cpu", "naive-cupy")]["reason"]
    if not _have("torch"):
        assert skipped[("cpu", "torchaudio")]["reason"] == "torch is not installed"
    md = paths["md"].read_text()
    assert "naive-cupy" in md and "Skipped" in md and "arraymel-generic" in md


def test_missing_and_broken_peers_never_crash(fake_peers):
    doc = run_benchmark(device_specs=["cpu"], peer_names=["not-installed", "broken"], configs=["tiny"], batches=[1],
                        seconds=0.25, repeat=1, measure_memory=False)
    skipped = {s["library"]: s for s in doc["skipped"]}
    assert skipped["not-installed"]["status"] == "skipped"
    assert skipped["not-installed"]["reason"] == "arraymel_no_such_peer_library is not installed"
    assert skipped["broken"]["status"] == "error"
    assert "deliberately broken" in skipped["broken"]["reason"]
    assert [r["library"] for r in doc["results"]] == ["arraymel"]


def test_unavailable_device_is_skipped_not_fatal():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 7:
            pytest.skip("this machine has a cuda:7")
    except Exception:
        pass
    doc = run_benchmark(device_specs=["cpu", "cuda:7"], peer_names=["naive-cupy"], configs=["tiny"], batches=[1],
                        seconds=0.25, repeat=1, measure_memory=False)
    gpu = next(d for d in doc["devices"] if d["id"] == "cuda:7")
    assert gpu["reason"] and "not available" in gpu["reason"]
    assert {(s["device"], s["library"]) for s in doc["skipped"]} >= {("cuda:7", "arraymel"), ("cuda:7", "naive-cupy")}
    assert [r["device"] for r in doc["results"]] == ["cpu"]


def test_cli_rejects_unknown_config_and_peer(capsys):
    from arraymel.cli import main

    assert main(["bench", "--config", "no-such-config", "--quiet"]) == 2
    assert "no-such-config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--peers", "no-such-peer"])
    assert e.value.code == 2


def test_terminal_table_names_device_and_skips(tiny_run, tmp_path):
    _, doc, _ = tiny_run
    path = tmp_path / "table.txt"
    with open(path, "w") as f:
        report.print_table(doc, file=f)
    text = path.read_text()
    assert doc["devices"][0]["name"] in text
    assert "arraymel-generic" in text and "naive-cupy" in text
    plain = report.format_text(doc)
    assert "audio-h/s" in plain and "reference" in plain


# ---------------------------------------------------------------------- workloads
def test_make_batch_is_deterministic_and_batch_independent():
    a = workloads.make_batch(4, 0.5, 16000)
    b = workloads.make_batch(2, 0.5, 16000)
    assert a.shape == (4, 8000) and a.dtype == np.float32
    np.testing.assert_array_equal(a[:2], b)
    np.testing.assert_array_equal(a, workloads.make_batch(4, 0.5, 16000))
    assert not np.array_equal(a, workloads.make_batch(4, 0.5, 16000, seed=1))
    assert np.abs(a).max() <= 1.0
    # Clips differ in level (the batch-wide top_db floor matters), and are not silent.
    rms = np.sqrt((a.astype(np.float64) ** 2).mean(axis=1))
    assert rms.min() > 0.01 and rms.max() / rms.min() > 2
    assert workloads.make_batch(1, 0.1, 8000, dtype="float64").dtype == np.float64


def test_named_configs_and_audio_hours(tmp_path):
    assert workloads.config_params("keras") == workloads.KERAS_PARAMS
    sp = workloads.config_params("speech")
    assert (sp["fft_length"], sp["sequence_stride"], sp["num_mel_bins"], sp["sampling_rate"]) == (400, 160, 80, 16000)
    assert workloads.audio_hours(512, 10) == pytest.approx(512 * 10 / 3600)
    w = workloads.WORKLOADS["keras-16x10s"]
    assert (w.batch, w.seconds, w.samples, w.audio_hours) == (16, 10.0, 160000, pytest.approx(16 * 10 / 3600))
    assert workloads.frames(w.params, w.samples) == 313
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"fft_length": 1024, "sequence_stride": 256, "name": "ignored"}))
    name, params = workloads.resolve_config(str(f), sampling_rate=22050)
    assert name == "mine@22050" and params["fft_length"] == 1024 and params["sampling_rate"] == 22050
    f.write_text(json.dumps({"fft_size": 1024}))
    with pytest.raises(ValueError, match="fft_size"):
        workloads.resolve_config(str(f))


# ---------------------------------------------------------------------- timing
def test_quartiles_match_numpy_percentile():
    xs = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2]
    q1, q3 = timing.quartiles(xs)
    assert (q1, q3) == pytest.approx(tuple(np.percentile(xs, [25, 75])))


def test_measure_interleaved_runs_round_robin_and_drops_a_failing_callable():
    calls = []

    def lib(name, fail_at=None):
        def fn(x):
            calls.append(name)
            if len([c for c in calls if c == name]) == fail_at:
                raise RuntimeError(f"{name} broke")
            return name
        return fn

    errors = []
    tm = timing.measure_interleaved({n: (lib(n), "x", "cpu", None) for n in "abc"}, repeat=3, warmup=2,
                                    on_error=lambda n, e: errors.append((n, str(e))))
    assert calls[:6] == list("aabbcc")  # warm-up: each alone
    assert calls[6:] == list("abcbcacab")  # then one call each per round, the first one rotating
    assert {n: len(t.times) for n, t in tm.items()} == {"a": 3, "b": 3, "c": 3}
    assert tm["a"].first_output == "a" and tm["a"].warmup == 2 and not errors
    calls.clear()
    tm = timing.measure_interleaved({"a": (lib("a"), 0, "cpu", None), "b": (lib("b", fail_at=3), 0, "cpu", None)},
                                    repeat=None, budget_s=0.0, min_repeat=4, on_error=lambda n, e: errors.append(n))
    assert errors == ["b"] and list(tm) == ["a"] and len(tm["a"].times) == 4


def test_tracemalloc_peak_sees_numpy_allocations():
    peak = timing.peak_memory(lambda n: np.ones(n, dtype=np.float64).sum(), 1_000_000, method="tracemalloc")
    assert 8_000_000 <= peak < 16_000_000


# ---------------------------------------------------------------------- devices and peers
def test_cpu_device_is_named():
    d = cpu_device()
    assert d.id == "cpu" and d.name and d.name != "unknown"
    assert d.cores == len(os.sched_getaffinity(0))
    assert parse_device_id("cuda") == ("cuda", 0) and parse_device_id("cuda:3") == ("cuda", 3)
    with pytest.raises(ValueError):
        parse_device_id("tpu")
    assert [x.id for x in resolve(["cpu", "cpu"])] == ["cpu"]


def test_independent_filterbank_and_window_match_arraymel():
    """The torch-stft and naive-cupy peers use their own filterbank; it must be Keras's, as arraymel's is."""
    from arraymel.core.filterbank import filterbank_host

    for name in ("keras", "speech", "tiny"):
        p = bench_peers.resolved(workloads.config_params(name))
        mine = bench_peers.keras_filterbank(p)
        theirs = filterbank_host(p["num_mel_bins"], p["fft_length"], float(p["sampling_rate"]), p["min_freq"],
                                 float(p["max_freq"]))
        np.testing.assert_allclose(mine, theirs, atol=1e-12)
    scipy_signal = pytest.importorskip("scipy.signal")
    p = bench_peers.resolved({**workloads.KERAS_PARAMS, "sequence_length": 1000, "window": "hamming"})
    w = bench_peers.padded_window(p)
    np.testing.assert_allclose(w[524:1524], scipy_signal.get_window("hamming", 1000), atol=1e-12)
    assert w[:524].sum() == 0 and w[1524:].sum() == 0


def test_agreement_metric():
    a = np.zeros((2, 3, 4))
    b = a.copy()
    b[1, 2, 3] = -0.25
    assert bench_peers.agreement(a, b, db=True) == 0.25
    assert bench_peers.agreement(b, a, db=True) == 0.25  # a peer below arraymel counts as much as one above
    assert bench_peers.agreement(b + 1, a + 1, db=False) == pytest.approx(0.25)
    assert bench_peers.agreement(a + 1, b + 1, db=False) == pytest.approx(0.25 / 1.0)
    with pytest.raises(ValueError, match="shape"):
        bench_peers.agreement(a, a[..., :3], db=True)


@pytest.mark.skipif(not _have("librosa"), reason="librosa is not installed (the bench extra)")
def test_librosa_peer_differs_only_by_its_hz_triangles():
    """librosa's triangles are linear in Hz: its distance to arraymel must be exactly that of the two
    filterbanks applied, in float64, to the same power spectrum (so the adapter adds nothing)."""
    import librosa

    doc = run_benchmark(device_specs=["cpu"], peer_names=["librosa"], configs=["speech"], batches=[2], seconds=1.0,
                        repeat=1, measure_memory=False)
    row = next(r for r in doc["results"] if r["library"] == "librosa")
    assert "Hz" in row["note"]

    p = bench_peers.resolved(workloads.config_params("speech"))
    x = workloads.make_batch(2, 1.0, 16000).astype(np.float64)
    power = np.abs(librosa.stft(x, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")) ** 2
    hz = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, fmin=20.0, fmax=8000.0, htk=True, norm=None,
                             dtype=np.float64)

    def db(fb):
        d = 10 * np.log10(np.maximum(np.einsum("mf,bft->bmt", fb, power), 1e-10))
        return np.maximum(d, d.max() - 80.0)

    expected = float(np.abs(db(hz) - db(bench_peers.keras_filterbank(p).T)).max())
    assert 0.01 < expected < 0.1
    assert row["agreement"]["value"] == pytest.approx(expected, abs=2e-3)


def test_import_is_light():
    code = ("import sys, arraymel, arraymel.bench, arraymel.bench.cli, arraymel.bench.run, arraymel.bench.report, "
            "arraymel.bench.schema; heavy = [m for m in ('cupy', 'torch', 'jax', 'keras', 'librosa', 'scipy', "
            "'matplotlib', 'rich', 'jsonschema') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"
