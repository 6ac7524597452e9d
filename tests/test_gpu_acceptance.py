"""``benchmarks/gpu_acceptance.py --emulate`` end to end (the GPU acceptance run cannot rot before a GPU comes).

The emulated run uses the same public calls, dispatch and engines as on a GPU (kernels on the CPU
emulator of tests/cuda_cpu); its parity is real, its timings are meaningless. Checked here: every
output is written, both paths pass parity on every case, the report states the rule, the parity and
the default the rule would choose, and the corpus engine processed every file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "benchmarks") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("soundfile")
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), KERAS_BACKEND="jax")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_acceptance.py"), "--emulate", "--out",
                        str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with open(out / "gpu_acceptance.json") as f:
        rep = json.load(f)
    md = (out / "gpu_acceptance.md").read_text()
    return rep, md, out


def test_every_output_is_written(report):
    rep, md, out = report
    assert (out / "gpu_acceptance.png").stat().st_size > 10_000
    assert rep["emulated"] is True and "meaningless" in md


def test_parity_of_both_paths_on_every_case(report):
    rep, md, _ = report
    for path in ("cupy", "cupy-fused"):
        r = rep["parity"][path]
        assert r["cases"] >= 12 and r["failed"] == [] and r["ok"] is True, r
        assert 0 < r["max_db"]["float32"]["0-60"] <= 1e-3 and r["max_db"]["float64"]["0-60"] <= 1e-9
        assert f"| {path} | {r['cases']} | 0 |" in md
    kernels = {p: set(rep["parity"][p]["emulated_kernels"]) for p in ("cupy", "cupy-fused")}
    assert "am_fused_mel" in kernels["cupy-fused"] and "am_fused_mel" not in kernels["cupy"]
    assert {"am_pad_reflect", "am_frames_window", "am_mel_smem", "am_clip_top_db"} <= kernels["cupy"]


def test_the_rule_and_the_default_it_chooses(report):
    from gpu_acceptance import RULE, verdict

    rep, md, _ = report
    assert rep["rule"] == RULE and RULE in md
    for cname in ("keras", "speech"):
        v = rep["verdict"][cname]
        assert v["default"] in ("cupy", "cupy-fused") and set(v["checks"]) == {"parity", "throughput", "latency"}
        assert f"- {cname}: default **{v['default']}**" in md
    # the rule itself, on made-up figures
    par = {"cupy": {"ok": True}, "cupy-fused": {"ok": True}}
    fast = {"cupy": dict(audio_h_per_s=100.0, b1_ms=1.0), "cupy-fused": dict(audio_h_per_s=111.0, b1_ms=1.0)}
    assert verdict(par, {"keras": fast, "speech": fast})["keras"]["default"] == "cupy-fused"
    slow = {"cupy": dict(audio_h_per_s=100.0, b1_ms=1.0), "cupy-fused": dict(audio_h_per_s=109.0, b1_ms=1.0)}
    assert verdict(par, {"keras": slow, "speech": slow})["keras"]["default"] == "cupy"
    late = {"cupy": dict(audio_h_per_s=100.0, b1_ms=1.0), "cupy-fused": dict(audio_h_per_s=200.0, b1_ms=1.01)}
    assert verdict(par, {"keras": late, "speech": late})["speech"]["default"] == "cupy"
    assert verdict({"cupy": {"ok": True}, "cupy-fused": {"ok": False}}, {"keras": fast, "speech": fast})["keras"][
        "default"] == "cupy"
    assert verdict({"cupy": {"ok": False}, "cupy-fused": {"ok": True}}, {"keras": fast, "speech": fast})["keras"][
        "default"] == "blocked"


def test_timings_peers_and_the_corpus_engine(report):
    rep, md, _ = report
    for cname in ("keras", "speech"):
        for path in ("cupy", "cupy-fused"):
            t = rep["throughput"][cname][path]
            assert len(t["ms_runs"]) == rep["reps"] and t["audio_h_per_s"] > 0 and t["b1_ms"] > 0
            assert rep["model"][cname][path]["fraction"] > 0
        assert "naive (NumPy)" in rep["throughput"][cname]["peers"]
    assert "skipped" in rep["sanitizer"]
    c = rep["corpus"]
    assert c["ok"] == c["files"] == 40 and c["failed"] == 0 and c["decode_processes"] == 2
