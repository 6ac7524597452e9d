"""Finding the audio files under IN_DIR: recursive globs or an explicit list, deterministic order.

Rules:

- A key is the file's path relative to IN_DIR with ``/`` separators; files are processed and
  recorded in the sorted order of their keys.
- A glob without ``/`` is matched against the file name, one with ``/`` against the whole key
  (``*`` then also matches across directories). Matching ignores case (``*.wav`` matches
  ``A.WAV``). A file is taken when it matches some ``--include`` and no ``--exclude``.
- Symbolic links are followed only when their target lies inside IN_DIR; a link leading out of
  it is reported and not followed. A directory reached twice (through links) is walked once.
- OUT_DIR is never searched when it lies inside IN_DIR.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import posixpath
import stat as stat_mod

#: Audio formats read by default (``.mp3`` only where the installed libsndfile decodes MPEG).
BASE_INCLUDE = ("*.wav", "*.flac", "*.ogg", "*.oga")
MP3_INCLUDE = ("*.mp3",)


def default_include() -> tuple[str, ...]:
    """The default ``--include`` globs for the installed soundfile/libsndfile."""
    try:
        import soundfile

        mp3 = "MP3" in soundfile.available_formats()
    except Exception:  # pragma: no cover - a run fails later with a clear message
        mp3 = False
    return BASE_INCLUDE + (MP3_INCLUDE if mp3 else ())


class DiscoveryError(Exception):
    """IN_DIR or the file list cannot be used at all (the run stops with status 1)."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One input file: its key (relative path), where to read it, and its size and mtime at discovery."""

    key: str
    path: str
    size: int
    mtime_ns: int


@dataclasses.dataclass
class Discovery:
    sources: list[Source]
    #: (key, reason) of listed files (``--files``) that cannot be read at all: recorded as failed.
    missing: list[tuple[str, str]]
    #: keys of symbolic links leading out of IN_DIR (not followed, not counted).
    not_followed: list[str]
    #: directories that could not be listed: (relative path, reason).
    unlisted: list[tuple[str, str]]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    k = key.lower()
    name = k.rsplit("/", 1)[-1]
    for p in patterns:
        pl = p.lower()
        if fnmatch.fnmatchcase(k if "/" in pl else name, pl):
            return True
    return False


def selected(key: str, include: tuple[str, ...] | None, exclude: tuple[str, ...]) -> bool:
    if include is not None and not _matches(key, include):
        return False
    return not (exclude and _matches(key, exclude))


def _source(key: str, path: str, st: os.stat_result) -> Source:
    return Source(key=key, path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)


def walk(in_dir: str, out_dir: str | None, include: tuple[str, ...], exclude: tuple[str, ...]) -> Discovery:
    """All matching regular files under ``in_dir`` (see the module docstring for the rules)."""
    in_real = os.path.realpath(in_dir)
    if not os.path.isdir(in_real):
        raise DiscoveryError(f"IN_DIR {in_dir!r} is not a directory.")
    out_real = os.path.realpath(out_dir) if out_dir else None
    found: list[Source] = []
    not_followed: list[str] = []
    unlisted: list[tuple[str, str]] = []
    visited = {in_real}
    stack = [(in_real, "")]
    while stack:
        dir_path, prefix = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            unlisted.append((prefix.rstrip("/") or ".", e.strerror or str(e)))
            continue
        subdirs = []
        for entry in entries:
            key = prefix + entry.name
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not _within(target, in_real):
                        not_followed.append(key)
                        continue
                    st = os.stat(entry.path)
                    real = target
                else:
                    st = entry.stat(follow_symlinks=False)
                    real = None
            except OSError as e:  # a dangling link, a file removed while listing, ...
                if entry.is_symlink():
                    not_followed.append(key)
                else:
                    unlisted.append((key, e.strerror or str(e)))
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                real = real or os.path.realpath(entry.path)
                if real in visited or (out_real and _within(real, out_real)):
                    continue
                visited.add(real)
                subdirs.append((real, key + "/"))
            elif stat_mod.S_ISREG(st.st_mode) and selected(key, include, exclude):
                found.append(_source(key, os.path.join(dir_path, entry.name), st))
        stack.extend(reversed(subdirs))
    found.sort(key=lambda s: s.key)
    return Discovery(sources=found, missing=[], not_followed=not_followed, unlisted=unlisted)


def gone(keys: list[str], in_dir: str) -> list[str]:
    """The keys (sorted) whose source no longer exists under ``in_dir``: their outputs are orphaned."""
    in_real = os.path.realpath(in_dir)
    out = []
    for key in keys:
        try:
            os.lstat(os.path.join(in_real, *key.split("/")))
        except (FileNotFoundError, NotADirectoryError):
            out.append(key)
        except OSError:  # cannot tell (a directory that cannot be searched): not called gone
            pass
    return sorted(out)


def normalise_key(line: str) -> str | None:
    """A listed path as a key, or None when it is absolute or leads out of IN_DIR."""
    p = line.replace(os.sep, "/")
    if p.startswith("/") or (os.altsep and p.startswith(os.altsep)):
        return None
    p = posixpath.normpath(p)
    if p == "." or p == ".." or p.startswith("../"):
        return None
    return p


def read_list(list_path: str) -> list[str]:
    """The lines of a ``--files`` list (``-`` reads standard input); empty lines are ignored."""
    import sys

    try:
        if list_path == "-":
            text = sys.stdin.read()
        else:
            with open(list_path, encoding="utf-8", errors="surrogateescape", newline="") as f:
                text = f.read()
    except OSError as e:
        raise DiscoveryError(f"--files {list_path}: cannot read it: {e.strerror or e}") from None
    return [ln.rstrip("\r") for ln in text.split("\n") if ln.rstrip("\r")]


def from_list(in_dir: str, lines: list[str], include: tuple[str, ...] | None, exclude: tuple[str, ...]) -> Discovery:
    """The files named in a list, relative to ``in_dir``; bad lines stop the run, missing files fail."""
    in_real = os.path.realpath(in_dir)
    if not os.path.isdir(in_real):
        raise DiscoveryError(f"IN_DIR {in_dir!r} is not a directory.")
    bad = [ln for ln in lines if normalise_key(ln) is None]
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DiscoveryError(f"--files: {len(bad)} line(s) are absolute or lead out of IN_DIR: {shown}; "
                             "list paths relative to IN_DIR.")
    keys = sorted({normalise_key(ln) for ln in lines})  # type: ignore[misc]
    sources, missing, not_followed = [], [], []
    for key in keys:
        if not selected(key, include, exclude):
            continue
        path = os.path.join(in_real, *key.split("/"))
        real = os.path.realpath(path)
        if not _within(real, in_real):
            not_followed.append(key)
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            missing.append((key, "source file not found (listed in --files)"))
            continue
        except OSError as e:
            missing.append((key, f"cannot stat the source: {e.strerror or e}"))
            continue
        if not stat_mod.S_ISREG(st.st_mode):
            missing.append((key, "not a regular file (listed in --files)"))
            continue
        sources.append(_source(key, path, st))
    return Discovery(sources=sources, missing=missing, not_followed=not_followed, unlisted=[])
