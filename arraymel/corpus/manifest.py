"""``OUT_DIR/manifest.sqlite``: what was done to every file, with which configuration and versions.

Tables:

- ``files``: one row per source key (the latest outcome): ``key``, ``status`` ('ok' or
  'failed'), ``error``, ``output`` (relative to OUT_DIR), ``source_size``, ``source_mtime``
  (seconds) and ``source_mtime_ns``, ``sampling_rate``, ``channels`` and ``samples`` of the source,
  ``duration_s``, ``mel_samples`` (samples per channel after resampling), ``frames``, ``shape``
  (JSON), ``dtype``, ``sha256`` of the output file, ``config_hash``, ``versions`` (JSON: arraymel,
  numpy, soundfile, libsndfile, soxr, ...), ``run_id`` and ``updated_at``.
- ``runs``: one row per run: start, end, state ('running', 'finished', 'stopped', 'interrupted'),
  options, host, counts.
- ``meta``: ``schema_version``, ``config_hash``, ``config`` (the canonical description that was
  hashed) and ``mel_config`` (a ``--config`` file's content).

Only the process that holds the lock writes (the Dask client in a Dask run); every commit is a
transaction with ``synchronous=FULL``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sqlite3
import time
from typing import Any, Iterable

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL, finished_at TEXT, state TEXT NOT NULL,
    options TEXT, host TEXT, pid INTEGER, config_hash TEXT, versions TEXT, mode TEXT,
    discovered INTEGER, ok INTEGER, failed INTEGER, skipped INTEGER,
    audio_seconds REAL, wall_seconds REAL, message TEXT
);
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT, output TEXT,
    source_size INTEGER, source_mtime REAL, source_mtime_ns INTEGER,
    sampling_rate REAL, channels INTEGER, samples INTEGER, duration_s REAL,
    mel_samples INTEGER, frames INTEGER, shape TEXT, dtype TEXT, sha256 TEXT,
    config_hash TEXT, versions TEXT, run_id INTEGER, updated_at TEXT
);
CREATE INDEX IF NOT EXISTS files_status ON files (status);
"""

COLUMNS = ("key", "status", "error", "output", "source_size", "source_mtime", "source_mtime_ns", "sampling_rate",
           "channels", "samples", "duration_s", "mel_samples", "frames", "shape", "dtype", "sha256", "config_hash",
           "versions", "run_id", "updated_at")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclasses.dataclass
class FileRecord:
    """The outcome for one file: a ``files`` row, plus the directories to fsync before committing it."""

    key: str
    status: str
    error: str | None = None
    output: str | None = None
    source_size: int | None = None
    source_mtime_ns: int | None = None
    sampling_rate: float | None = None
    channels: int | None = None
    samples: int | None = None
    duration_s: float | None = None
    mel_samples: int | None = None
    frames: int | None = None
    shape: tuple | None = None
    dtype: str | None = None
    sha256: str | None = None
    config_hash: str | None = None
    versions: str | None = None
    sync_dirs: tuple = ()

    def row(self, run_id: int, stamp: str) -> tuple:
        mtime = None if self.source_mtime_ns is None else self.source_mtime_ns / 1e9
        shape = None if self.shape is None else json.dumps(list(self.shape))
        return (self.key, self.status, self.error, self.output, self.source_size, mtime, self.source_mtime_ns,
                self.sampling_rate, self.channels, self.samples, self.duration_s, self.mel_samples, self.frames, shape,
                self.dtype, self.sha256, self.config_hash, self.versions, run_id, stamp)


class ManifestError(Exception):
    """The manifest cannot be opened or is not an arraymel corpus manifest."""


class Manifest:
    def __init__(self, path: str, *, readonly: bool = False):
        self.path = path
        try:
            if readonly:
                uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            else:
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
                if self.meta("schema_version") is None:
                    self.set_meta({"schema_version": str(SCHEMA_VERSION)})
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as e:
            raise ManifestError(f"{path} is not a usable SQLite manifest: {e}") from None
        if version is not None and int(version) > SCHEMA_VERSION:
            raise ManifestError(f"{path} has schema version {version}, newer than this arraymel understands ({SCHEMA_VERSION}).")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ meta
    def meta(self, name: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else row[0]

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", list(values.items()))

    # ------------------------------------------------------------------ transactions
    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, *rest):
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def transaction(self) -> "_Tx":
        return Manifest._Tx(self.db)

    # ------------------------------------------------------------------ runs
    def start_run(self, *, options: dict, host: str, pid: int, config_hash: str, versions: str, mode: str) -> int:
        with self.transaction():
            self.db.execute("UPDATE runs SET state = 'interrupted', message = COALESCE(message, 'the process ended without "
                            "finishing the run (killed or crashed)') WHERE state = 'running'")
            cur = self.db.execute(
                "INSERT INTO runs (started_at, state, options, host, pid, config_hash, versions, mode) VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
                (now(), json.dumps(options, sort_keys=True, default=str), host, pid, config_hash, versions, mode))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, state: str, counts: dict[str, Any], message: str | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at = ?, state = ?, discovered = ?, ok = ?, failed = ?, skipped = ?, "
                "audio_seconds = ?, wall_seconds = ?, message = ? WHERE run_id = ?",
                (now(), state, counts.get("discovered"), counts.get("ok"), counts.get("failed"), counts.get("skipped"),
                 counts.get("audio_seconds"), counts.get("wall_seconds"), message, run_id))

    def runs(self, limit: int = 5) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    # ------------------------------------------------------------------ files
    def record(self, records: Iterable[FileRecord], run_id: int) -> int:
        stamp = now()
        rows = [r.row(run_id, stamp) for r in records]
        if rows:
            with self.transaction():
                self.db.executemany(f"INSERT OR REPLACE INTO files ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                    rows)
        return len(rows)

    def resume_rows(self) -> dict[str, tuple]:
        """key -> (status, source_size, source_mtime_ns, config_hash, output, sha256) of every row."""
        cur = self.db.execute("SELECT key, status, source_size, source_mtime_ns, config_hash, output, sha256 FROM files")
        return {r[0]: r[1:] for r in cur}

    def counts(self, config_hash: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": 0, "failed": 0}
        for status, n, secs in self.db.execute("SELECT status, COUNT(*), SUM(duration_s) FROM files GROUP BY status"):
            out[status] = n
            out[f"{status}_audio_hours"] = (secs or 0.0) / 3600
        out["total"] = out["ok"] + out["failed"]
        if config_hash is not None:
            out["ok_other_config"] = self.db.execute(
                "SELECT COUNT(*) FROM files WHERE status = 'ok' AND config_hash IS NOT ?", (config_hash,)).fetchone()[0]
        return out

    def failures(self, limit: int | None = None) -> list[tuple[str, str]]:
        q = "SELECT key, error FROM files WHERE status = 'failed' ORDER BY key"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        return [(k, e) for k, e in self.db.execute(q)]

    def rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM files ORDER BY key")
        return [dict(zip(COLUMNS, r)) for r in cur.fetchall()]
