"""How a run's features are stored: one ``.npy`` per file, or shards that training stacks read directly.

Every format is a :class:`Store` with two methods the runner calls: ``commit(group)`` with each group
of finished :class:`~arraymel.corpus.manifest.FileRecord` (in whatever order the engine finished them),
and ``finish()`` at the end of the run. A store makes outputs durable before it records them in the
manifest.

- ``npy`` (:class:`NpyStore`): the engines have written each output already (atomically); the store
  fsyncs their directories and commits the rows.
- ``shar`` and ``kaldi`` (:class:`ShardedStore` with :class:`~arraymel.corpus.formats.shar.SharWriter`
  or :class:`~arraymel.corpus.formats.kaldi.KaldiWriter`): the engines hand over each output's bytes
  (a staging :class:`~arraymel.corpus.storage.Writer`) and the store writes shards.

Shards are cut from the sorted list of discovered files (:func:`plan`): shard ``k`` holds files
``k * shard_size`` to ``(k + 1) * shard_size - 1`` of that list, never an order the engine finished
them in. A shard's results wait in memory until its last file is done (at most the files of the
shards in flight: the engines hand out files in key order, so about one shard plus the files in flight);
then each of its files is written under a temporary name at the top of OUT_DIR, fsynced, renamed into
the format's directory, the directories are fsynced, and only then the shard and its files' rows are
committed in one manifest transaction.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from arraymel.corpus.storage import TMP_MARK, OutputError, Staged, describe_os_error, fsync_dir, printable

#: the directory under OUT_DIR that holds each sharded format's files (Lhotse's ``from_shar(in_dir=...)``
#: reads every file of its directory as a field, so the manifest and the lock stay outside it)
SUBDIRS = {"shar": "shar", "kaldi": "kaldi"}
#: characters kept as they are in a member id; any other byte is written ``%XX`` (an injective mapping)
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_-+,=@~")


def member_id(key: str) -> str:
    """The id of a file's features in a shard (a Lhotse cut id, a Kaldi utterance id, a WebDataset key).

    The key (the path relative to IN_DIR) with every byte other than ASCII letters, digits and
    ``/_-+,=@~`` written as ``%XX``: no dot (WebDataset and Lhotse split a member's name at its first
    dot), no white space (Kaldi splits at it), and two keys never share an id.

    Examples
    --------
    >>> from arraymel.corpus.formats import member_id
    >>> member_id("spk1/utt 01.wav")
    'spk1/utt%2001%2Ewav'
    >>> member_id("a.b.flac") != member_id("a_b.flac")
    True
    """
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in os.fsencode(key))


def slots_sha256(slots) -> str:
    """SHA-256 of a shard's slot list: each key with its source's size and mtime (a shard is reused only for
    exactly these files)."""
    h = hashlib.sha256()
    for s in slots:
        h.update(os.fsencode(s.key) + b"\0" + str(s.size).encode() + b"\0" + str(s.mtime_ns).encode() + b"\n")
    return h.hexdigest()


class Plan:
    """The assignment of files to shards: ``slots[k]`` are shard ``k``'s sources, in key order."""

    def __init__(self, sources, shard_size: int):
        ordered = sorted(sources, key=lambda s: s.key)
        self.shard_size = int(shard_size)
        self.slots = [ordered[i:i + self.shard_size] for i in range(0, len(ordered), self.shard_size)]
        self.assign = {s.key: k for k, slot in enumerate(self.slots) for s in slot}
        self.signatures = [slots_sha256(slot) for slot in self.slots]


def plan(sources, shard_size: int) -> Plan:
    """Shards of ``shard_size`` consecutive files of ``sources`` sorted by key.

    Examples
    --------
    >>> from arraymel.corpus.discover import Source
    >>> from arraymel.corpus.formats import plan
    >>> p = plan([Source(k, "", 1, 1) for k in ["c.wav", "a.wav", "b.wav"]], 2)
    >>> [[s.key for s in slot] for slot in p.slots]
    [['a.wav', 'b.wav'], ['c.wav']]
    """
    return Plan(sources, shard_size)


class HashingFile:
    """A write-only file on a descriptor that counts and hashes what passes through it (``tarfile`` and
    ``gzip`` write into it). Small writes are gathered into blocks of 1 MiB; a large one (a matrix) goes
    straight to :func:`os.write` from its own memory, without a copy."""

    _BLOCK = 1 << 20

    def __init__(self, fd: int):
        self.fd = fd
        self.size = 0
        self.sha = hashlib.sha256()
        self._buf = bytearray()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        self.size += n
        self.sha.update(view)
        if n >= 1 << 16:
            self.flush()
            self._write(view)
        else:
            self._buf += view
            if len(self._buf) >= self._BLOCK:
                self.flush()
        return n

    def tell(self) -> int:
        return self.size

    def _write(self, view: memoryview) -> None:
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def flush(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._write(memoryview(buf))

    def close(self) -> None:
        self.flush()


class Staging:
    """The files of one shard on their way: each written under a temporary name at the top of OUT_DIR and
    fsynced (:meth:`write`), then all renamed into place together (:meth:`publish`), so that a failure
    while any of them is written leaves nothing of the shard under a final name. The caller fsyncs the
    directories (:meth:`ShardedStore._write_shard`) before it records the shard."""

    def __init__(self, out_root: str):
        self.out_root = out_root
        self.done: list[tuple[str, str, dict]] = []  # (temporary path, final path, part info)

    def write(self, rel: str, produce: Callable[[HashingFile], Any]) -> Any:
        """Write ``OUT_DIR/rel``'s content with ``produce(file)`` under a temporary name and fsync it; a failure
        raises :class:`~arraymel.corpus.storage.OutputError` naming the part (and removes every temporary file)."""
        final = os.path.join(self.out_root, *rel.split("/"))
        tmp = os.path.join(self.out_root, TMP_MARK + uuid.uuid4().hex)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                f = HashingFile(fd)
                result = produce(f)
                f.flush()
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            self._discard(tmp)
            raise OutputError(f"cannot write the shard file {printable(final)}: {describe_os_error(e)}") from None
        except BaseException:
            self._discard(tmp)
            raise
        self.done.append((tmp, final, {"path": rel, "size": f.size, "sha256": f.sha.hexdigest()}))
        return result

    def publish(self) -> list[dict]:
        """Rename every written file into place; their part infos (``path``, ``size``, ``sha256``)."""
        try:
            for tmp, final, _ in self.done:
                os.replace(tmp, final)
        except OSError as e:
            self._discard()
            raise OutputError(f"cannot rename the shard file into {printable(final)}: {describe_os_error(e)}") from None
        return [info for _, _, info in self.done]

    def _discard(self, extra: str | None = None) -> None:
        for tmp in [t for t, _, _ in self.done] + ([extra] if extra else []):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.done = []


def write_part(out_root: str, rel: str, produce: Callable[[HashingFile], Any]) -> tuple[dict, Any]:
    """One file written atomically (a temporary name, fsync, rename): ``({"path", "size", "sha256"}, what
    produce returned)``. The caller fsyncs the directory."""
    st = Staging(out_root)
    result = st.write(rel, produce)
    return st.publish()[0], result


def load_payload(payload, shape=None, dtype=None) -> np.ndarray:
    """The array (arraymel's layout) of a staged output: ``.npy`` bytes (read in place, no copy), or a
    :class:`Staged` file (memory-mapped). With the record's ``shape`` and ``dtype`` a version 1.0 header is
    skipped by its length instead of parsed (parsing it costs more than the rest)."""
    if isinstance(payload, Staged):
        return np.load(payload.path, mmap_mode="r", allow_pickle=False)
    if shape is not None and dtype is not None and payload[:8] == b"\x93NUMPY\x01\x00":
        start = 10 + int.from_bytes(payload[8:10], "little")
        return np.frombuffer(payload, dtype=dtype, count=int(np.prod(shape)), offset=start).reshape(shape)
    f = io.BytesIO(payload)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    a = np.frombuffer(payload, dtype=dtype, count=int(np.prod(shape)), offset=f.tell())
    return a.reshape(shape, order="F" if fortran else "C")


class NpyStore:
    """``--format npy``: outputs are already on disk (the engines wrote them); fsync their directories, commit
    the rows, remove the stale output of a file that now fails; optionally a NeMo manifest at the end."""

    def __init__(self, manifest, writer, out_root: str, in_root: str, *, nemo_manifest: bool = False):
        self.manifest, self.writer, self.out_root, self.in_root = manifest, writer, out_root, in_root
        self.nemo_manifest = nemo_manifest
        self.run_id: int | None = None

    def commit(self, group) -> None:
        for d in sorted({d for r in group for d in r.sync_dirs}):
            fsync_dir(d)
        self.manifest.record(group, self.run_id)
        for r in group:
            if r.status == "failed":
                self.writer.remove(r.key)

    def finish(self) -> None:
        if self.nemo_manifest:
            from arraymel.corpus.formats.npy import write_nemo_manifest

            write_nemo_manifest(self.manifest, self.out_root, self.in_root)

    def close(self) -> None:
        pass


class ShardedStore:
    """``--format shar|kaldi``: buffer each shard's records until all its files are done, then write it.

    ``fmt`` is the format's shard writer (:func:`shard_writer`): ``write_shard(k, records, arrays) -> parts``
    (the shard's files written through a :class:`Staging` and renamed into place) and ``finish(manifest)``
    (indexes over every committed shard, at the end of a run).
    """

    def __init__(self, manifest, fmt, plan_: Plan, out_root: str, settings):
        self.manifest, self.fmt, self.plan, self.out_root, self.settings = manifest, fmt, plan_, out_root, settings
        self.run_id: int | None = None
        self.pending: dict[int, dict[str, Any]] = {}
        self.committed: list[int] = []

    def commit(self, group) -> None:
        loose = []
        for r in group:
            k = self.plan.assign.get(r.key)
            if k is None:  # a file listed in --files but absent: a row without a shard
                loose.append(r)
                continue
            self.pending.setdefault(k, {})[r.key] = r
            if len(self.pending[k]) == len(self.plan.slots[k]):
                self._write_shard(k)
        if loose:
            self.manifest.record(loose, self.run_id)

    def _write_shard(self, k: int) -> None:
        got = self.pending.pop(k)
        records = [got[s.key] for s in self.plan.slots[k]]  # slot (key) order, whatever the arrival order
        lost = [r.key for r in records if r.status == "ok" and r.payload is None]
        if lost:  # an engine that wrote instead of staging: stop before a shard misses a member
            raise OutputError(f"shard {k}: the engine returned {printable(lost[0])} as done without its output "
                              f"({len(lost)} such file(s)); nothing of this shard was written")
        try:
            arrays = [load_payload(r.payload, r.shape, r.dtype) if r.status == "ok" else None for r in records]
            parts = self.fmt.write_shard(k, records, arrays)
            for d in sorted({os.path.dirname(os.path.join(self.out_root, *p["path"].split("/"))) for p in parts}
                            | {self.out_root}):
                fsync_dir(d)  # the renames into the format's directory (and the temporary names' removal)
        except OSError as e:  # reading a staged output, fsyncing a directory
            raise OutputError(f"cannot write shard {k} under {printable(self.out_root)}: {describe_os_error(e)}") from None
        for r in records:
            r.shard = k
            if r.status == "ok":
                r.sha256 = None  # the shard's SHA-256 (shards table) covers the member's bytes
        slots = self.plan.slots[k]
        self.manifest.commit_shard(k, fmt=self.settings.output_format, parts=parts,
                                   slots_sha256=self.plan.signatures[k], first_key=slots[0].key,
                                   last_key=slots[-1].key, files=len(slots), records=records,
                                   config_hash=self.settings.config_hash, run_id=self.run_id)
        self.committed.append(k)
        for r in records:
            if isinstance(r.payload, Staged):
                r.payload.discard()
            r.payload = None

    def finish(self) -> None:
        self.fmt.finish(self.manifest)

    def close(self) -> None:
        """Drop what waits for shards that were not completed (a stopped run): they are recomputed next time."""
        for got in self.pending.values():
            for r in got.values():
                if isinstance(r.payload, Staged):
                    r.payload.discard()
        self.pending.clear()


def shard_writer(settings, out_root: str, in_root: str):
    """The shard writer of ``settings.output_format`` (``shar`` or ``kaldi``)."""
    os.makedirs(os.path.join(out_root, SUBDIRS[settings.output_format]), exist_ok=True)
    if settings.output_format == "shar":
        from arraymel.corpus.formats.shar import SharWriter

        return SharWriter(settings, out_root, in_root)
    from arraymel.corpus.formats.kaldi import KaldiWriter

    return KaldiWriter(settings, out_root, in_root)


def part_ok(out_root: str, part: dict, verify: str) -> bool:
    """Whether a shard's file is on disk as recorded (size; and SHA-256 unless ``verify == "size"``)."""
    path = os.path.join(out_root, *part["path"].split("/"))
    try:
        if os.path.getsize(path) != part["size"]:
            return False
        if verify == "size":
            return True
        from arraymel.corpus.storage import sha256_file

        return sha256_file(path) == part["sha256"]
    except OSError:
        return False
