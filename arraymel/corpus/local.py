"""The local CPU engine: one worker process per CPU, each running whole chunks (:mod:`.chunks`).

The parent cuts the files into chunks (key order), keeps ``2 x workers`` chunks in flight
(bounded: decoded audio never piles up), and yields each chunk's records as it returns (the
runner commits them). Workers are started with ``fork`` when the parent has no other thread
(start-up in milliseconds: everything is already imported) and with ``spawn`` otherwise (forking
a multi-threaded process can deadlock the child); they run the library single-threaded, ignore SIGINT (the parent decides),
and are
killed by the kernel if the parent dies (no orphan keeps writing after a crash).

A worker that dies abruptly (a crash inside a decoder, the out-of-memory killer) breaks the pool:
the chunks that were in flight are then re-run one at a time, halving any that crashes again,
until the one file that kills its worker is found and recorded as failed; every other file is
processed normally.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool

from arraymel.corpus.chunks import make_chunks, ping, process_chunk, start_method, warm_up_before_fork, worker_init
from arraymel.corpus.discover import Source
from arraymel.corpus.manifest import FileRecord
from arraymel.corpus.settings import CorpusSettings
from arraymel.corpus.storage import OutputError


class ProcessEngine:
    """Same interface as :class:`~arraymel.corpus.pipeline.Pipeline`: ``run``, ``stop``, ``close``."""

    def __init__(self, settings: CorpusSettings, out_root: str, *, workers: int,
                 chunk_fn: Callable = process_chunk):
        self.settings = dataclasses.replace(settings, device="cpu")  # the same config hash: device is not in it
        self.out_root = out_root
        self.workers = max(1, int(workers))
        self.chunk_fn = chunk_fn
        self.device = f"cpu ({self.workers} worker processes)"
        self.crashes = 0
        self._stop = False
        self._ex: cf.ProcessPoolExecutor | None = None
        self._start()

    def _start(self) -> None:
        method = start_method()
        if method == "fork":
            warm_up_before_fork(self.settings)  # once, here: every worker inherits the imports and the built state
            method = start_method()  # still alone?
        ctx = multiprocessing.get_context(method)
        self._ex = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=worker_init,
                                          initargs=(os.getpid(), 1, self.settings))
        self._ready = [self._ex.submit(ping) for _ in range(self.workers)]  # start them now, warm up meanwhile

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None

    def abort(self) -> None:
        """Kill the workers now (a second Ctrl-C): what they were writing is left as temporary files."""
        if self._ex is not None:
            for p in list(getattr(self._ex, "_processes", {}).values()):
                try:
                    p.kill()
                except Exception:  # noqa: BLE001 - already gone
                    pass
            self._ex.shutdown(wait=False, cancel_futures=True)
            self._ex = None

    def _failed(self, chunk: list[Source], why: str) -> list[FileRecord]:
        from arraymel.corpus.records import failed_record

        return [failed_record(s, why, self.settings.config_hash, None) for s in chunk]

    def _submit(self, chunk: list[Source]) -> cf.Future:
        assert self._ex is not None
        return self._ex.submit(self.chunk_fn, chunk, self.settings, self.out_root)

    def run(self, sources: list[Source]) -> Iterator[list[FileRecord]]:
        for f in self._ready:
            f.result()  # a worker that cannot even start fails here, with its error
        todo = make_chunks(list(sources), self.workers)
        todo.reverse()  # pop() from the end keeps key order
        suspects: list[list[Source]] = []  # chunks in flight when a worker died: re-run one at a time
        inflight: dict[cf.Future, list[Source]] = {}
        solo = False  # True while a suspect runs alone
        while True:
            if not self._stop:
                if suspects:
                    if not inflight:
                        chunk = suspects.pop()
                        inflight[self._submit(chunk)] = chunk
                        solo = True
                else:
                    solo = False
                    while todo and len(inflight) < 2 * self.workers:
                        chunk = todo.pop()
                        inflight[self._submit(chunk)] = chunk
            if not inflight:
                return
            done, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
            crashed: list[list[Source]] = []
            for fut in sorted(done, key=lambda f: inflight[f][0].key):
                chunk = inflight.pop(fut)
                try:
                    records = fut.result()
                except OutputError:
                    self._stop = True
                    raise
                except BrokenProcessPool:
                    crashed.append(chunk)
                    continue
                except Exception as e:  # noqa: BLE001 - a bug in a worker: isolate, record, go on
                    if len(chunk) > 1:
                        half = len(chunk) // 2
                        todo += [chunk[half:], chunk[:half]]
                        continue
                    records = self._failed(chunk, f"the worker failed on this file: {type(e).__name__}: {e}")
                if records:
                    yield records
            if not crashed:
                continue
            self.crashes += 1
            crashed += list(inflight.values())  # they fail with the pool, or would: re-run them
            inflight.clear()
            if solo and len(crashed) == 1:
                chunk = crashed[0]
                if len(chunk) == 1:
                    yield self._failed(chunk, "the worker process died while decoding or computing this file "
                                              "(a crash in the decoder, or killed for lack of memory)")
                else:
                    half = len(chunk) // 2
                    suspects += [chunk[half:], chunk[:half]]
            else:
                suspects += crashed[::-1]
            self.close()
            self._start()
