"""OUT_DIR: the lock, atomic output files, clean-up of an interrupted run, paths that stay inside.

An output is written to a hidden temporary name in its final directory
(``.arraymel-tmp-<32 hex>``: 46 bytes, never longer than a name the file system allows, whatever the
source's name), flushed and fsynced, renamed over the final name, and
the directory is fsynced before the manifest row that points at it is committed. A crash
therefore leaves at most temporary files (removed when the next run starts, under the lock) and
outputs without a manifest row (recomputed, since only a committed row lets a file be skipped).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import socket
import stat
import threading
import time
import uuid

import numpy as np

MANIFEST_NAME = "manifest.sqlite"
LOCK_NAME = ".arraymel-corpus.lock"
TMP_MARK = ".arraymel-tmp-"
#: ``.arraymel-tmp-<hex>``, and ``.<name>.npy.arraymel-tmp-<hex>`` as runs before 0.x named them
_TMP_RE = re.compile(r"^(\..+)?" + re.escape(TMP_MARK) + r"[0-9a-f]{32}$")
#: names at the top of OUT_DIR that belong to the run (no output may lie at or under them)
RESERVED = (MANIFEST_NAME, MANIFEST_NAME + "-journal", MANIFEST_NAME + "-wal", MANIFEST_NAME + "-shm", LOCK_NAME)
#: write errors that come from one output's path, not from OUT_DIR: that file fails, the run goes on
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EILSEQ, errno.EINVAL}


def printable(name: str) -> str:
    """A file name as it can be printed on one line: bytes that are not UTF-8 as ``\\xNN``, control
    characters (a newline, ...) escaped; the name itself is kept as it is everywhere else."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def describe_os_error(e: OSError) -> str:
    """``No space left on device (ENOSPC)``: the cause, as a user can look it up."""
    name = errno.errorcode.get(e.errno, "") if e.errno else ""
    return f"{e.strerror or e}" + (f" ({name})" if name else "")


class OutputError(Exception):
    """OUT_DIR cannot be used or written (the run stops with status 1)."""


class OutputPathError(Exception):
    """One output cannot be written at its path (a name too long, a directory in the way): that file fails."""


class LockHeld(OutputError):
    """Another run holds OUT_DIR's lock."""


def output_rel(key: str) -> str:
    """The output's path relative to OUT_DIR: the source's relative path plus ``.npy``."""
    return key + ".npy"


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def prepare_out_dir(out_dir: str) -> str:
    """Create OUT_DIR if needed and check that it is a writable directory; its real path."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create OUT_DIR {printable(out_dir)}: {describe_os_error(e)}") from None
    real = os.path.realpath(out_dir)
    if not os.path.isdir(real):
        raise OutputError(f"OUT_DIR {out_dir!r} is not a directory.")
    if not os.access(real, os.W_OK | os.X_OK):
        raise OutputError(f"OUT_DIR {out_dir!r} is not writable.")
    return real


class Lock:
    """An exclusive ``flock`` on ``OUT_DIR/.arraymel-corpus.lock``; the kernel releases it if the process dies."""

    def __init__(self, out_root: str):
        self.path = os.path.join(out_root, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self) -> Lock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot create the lock file {printable(self.path)}: {describe_os_error(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
                holder = f" (pid {info.get('pid')} on {info.get('host')}, started {info.get('started')})"
            except Exception:
                pass
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockHeld(f"another arraymel corpus run holds the lock on {os.path.dirname(self.path)}{holder}; "
                               "two runs on one OUT_DIR are not allowed.") from None
            raise OutputError(f"cannot lock {printable(self.path)}: {describe_os_error(e)}") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as e:  # a full disk at start: say so now, before anything else is tried
            os.close(fd)
            raise OutputError(f"cannot write the lock file {printable(self.path)}: {describe_os_error(e)}") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            try:
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:  # the kernel drops the lock with the descriptor anyway
                    pass
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def name_max(out_root: str) -> int:
    """The longest file name (bytes) the file system of OUT_DIR allows."""
    try:
        return int(os.pathconf(out_root, "PC_NAME_MAX"))
    except (OSError, ValueError):  # pragma: no cover - not POSIX
        return 255


def path_problems(keys: list[str], out_root: str) -> dict[str, str]:
    """key -> why its output cannot be written, for the keys whose output path is unusable, found before
    the run: a name longer than the file system allows, a name reserved for the manifest or the lock, an
    output that is also a directory other outputs need, or something already in OUT_DIR in the way."""
    limit = name_max(out_root)
    root_b = len(os.fsencode(out_root))
    problems: dict[str, str] = {}
    outputs = {output_rel(k): k for k in keys}
    needed_dirs: dict[str, str] = {}  # a directory some output needs -> one such output's key
    for rel, key in outputs.items():
        parts = rel.split("/")
        long = [p for p in parts if len(os.fsencode(p)) > limit]
        if long:
            problems[key] = (f"the output name {printable(long[0])} is {len(os.fsencode(long[0]))} bytes, longer than "
                             f"the {limit} bytes a file name may have on OUT_DIR's file system")
        elif root_b + 1 + len(os.fsencode(rel)) >= os.pathconf(out_root, "PC_PATH_MAX"):
            problems[key] = "the output path would be longer than the file system allows (PATH_MAX)"
        elif len(parts) > 1 and parts[0] in RESERVED:
            problems[key] = (f"its output would lie under OUT_DIR/{parts[0]}, a name reserved for the run's own "
                             "files; rename the directory or exclude it (--exclude)")
        else:
            for i in range(1, len(parts)):
                needed_dirs.setdefault("/".join(parts[:i]), key)
    for rel, key in outputs.items():
        if key in problems:
            continue
        if rel in needed_dirs:
            problems[key] = (f"its output {printable(rel)} would also have to be the directory holding the output of "
                             f"{printable(needed_dirs[rel])}; rename one of the two sources")
            continue
        try:
            st = os.lstat(os.path.join(out_root, *rel.split("/")))
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            problems[key] = f"OUT_DIR/{printable(rel)} exists and is not a regular file (a directory?); move it away"
    blocked = {}
    for d in needed_dirs:
        try:
            st = os.stat(os.path.join(out_root, *d.split("/")))
        except FileNotFoundError:
            continue
        except OSError as e:
            blocked[d] = f"OUT_DIR/{printable(d)} cannot be used as a directory: {describe_os_error(e)}"
            continue
        if not stat.S_ISDIR(st.st_mode):
            blocked[d] = f"OUT_DIR/{printable(d)} exists and is not a directory; move it away"
    if blocked:
        for rel, key in outputs.items():
            if key in problems:
                continue
            parts = rel.split("/")
            for i in range(1, len(parts)):
                why = blocked.get("/".join(parts[:i]))
                if why:
                    problems[key] = why
                    break
    return problems


def remove_leftovers(out_root: str) -> list[str]:
    """Delete the temporary files of interrupted runs under OUT_DIR (call with the lock held)."""
    removed = []
    for dirpath, _dirnames, filenames in os.walk(out_root):
        for name in filenames:
            if _TMP_RE.match(name):
                p = os.path.join(dirpath, name)
                try:
                    os.unlink(p)
                    removed.append(os.path.relpath(p, out_root))
                except OSError:  # gone already, or not ours to remove: it harms nothing
                    pass
    return removed


def serialize(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``array`` (what is written and hashed)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staged:
    """The ``.npy`` bytes of one output that waits, outside memory, for its shard (a long file's output,
    written block by block): a temporary file at the top of OUT_DIR, not fsynced (a crash leaves it to the
    next run's clean-up; only the shard it goes into is made durable)."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Writer:
    """Writes outputs atomically under ``out_root`` (thread-safe).

    With ``stage=True`` (the sharded formats) nothing reaches a final name: each output's ``.npy`` bytes
    are kept for :meth:`attach` (in memory, or as a :class:`Staged` file for a long file's output) and
    the runner writes them into their shard (:mod:`arraymel.corpus.formats`).
    """

    def __init__(self, out_root: str, *, stage: bool = False):
        os.makedirs(out_root, exist_ok=True)
        self.root = os.path.realpath(out_root)
        self._checked: set[str] = {self.root}
        self._mutex = threading.Lock()
        self.stage = bool(stage)
        self._staged: dict[str, bytes | Staged] = {}

    def attach(self, records) -> None:
        """Give each ok record of a staging writer its output's bytes (``record.payload``)."""
        if not self.stage:
            return
        with self._mutex:
            for r in records:
                if r.status == "ok" and r.payload is None:
                    r.payload = self._staged.pop(r.key, None)
                r.sync_dirs = ()

    def discard_staged(self) -> None:
        with self._mutex:
            staged, self._staged = list(self._staged.values()), {}
        for v in staged:
            if isinstance(v, Staged):
                v.discard()

    def path(self, key: str) -> str:
        rel = output_rel(key)
        p = os.path.normpath(os.path.join(self.root, *rel.split("/")))
        if not _within(p, self.root) or p == self.root:
            raise OutputError(f"the output for {printable(key)} would lie outside OUT_DIR; refusing to write it.")
        return p

    def _ensure_dir(self, d: str) -> list[str]:
        """Create ``d`` (inside the root); the directories whose entries changed (to fsync)."""
        if d in self._checked:
            return []
        dirty = []
        parent = os.path.dirname(d)
        if parent != d and _within(parent, self.root):
            dirty += self._ensure_dir(parent)
        try:
            os.mkdir(d)
            dirty.append(parent)
        except FileExistsError:
            pass
        real = os.path.realpath(d)
        if not _within(real, self.root):
            raise OutputError(f"{printable(d)} leads outside OUT_DIR (a symbolic link?); refusing to write there.")
        if not os.path.isdir(real):
            raise OutputPathError(f"cannot write under {printable(d)}: it exists and is not a directory")
        with self._mutex:
            self._checked.add(d)
        return dirty

    def write(self, key: str, data: bytes) -> tuple[str, list[str]]:
        """Write ``data`` as the output of ``key``; returns the path and the directories to fsync before commit."""
        if self.stage:
            with self._mutex:
                self._staged[key] = data
            return "", []
        return self.write_with(key, lambda fd: _write_all(fd, data))

    def write_with(self, key: str, fill) -> tuple[str, list[str]]:
        """Write the output of ``key`` with ``fill(fd)`` (which writes the whole file), atomically: a temporary
        name, fsync, rename; returns the final path and the directories to fsync before commit.

        Raises :class:`OutputPathError` when the output's own path is the problem (that file fails),
        :class:`OutputError` when OUT_DIR cannot be written (the run stops).
        """
        if self.stage:
            return self._stage_with(key, fill)
        final = self.path(key)
        d = os.path.dirname(final)
        tmp = None
        try:
            dirty = self._ensure_dir(d)
            tmp = os.path.join(d, TMP_MARK + uuid.uuid4().hex)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                fill(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            tmp = None
        except OSError as e:
            if e.errno in _PATH_ERRNOS:
                raise OutputPathError(f"cannot write the output {printable(final)}: {describe_os_error(e)}") from None
            raise OutputError(f"cannot write {printable(final)}: {describe_os_error(e)}") from None
        finally:
            if tmp is not None:  # whatever went wrong: leave no partial file (and free its space on a full disk)
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return final, dirty + [d]

    def _stage_with(self, key: str, fill) -> tuple[str, list[str]]:
        tmp = os.path.join(self.root, TMP_MARK + uuid.uuid4().hex)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                fill(fd)
            finally:
                os.close(fd)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise OutputError(f"cannot write {printable(tmp)}: {describe_os_error(e)}") from None
        with self._mutex:
            self._staged[key] = Staged(tmp)
        return "", []

    def scratch(self, key: str) -> int:
        """A read-write descriptor of an unnamed file beside ``key``'s output (its space is freed when it is
        closed, even by a crash): where a long file's frames wait before its output is written."""
        d = self.root if self.stage else os.path.dirname(self.path(key))
        self._ensure_dir(d)
        try:
            return os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
        except AttributeError:  # pragma: no cover - not Linux
            pass
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
        tmp = os.path.join(d, TMP_MARK + uuid.uuid4().hex)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(tmp)
        return fd

    def remove(self, key: str) -> bool:
        """Remove the output of ``key`` if present (a stale output of a file that now fails)."""
        if self.stage:
            return False  # a sharded output has no file of its own: its shard is rewritten
        p = self.path(key)
        try:
            if not stat.S_ISREG(os.lstat(p).st_mode):
                return False  # not an output of ours (a directory in the way was reported, not removed)
            os.unlink(p)
        except OSError as e:
            if e.errno == errno.ENOENT or e.errno in _PATH_ERRNOS:
                return False
            raise OutputError(f"cannot remove the stale output {printable(p)}: {describe_os_error(e)}") from None
        fsync_dir(os.path.dirname(p))
        return True
