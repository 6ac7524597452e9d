"""``arraymel corpus status OUT_DIR [--json]``: counts, configuration, recent runs, failures, and what
needs attention.

It only reads, and works while a run is going. It tells the truth about what it cannot see in the
manifest alone:

- a run recorded as ``running`` whose lock is free has ended without finishing (killed, crashed, the
  machine went down): it is shown as ``interrupted``, with its pid and host;
- rows whose source no longer exists under the last run's IN_DIR are orphaned outputs (``--prune``
  on a run removes them);
- the directories the last run could not list are listed.

Exit status: 0 when nothing needs attention, 2 when some file failed, an output is orphaned, a
directory could not be listed or the last run did not finish, 1 when there is no readable manifest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from arraymel.corpus.discover import gone
from arraymel.corpus.manifest import Manifest, ManifestError
from arraymel.corpus.storage import LOCK_NAME, MANIFEST_NAME, printable

#: orphaned outputs and failures shown in the text report (all of them in --json)
SHOWN = 20


def lock_is_held(out_dir: str) -> bool:
    """Whether a run holds OUT_DIR's lock now (a shared ``flock`` probe: nothing is created or written)."""
    import fcntl

    try:
        fd = os.open(os.path.join(out_dir, LOCK_NAME), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def report(out_dir: str) -> dict:
    """The status of OUT_DIR as a JSON-able dict (raises ManifestError when there is no readable manifest)."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.exists(path):
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
    runs = m.runs(limit=5)
    held = lock_is_held(out_dir)
    for run in runs:
        if run["state"] == "running" and not held:
            run["state"] = "interrupted"
            run["message"] = (f"the run (pid {run.get('pid')} on {run.get('host')}) ended without finishing: killed, "
                              "crashed or the machine stopped; a later run resumes")
    last = runs[0] if runs else {}
    in_dir = last.get("in_dir")
    orphans: list[str] | None = None
    if in_dir and os.path.isdir(in_dir):
        orphans = gone(m.keys(), in_dir)
    storage = (json.loads(config).get("storage") if config else None) or {"format": "npy"}
    shards = None
    if storage["format"] != "npy":
        committed = m.shards()
        planned = int(m.meta("shards_planned") or 0)
        shards = {"format": storage["format"], "shard_size": storage.get("shard_size"), "planned": planned,
                  "committed": sum(1 for k in committed if k < planned),
                  "pending": [k for k in range(planned) if k not in committed],
                  "members": sum(int(r["members"] or 0) for r in committed.values())}
    return {
        "out_dir": out_dir,
        "manifest": path,
        "shards": shards,  # None for --format npy
        "schema_version": int(m.meta("schema_version") or 0),
        "config_hash": config_hash,
        "config": json.loads(config) if config else None,
        "mel_config": json.loads(mel_config) if mel_config else None,
        "counts": m.counts(config_hash),
        "runs": runs,
        "running": held,
        "in_dir": in_dir,
        "orphaned": orphans,  # None: IN_DIR unknown or gone, nothing could be checked
        "unlisted": [{"directory": d, "error": e} for d, e in last.get("unlisted", [])],
        "failures": [{"key": k, "error": e} for k, e in m.failures()],
    }


def needs_attention(r: dict) -> bool:
    last = r["runs"][0] if r["runs"] else {}
    return bool(r["counts"]["failed"] or r["orphaned"] or r["unlisted"] or (r.get("shards") or {}).get("pending")
                or last.get("state") in ("interrupted", "stopped"))


def format_report(r: dict) -> str:
    c = r["counts"]
    lines = [f"OUT_DIR {r['out_dir']}", f"  manifest {r['manifest']} (schema {r['schema_version']})"]
    if r["config_hash"]:
        mel = r["config"]["mel"] if r.get("config") else {}
        brief = ", ".join(f"{k}={mel[k]}" for k in ("sampling_rate", "fft_length", "sequence_stride", "num_mel_bins", "top_db")
                          if k in mel)
        lines.append(f"  config {r['config_hash'][:16]} ({brief}; out_dtype={r['config'].get('out_dtype')}, "
                     f"channels={r['config'].get('channels')})")
    sh = r.get("shards")
    if sh:
        pend = sh["pending"]
        listed = f" ({', '.join(map(str, pend[:10]))}{' ...' if len(pend) > 10 else ''})" if pend else ""
        lines.append(f"  shards ({sh['format']}, {sh['shard_size']} files each): {sh['committed']} committed, "
                     f"{len(pend)} pending{listed}; "
                     f"{sh['members']} files in them")
    lines.append(f"  files {c['total']} = ok {c['ok']} ({c.get('ok_audio_hours', 0.0):.4f} audio-hours) + failed {c['failed']}")
    if c.get("ok_other_config"):
        lines.append(f"  {c['ok_other_config']} ok rows were made with another configuration (before a --force)")
    for run in r["runs"][:3]:
        counts = "" if run.get("discovered") is None else (
            f": discovered {run['discovered']}, ok {run['ok']}, failed {run['failed']}, skipped {run['skipped']}")
        lines.append(f"  run {run['run_id']} {run['state']} (started {run['started_at']}"
                     f"{', ended ' + run['finished_at'] if run.get('finished_at') else ''}; pid {run.get('pid')} on "
                     f"{run.get('host')}){counts}")
        if run.get("message"):
            lines.append(f"      {printable(run['message'])}")
    if r["in_dir"] and r["orphaned"] is None:
        lines.append(f"  IN_DIR {printable(r['in_dir'])} of the last run is gone: orphaned outputs cannot be checked")
    if r["orphaned"]:
        lines.append(f"  orphaned outputs ({len(r['orphaned'])}; their source is gone from {printable(r['in_dir'])}; "
                     "`arraymel corpus IN_DIR OUT_DIR --prune` removes them):")
        lines += [f"    {printable(k)}" for k in r["orphaned"][:SHOWN]]
        if len(r["orphaned"]) > SHOWN:
            lines.append(f"    ... and {len(r['orphaned']) - SHOWN} more (--json lists them all)")
    if r["unlisted"]:
        lines.append(f"  directories the last run could not list ({len(r['unlisted'])}; their files were not seen):")
        lines += [f"    {printable(u['directory'])}: {u['error']}" for u in r["unlisted"]]
    if r["failures"]:
        lines.append(f"  failed files ({len(r['failures'])}):")
        lines += [f"    {printable(f['key'])}: {f['error']}" for f in r["failures"]]
    return "\n".join(lines)


def status(out_dir: str, *, as_json: bool = False) -> int:
    """Print the status; 0 when nothing needs attention, 2 when something does, 1 without a readable manifest."""
    try:
        r = report(out_dir)
    except ManifestError as e:
        print(f"arraymel corpus status: error: {e}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(r, indent=2, sort_keys=True) if as_json else format_report(r), flush=True)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 2 if needs_attention(r) else 0
