"""A chunk of files, processed start to finish inside one worker (a local process or a Dask task).

On the CPU a worker runs its chunk serially: decode a file, add it to the length buckets, compute
full buckets (then the rest) with the library single-threaded, and hand each output to one
writer thread (serialize, SHA-256, write, fsync, rename). Parallelism comes from running one
such worker per CPU: each has its own interpreter, so decoding and computing in different workers
never contend for a GIL, and nothing but file names and records crosses between processes (the
figures that decided this are in docs/corpus.md).

On a GPU the chunk goes through the threaded :class:`~arraymel.corpus.pipeline.Pipeline` (decode
threads feeding the device).

Either way the outputs are durable (files fsynced and renamed, their directories fsynced) before
the records are returned, so the caller may commit them at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import sys
import threading

from arraymel.corpus.batching import Bucketer, batch_limits
from arraymel.corpus.discover import Source
from arraymel.corpus.manifest import FileRecord
from arraymel.corpus.settings import CorpusSettings, versions
from arraymel.corpus.storage import OutputError, OutputPathError, Writer, fsync_dir, output_rel, serialize

#: Upper bounds of one chunk: bytes of source files, number of files.
CHUNK_BYTES = 32 << 20
CHUNK_FILES = 128
#: Chunks per worker at least (when there are enough files): balance at the end of a run.
CHUNKS_PER_WORKER = 8

_COMPUTERS: dict = {}


def computer_for(settings: CorpusSettings):
    """One :class:`~arraymel.corpus.compute.Computer` per process and configuration (its state is reused)."""
    from arraymel.corpus.compute import Computer

    c = _COMPUTERS.get(settings.config_hash)
    if c is None:
        c = _COMPUTERS[settings.config_hash] = Computer(settings)
    return c


def make_chunks(sources: list[Source], workers: int) -> list[list[Source]]:
    """Consecutive chunks of ``sources`` (key order), bounded by source bytes and file count."""
    if not sources:
        return []
    total = sum(s.size for s in sources)
    target = max(1, min(CHUNK_BYTES, total // max(1, workers * CHUNKS_PER_WORKER)))
    out, cur, size = [], [], 0
    for s in sources:
        if cur and (size + s.size > target or len(cur) >= CHUNK_FILES):
            out.append(cur)
            cur, size = [], 0
        cur.append(s)
        size += s.size
    if cur:
        out.append(cur)
    return out


def process_chunk(sources: list[Source], settings: CorpusSettings, out_root: str, decode_threads: int = 2) -> list[FileRecord]:
    """The records of ``sources``, every ok output durable on disk (see the module docstring)."""
    computer = computer_for(settings)
    writer = Writer(out_root, stage=settings.sharded)  # sharded formats: the outputs travel back in the records
    if computer.device_kind == "cuda":
        from arraymel.corpus.pipeline import Pipeline

        records: list[FileRecord] = []
        for group in Pipeline(settings, writer, decode_workers=decode_threads, computer=computer).run(sources):
            records += group
    else:
        records = _serial(sources, settings, writer, computer)
    for d in sorted({d for r in records for d in r.sync_dirs}):
        fsync_dir(d)
    for r in records:
        r.sync_dirs = ()
    writer.attach(records)
    return records


def _serial(sources: list[Source], settings: CorpusSettings, writer: Writer, computer) -> list[FileRecord]:
    from arraymel.corpus.decode import DecodeFailure
    from arraymel.corpus.records import failed_record
    from arraymel.corpus.stream import decode_or_stream

    def mel(y):
        return computer.mel(y, device="cpu", output="numpy")

    config_hash = settings.config_hash
    versions_json = json.dumps(versions(computer.device_kind), sort_keys=True)
    bucketer = Bucketer(settings.mel, *batch_limits(settings, computer.device_kind))
    records: list[FileRecord] = []
    pending: list[cf.Future] = []
    slots = threading.BoundedSemaphore(16)

    def write(item, array) -> FileRecord:
        try:
            data = serialize(array)
            sha = None if writer.stage else hashlib.sha256(data).hexdigest()  # sharded: the shard's hash covers it
            _, dirs = writer.write(item.source.key, data)
        except OutputPathError as e:  # this output's path, not OUT_DIR: the file fails, the run goes on
            return failed_record(item.source, str(e), config_hash, versions_json, decoded=item)
        finally:
            slots.release()
        return FileRecord(
            key=item.source.key, status="ok", output=output_rel(item.source.key),
            source_size=item.size, source_mtime_ns=item.mtime_ns, sampling_rate=item.sampling_rate,
            channels=item.channels, samples=item.samples, duration_s=item.duration, mel_samples=item.length,
            frames=int(array.shape[-1]), shape=tuple(int(s) for s in array.shape), dtype=array.dtype.name,
            sha256=sha, config_hash=config_hash, versions=versions_json, sync_dirs=tuple(dirs),
        )

    with cf.ThreadPoolExecutor(1, thread_name_prefix="arraymel-write") as ex:

        def compute(batch) -> None:
            for c in computer(batch):
                if c.error is not None:
                    records.append(failed_record(c.item.source, c.error, config_hash, versions_json, decoded=c.item))
                else:
                    slots.acquire()
                    pending.append(ex.submit(write, c.item, c.array))

        for src in sources:
            try:
                item = decode_or_stream(src, settings, writer, mel, versions_json)
            except DecodeFailure as e:
                records.append(failed_record(src, e.reason, config_hash, versions_json, e.meta))
                continue
            except OutputPathError as e:
                records.append(failed_record(src, str(e), config_hash, versions_json))
                continue
            except OutputError:  # OUT_DIR cannot be written (a full disk): the run stops
                raise
            except Exception as e:  # noqa: BLE001 - recorded with its type; the chunk goes on
                records.append(failed_record(src, f"unexpected error while decoding: {type(e).__name__}: {e}",
                                             config_hash, versions_json))
                continue
            if isinstance(item, FileRecord):  # a long file, computed and written in blocks
                records.append(item)
                continue
            for batch in bucketer.add(item):
                compute(batch)
        for batch in bucketer.drain():
            compute(batch)
        records += [f.result() for f in pending]  # an OutputError here stops the run
    return records


# ---------------------------------------------------------------------------------------------
# worker processes of the local CPU engine


def die_with_parent() -> None:
    """Linux: this worker gets SIGKILL when the process that started it dies (no orphan writers)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # pragma: no cover - not Linux
        pass


def worker_init(parent_pid: int, library_threads: int, settings: CorpusSettings | None = None) -> None:
    os.environ["ARRAYMEL_NUM_THREADS"] = str(library_threads)
    die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    if settings is not None:  # import and build everything now, while the parent discovers files
        warm_up(settings)


def warm_up(settings: CorpusSettings) -> None:
    """Import the decoders and build the computation's state with one tiny batch (one block: no threads)."""
    import numpy as np
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    from arraymel.corpus.batching import Batch, row_length
    from arraymel.corpus.decode import Decoded
    from arraymel.corpus.discover import Source

    n = 1
    item = Decoded(source=Source("", "", 0, 0), audio=np.zeros((1, n), np.float32), sampling_rate=1.0,
                   channels=1, samples=n, size=0, mtime_ns=0)
    computer_for(settings)(Batch(length=row_length(n, settings.mel), items=[item]))


def start_method() -> str:
    """``fork`` while this process has no other thread (workers start in milliseconds: everything is
    already imported), else ``spawn`` (forking a multi-threaded process can deadlock the child)."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def warm_up_before_fork(settings: CorpusSettings) -> None:
    """:func:`warm_up` in this process, single-threaded as a worker computes, so that worker processes
    forked from it start with everything imported and built (start-up in milliseconds)."""
    os.environ["ARRAYMEL_NUM_THREADS"], saved = "1", os.environ.get("ARRAYMEL_NUM_THREADS")
    try:
        warm_up(settings)
    finally:
        if saved is None:
            os.environ.pop("ARRAYMEL_NUM_THREADS", None)
        else:
            os.environ["ARRAYMEL_NUM_THREADS"] = saved


def ping(_: object = None) -> int:
    return os.getpid()
