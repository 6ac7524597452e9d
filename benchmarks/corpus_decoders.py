"""The device engine (decode processes + shared memory) against decoding alone, with the same processes.

    python benchmarks/corpus_decoders.py [--files 600] [--workers 1 2] [--reps 3] [--format flac]

A generated tree of 10 s, 16 kHz mono files (8 distinct signals, copied). Two things, interleaved
A B A B in one process so that the machine's load falls on both alike:

- **decode only**: N processes (fork) decode every file (``arraymel.corpus.decode.decode``, the
  engine's own decoder) in tasks of the engine's size and discard the audio;
- **engine**: a whole ``arraymel corpus`` run (discovery, manifest, commits) with ``--engine decoders
  --device stand-in`` (the GPU's batch sizes and time at 1,400 audio-hours/s) and N decode processes,
  writes on (serialize, SHA-256, fsync, rename), into a fresh OUT_DIR each time.

Reported per N: files/s of each (median and range), their ratio, and the driving process's CPU time
per file during the engine's run (all its threads: an upper bound of the time it holds its GIL), and
the CPU time per file of the decode processes in each (load-independent: on a busy machine the
files/s of both move with the load, their CPU per file does not).
Prints a Markdown table and, with ``--json PATH``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time


def make_tree(root: str, files: int, fmt: str) -> None:
    import numpy as np
    import soundfile as sf

    src = os.path.join(root, "_src")
    os.makedirs(src, exist_ok=True)
    ext = {"flac": ".flac", "wav": ".wav", "ogg": ".ogg"}[fmt]
    sub = {"flac": "PCM_16", "wav": "PCM_16", "ogg": "VORBIS"}[fmt]
    for i in range(8):
        rng = np.random.default_rng(i)
        t = np.arange(160000) / 16000
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(os.path.join(src, f"{i}{ext}"), x.astype(np.float32), 16000, subtype=sub)
    tree = os.path.join(root, "in")
    for j in range(files):
        d = os.path.join(tree, f"d{j % 20:02d}")
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(src, f"{j % 8}{ext}"), os.path.join(d, f"f{j:05d}{ext}"))


_SETTINGS = None


def _decode_task(sources) -> int:
    from arraymel.corpus.decode import decode

    n = 0
    for s in sources:
        n += decode(s, _SETTINGS).audio.shape[-1]
    return n


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def decode_only(sources, settings, workers: int) -> tuple[float, float]:
    """(seconds, CPU seconds of the processes) to decode every source with ``workers`` forked processes, in
    tasks of the engine's size."""
    from arraymel.corpus.decoders import TASK_FILES

    global _SETTINGS
    _SETTINGS = settings
    tasks = [sources[i:i + TASK_FILES] for i in range(0, len(sources), TASK_FILES)]
    ctx = multiprocessing.get_context("fork")
    c0 = _children_cpu()
    pool = ctx.Pool(workers)
    t = time.perf_counter()
    total = sum(pool.imap_unordered(_decode_task, tasks))
    wall = time.perf_counter() - t
    pool.close()
    pool.join()
    assert total == len(sources) * 160000
    return wall, _children_cpu() - c0


def engine_run(in_dir: str, out_dir: str, settings, workers: int) -> tuple[float, float, float, int]:
    """(seconds of the whole run, CPU seconds of this process during it, of its decode processes, files ok)."""
    from arraymel.corpus.runner import RunOptions, run

    shutil.rmtree(out_dir, ignore_errors=True)
    opts = RunOptions(in_dir=in_dir, out_dir=out_dir, settings=settings, engine="decoders", decode_workers=workers,
                      quiet=True)
    c0, k0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
    rc = run(opts)
    wall, cpu, kids = time.perf_counter() - t0, time.process_time() - c0, _children_cpu() - k0
    assert rc == 0, rc
    import sqlite3

    db = sqlite3.connect(os.path.join(out_dir, "manifest.sqlite"))
    ok = db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]
    db.close()
    return wall, cpu, kids, ok


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_roles(in_dir: str, out_dir: str, settings, workers: int) -> dict:
    """The engine alone (no runner: no manifest, no discovery), CPU per file of each role: the decode
    processes, the writer process, the driver (all its threads)."""
    from arraymel.corpus.compute import make_computer
    from arraymel.corpus.decoders import DecoderEngine
    from arraymel.corpus.discover import default_include, walk
    from arraymel.corpus.storage import fsync_dir

    shutil.rmtree(out_dir, ignore_errors=True)
    sources = walk(in_dir, out_dir, default_include(), ()).sources
    engine = DecoderEngine(settings, out_dir, computer=make_computer(settings), decode_workers=workers)
    ok = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for group in engine.run(sources):
        for d in sorted({d for r in group for d in r.sync_dirs}):
            fsync_dir(d)
        ok += sum(r.status == "ok" for r in group)
    wall, driver = time.perf_counter() - t0, time.process_time() - c0
    procs = list(engine._procs)
    dec = sum(_proc_cpu(p.process.pid) for p in procs if not p.writer)
    wri = sum(_proc_cpu(p.process.pid) for p in procs if p.writer)
    engine.close()
    assert ok == len(sources) and engine.crashes == 0
    return dict(files_s=ok / wall, decode_ms=dec / ok * 1e3, writer_ms=wri / ok * 1e3, driver_ms=driver / ok * 1e3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--format", choices=("flac", "wav", "ogg"), default="flac")
    ap.add_argument("--rate", type=float, default=1400.0, help="the stand-in's audio-hours/s")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--out-root", metavar="DIR", help="where the engine's OUT_DIR goes (default: beside the tree; "
                                                      "/dev/shm: writes without a disk's fsync cost)")
    args = ap.parse_args(argv)

    from arraymel.corpus.discover import default_include, walk
    from arraymel.corpus.settings import CorpusSettings

    root = tempfile.mkdtemp(prefix="arraymel-decoders-")
    try:
        make_tree(root, args.files, args.format)
        in_dir = os.path.join(root, "in")
        settings = CorpusSettings.create({}, device=f"stand-in:{args.rate:g}")
        sources = walk(in_dir, os.path.join(root, "out"), default_include(), ()).sources
        load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
        out_dir = os.path.join(args.out_root or root, f"arraymel-decoders-out-{os.getpid()}")
        rows = []
        for n in args.workers:
            dec, eng, cpu, dec_cpu, eng_cpu, roles = [], [], [], [], [], []
            for _ in range(args.reps):  # interleaved: A B A B
                wall, kids = decode_only(sources, settings, n)
                dec.append(len(sources) / wall)
                dec_cpu.append(kids / len(sources) * 1e3)
                wall, c, kids, ok = engine_run(in_dir, out_dir, settings, n)
                assert ok == len(sources)
                eng.append(ok / wall)
                cpu.append(c / ok * 1e3)
                eng_cpu.append(kids / ok * 1e3)
                roles.append(engine_roles(in_dir, out_dir, settings, n))
            rows.append(dict(workers=n, decode_only_files_s=statistics.median(dec), decode_only_range=[min(dec), max(dec)],
                             engine_files_s=statistics.median(eng), engine_range=[min(eng), max(eng)],
                             ratio=statistics.median(eng) / statistics.median(dec),
                             parent_cpu_ms_per_file=statistics.median(cpu),
                             decode_only_cpu_ms_per_file=statistics.median(dec_cpu),
                             engine_decoders_cpu_ms_per_file=statistics.median(eng_cpu),
                             engine_alone={k: statistics.median(r[k] for r in roles) for k in roles[0]}))
        load_after = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if args.out_root:
            shutil.rmtree(out_dir, ignore_errors=True)
    cmd = "python benchmarks/corpus_decoders.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n{args.files} x 10 s {args.format.upper()} 16 kHz mono; stand-in at {args.rate:g} audio-h/s; "
          f"OUT_DIR on {'tmpfs' if (args.out_root or '').startswith('/dev/shm') else 'the tree disk'}; "
          f"{args.reps} interleaved reps; load average before {' '.join(load)}, after {' '.join(load_after)}")
    print(f"command: {cmd.strip()}\n")
    print("| decode processes | decode only, files/s (range) | engine with writes, files/s (range) | engine / decode "
          "only | CPU per file: decoding alone | CPU per file: the engine's processes (decode processes + writer) | "
          "CPU per file: the driver |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['decode_only_files_s']:.0f} ({r['decode_only_range'][0]:.0f}-"
              f"{r['decode_only_range'][1]:.0f}) | {r['engine_files_s']:.0f} ({r['engine_range'][0]:.0f}-"
              f"{r['engine_range'][1]:.0f}) | {100 * r['ratio']:.0f}% | {r['decode_only_cpu_ms_per_file']:.2f} ms | "
              f"{r['engine_decoders_cpu_ms_per_file']:.2f} ms | {r['parent_cpu_ms_per_file']:.3f} ms |")
    print("\nThe engine alone (no runner), CPU per file of each role (medians):\n")
    print("| decode processes | files/s | decode processes | writer process | driver (all threads) | "
          "decode processes vs decoding alone |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        e = r["engine_alone"]
        print(f"| {r['workers']} | {e['files_s']:.0f} | {e['decode_ms']:.2f} ms | {e['writer_ms']:.2f} ms | "
              f"{e['driver_ms']:.3f} ms | +{100 * (e['decode_ms'] / r['decode_only_cpu_ms_per_file'] - 1):.0f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, files=args.files, format=args.format, rate=args.rate, load_before=load,
                           load_after=load_after, command=cmd.strip()), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
