"""``--dask``: the same pipeline, chunk by chunk, on dask.distributed workers.

The client (this process) holds OUT_DIR's lock, cuts the files to process into chunks (in key
order, a few per worker thread so that the cluster stays busy), and submits one task per chunk,
with a bounded number in flight. A task runs :func:`~arraymel.corpus.chunks.process_chunk` on its
worker, exactly as a local worker process does: it decodes, batches, computes and writes the
outputs atomically (write, fsync, rename, directory fsync), then returns the records. Only the client writes the manifest,
committing each
chunk's records when its task returns, so the manifest never names an output that is not on disk.

Workers must see IN_DIR and OUT_DIR at the same paths as the client (one machine, or a shared
file system). ``local:N`` starts a :class:`distributed.LocalCluster` of N worker processes with
one task thread each and the CPUs shared between them. A GPU cluster is any running scheduler
whose workers each own a GPU, e.g. dask-cuda's ``LocalCUDACluster`` (one worker per GPU, each
seeing its GPU as ``cuda:0``): pass its scheduler address.

A task that fails (a worker that died, for instance in a decoder crash) is split in halves and
resubmitted, down to the single file, which is then recorded as failed with the error; a task that
cannot write OUT_DIR stops the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from arraymel.corpus.chunks import die_with_parent, make_chunks, process_chunk, start_method, warm_up_before_fork
from arraymel.corpus.compute import DeviceError
from arraymel.corpus.discover import Source
from arraymel.corpus.manifest import FileRecord
from arraymel.corpus.settings import CorpusSettings
from arraymel.corpus.storage import OutputError

#: Dask's own sampling, off on a local cluster: its statistical profiler takes the GIL from the task
#: thread every 10 ms and the event loop ticks every 20 ms, about 10 % of a chunk's CPU time on 2
#: cores (docs/corpus.md); a cluster given by address keeps its own configuration.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}


def local_chunk(*args):
    """:func:`process_chunk` on a worker of our own local cluster, which dies with this process (a worker
    the nanny restarted too): a forked worker holds OUT_DIR's lock with us, and must not keep it, or keep
    writing, after we are killed."""
    die_with_parent()
    return process_chunk(*args)


class DaskEngine:
    """Same interface as :class:`~arraymel.corpus.pipeline.Pipeline`: ``run``, ``stop``, ``close``."""

    def __init__(self, address: str, settings: CorpusSettings, out_root: str, *, decode_workers: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise RuntimeError("--dask needs dask.distributed: pip install 'arraymel[dask]'") from None
        self.settings = settings
        self.out_root = out_root
        self.decode_workers = decode_workers or 2
        self.cluster = None
        self.chunk_fn = process_chunk
        if address.startswith("local:"):
            try:
                n = int(address.split(":", 1)[1])
                if n < 1:
                    raise ValueError
            except ValueError:
                raise ValueError(f"--dask {address!r}: local:N needs a worker count N >= 1") from None
            try:
                cpus = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover
                cpus = os.cpu_count() or 1
            import dask

            # Workers forked from this process, warmed up first, start in a fraction of a second; spawned
            # ones import Dask, NumPy, soundfile and arraymel anew and build the computation's state, about
            # 4 s of a 2-CPU machine per run (start, warm-up and shut-down; measured in docs/corpus.md).
            method = "spawn"
            if start_method() == "fork":
                warm_up_before_fork(settings)
                method = start_method()
            with dask.config.set({"distributed.worker.multiprocessing-method": method, **LOCAL_CLUSTER_CONFIG}):
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                            env={"ARRAYMEL_NUM_THREADS": str(max(1, cpus // n))})
            self.client = Client(self.cluster)
            self.client.run(die_with_parent)
            self.chunk_fn = local_chunk
        else:
            import dask

            # how long to try to reach the scheduler: Dask's connect timeout (default 30 s; set
            # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT to change it)
            self.client = Client(address, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        self.threads = max(1, sum(w.get("nthreads", 1) for w in workers.values()))
        self.device = f"dask ({len(workers)} workers, {self.threads} threads, device {settings.device})"
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def _failed(self, sources: list[Source], why: str) -> list[FileRecord]:
        from arraymel.corpus.records import failed_record

        return [failed_record(s, why, self.settings.config_hash, None) for s in sources]

    def run(self, sources: list[Source]) -> Iterator[list[FileRecord]]:
        from distributed import as_completed

        todo = make_chunks(list(sources), self.threads)
        todo.reverse()  # pop() from the end keeps key order
        max_inflight = 2 * self.threads
        inflight = {}
        ac = as_completed()

        def submit(chunk: list[Source]) -> None:
            fut = self.client.submit(self.chunk_fn, chunk, self.settings, self.out_root, self.decode_workers, pure=False)
            inflight[fut] = chunk
            ac.add(fut)

        while todo and len(inflight) < max_inflight:
            submit(todo.pop())
        while inflight:
            fut = next(ac)
            chunk = inflight.pop(fut)
            try:
                records = fut.result()
            except (OutputError, DeviceError):  # not the file's fault: every other task would fail alike
                self._stop = True
                raise
            except Exception as e:  # noqa: BLE001 - isolate the file(s) behind it
                if self._stop:
                    records = []  # stopping: whatever failed is simply not done; a later run resumes
                elif len(chunk) > 1:
                    half = len(chunk) // 2
                    todo += [chunk[half:], chunk[:half]]
                    records = []
                else:
                    records = self._failed(chunk, f"the Dask task for this file failed: {type(e).__name__}: {e}")
            if records:
                yield records
            while todo and not self._stop and len(inflight) < max_inflight:
                submit(todo.pop())
