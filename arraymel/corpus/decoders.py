"""The device engine: N decode processes feeding one device through shared memory.

::

    sources --> tasks of a few files --> N decode processes (each: libsndfile, soxr, the padded row,
            written straight into a shared-memory slot)  --> the driver (this process): length buckets
            --> compute thread: batch built in pinned host memory, launched (H2D on its own stream)
            --> outputs copied into one shared-memory segment per batch --> a write task (serialize,
            SHA-256, write, fsync, rename) to the writer process, or to a decode process when the
            writer has two queued --> records, handed to the caller

Why processes: at GPU speed the job is bound by decoding (about 2 ms of CPU per 10 s FLAC file, a
GPU computes it in microseconds), and one Python process that decodes in threads caps far below
what the cores of a GPU host decode; its GIL also serialises the per-file work (bucketing, hashing,
writing). Here every decoding core runs its own interpreter, audio never crosses a pipe (only file
names, offsets and records are pickled), and the per-file work of writing (serializing, hashing,
fsync: about 0.7 ms of CPU per output on a disk, a third of decoding a FLAC file) runs in a writer
process, which shares the core the driver leaves mostly idle, and in the decode processes when that
one cannot keep up (many decode processes); the driver only assembles batches and launches them.

Shared memory: the driver creates every segment (``multiprocessing.shared_memory``, names starting
with :data:`SHM_PREFIX`) and removes it; decode processes attach without registering it, so only
the driver's resource tracker knows it. A clean end, a stop, Ctrl-C or an exception removes them in
:meth:`DecoderEngine.close`; if the driver itself is killed, its decode processes die with it
(``PR_SET_PDEATHSIG``) and the resource tracker removes what it had registered.

Crashes: a decode process that dies (a crash inside a decoder, SIGKILL, the out-of-memory killer)
is replaced; each file of the tasks it held is retried once, alone, and a file whose retry dies too
is recorded as failed with the reason. A write task whose process died is given to another process
once (its outputs are still in their segment), then its files fail. Nothing is lost: every file
ends as a committed record or is left for the next run.

Outputs equal the threaded pipeline's: the same buckets (row length depends only on the file),
the same :class:`~arraymel.corpus.compute.Computer`, the same atomic writes. A file too long to
hold (``--memory-per-worker``) is streamed by its decode process on the CPU (:mod:`.stream`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import mmap
import multiprocessing
import os
import queue
import secrets
import selectors
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from arraymel.corpus.batching import Batch, Bucketer, batch_limits, extended, row_length
from arraymel.corpus.compute import Computed, Computer, record_config_hash
from arraymel.corpus.decode import Decoded, DecodeFailure, open_audio, read_whole
from arraymel.corpus.discover import Source
from arraymel.corpus.manifest import FileRecord
from arraymel.corpus.pipeline import Pipeline
from arraymel.corpus.settings import CorpusSettings, versions
from arraymel.corpus.storage import OutputError, OutputPathError, Writer, output_rel, serialize

#: Every shared-memory segment of the engine is named ``<SHM_PREFIX><pid>-<random>-<n>``.
SHM_PREFIX = "arraymel-"
#: Files per decode task (a task's files share one slot and one message each way).
TASK_FILES = 8


def default_decode_workers() -> int:
    """The CPUs this process may use, less one for the driver (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, n - 1)


def leftover_segments(pid: int | None = None) -> list[str]:
    """Names under /dev/shm that belong to this engine (of process ``pid``, or of any process)."""
    start = SHM_PREFIX + (f"{pid}-" if pid is not None else "")
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(start))
    except OSError:  # pragma: no cover - no /dev/shm
        return []


# ------------------------------------------------------------------------------------ decode process
def _attach(name: str) -> tuple[mmap.mmap, np.ndarray]:
    """Map the driver's segment ``name`` without registering it with a resource tracker (the driver owns it)."""
    try:
        import _posixshmem

        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    except ImportError:  # pragma: no cover
        fd = os.open(os.path.join("/dev/shm", name), os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    return m, np.frombuffer(m, dtype=np.uint8)


class _Worker:
    """A decode process's state: its settings, writer, mapped segments."""

    def __init__(self, settings: CorpusSettings, out_root: str, versions_json: str, config_hash: str | None = None):
        self.settings = settings
        #: the manifest rows' config_hash (:func:`~arraymel.corpus.compute.record_config_hash`)
        self.config_hash = config_hash or settings.config_hash
        self.cfg = settings.mel
        self.writer = Writer(out_root, stage=settings.sharded)  # sharded formats: outputs travel back in the records
        self.versions_json = versions_json
        #: mappings by kind: "slot" (the driver's fixed input slots) and "output" (output segments, which the
        #: driver replaces now and then: a mapping kept of a removed segment keeps its memory allocated)
        self.maps: dict[str, dict[str, tuple[mmap.mmap, np.ndarray]]] = {"slot": {}, "output": {}}
        self._maps_lock = threading.Lock()
        self._mel = None

    def segment(self, name: str, kind: str = "slot") -> np.ndarray:
        """The mapping of the driver's segment ``name`` (kept: slots and output segments are reused). Of the
        output segments only the :data:`OUTPUT_MAPPINGS` most recently used stay mapped, so that the memory of
        one the driver has removed is freed soon; the input slots live as long as the run."""
        with self._maps_lock:
            maps = self.maps[kind]
            got = maps.pop(name, None)
            if got is None:
                got = _attach(name)
            maps[name] = got  # most recently used last
            while len(maps) > (OUTPUT_MAPPINGS if kind == "output" else 64):
                maps.pop(next(iter(maps)))
            return got[1]

    def stream_mel(self, y):
        if self._mel is None:
            import arraymel

            self._mel = arraymel.MelSpectrogram(**dict(self.settings.mel_params, top_db=None))
        return self._mel(y, device="cpu", output="numpy")

    # -------------------------------------------------------------- decode
    def decode(self, slot: str, sources: list[Source]) -> tuple[list, list[Source]]:
        """Decode ``sources`` into the slot, one after the other: ``(entries, deferred)``.

        An entry per file: ``("ok", offset, rows, length, n, meta)`` (floats from the slot's start),
        ``("failed", reason, meta)`` or ``("record", FileRecord)`` (a long file, streamed and written
        here). ``deferred``: the files that did not fit in what was left of the slot.
        """
        from arraymel.corpus.stream import stream_file

        buf = self.segment(slot).view(np.float32)
        cap = buf.size
        pos = 0
        out: list = []
        settings, cfg = self.settings, self.cfg
        for i, src in enumerate(sources):
            try:
                with open_audio(src) as opened:
                    if opened.decoded_bytes(settings) > settings.stream_bytes:
                        out.append(("record", self._stream(opened, stream_file)))
                        continue
                    rows = opened.channels if settings.channels == "all" else 1
                    guess = rows * row_length(int(opened.decoded_bytes(settings) // 4 // max(1, opened.channels)) + 2,
                                              cfg)
                    if pos and pos + guess > cap:
                        return out, sources[i:]

                    def alloc(n: int, start=pos):
                        return buf[start:start + n] if start + n <= cap else None

                    item = read_whole(opened, settings, alloc)
            except DecodeFailure as e:
                out.append(("failed", e.reason, e.meta))
                continue
            except OutputPathError as e:
                out.append(("failed", str(e), {}))
                continue
            except OutputError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded with its type; the task goes on
                out.append(("failed", f"unexpected error while decoding: {type(e).__name__}: {e}", {}))
                continue
            if isinstance(item, FileRecord):
                out.append(("record", item))
                continue
            k, n = item.audio.shape
            length = row_length(n, cfg)
            meta = dict(sampling_rate=item.sampling_rate, channels=item.channels, samples=item.samples,
                        size=item.size, mtime_ns=item.mtime_ns)
            row = item.row
            if row is not None and row.ndim == 1 and row.shape[0] == length and \
                    row.__array_interface__["data"][0] == buf[pos:].__array_interface__["data"][0]:
                out.append(("ok", pos, 1, length, n, meta))  # read straight into the slot, already padded
                pos += length
                continue
            need = k * length
            if pos + need > cap:
                if pos:
                    return out, sources[i:]
                out.append(("failed", f"the decoded file ({need * 4} bytes) does not fit a shared-memory slot of "
                                      f"{cap * 4} bytes; raise --memory-per-worker", meta))
                continue
            dst = buf[pos:pos + need].reshape(k, length)
            m = min(length, n + cfg.pad)
            dst[:, :n] = item.audio
            dst[:, n:m] = extended(item.audio, m - n, cfg.pad_mode)
            dst[:, m:] = 0.0
            out.append(("ok", pos, k, length, n, meta))
            pos += need
        return out, []

    def _stream(self, opened, stream_file) -> FileRecord:
        preset = self.settings.preset_obj
        if preset is not None and (preset.signal_step or preset.log_rule or preset.drop_last_frame):
            from arraymel.corpus.records import failed_record

            return failed_record(opened.source, f"too long to hold in --memory-per-worker "
                                 f"{self.settings.memory_per_worker:g} MB, and the {preset.name} preset needs the "
                                 "whole file (its log rule or signal step is not computed block by block): raise "
                                 "--memory-per-worker", self.config_hash, self.versions_json, opened.meta)
        record = stream_file(opened, self.settings, self.writer, self.stream_mel, self.versions_json)
        self.writer.attach([record])
        return record

    # -------------------------------------------------------------- write
    def write(self, segment: str, index_at: int, index_len: int) -> list[FileRecord]:
        """Write each output found in ``segment``; their records. The segment holds the outputs, then the
        pickled list of ``(key, offset, shape, dtype, meta)`` at ``index_at`` (so that messages stay small)."""
        import pickle

        from arraymel.corpus.records import failed_record

        raw = self.segment(segment, "output")
        files = pickle.loads(raw[index_at:index_at + index_len])
        records = []
        array = None
        for key, offset, shape, dtype, meta in files:
            dt = np.dtype(dtype)
            count = int(np.prod(shape))
            array = raw[offset:offset + count * dt.itemsize].view(dt).reshape(shape)
            data = serialize(array)
            # sharded formats: the shard's SHA-256 covers the member
            sha = None if self.writer.stage else __import__("hashlib").sha256(data).hexdigest()
            src = Source(key=key, path="", size=meta["size"], mtime_ns=meta["mtime_ns"])
            try:
                _, dirs = self.writer.write(key, data)
            except OutputPathError as e:
                records.append(failed_record(src, str(e), self.config_hash, self.versions_json, meta))
                continue
            sr, n = meta["sampling_rate"], meta["samples"]
            records.append(FileRecord(
                key=key, status="ok", output=output_rel(key), source_size=meta["size"],
                source_mtime_ns=meta["mtime_ns"], sampling_rate=sr, channels=meta["channels"], samples=n,
                duration_s=n / sr, mel_samples=meta["length"], frames=int(shape[-1]),
                shape=tuple(int(s) for s in shape), dtype=dt.name, sha256=sha,
                config_hash=self.config_hash, versions=self.versions_json, sync_dirs=tuple(dirs)))
        del array, raw
        self.writer.attach(records)
        return records


#: Output segments kept for reuse once their outputs are written.
OUTPUT_SEGMENTS = 6
#: Output segments a process keeps mapped: those the driver keeps, and those of the write tasks it may hold.
OUTPUT_MAPPINGS = 2 * OUTPUT_SEGMENTS
#: Write tasks the writer process may hold before the decode processes take the next ones.
WRITER_QUEUE = 8
#: Tries of a write task whose process died.
WRITE_ATTEMPTS = 3
#: Writer threads in each decode process: fsync waits (milliseconds on a disk) overlap decoding.
WRITE_THREADS = 2
#: ... and in the writer process, which only writes: an fsync waits milliseconds on a disk (about 6 ms
#: here), so its threads, not its CPU, bound how many outputs per second it writes.
WRITER_THREADS = 8


def worker_main(conn, settings: CorpusSettings, out_root: str, versions_json: str, parent_pid: int,
                write_threads: int = WRITE_THREADS, config_hash: str | None = None) -> None:
    """A decode process: answers ``(task id, kind, ...)`` messages until ``None`` or the driver's end.

    Decode tasks run on this thread, one after the other; write tasks on ``write_threads`` threads
    (serializing and hashing release the GIL for large buffers, writing and fsync always), so that an
    output's fsync never holds up the next decode."""
    import concurrent.futures as cf

    from arraymel.corpus.chunks import die_with_parent

    os.environ["ARRAYMEL_NUM_THREADS"] = "1"
    die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides how to stop
    w = _Worker(settings, out_root, versions_json, config_hash)
    send_lock = threading.Lock()

    def answer(tid, fn, *args) -> None:
        try:
            reply = (tid, "ok", fn(*args))
        except OutputError as e:
            reply = (tid, "output-error", str(e))
        except Exception as e:  # noqa: BLE001 - a bug: the driver records it
            reply = (tid, "error", f"{type(e).__name__}: {e}")
        try:
            with send_lock:
                conn.send(reply)
        except (BrokenPipeError, OSError):
            pass

    with cf.ThreadPoolExecutor(write_threads, thread_name_prefix="arraymel-write") as writers:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                break
            tid, kind = msg[0], msg[1]
            if kind == "decode":
                answer(tid, w.decode, msg[2], msg[3])
            elif kind == "write":
                writers.submit(answer, tid, w.write, msg[2], msg[3], msg[4])
            elif kind == "ping":
                answer(tid, os.getpid)
            else:  # pragma: no cover - a bug
                answer(tid, _unknown, kind)


def _unknown(kind):  # pragma: no cover
    raise ValueError(f"unknown task {kind!r}")


# ------------------------------------------------------------------------------------ the driver
@dataclasses.dataclass
class _Task:
    tid: int
    kind: str  # "decode" or "write"
    sources: list  # decode: Source list; write: the files' tuples
    slot: int | None = None  # decode: the input slot
    segment: Any = None  # write: the SharedMemory of the outputs
    attempt: int = 1
    items: list = dataclasses.field(default_factory=list)  # write: the decoded items (for failures)


@dataclasses.dataclass(eq=False)  # compared and hashed by identity
class _Proc:
    process: Any
    conn: Any
    tasks: dict = dataclasses.field(default_factory=dict)  # tid -> _Task
    writer: bool = False  # the writer process: write tasks only

    def decode_tasks(self) -> int:
        return sum(1 for t in self.tasks.values() if t.kind == "decode")


class DecoderEngine:
    """``run``/``stop``/``close``/``abort`` like :class:`~arraymel.corpus.pipeline.Pipeline` (see the module docstring).

    ``computer``: the device (a :class:`~arraymel.corpus.compute.Computer` on a GPU, or the
    :class:`~arraymel.corpus.compute.StandInComputer`); ``decode_workers``: decode processes (default
    :func:`default_decode_workers`).
    """

    def __init__(self, settings: CorpusSettings, out_root: str, *, computer: Computer,
                 decode_workers: int | None = None, slots: int | None = None, writer: bool = True):
        from arraymel.corpus.chunks import start_method

        self.settings = settings
        self.out_root = out_root
        self.computer = computer
        self.cfg = settings.mel
        self.workers = max(1, int(decode_workers or default_decode_workers()))
        self.bucketer = Bucketer(settings.mel, *batch_limits(settings, computer.device_kind))
        self.config_hash = record_config_hash(settings, computer)
        self.versions_json = json.dumps(versions(computer.device_kind), sort_keys=True)
        self.device = f"{computer.device} ({self.workers} decode processes{' + a writer process' if writer else ''})"
        self.crashes = 0
        self.compute_seconds = 0.0
        self.batches = 0
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._batch_q: queue.Queue = queue.Queue(maxsize=2)
        self._write_q: queue.SimpleQueue = queue.SimpleQueue()  # compute thread -> driver
        self._ready: list[Batch] = []  # full buckets waiting to be queued
        self._retry: list[_Task] = []  # decode tasks to run again (a crashed process's files, deferred files)
        self._tids = itertools.count(1)
        self._tag = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        self._segments: dict[str, shared_memory.SharedMemory] = {}
        self._free_outputs: list[shared_memory.SharedMemory] = []
        self._seg_n = itertools.count()
        # input slots: big enough for any file that is not streamed (decoded_bytes <= stream_bytes)
        self.slot_bytes = -(-(int(settings.stream_bytes * 1.07) + 4 * 16 * (self.cfg.pad + 4096)) // 4096) * 4096
        self._slots = [self._new_segment(self.slot_bytes) for _ in range(slots or 2 * self.workers + 2)]
        self._free_slots = list(range(len(self._slots)))[::-1]
        self._slot_refs = [0] * len(self._slots)
        self._closed = False
        self._ctx = multiprocessing.get_context(start_method())
        self._selector = selectors.DefaultSelector()
        self._procs: list[_Proc] = []
        try:
            for _ in range(self.workers):
                self._procs.append(self._spawn())
            if writer:
                self._procs.append(self._spawn(writer=True))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ processes and segments
    def _new_segment(self, nbytes: int) -> shared_memory.SharedMemory:
        name = f"{self._tag}{next(self._seg_n)}"
        seg = shared_memory.SharedMemory(name=name, create=True, size=max(64, -(-int(nbytes) // 64) * 64))
        self._segments[seg.name] = seg
        return seg

    def _output_segment(self, nbytes: int) -> shared_memory.SharedMemory:
        """A free output segment of at least ``nbytes`` (reused: creating one per batch costs more than the batch's
        own bookkeeping), or a new one of the next power of two above it (at least 4 MiB)."""
        with self._lock:
            fits = [s for s in self._free_outputs if s.size >= nbytes]
            if fits:
                seg = min(fits, key=lambda s: s.size)
                self._free_outputs.remove(seg)
                return seg
        return self._new_segment(max(4 << 20, 1 << (max(1, int(nbytes)) - 1).bit_length()))

    def _reuse_output(self, seg: shared_memory.SharedMemory) -> None:
        """``seg``'s outputs are written: keep it for the next batch (the largest few are kept)."""
        with self._lock:
            self._free_outputs.append(seg)
            if len(self._free_outputs) <= OUTPUT_SEGMENTS:
                return
            self._free_outputs.sort(key=lambda s: s.size)
            seg = self._free_outputs.pop(0)
        self._drop_segment(seg)

    def _drop_segment(self, seg: shared_memory.SharedMemory) -> None:
        self._segments.pop(seg.name, None)
        try:
            seg.close()
        except BufferError:  # a view of it is still alive: the memory goes with the last view, the name now
            seg._buf = seg._mmap = None  # (and SharedMemory.__del__ must not try to close it again)
        try:
            seg.unlink()
        except FileNotFoundError:
            pass

    def _spawn(self, writer: bool = False) -> _Proc:
        parent, child = self._ctx.Pipe(duplex=True)
        p = self._ctx.Process(target=worker_main, name="arraymel-write" if writer else "arraymel-decode", daemon=True,
                              args=(child, self.settings, self.out_root, self.versions_json, os.getpid(),
                                    WRITER_THREADS if writer else WRITE_THREADS, self.config_hash))
        p.start()
        child.close()
        proc = _Proc(process=p, conn=parent, writer=writer)
        self._selector.register(parent.fileno(), selectors.EVENT_READ, ("reply", proc))
        self._selector.register(p.sentinel, selectors.EVENT_READ, ("dead", proc))
        return proc

    def _forget(self, proc: _Proc) -> None:
        for fd in (proc.conn.fileno(), proc.process.sentinel):
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass

    def _send(self, proc: _Proc, task: _Task, message: tuple) -> None:
        with self._lock:
            proc.tasks[task.tid] = task
        proc.conn.send(message)

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Start nothing new; what is being written is finished and recorded; :meth:`run` then ends."""
        self._stop.set()

    def abort(self) -> None:
        """Kill the decode processes now (a second Ctrl-C); :meth:`close` removes the segments."""
        self._stop.set()
        for p in self._procs:
            if p.process.is_alive():
                p.process.kill()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            try:
                p.conn.send(None)
            except (OSError, ValueError):
                pass
        # views of the slots die first (buckets, queued batches), so that each segment can be closed
        self.bucketer = Bucketer(self.cfg, 1, 1)
        self._ready.clear()
        while True:
            try:
                self._batch_q.get_nowait()
            except queue.Empty:
                break
        import gc

        gc.collect()
        deadline = time.monotonic() + 5.0
        for p in self._procs:
            p.process.join(max(0.0, deadline - time.monotonic()))
            if p.process.is_alive():
                p.process.kill()
                p.process.join(1.0)
            self._forget(p)
            p.conn.close()
        self._selector.close()
        for seg in list(self._segments.values()):
            self._drop_segment(seg)

    def __del__(self):  # pragma: no cover - a caller that forgot close()
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ records
    def _failed(self, source: Source, reason: str, meta: dict | None = None, decoded: Decoded | None = None
                ) -> FileRecord:
        from arraymel.corpus.records import failed_record

        return failed_record(source, reason, self.config_hash, self.versions_json, meta, decoded)

    def _set_fatal(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._stop.set()

    # ------------------------------------------------------------------ slots
    def _item(self, src: Source, slot: int, entry: tuple) -> Decoded:
        _, offset, rows, length, n, meta = entry
        buf = np.frombuffer(self._slots[slot].buf, dtype=np.float32)
        row = buf[offset:offset + rows * length].reshape(rows, length)
        item = Decoded(source=src, audio=row[:, :n], sampling_rate=meta["sampling_rate"], channels=meta["channels"],
                       samples=meta["samples"], size=meta["size"], mtime_ns=meta["mtime_ns"], row=row)
        item.slot = slot  # type: ignore[attr-defined]
        return item

    def _release(self, items: Iterable) -> None:
        with self._lock:
            for it in items:
                slot = getattr(it, "slot", None)
                if slot is None:
                    continue
                it.slot = None
                self._slot_refs[slot] -= 1
                if self._slot_refs[slot] == 0:
                    self._free_slots.append(slot)

    # ------------------------------------------------------------------ compute thread
    def _compute_loop(self) -> None:
        buffers: list[np.ndarray] = [np.empty(0, np.float32), np.empty(0, np.float32)]
        prev = None
        n = 0
        try:
            while True:
                try:
                    batch = self._batch_q.get_nowait() if prev is not None else self._batch_q.get()
                except queue.Empty:
                    self._finish(prev)
                    prev = None
                    continue
                if batch is None:
                    self._finish(prev)
                    return
                if self._stop.is_set():
                    self._release(batch.items)
                    continue
                need = batch.rows * batch.length
                b = n % 2
                if buffers[b].size < need:
                    buffers[b] = self.computer.host_buffer(max(need, int(buffers[b].size * 1.25)))
                n += 1
                preset = self.settings.preset_obj
                t = time.perf_counter()
                x = batch.build(self.cfg, buffers[b], signal_step=preset.signal_step if preset else None, copy=True)
                pending = self.computer.launch(batch, x)
                self.compute_seconds += time.perf_counter() - t
                self._finish(prev)
                prev = (batch, pending)
        except BaseException as e:  # a bug or a device error, not a bad file: stop the run and say so
            self._set_fatal(e)
            if prev is not None:
                self._release(prev[0].items)
            while True:  # let the driver's puts through until it sends the end
                try:
                    batch = self._batch_q.get(timeout=0.1)
                except queue.Empty:
                    if self._closed:
                        return
                    continue
                if batch is None:
                    return
                self._release(batch.items)

    def _finish(self, prev) -> None:
        if prev is None:
            return
        batch, pending = prev
        try:
            t = time.perf_counter()
            computed = self.computer.collect(pending)
            self.compute_seconds += time.perf_counter() - t
            self.batches += 1
        finally:
            self._release(batch.items)
        self._write(computed)

    def _write(self, computed: list[Computed]) -> None:
        """Outputs into one shared segment, written by a decode process; failures recorded here."""
        ok = []
        for c in computed:
            if c.error is not None:
                self._results.put(self._failed(c.item.source, c.error, decoded=c.item))
            else:
                ok.append(c)
        if not ok:
            return
        if self._stop.is_set() and self._fatal is not None:
            return
        import pickle

        offsets, total, files = [], 0, []
        for c in ok:
            offsets.append(total)
            it = c.item
            files.append((it.source.key, total, tuple(c.array.shape), c.array.dtype.str,
                          dict(size=it.size, mtime_ns=it.mtime_ns, sampling_rate=it.sampling_rate,
                               channels=it.channels, samples=it.samples, length=it.length)))
            total += -(-c.array.nbytes // 64) * 64
        index = pickle.dumps(files, protocol=pickle.HIGHEST_PROTOCOL)
        seg = self._output_segment(total + len(index))
        raw = np.frombuffer(seg.buf, dtype=np.uint8)
        for c, off in zip(ok, offsets):
            a = np.ascontiguousarray(c.array)
            raw[off:off + a.nbytes] = a.reshape(-1).view(np.uint8)
        raw[total:total + len(index)] = np.frombuffer(index, dtype=np.uint8)
        del raw
        self._write_q.put(_Task(tid=next(self._tids), kind="write", sources=[total, len(index)], segment=seg,
                                items=[c.item for c in ok]))

    def _dispatch_write(self, task: _Task) -> None:
        """Send a write task (driver thread only: one thread sends, and every message is small), preferably to a
        process that is not retrying a file which killed a process before."""
        alive = self._procs  # a dead one is removed by _poll (its sentinel), which then retries its tasks
        idle_writer = [p for p in alive if p.writer and len(p.tasks) < WRITER_QUEUE]
        if idle_writer:  # the writer process first (its core is the driver's); decode processes take the overflow
            proc = idle_writer[0]
        else:
            safe = [p for p in alive if not any(t.attempt >= 2 and t.kind == "decode" for t in p.tasks.values())]
            proc = min(safe or alive, key=lambda p: len(p.tasks))
        try:
            self._send(proc, task, (task.tid, "write", task.segment.name, *task.sources))
        except (OSError, ValueError):  # that process just died: _poll finds it and retries the task
            pass

    # ------------------------------------------------------------------ the run
    def run(self, sources: Iterable[Source]) -> Iterator[list[FileRecord]]:
        """Process ``sources``; yields groups of finished records (outputs already renamed into place)."""
        todo = list(sources)
        todo.reverse()  # pop() from the end keeps key order
        last = [time.monotonic()]
        computer = threading.Thread(target=self._compute_loop, name="arraymel-compute", daemon=True)
        computer.start()
        drained = False
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if not self._stop.is_set():
                    self._dispatch(todo)
                self._poll(0.02)
                while self._ready:
                    yield from self._put(self._ready.pop(0), last)
                with self._lock:
                    decoding = sum(p.decode_tasks() for p in self._procs)
                    writing = sum(len(p.tasks) for p in self._procs) - decoding
                    starved = not self._free_slots
                if not self._stop.is_set() and (self._batch_q.empty() or (starved and not decoding)):
                    batch = self.bucketer.take_fullest()  # never let the device idle while audio waits
                    if batch is not None:
                        yield from self._put(batch, last)
                if not drained and (self._stop.is_set() or (not todo and not self._retry and not decoding)):
                    if not self._stop.is_set():
                        for batch in self.bucketer.drain():
                            yield from self._put(batch, last)
                    drained = True
                    self._batch_q.put(None)
                group = self._take(False, last)
                if group:
                    yield group
                if drained and not computer.is_alive() and self._write_q.empty() and not writing and \
                        (not decoding or self._stop.is_set()):
                    break
        finally:
            if not drained:
                self._stop.set()
                self._put_end()
            computer.join(timeout=30)
        if self._fatal is not None:
            raise self._fatal
        group = self._take(True, last)
        if group:
            yield group

    def _put_end(self) -> None:
        while True:
            try:
                self._batch_q.put(None, timeout=0.1)
                return
            except queue.Full:
                try:
                    self._release(self._batch_q.get_nowait().items)
                except (queue.Empty, AttributeError):
                    pass

    def _put(self, batch: Batch, last: list) -> Iterator[list[FileRecord]]:
        """Queue ``batch`` for the compute thread, handling replies meanwhile (the driver never blocks)."""
        while not self._stop.is_set():
            try:
                self._batch_q.put(batch, timeout=0.02)
                return
            except queue.Full:
                self._poll(0.0)
                group = self._take(False, last)
                if group:
                    yield group
        self._release(batch.items)

    _take = Pipeline._take  # the same hand-out of finished records every COMMIT_INTERVAL

    def _dispatch(self, todo: list) -> None:
        """Give decode tasks to processes with fewer than two, while slots are free."""
        retry = self._retry
        while todo or retry:
            alone = bool(retry) and retry[-1].attempt >= 2  # a suspect runs alone: only its own file is at risk
            with self._lock:
                if not self._free_slots:
                    return
                procs = [p for p in self._procs if not p.writer and p.decode_tasks() < 2
                         and not any(t.attempt >= 2 and t.kind == "decode" for t in p.tasks.values())]
                if alone:
                    procs = [p for p in procs if not p.tasks]
                if not procs:
                    return
                proc = min(procs, key=lambda p: len(p.tasks))
                slot = self._free_slots.pop()
            if retry:
                task = retry.pop()
                task.slot = slot
            else:
                chunk = [todo.pop() for _ in range(min(TASK_FILES, len(todo)))]
                task = _Task(tid=next(self._tids), kind="decode", sources=chunk, slot=slot)
            try:
                self._send(proc, task, (task.tid, "decode", self._slots[slot].name, task.sources))
            except (OSError, ValueError):
                pass  # the process died: _poll finds it and re-queues the task

    def _poll(self, timeout: float) -> None:
        """Send the compute thread's write tasks; handle every reply (and every dead process) ready within
        ``timeout``."""
        while True:
            try:
                self._dispatch_write(self._write_q.get_nowait())
            except queue.Empty:
                break
        dead = []
        for key, _ in self._selector.select(timeout):  # one selector for the run: no set-up per call
            what, proc = key.data
            if what == "dead":
                dead.append(proc)
                continue
            try:
                while True:
                    self._reply(proc, proc.conn.recv())
                    if not proc.conn.poll():
                        break
            except (EOFError, OSError):
                dead.append(proc)
        for proc in dict.fromkeys(dead):
            self._crashed(proc)

    def _reply(self, proc: _Proc, msg: tuple) -> None:
        tid, status, result = msg
        with self._lock:
            task = proc.tasks.pop(tid, None)
        if task is None:
            return
        if status == "output-error":
            self._set_fatal(OutputError(result))
            if task.kind == "decode":
                self._free_slot(task.slot)
            return
        if task.kind == "write":
            self._reuse_output(task.segment)
            if status == "ok":
                for r in result:
                    self._results.put(r)
            else:
                for it in task.items:
                    self._results.put(self._failed(it.source, f"writing failed: {result}", decoded=it))
            return
        if status != "ok":
            self._free_slot(task.slot)
            for s in task.sources:
                self._results.put(self._failed(s, f"the decode process failed: {result}"))
            return
        entries, deferred = result
        if deferred:
            self._retry.append(_Task(tid=next(self._tids), kind="decode", sources=deferred, attempt=task.attempt))
        items = []
        for src, entry in zip(task.sources, entries):
            if entry[0] == "ok":
                items.append(self._item(src, task.slot, entry))
            elif entry[0] == "record":
                self._results.put(entry[1])
            else:
                self._results.put(self._failed(src, entry[1], entry[2]))
        with self._lock:
            self._slot_refs[task.slot] += len(items)
            if not items:
                self._free_slots.append(task.slot)
        if self._stop.is_set():
            self._release(items)
            return
        for item in items:
            self._ready += self.bucketer.add(item)

    def _free_slot(self, slot: int | None) -> None:
        if slot is not None:
            with self._lock:
                if self._slot_refs[slot] == 0 and slot not in self._free_slots:
                    self._free_slots.append(slot)

    def _crashed(self, proc: _Proc) -> None:
        """A decode process died: replace it, retry its files once each (alone), then record them failed."""
        with self._lock:
            if proc not in self._procs:
                return
            self._procs.remove(proc)
            self._forget(proc)
            tasks = list(proc.tasks.values())
            proc.tasks.clear()
        proc.process.join(1.0)
        code = proc.process.exitcode
        how = f"killed by signal {-code} ({signal.Signals(-code).name})" if code is not None and code < 0 else \
            f"exit status {code}"
        try:
            proc.conn.close()
        except OSError:
            pass
        if not self._closed:
            self.crashes += 1
            if not self._stop.is_set():
                self._procs.append(self._spawn(writer=proc.writer))
        for task in tasks:
            if task.kind == "decode":
                self._free_slot(task.slot)
                if task.attempt >= 2:
                    for s in task.sources:
                        self._results.put(self._failed(s, f"the decode process died while decoding this file ({how}), "
                                                          "and again when it was retried alone"))
                else:
                    for s in reversed(task.sources):
                        self._retry.append(_Task(tid=next(self._tids), kind="decode", sources=[s], attempt=2))
            else:
                # a write kills no process by itself (the file that did shares the process): up to 3 tries
                if task.attempt >= WRITE_ATTEMPTS or self._stop.is_set() and not self._procs:
                    self._drop_segment(task.segment)
                    for it in task.items:
                        self._results.put(self._failed(it.source, f"the process writing this output died ({how}), "
                                                                  f"{WRITE_ATTEMPTS} times", decoded=it))
                else:
                    task.attempt += 1
                    task.tid = next(self._tids)
                    self._dispatch_write(task)
