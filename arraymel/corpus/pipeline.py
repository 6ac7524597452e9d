"""The single-machine pipeline: a decode pool feeding length buckets, one compute thread, writers.

::

    sources --> decode threads (bounded number in flight) --> Bucketer --> batch queue (2)
            --> compute thread (arraymel.MelSpectrogram) --> writer threads (.npy, fsync, rename)
            --> records, handed to the caller in groups (the caller commits them)

Decoding overlaps the computation: while one batch is computed, the decode threads fill the
next buckets; the queue between them is bounded, so memory stays bounded (decoded files in flight,
the buckets' ``pending`` audio, two batches). libsndfile, soxr, the NumPy mel path and fsync all
release the GIL, so threads run in parallel without copying audio between processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator

from arraymel.corpus.batching import Bucketer, batch_limits
from arraymel.corpus.compute import Computer, record_config_hash
from arraymel.corpus.decode import Decoded, DecodeFailure
from arraymel.corpus.discover import Source
from arraymel.corpus.manifest import FileRecord
from arraymel.corpus.records import failed_record
from arraymel.corpus.settings import CorpusSettings, versions
from arraymel.corpus.storage import OutputError, OutputPathError, Writer, output_rel, serialize
from arraymel.corpus.stream import decode_or_stream

#: How often (seconds) finished records are handed to the caller for a commit.
COMMIT_INTERVAL = 0.5


class Pipeline:
    """Turns sources into durable outputs and :class:`FileRecord` s (see the module docstring)."""

    def __init__(self, settings: CorpusSettings, writer: Writer, *, decode_workers: int = 2, write_threads: int = 4,
                 computer: Computer | None = None):
        self.settings = settings
        self.writer = writer
        self.computer = computer or Computer(settings)
        self.bucketer = Bucketer(settings.mel, *batch_limits(settings, self.computer.device_kind))
        self.decode_workers = max(1, int(decode_workers))
        self.max_inflight = 2 * self.decode_workers + 2
        self.write_threads = max(1, int(write_threads))
        self.config_hash = record_config_hash(settings, self.computer)
        self.versions_json = json.dumps(versions(self.computer.device_kind), sort_keys=True)
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._batch_q: queue.Queue = queue.Queue(maxsize=2)
        self._slots = threading.BoundedSemaphore(8 * self.write_threads)
        self._local = threading.local()
        self.compute_seconds = 0.0
        self.batches = 0

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Finish what is being written, start nothing new; :meth:`run` then ends soon."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    # ------------------------------------------------------------------ stages
    def _failed(self, source: Source, reason: str, meta: dict | None = None, decoded: Decoded | None = None) -> FileRecord:
        return failed_record(source, reason, self.config_hash, self.versions_json, meta, decoded)

    def _stream_mel(self, y):
        """The mel computation of a long file's blocks (stream.py), on a decode thread: one
        MelSpectrogram per thread, never the compute thread's."""
        mel = getattr(self._local, "mel", None)
        if mel is None:
            import arraymel

            mel = self._local.mel = arraymel.MelSpectrogram(**dict(self.settings.mel_params, top_db=None))
        return mel(y, device=self.computer.device, output="numpy")

    def _write(self, item: Decoded, array) -> FileRecord:
        data = serialize(array)
        sha = hashlib.sha256(data).hexdigest()
        try:
            _, dirs = self.writer.write(item.source.key, data)
        except OutputPathError as e:  # this output's path, not OUT_DIR: the file fails, the run goes on
            return self._failed(item.source, str(e), decoded=item)
        return FileRecord(
            key=item.source.key, status="ok", output=output_rel(item.source.key),
            source_size=item.size, source_mtime_ns=item.mtime_ns, sampling_rate=item.sampling_rate,
            channels=item.channels, samples=item.samples, duration_s=item.duration, mel_samples=item.length,
            frames=int(array.shape[-1]), shape=tuple(int(s) for s in array.shape), dtype=array.dtype.name,
            sha256=sha, config_hash=self.config_hash, versions=self.versions_json, sync_dirs=tuple(dirs),
        )

    def _written(self, fut: cf.Future) -> None:
        self._slots.release()
        exc = fut.exception()
        if exc is not None:
            if self._fatal is None:
                self._fatal = exc
            self._stop.set()
        else:
            self._results.put(fut.result())

    def _compute_loop(self, writers: cf.ThreadPoolExecutor) -> None:
        while True:
            batch = self._batch_q.get()
            if batch is None:
                return
            if self._stop.is_set():
                continue
            try:
                t = time.perf_counter()
                computed = self.computer(batch)
                self.compute_seconds += time.perf_counter() - t
                self.batches += 1
                for c in computed:
                    if c.error is not None:
                        self._results.put(self._failed(c.item.source, c.error, decoded=c.item))
                        continue
                    self._slots.acquire()
                    fut = writers.submit(self._write, c.item, c.array)
                    fut.add_done_callback(self._written)
            except BaseException as e:  # a bug, not a bad file: stop the run and say so
                if self._fatal is None:
                    self._fatal = e
                self._stop.set()

    # ------------------------------------------------------------------ the run
    def _take(self, force: bool, last: list) -> list[FileRecord]:
        """Finished records when a commit is due (or ``force``); ``last`` holds the time of the last hand-out."""
        if not force and time.monotonic() - last[0] < COMMIT_INTERVAL:
            return []
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                break
        if out:
            last[0] = time.monotonic()
        return out

    def run(self, sources: Iterable[Source]) -> Iterator[list[FileRecord]]:
        """Process ``sources``; yields groups of finished records (outputs already renamed into place)."""
        it = iter(sources)
        exhausted = False
        inflight: dict[cf.Future, Source] = {}
        last = [time.monotonic()]
        decoders = cf.ThreadPoolExecutor(self.decode_workers, thread_name_prefix="arraymel-decode")
        writers = cf.ThreadPoolExecutor(self.write_threads, thread_name_prefix="arraymel-write")
        computer = threading.Thread(target=self._compute_loop, args=(writers,), name="arraymel-compute", daemon=True)
        computer.start()
        try:
            while True:
                self._check_fatal()
                while not exhausted and not self._stop.is_set() and len(inflight) < self.max_inflight:
                    src = next(it, None)
                    if src is None:
                        exhausted = True
                        break
                    inflight[decoders.submit(decode_or_stream, src, self.settings, self.writer, self._stream_mel,
                                             self.versions_json)] = src
                if not inflight:
                    break
                done, _ = cf.wait(list(inflight), timeout=0.05, return_when=cf.FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: inflight[f].key):
                    src = inflight.pop(fut)
                    if fut.cancelled():
                        continue
                    try:
                        item = fut.result()
                    except DecodeFailure as e:
                        self._results.put(self._failed(src, e.reason, e.meta))
                        continue
                    except OutputPathError as e:
                        self._results.put(self._failed(src, str(e)))
                        continue
                    except OutputError:
                        raise
                    except Exception as e:  # noqa: BLE001 - recorded with its type, the run goes on
                        self._results.put(self._failed(src, f"unexpected error while decoding: {type(e).__name__}: {e}"))
                        continue
                    if isinstance(item, FileRecord):  # a long file, computed and written in blocks
                        self._results.put(item)
                        continue
                    if self._stop.is_set():
                        continue
                    for batch in self.bucketer.add(item):
                        yield from self._put(batch, last)
                if not self._stop.is_set() and self._batch_q.empty():
                    batch = self.bucketer.take_fullest()  # work-conserving: never let the compute stage idle
                    if batch is not None:
                        yield from self._put(batch, last)
                if self._stop.is_set():
                    for fut in inflight:
                        fut.cancel()
                group = self._take(False, last)
                if group:
                    yield group
            if not self._stop.is_set():
                for batch in self.bucketer.drain():
                    yield from self._put(batch, last)
        finally:
            if self._fatal is not None or self._stop.is_set():
                for fut in inflight:
                    fut.cancel()
            self._batch_q.put(None)
            decoders.shutdown(wait=True, cancel_futures=True)
            while computer.is_alive():
                computer.join(0.2)
            writers.shutdown(wait=True)
        self._check_fatal()
        group = self._take(True, last)
        if group:
            yield group

    def _put(self, batch, last: list) -> Iterator[list[FileRecord]]:
        while not self._stop.is_set():
            try:
                self._batch_q.put(batch, timeout=0.1)
                return
            except queue.Full:
                group = self._take(False, last)
                if group:
                    yield group
        self._check_fatal()
