"""``OUT_DIR/manifest.sqlite``: what was done to every file, with which configuration and versions.

Tables:

- ``files``: one row per source key (the latest outcome): ``key``, ``status`` ('ok' or
  'failed'), ``error``, ``output`` (relative to OUT_DIR), ``source_size``, ``source_mtime``
  (seconds) and ``source_mtime_ns``, ``sampling_rate``, ``channels`` and ``samples`` of the source,
  ``duration_s``, ``mel_samples`` (samples per channel after resampling), ``frames``, ``shape``
  (JSON), ``dtype``, ``sha256`` of the output file, ``config_hash``, ``versions`` (JSON: arraymel,
  numpy, soundfile, libsndfile, soxr, ...), ``run_id`` and ``updated_at``.
- ``runs``: one row per run: start, end, state ('running', 'finished', 'stopped', 'interrupted'),
  options, host, pid, ``in_dir`` (its real path), counts, and ``unlisted`` (JSON: the directories
  that could not be listed, with the reason).
- ``meta``: ``schema_version``, ``config_hash``, ``config`` (the canonical description that was
  hashed) and ``mel_config`` (a ``--config`` file's content).

Only the process that holds the lock writes (the Dask client in a Dask run); every commit is a
transaction with ``synchronous=FULL``.

File names are stored without loss: a key (or output path) that is valid UTF-8 is TEXT; one with
bytes that are not (Python holds them as surrogate escapes) is stored as a BLOB of the name's
bytes and read back as the same ``str``.

The manifest is checked when it is opened (``PRAGMA quick_check``; a 0-byte file counts as
damaged, not as new): a damaged one is refused with a way to recover, never silently replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sqlite3
import stat
import time
from collections.abc import Iterable
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL, finished_at TEXT, state TEXT NOT NULL,
    options TEXT, host TEXT, pid INTEGER, config_hash TEXT, versions TEXT, mode TEXT,
    discovered INTEGER, ok INTEGER, failed INTEGER, skipped INTEGER,
    audio_seconds REAL, wall_seconds REAL, message TEXT, in_dir TEXT, unlisted TEXT
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
           "versions", "run_id", "updated_at", "shard", "member", "offset", "nbytes")


#: columns added to ``runs`` after the first release (added to an older manifest when it is opened for a run)
_ADDED_RUN_COLUMNS = {"in_dir": "TEXT", "unlisted": "TEXT"}
#: columns added to ``files`` for the sharded formats (NULL for ``npy`` rows)
_ADDED_FILE_COLUMNS = {"shard": "INTEGER", "member": "TEXT", "offset": "INTEGER", "nbytes": "INTEGER"}

#: one row per committed shard of a sharded format (``--format shar|kaldi``): its files (``parts``: JSON list
#: of ``{"path", "size", "sha256"}``, paths relative to OUT_DIR), the SHA-256 of its slot list (the keys with
#: their source size and mtime: a shard is reused only for the same files), its numbers and the run
_SHARDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    shard INTEGER PRIMARY KEY, format TEXT NOT NULL, parts TEXT NOT NULL, slots_sha256 TEXT NOT NULL,
    first_key TEXT, last_key TEXT, files INTEGER, members INTEGER, config_hash TEXT, run_id INTEGER, committed_at TEXT
);
CREATE INDEX IF NOT EXISTS files_shard ON files (shard);
"""


def to_db(name: str | None):
    """A file name as stored: TEXT when it is valid UTF-8, else the BLOB of its bytes (lossless)."""
    if name is None:
        return None
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name)


def from_db(value) -> str | None:
    """The name stored by :func:`to_db`."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _text(value: str | None) -> str | None:
    """Free text (an error message) as storable TEXT: undecodable bytes of a name it quotes as ``\\xNN``."""
    return None if value is None else os.fsencode(value).decode("utf-8", "backslashreplace")


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
    #: the sharded formats: the shard holding the output, the member's name (the cut / utterance id), where
    #: its stored bytes begin in the shard's data file and how many there are
    shard: int | None = None
    member: str | None = None
    offset: int | None = None
    nbytes: int | None = None
    sync_dirs: tuple = ()
    #: a sharded format's output on its way to its shard (.npy bytes or a staged file); never stored
    payload: Any = dataclasses.field(default=None, repr=False)

    def row(self, run_id: int, stamp: str) -> tuple:
        mtime = None if self.source_mtime_ns is None else self.source_mtime_ns / 1e9
        shape = None if self.shape is None else json.dumps(list(self.shape))
        return (to_db(self.key), self.status, _text(self.error), to_db(self.output), self.source_size, mtime,
                self.source_mtime_ns,
                self.sampling_rate, self.channels, self.samples, self.duration_s, self.mel_samples, self.frames, shape,
                self.dtype, self.sha256, self.config_hash, self.versions, run_id, stamp, self.shard, _text(self.member),
                self.offset, self.nbytes)


class ManifestError(Exception):
    """The manifest cannot be opened, read or written, or is not an arraymel corpus manifest."""


def _recovery(path: str) -> str:
    return (f"move it aside (mv {path} {path}.damaged) and run again: every file is then computed anew (the outputs are "
            "rewritten); or try to salvage it first with `sqlite3 manifest.sqlite.damaged .recover | sqlite3 manifest.sqlite`")


def _roll_back_hot_journal(path: str) -> None:
    """A run killed inside a transaction leaves a hot rollback journal, which a read-only connection cannot
    roll back ("attempt to write a readonly database": status and the reader would call the manifest
    damaged). Any read-write connection rolls it back on its first read, to the last commit, as the next
    run would; SQLite does so only when no live connection holds the write lock, so a running run's open
    transaction is never touched. Without write access, nothing is tried."""
    if not os.path.exists(path + "-journal") or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return
    try:
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        pass  # the read-only open that follows reports what is wrong


class Manifest:
    def __init__(self, path: str, *, readonly: bool = False):
        self.path = path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise ManifestError(f"cannot read the manifest {path}: {e.strerror or e}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise ManifestError(f"the manifest {path} is not a regular file (a directory?); move it away.")
        if st is not None and st.st_size == 0:
            raise ManifestError(f"the manifest {path} is empty (0 bytes): it was damaged (a run never leaves it empty); "
                                + _recovery(path))
        try:
            if readonly:
                _roll_back_hot_journal(path)
                uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            else:
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise ManifestError(f"cannot open the manifest {path}: {e}") from None
        try:
            if st is not None:
                self._check_integrity()
            if not readonly:
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
                have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
                for name, kind in _ADDED_RUN_COLUMNS.items():
                    if name not in have:
                        self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
                have = {r[1] for r in self.db.execute("PRAGMA table_info(files)")}
                for name, kind in _ADDED_FILE_COLUMNS.items():
                    if name not in have:
                        self.db.execute(f"ALTER TABLE files ADD COLUMN {name} {kind}")
                self.db.executescript(_SHARDS_SCHEMA)
                if self.meta("schema_version") is None:
                    self.set_meta({"schema_version": str(SCHEMA_VERSION)})
            version = self.meta("schema_version")
        except ManifestError:
            self.db.close()
            raise
        except sqlite3.Error as e:
            self.db.close()
            raise ManifestError(f"cannot use the manifest {path}: {e}") from None
        if version is not None and int(version) > SCHEMA_VERSION:
            self.db.close()
            raise ManifestError(f"{path} has schema version {version}, newer than this arraymel understands ({SCHEMA_VERSION}).")

    def _check_integrity(self) -> None:
        try:
            found = [r[0] for r in self.db.execute("PRAGMA quick_check")]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise ManifestError(f"the manifest {self.path} is damaged ({e}); " + _recovery(self.path)) from None
        if found != ["ok"]:
            raise ManifestError(f"the manifest {self.path} is damaged (quick_check: {'; '.join(found[:3])}); "
                                + _recovery(self.path))
        if not {"meta", "runs", "files"} <= tables:
            raise ManifestError(f"{self.path} is an SQLite database but not an arraymel corpus manifest "
                                f"(tables: {', '.join(sorted(tables)) or 'none'}); use another OUT_DIR, or move it away.")

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
        """``BEGIN IMMEDIATE`` .. ``COMMIT``; any SQLite error becomes a :class:`ManifestError` naming the manifest
        and the cause (SQLite rolls a transaction back by itself after some errors, a full disk for one)."""

        def __init__(self, manifest: Manifest):
            self.manifest = manifest
            self.db = manifest.db

        def __enter__(self):
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise ManifestError(f"cannot write the manifest {self.manifest.path}: {e}") from None
            return self.db

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                    return False
                except sqlite3.Error as e:
                    exc = e
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise ManifestError(f"cannot write the manifest {self.manifest.path}: {exc}") from None
            return False

    def transaction(self) -> _Tx:
        return Manifest._Tx(self)

    # ------------------------------------------------------------------ runs
    def start_run(self, *, options: dict, host: str, pid: int, config_hash: str, versions: str, mode: str,
                  in_dir: str | None = None, unlisted: list | None = None) -> int:
        with self.transaction():
            self.db.execute("UPDATE runs SET state = 'interrupted', message = COALESCE(message, 'the process ended without "
                            "finishing the run (killed or crashed)') WHERE state = 'running'")
            cur = self.db.execute(
                "INSERT INTO runs (started_at, state, options, host, pid, config_hash, versions, mode, in_dir, unlisted) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (now(), json.dumps(options, sort_keys=True, default=str), host, pid, config_hash, versions, mode,
                 to_db(in_dir), json.dumps(unlisted or [])))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, state: str, counts: dict[str, Any], message: str | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at = ?, state = ?, discovered = ?, ok = ?, failed = ?, skipped = ?, "
                "audio_seconds = ?, wall_seconds = ?, message = ? WHERE run_id = ?",
                (now(), state, counts.get("discovered"), counts.get("ok"), counts.get("failed"), counts.get("skipped"),
                 counts.get("audio_seconds"), counts.get("wall_seconds"), _text(message), run_id))

    def runs(self, limit: int = 5) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        out = [dict(zip(names, r)) for r in cur.fetchall()]
        for run in out:
            run["in_dir"] = from_db(run.get("in_dir"))
            run["unlisted"] = json.loads(run["unlisted"]) if run.get("unlisted") else []
        return out

    # ------------------------------------------------------------------ files
    def record(self, records: Iterable[FileRecord], run_id: int) -> int:
        stamp = now()
        rows = [r.row(run_id, stamp) for r in records]
        if rows:
            with self.transaction():
                self.db.executemany(f"INSERT OR REPLACE INTO files ({', '.join(COLUMNS)}) "
                                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                                    rows)
        return len(rows)

    def resume_rows(self) -> dict[str, tuple]:
        """key -> (status, source_size, source_mtime_ns, config_hash, output, sha256) of every row."""
        cur = self.db.execute("SELECT key, status, source_size, source_mtime_ns, config_hash, output, sha256 FROM files")
        return {from_db(r[0]): (*r[1:5], from_db(r[5]), r[6]) for r in cur}

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the rows of ``keys`` (sources that are gone: ``--prune``)."""
        rows = [(to_db(k),) for k in keys]
        if rows:
            with self.transaction():
                self.db.executemany("DELETE FROM files WHERE key = ?", rows)
        return len(rows)

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
        return [(from_db(k), e) for k, e in self.db.execute(q)]

    def keys(self) -> list[str]:
        return [from_db(k) for (k,) in self.db.execute("SELECT key FROM files")]

    # ------------------------------------------------------------------ shards
    def has_shards(self) -> bool:
        return bool(self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'shards'").fetchone())

    def shards(self) -> dict[int, dict[str, Any]]:
        """shard number -> its row (``parts`` decoded), for every committed shard."""
        if not self.has_shards():
            return {}
        cur = self.db.execute("SELECT * FROM shards ORDER BY shard")
        names = [d[0] for d in cur.description]
        out = {}
        for r in cur.fetchall():
            row = dict(zip(names, r))
            row["parts"] = json.loads(row["parts"])
            row["first_key"], row["last_key"] = from_db(row["first_key"]), from_db(row["last_key"])
            out[int(row["shard"])] = row
        return out

    def commit_shard(self, shard: int, *, fmt: str, parts: list[dict], slots_sha256: str, first_key: str | None,
                     last_key: str | None, files: int, records: list[FileRecord], config_hash: str, run_id: int) -> None:
        """Record shard ``shard`` as committed, with the rows of its files, in one transaction: the rows of its
        previous contents (if any) go, so that every ``files`` row naming a shard is one of its members."""
        stamp = now()
        rows = [r.row(run_id, stamp) for r in records]
        members = sum(1 for r in records if r.status == "ok")
        with self.transaction():
            self.db.execute("DELETE FROM files WHERE shard = ?", (shard,))
            self.db.executemany(f"INSERT OR REPLACE INTO files ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                rows)
            self.db.execute("INSERT OR REPLACE INTO shards (shard, format, parts, slots_sha256, first_key, last_key, files, "
                            "members, config_hash, run_id, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (shard, fmt, json.dumps(parts, sort_keys=True), slots_sha256, to_db(first_key),
                             to_db(last_key), files, members, config_hash, run_id, stamp))

    def drop_shards(self, shards: Iterable[int]) -> None:
        """Forget shards (and the rows of their files) that the current assignment no longer has."""
        nos = [(int(s),) for s in shards]
        if nos:
            with self.transaction():
                self.db.executemany("DELETE FROM files WHERE shard = ?", nos)
                self.db.executemany("DELETE FROM shards WHERE shard = ?", nos)

    def rows(self, order: str = "key") -> list[dict[str, Any]]:
        """Every ``files`` row as a dict, ordered by key (``order="shard"``: by shard, then offset)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(files)")}
        cols = [c for c in COLUMNS if c in have]
        by = "shard, offset, key" if order == "shard" and "shard" in have else "key"
        cur = self.db.execute(f"SELECT {', '.join(cols)} FROM files ORDER BY {by}")
        out = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in out:
            r["key"], r["output"] = from_db(r["key"]), from_db(r["output"])
        return out
