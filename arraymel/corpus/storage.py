"""OUT_DIR: the lock, atomic output files, clean-up of an interrupted run, paths that stay inside.

An output is written to a hidden temporary name in its final directory
(``.<name>.npy.arraymel-tmp-<32 hex>``), flushed and fsynced, renamed over the final name, and
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
import threading
import time
import uuid

import numpy as np

MANIFEST_NAME = "manifest.sqlite"
LOCK_NAME = ".arraymel-corpus.lock"
TMP_MARK = ".arraymel-tmp-"
_TMP_RE = re.compile(r"^\..+" + re.escape(TMP_MARK) + r"[0-9a-f]{32}$")


class OutputError(Exception):
    """OUT_DIR cannot be used or written (the run stops with status 1)."""


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
        raise OutputError(f"cannot create OUT_DIR {out_dir!r}: {e.strerror or e}") from None
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

    def acquire(self) -> "Lock":
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot create the lock file {self.path}: {e.strerror or e}") from None
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
            raise OutputError(f"cannot lock {self.path}: {e.strerror or e}") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_leftovers(out_root: str) -> list[str]:
    """Delete the temporary files of interrupted runs under OUT_DIR (call with the lock held)."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(out_root):
        for name in filenames:
            if _TMP_RE.match(name):
                p = os.path.join(dirpath, name)
                try:
                    os.unlink(p)
                    removed.append(os.path.relpath(p, out_root))
                except FileNotFoundError:
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


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """Writes outputs atomically under ``out_root`` (thread-safe)."""

    def __init__(self, out_root: str):
        os.makedirs(out_root, exist_ok=True)
        self.root = os.path.realpath(out_root)
        self._checked: set[str] = {self.root}
        self._mutex = threading.Lock()

    def path(self, key: str) -> str:
        rel = output_rel(key)
        p = os.path.normpath(os.path.join(self.root, *rel.split("/")))
        if not _within(p, self.root) or p == self.root:
            raise OutputError(f"the output for {key!r} would lie outside OUT_DIR; refusing to write it.")
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
        if not _within(real, self.root) or not os.path.isdir(real):
            raise OutputError(f"{d} is not a directory inside OUT_DIR (a link leading out of it?); refusing to write there.")
        with self._mutex:
            self._checked.add(d)
        return dirty

    def write(self, key: str, data: bytes) -> tuple[str, list[str]]:
        """Write ``data`` as the output of ``key``; returns the path and the directories to fsync before commit."""
        final = self.path(key)
        d = os.path.dirname(final)
        try:
            dirty = self._ensure_dir(d)
            tmp = os.path.join(d, "." + os.path.basename(final) + TMP_MARK + uuid.uuid4().hex)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            raise OutputError(f"cannot write {final}: {e.strerror or e}") from None
        return final, dirty + [d]

    def remove(self, key: str) -> bool:
        """Remove the output of ``key`` if present (a stale output of a file that now fails)."""
        p = self.path(key)
        try:
            os.unlink(p)
        except FileNotFoundError:
            return False
        fsync_dir(os.path.dirname(p))
        return True
