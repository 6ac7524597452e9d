"""A whole ``arraymel corpus`` run: lock, manifest, resume, pipeline (or Dask), commits, summary.

Order of a run, and why:

1. OUT_DIR is created and locked (a second run on it stops here, status 1).
2. The manifest is opened; a configuration different from the one recorded is refused unless
   ``--force``.
3. Temporary files of an interrupted run are removed (safe: the lock is held).
4. Discovery; the output paths are checked (a file whose output cannot exist fails with the
   reason, before anything is computed); then resume: a file is skipped when its row is 'ok', its
   source size and mtime are unchanged, its config hash matches and its output exists with the
   recorded SHA-256. Rows whose source is gone are counted as orphaned (removed with --prune).
5. The rest goes through the pipeline (or Dask). Each group of finished files is made durable
   (directory fsync) and then committed in one transaction; a failed file's stale output, if
   any, is removed after the commit.
6. The run's row gets its counts; the summary is printed; the exit status is 0 (all ok),
   2 (some files failed) or 1 (the run could not proceed or was stopped: one line says why and
   where, a traceback only with --debug).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
from typing import Any

from arraymel.corpus.compute import DeviceError, resolve_device
from arraymel.corpus.discover import DiscoveryError, Source, default_include, from_list, gone, read_list, walk
from arraymel.corpus.formats import NpyStore, ShardedStore, part_ok, plan, shard_writer
from arraymel.corpus.manifest import FileRecord, Manifest, ManifestError
from arraymel.corpus.progress import Progress, format_summary
from arraymel.corpus.settings import CorpusSettings, describe_difference, versions
from arraymel.corpus.storage import (
    MANIFEST_NAME,
    Lock,
    OutputError,
    Writer,
    fsync_dir,
    output_rel,
    path_problems,
    prepare_out_dir,
    printable,
    remove_leftovers,
    sha256_file,
)

EXIT_OK, EXIT_FATAL, EXIT_FAILURES = 0, 1, 2


@dataclasses.dataclass
class RunOptions:
    in_dir: str
    out_dir: str
    settings: CorpusSettings
    include: tuple[str, ...] | None = None  # None: the defaults (with --files: no include filter)
    exclude: tuple[str, ...] = ()
    files_list: str | None = None
    workers: int | None = None  # CPU: worker processes; GPU: decoding threads; None: the CPUs available
    engine: str = "auto"  # "auto", "processes" (CPU), "decoders" (decode processes feeding a GPU or the stand-in;
    # the default there) or "threads" (the threaded pipeline)
    decode_workers: int | None = None  # "decoders": decode processes; None: the CPUs available less one
    force: bool = False
    verify: str = "sha256"
    max_failures: int | None = None
    dask: str | None = None
    prune: bool = False  # remove the outputs and rows of sources that are gone
    debug: bool = False  # let an unexpected error show its traceback
    quiet: bool = False
    progress_interval: float = 30.0
    nemo_manifest: bool = False  # --format npy: also write OUT_DIR/nemo_manifest.jsonl
    options: dict = dataclasses.field(default_factory=dict)


def _err(msg: str) -> None:
    print(f"arraymel corpus: error: {msg}", file=sys.stderr, flush=True)


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _verified(out_root: str, rec: tuple, verify: str) -> bool:
    _status, _size, _mtime, _hash, output, sha = rec
    path = os.path.join(out_root, *output.split("/"))
    try:
        if not os.path.isfile(path):
            return False
        return verify == "size" or sha256_file(path) == sha
    except OSError:
        return False


def plan_resume(sources: list[Source], rows: dict[str, tuple], settings: CorpusSettings, out_root: str, *,
                force: bool, verify: str, threads: int = 4, progress_note: bool = False) -> tuple[list[Source], list[Source]]:
    """(to_process, skipped): a source is skipped when its committed result is still valid."""
    if force:
        return list(sources), []
    h = settings.config_hash
    candidates = []
    for s in sources:
        r = rows.get(s.key)
        if r and r[0] == "ok" and r[1] == s.size and r[2] == s.mtime_ns and r[3] == h and r[4] == output_rel(s.key) and r[5]:
            candidates.append(s)
    ok = set()
    if len(candidates) >= 1000 and progress_note:
        print(f"arraymel corpus: checking the outputs of {len(candidates)} files done earlier (--verify {verify})",
              file=sys.stderr, flush=True)
    if candidates:
        with cf.ThreadPoolExecutor(threads) as ex:
            for s, good in zip(candidates, ex.map(lambda s: _verified(out_root, rows[s.key], verify), candidates)):
                if good:
                    ok.add(s.key)
    return [s for s in sources if s.key not in ok], [s for s in sources if s.key in ok]


def plan_shards(shard_plan, manifest: Manifest, settings: CorpusSettings, out_root: str, *, force: bool,
                verify: str) -> tuple[list[Source], list[Source]]:
    """(to_process, skipped) of a sharded format: a shard is kept (its files skipped) when its committed row has
    the same configuration and the same slots (keys, source sizes and mtimes) and its files are on disk as
    recorded; every file of any other shard is computed and the shard rewritten. Shards past the current
    count (the tree shrank) are forgotten and their files removed."""
    committed = manifest.shards()
    count = len(shard_plan.slots)
    gone_shards = sorted(k for k in committed if k >= count)
    if gone_shards:
        manifest.drop_shards(gone_shards)
        for k in gone_shards:
            for part in committed[k]["parts"]:
                try:
                    os.unlink(os.path.join(out_root, *part["path"].split("/")))
                except OSError:
                    pass
        for d in {os.path.dirname(os.path.join(out_root, *p["path"].split("/")))
                  for k in gone_shards for p in committed[k]["parts"]}:
            fsync_dir(d)
    manifest.set_meta({"shards_planned": str(count)})

    def keep(k: int) -> bool:
        row = committed.get(k)
        return (not force and row is not None and row["config_hash"] == settings.config_hash
                and row["slots_sha256"] == shard_plan.signatures[k] and row["format"] == settings.output_format
                and all(part_ok(out_root, p, verify) for p in row["parts"]))

    with cf.ThreadPoolExecutor(4) as ex:  # hashing the shards' files (hashlib releases the GIL)
        kept = list(ex.map(keep, range(count)))
    to_process, skipped = [], []
    for k, slot in enumerate(shard_plan.slots):
        (skipped if kept[k] else to_process).extend(slot)
    return to_process, skipped


def _check_config(manifest: Manifest, settings: CorpusSettings, force: bool) -> str | None:
    """None when the configuration may be used; else the refusal message."""
    old_hash = manifest.meta("config_hash")
    if old_hash is not None and old_hash != settings.config_hash and not force:
        try:
            diff = describe_difference(json.loads(manifest.meta("config") or "{}"), settings.canonical())
        except ValueError:
            diff = []
        detail = "".join(f"\n    {d}" for d in diff) or " (details unavailable)"
        return (f"OUT_DIR was made with a different configuration (config hash {old_hash[:12]}, now "
                f"{settings.config_hash[:12]}); differences:{detail}\n"
                "  Use the same options (the recorded one is in `arraymel corpus status OUT_DIR --json`, key mel_config), "
                "another OUT_DIR, or --force to recompute every file with the new configuration.")
    return None


class _Stopper:
    """SIGINT/SIGTERM: the first asks the run to stop cleanly; a second SIGINT aborts."""

    def __init__(self):
        self.target = None
        self.signalled: str | None = None
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signalled = signal.Signals(signum).name
        print(f"\narraymel corpus: {self.signalled}: stopping after the outputs being written "
              "(Ctrl-C again aborts; a later run resumes)", file=sys.stderr, flush=True)
        if self.target is not None:
            self.target.stop()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _missing_dependencies() -> str | None:
    missing = []
    for mod in ("soundfile", "soxr"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        return (f"arraymel corpus needs {' and '.join(missing)}: pip install 'arraymel[cli]' "
                "(soundfile with its bundled libsndfile, soxr, rich)")
    return None


def run(opts: RunOptions) -> int:
    """The whole run; its exit status. Whatever goes wrong ends with one line saying what and where (a
    traceback only with ``debug``)."""
    try:
        return _run(opts)
    except (OutputError, ManifestError) as e:
        _err(str(e))
        return EXIT_FATAL
    except Exception as e:  # noqa: BLE001 - a bug: one clear line, the traceback under --debug
        if opts.debug:
            raise
        _err(f"stopped by an unexpected error: {type(e).__name__}: {printable(str(e))} (--debug shows the traceback)")
        return EXIT_FATAL


def _run(opts: RunOptions) -> int:
    t0 = time.monotonic()
    settings = opts.settings
    problem = _missing_dependencies()
    if problem:
        _err(problem)
        return EXIT_FATAL
    in_real = os.path.realpath(opts.in_dir)
    if not os.path.isdir(in_real):
        _err(f"IN_DIR {printable(opts.in_dir)} is not a directory.")
        return EXIT_FATAL
    if in_real == os.path.realpath(opts.out_dir):
        _err("IN_DIR and OUT_DIR are the same directory; use a separate OUT_DIR.")
        return EXIT_FATAL
    out_root = prepare_out_dir(opts.out_dir)
    if in_real == out_root:
        _err("IN_DIR and OUT_DIR are the same directory; use a separate OUT_DIR.")
        return EXIT_FATAL
    lock = Lock(out_root).acquire()
    try:
        return _run_locked(opts, settings, out_root, t0)
    except KeyboardInterrupt:
        _err("interrupted; nothing of this run was committed after that point, and a later run resumes")
        return EXIT_FATAL
    finally:
        lock.release()


def _run_locked(opts: RunOptions, settings: CorpusSettings, out_root: str, t0: float) -> int:
    manifest = Manifest(os.path.join(out_root, MANIFEST_NAME))
    try:
        return _run_with_manifest(opts, settings, out_root, manifest, t0)
    finally:
        manifest.close()


def _run_with_manifest(opts: RunOptions, settings: CorpusSettings, out_root: str, manifest: Manifest, t0: float) -> int:
    refusal = _check_config(manifest, settings, opts.force)
    if refusal:
        _err(refusal)
        return EXIT_FATAL
    if manifest.meta("config_hash") != settings.config_hash:
        manifest.set_meta({"config_hash": settings.config_hash, "config": settings.canonical_json(),
                           "mel_config": json.dumps(settings.mel_config_dict(), sort_keys=True)})
    leftovers = remove_leftovers(out_root)

    # the engine first: worker processes start and warm up while the files are discovered and verified
    writer = Writer(out_root, stage=settings.sharded)  # sharded formats: outputs go to the runner, not to files
    try:
        engine, device, mode = _engine(opts, settings, out_root, writer)
    except (DeviceError, ValueError) as e:
        _err(str(e))
        return EXIT_FATAL
    except Exception as e:  # noqa: BLE001 - e.g. a Dask scheduler that cannot be reached
        if opts.debug:
            raise
        _err(f"cannot start the {'Dask ' if opts.dask else ''}engine: {type(e).__name__}: {e}")
        return EXIT_FATAL

    try:
        return _run_engine(opts, settings, out_root, manifest, t0, engine, writer, device, mode, leftovers)
    finally:
        if hasattr(engine, "close"):
            engine.close()


def _run_engine(opts: RunOptions, settings: CorpusSettings, out_root: str, manifest: Manifest, t0: float, engine: Any,
                writer: Writer, device: str, mode: str, leftovers: list[str]) -> int:
    # discovery
    try:
        if opts.files_list is not None:
            found = from_list(opts.in_dir, read_list(opts.files_list), opts.include, opts.exclude)
        else:
            include = opts.include if opts.include is not None else default_include()
            found = walk(opts.in_dir, out_root, include, opts.exclude)
    except DiscoveryError as e:
        _err(str(e))
        return EXIT_FATAL
    # sharded formats: no output path per file (a key only becomes a member id in a shard)
    blocked = {} if settings.sharded else path_problems([s.key for s in found.sources], out_root)
    sources = [s for s in found.sources if s.key not in blocked]
    refused = [FileRecord(key=s.key, status="failed", error=blocked[s.key], source_size=s.size, source_mtime_ns=s.mtime_ns,
                          config_hash=settings.config_hash) for s in found.sources if s.key in blocked]
    refused += [FileRecord(key=k, status="failed", error=why, config_hash=settings.config_hash) for k, why in found.missing]
    rows = manifest.resume_rows()
    if settings.sharded:
        shard_plan = plan(sources, settings.shard_size)
        to_process, skipped = plan_shards(shard_plan, manifest, settings, out_root, force=opts.force, verify=opts.verify)
        store: Any = ShardedStore(manifest, shard_writer(settings, out_root, os.path.realpath(opts.in_dir)),
                                  shard_plan, out_root, settings)
    else:
        to_process, skipped = plan_resume(sources, rows, settings, out_root,
                                          force=opts.force, verify=opts.verify, progress_note=not opts.quiet)
        store = NpyStore(manifest, writer, out_root, os.path.realpath(opts.in_dir), nemo_manifest=opts.nemo_manifest)
    skipped_audio = _recorded_audio(manifest, skipped)
    discovered_keys = {s.key for s in found.sources} | {k for k, _ in found.missing}
    orphans = gone([k for k in rows if k not in discovered_keys], opts.in_dir)
    pruned = _prune(manifest, writer, orphans) if opts.prune else 0

    run_id = manifest.start_run(options=opts.options, host=socket.gethostname(), pid=os.getpid(),
                                config_hash=settings.config_hash,
                                versions=json.dumps(versions(), sort_keys=True), mode=mode,
                                in_dir=os.path.realpath(opts.in_dir), unlisted=found.unlisted)
    counts = {"ok": 0, "failed": 0, "audio_seconds": 0.0}
    failures: list[tuple[str, str]] = []
    state, message, fatal = "finished", None, False

    store.run_id = run_id

    def commit(group: list[FileRecord]) -> None:
        writer.attach(group)  # sharded formats: each ok record gets its output's bytes
        store.commit(group)  # durable (fsync, rename, directory fsync), then recorded in the manifest

    mode_p = Progress.choose_mode(opts.quiet)
    try:
        with _Stopper() as stopper, Progress(len(to_process) + len(refused), mode=mode_p,
                                              interval=opts.progress_interval) as progress:
            stopper.target = engine
            groups = engine.run(to_process)
            if refused:
                groups = _chain([refused], groups)
            for group in groups:
                commit(group)
                n_ok = [r for r in group if r.status == "ok"]
                n_failed = [r for r in group if r.status == "failed"]
                counts["ok"] += len(n_ok)
                counts["failed"] += len(n_failed)
                secs = sum(r.duration_s or 0.0 for r in n_ok)
                counts["audio_seconds"] += secs
                failures += [(r.key, r.error or "") for r in n_failed]
                progress.update(len(group), secs, len(n_failed))
                if opts.max_failures is not None and counts["failed"] > opts.max_failures and state == "finished":
                    state = "stopped"
                    message = (f"stopped: {counts['failed']} files failed, more than --max-failures {opts.max_failures}; "
                               "a later run resumes (failed files are retried)")
                    engine.stop()
            if stopper.signalled and state == "finished":
                state = "interrupted"
                message = f"interrupted by {stopper.signalled}; a later run resumes where this one stopped"
    except (OutputError, DeviceError, ManifestError) as e:
        state, message, fatal = "stopped", f"stopped: {e}", True
    except sqlite3.Error as e:
        state, message, fatal = "stopped", f"stopped: the manifest {manifest.path} cannot be used: {e}", True
    except KeyboardInterrupt:
        state, message, fatal = "interrupted", "aborted by a second Ctrl-C; a later run resumes", True
        if hasattr(engine, "abort"):
            engine.abort()
    except Exception as e:  # noqa: BLE001 - a bug or a dead cluster: keep what is committed, say what happened
        if opts.debug:
            traceback.print_exc()
        state, message, fatal = "stopped", f"stopped by an unexpected error: {type(e).__name__}: {printable(str(e))}", True

    store.close()
    writer.discard_staged()
    if not fatal:
        try:
            store.finish()  # the indexes over all committed outputs (feats.scp, nemo_manifest.jsonl)
        except (OutputError, ManifestError, sqlite3.Error) as e:
            state, message, fatal = "stopped", f"stopped: {e}", True
    wall = time.monotonic() - t0
    discovered = len(found.sources) + len(found.missing)
    if orphans and not opts.prune:
        orphan_note = (f"{len(orphans)} output(s) in OUT_DIR whose source is gone (orphaned); `arraymel corpus IN_DIR "
                       "OUT_DIR --prune` removes them")
    else:
        orphan_note = f"removed {pruned} output(s) whose source is gone (--prune)" if pruned else None
    summary = {
        "in_dir": opts.in_dir, "out_dir": opts.out_dir, "discovered": discovered, "ok": counts["ok"],
        "failed": counts["failed"], "skipped": len(skipped),
        "not_processed": discovered - counts["ok"] - counts["failed"] - len(skipped),
        "audio_seconds": counts["audio_seconds"], "skipped_audio_seconds": skipped_audio, "wall_seconds": wall,
        "device": device, "leftovers": len(leftovers), "not_followed": found.not_followed, "unlisted": found.unlisted,
        "failures": sorted(failures), "message": message, "crashes": getattr(engine, "crashes", 0),
        "orphans": orphan_note,
    }
    try:
        manifest.finish_run(run_id, state=state, counts=summary, message=message)
    except ManifestError as e:  # e.g. the disk is still full: say it, the next run marks this one interrupted
        fatal = True
        message = f"{message + '; ' if message else ''}the run could not be marked {state} in the manifest: {e}"
        summary["message"] = message
    if not opts.quiet:
        print(format_summary(summary), flush=True)
    elif message:
        _err(message)
    if state != "finished" or fatal:
        if opts.quiet is False and message and fatal:
            print(f"arraymel corpus: {message}", file=sys.stderr, flush=True)
        return EXIT_FATAL
    # a file that failed inside a shard kept from an earlier run is not retried, but it has no output either
    kept_failed = settings.sharded and any(rows.get(x.key, ("",))[0] == "failed" for x in skipped)
    if counts["failed"] or found.unlisted or kept_failed:
        return EXIT_FAILURES
    return EXIT_OK


def _engine(opts: RunOptions, settings: CorpusSettings, out_root: str, writer: Writer):
    """(engine, device description, mode) for this run."""
    if opts.dask:
        from arraymel.corpus.dask_runner import DaskEngine

        engine = DaskEngine(opts.dask, settings, out_root, decode_workers=opts.workers)
        return engine, engine.device, f"dask {opts.dask}"
    device = resolve_device(settings.device)
    workers = opts.workers or _cpu_count()
    kind = opts.engine
    if kind == "auto":
        kind = "processes" if device == "cpu" else "decoders"
    if kind == "decoders":
        from arraymel.corpus.compute import make_computer
        from arraymel.corpus.decoders import DecoderEngine

        engine = DecoderEngine(settings, out_root, computer=make_computer(settings, device),
                               decode_workers=opts.decode_workers)
        return engine, engine.device, "local decode processes"
    if kind == "processes":
        if device != "cpu":
            raise ValueError("the process engine computes on the CPU only")
        from arraymel.corpus.local import ProcessEngine

        engine = ProcessEngine(settings, out_root, workers=workers)
        return engine, engine.device, "local processes"
    from arraymel.corpus.compute import make_computer
    from arraymel.corpus.pipeline import Pipeline

    computer = make_computer(settings, device)
    return Pipeline(settings, writer, decode_workers=workers, computer=computer), device, "local threads"


def _prune(manifest: Manifest, writer: Writer, keys: list[str]) -> int:
    """Remove the outputs and rows of sources that are gone (``--prune``): outputs first, so that a crash in
    between leaves rows whose source is gone (found again by the next --prune, whose removal of an output
    that is already gone is a no-op), never outputs without a row, which nothing would find."""
    for k in keys:
        writer.remove(k)
    manifest.delete(keys)
    return len(keys)


def _chain(first: list, rest):
    yield from first
    yield from rest


def _recorded_audio(manifest: Manifest, skipped: list[Source]) -> float:
    if not skipped:
        return 0.0
    keys = {s.key for s in skipped}
    total = 0.0
    for key, dur in manifest.db.execute("SELECT key, duration_s FROM files WHERE status = 'ok'"):
        if key in keys and dur:
            total += dur
    return total
