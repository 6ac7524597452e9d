"""``arraymel corpus status OUT_DIR [--json]``: counts, configuration, recent runs and failures."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from arraymel.corpus.manifest import Manifest, ManifestError
from arraymel.corpus.storage import MANIFEST_NAME


def report(out_dir: str) -> dict:
    """The status of OUT_DIR as a JSON-able dict (raises ManifestError when there is no manifest)."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ManifestError(f"no manifest at {path}: OUT_DIR has not been used by `arraymel corpus`.")
    m = Manifest(path, readonly=True)
    try:
        return _report(m, out_dir, path)
    except sqlite3.Error as e:
        raise ManifestError(f"{path} cannot be read as an arraymel corpus manifest: {e}") from None
    finally:
        m.close()


def _report(m: Manifest, out_dir: str, path: str) -> dict:
    config_hash = m.meta("config_hash")
    mel_config = m.meta("mel_config")
    config = m.meta("config")
    return {
        "out_dir": out_dir,
        "manifest": path,
        "schema_version": int(m.meta("schema_version") or 0),
        "config_hash": config_hash,
        "config": json.loads(config) if config else None,
        "mel_config": json.loads(mel_config) if mel_config else None,
        "counts": m.counts(config_hash),
        "runs": m.runs(limit=5),
        "failures": [{"key": k, "error": e} for k, e in m.failures()],
    }


def format_report(r: dict) -> str:
    c = r["counts"]
    lines = [f"OUT_DIR {r['out_dir']}", f"  manifest {r['manifest']} (schema {r['schema_version']})"]
    if r["config_hash"]:
        mel = r["config"]["mel"] if r.get("config") else {}
        brief = ", ".join(f"{k}={mel[k]}" for k in ("sampling_rate", "fft_length", "sequence_stride", "num_mel_bins", "top_db")
                          if k in mel)
        lines.append(f"  config {r['config_hash'][:16]} ({brief}; out_dtype={r['config'].get('out_dtype')}, "
                     f"channels={r['config'].get('channels')})")
    lines.append(f"  files {c['total']} = ok {c['ok']} ({c.get('ok_audio_hours', 0.0):.4f} audio-hours) + failed {c['failed']}")
    if c.get("ok_other_config"):
        lines.append(f"  {c['ok_other_config']} ok rows were made with another configuration (before a --force)")
    for run in r["runs"][:3]:
        counts = "" if run.get("discovered") is None else (
            f": discovered {run['discovered']}, ok {run['ok']}, failed {run['failed']}, skipped {run['skipped']}")
        lines.append(f"  run {run['run_id']} {run['state']} (started {run['started_at']}"
                     f"{', ended ' + run['finished_at'] if run.get('finished_at') else ''}){counts}")
        if run.get("message"):
            lines.append(f"      {run['message']}")
    if r["failures"]:
        lines.append(f"  failed files ({len(r['failures'])}):")
        lines += [f"    {f['key']}: {f['error']}" for f in r["failures"]]
    return "\n".join(lines)


def status(out_dir: str, *, as_json: bool = False) -> int:
    """Print the status; 0 when no file failed, 2 when some did, 1 when there is no readable manifest."""
    try:
        r = report(out_dir)
    except ManifestError as e:
        print(f"arraymel corpus status: error: {e}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(r, indent=2, sort_keys=True) if as_json else format_report(r), flush=True)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 2 if r["counts"]["failed"] else 0
