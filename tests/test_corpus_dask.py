"""``arraymel corpus --dask``: Dask workers give the same outputs and manifest as the single-process run."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("soundfile")
pytest.importorskip("soxr")
distributed = pytest.importorskip("distributed")

import corpus_data as cd  # noqa: E402
from test_corpus import corpus_cli, last_run, output_files, rows  # noqa: E402

OPTS = ["--num-mel-bins", "64", "--min-seconds", str(cd.MIN_SECONDS)]


def _same(a: str, b: str) -> None:
    ra, rb = rows(a), rows(b)
    keep = ("status", "error", "output", "source_size", "source_mtime_ns", "sampling_rate", "channels", "samples",
            "mel_samples", "frames", "shape", "dtype", "sha256", "config_hash")
    assert {k: tuple(r[c] for c in keep) for k, r in ra.items()} == {k: tuple(r[c] for c in keep) for k, r in rb.items()}
    files_a = {n for n in output_files(a) if n.endswith(".npy")}
    assert files_a == {n for n in output_files(b) if n.endswith(".npy")}
    for n in files_a:
        with open(os.path.join(a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
            assert fa.read() == fb.read(), n


def test_a_local_cluster_of_two_worker_processes_gives_the_same_outputs(tmp_path):
    root = str(tmp_path / "in")
    good, bad = cd.make_corpus(root)
    single, dask_out = str(tmp_path / "single"), str(tmp_path / "dask")
    assert corpus_cli(root, single, *OPTS, "-q")[0] == 2
    rc, stdout, stderr = corpus_cli(root, dask_out, *OPTS, "--dask", "local:2")
    assert rc == 2, stderr
    assert "dask (2 workers" in stdout
    assert last_run(dask_out)["mode"] == "dask local:2"
    _same(single, dask_out)
    # resume under Dask skips what is done
    assert corpus_cli(root, dask_out, *OPTS, "--dask", "local:2", "-q")[0] == 2
    assert last_run(dask_out)["skipped"] == len(good)


def test_a_running_scheduler_by_address(tmp_path):
    root = str(tmp_path / "in")
    cd.write_good(root, {k: v for k, v in cd.GOOD.items() if not k.startswith("long/")})
    single, dask_out = str(tmp_path / "single"), str(tmp_path / "dask")
    assert corpus_cli(root, single, *OPTS, "-q")[0] == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rc, _, stderr = corpus_cli(root, dask_out, *OPTS, "--dask", cluster.scheduler_address, "-q")
    assert rc == 0, stderr
    _same(single, dask_out)


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    root = str(tmp_path / "in")
    cd.write_good(root, {"a.wav": ("WAV", "PCM_16", 16000, 1, 0.2)})
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        rc, _, stderr = corpus_cli(root, str(tmp_path / "out"), "--dask", "tcp://127.0.0.1:9", "-q")
    assert rc == 1 and "cannot start the Dask engine" in stderr
