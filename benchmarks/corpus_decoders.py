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
per file during the engine's run (all its threads: an upper bound of the time it holds its GIL).
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


def decode_only(sources, settings, workers: int) -> float:
    """Seconds to decode every source with ``workers`` forked processes, tasks of the engine's size."""
    from arraymel.corpus.decoders import TASK_FILES

    global _SETTINGS
    _SETTINGS = settings
    tasks = [sources[i:i + TASK_FILES] for i in range(0, len(sources), TASK_FILES)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        pool.map(_decode_task, tasks[:workers])  # started and warm
        t = time.perf_counter()
        total = sum(pool.imap_unordered(_decode_task, tasks))
        wall = time.perf_counter() - t
    assert total == len(sources) * 160000
    return wall


def engine_run(in_dir: str, out_dir: str, settings, workers: int) -> tuple[float, float, int]:
    """(seconds of the whole run, CPU seconds of this process during it, files ok)."""
    from arraymel.corpus.runner import RunOptions, run

    shutil.rmtree(out_dir, ignore_errors=True)
    opts = RunOptions(in_dir=in_dir, out_dir=out_dir, settings=settings, engine="decoders", decode_workers=workers,
                      quiet=True)
    c0, t0 = time.process_time(), time.perf_counter()
    rc = run(opts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert rc == 0, rc
    import sqlite3

    db = sqlite3.connect(os.path.join(out_dir, "manifest.sqlite"))
    ok = db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]
    db.close()
    return wall, cpu, ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--format", choices=("flac", "wav", "ogg"), default="flac")
    ap.add_argument("--rate", type=float, default=1400.0, help="the stand-in's audio-hours/s")
    ap.add_argument("--json", metavar="PATH")
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
        rows = []
        for n in args.workers:
            dec, eng, cpu = [], [], []
            for _ in range(args.reps):  # interleaved: A B A B
                dec.append(len(sources) / decode_only(sources, settings, n))
                wall, c, ok = engine_run(in_dir, os.path.join(root, "out"), settings, n)
                assert ok == len(sources)
                eng.append(ok / wall)
                cpu.append(c / ok * 1e3)
            rows.append(dict(workers=n, decode_only_files_s=statistics.median(dec), decode_only_range=[min(dec), max(dec)],
                             engine_files_s=statistics.median(eng), engine_range=[min(eng), max(eng)],
                             ratio=statistics.median(eng) / statistics.median(dec),
                             parent_cpu_ms_per_file=statistics.median(cpu)))
        load_after = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cmd = "python benchmarks/corpus_decoders.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n{args.files} x 10 s {args.format.upper()} 16 kHz mono; stand-in at {args.rate:g} audio-h/s; "
          f"{args.reps} interleaved reps; load average before {' '.join(load)}, after {' '.join(load_after)}")
    print(f"command: {cmd.strip()}\n")
    print("| decode processes | decode only, files/s (range) | engine with writes, files/s (range) | engine / decode "
          "only | driver CPU per file |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['decode_only_files_s']:.0f} ({r['decode_only_range'][0]:.0f}-"
              f"{r['decode_only_range'][1]:.0f}) | {r['engine_files_s']:.0f} ({r['engine_range'][0]:.0f}-"
              f"{r['engine_range'][1]:.0f}) | {100 * r['ratio']:.0f}% | {r['parent_cpu_ms_per_file']:.3f} ms |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, files=args.files, format=args.format, rate=args.rate, load_before=load,
                           load_after=load_after, command=cmd.strip()), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
