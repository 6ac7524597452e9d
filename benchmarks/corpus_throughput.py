"""Throughput of ``arraymel corpus`` on the CPU: the whole pipeline beside decode-only and compute-only.

Generates (once, cached in --workdir) a corpus of 16 kHz mono speech-like files of 2-20 s
(uniformly random lengths, LibriSpeech-like) totalling at least --hours of audio, then measures:

- decode-only: the pipeline's decode stage alone (the same thread pool and worker count,
  soundfile + checks), every file, outputs discarded;
- compute-only: the batching + mel computation alone, on audio already in memory (the same
  buckets and batch size), no writes; measured both as the library's own multi-threaded path in
  one process and as one single-threaded process per CPU (what the pipeline does on the CPU), and
  the faster of the two is the reference;
- write-only: writing every output (zeros of the right shape) as the pipeline does: serialize,
  SHA-256, temporary file, fsync, rename, directory fsync, on a thread pool;
- pipeline: the real command, ``python -m arraymel.cli corpus CORPUS OUT --device cpu``, in a fresh
  process, into an empty OUT_DIR (discovery, decoding, compute, atomic fsynced writes, manifest
  commits), wall time including Python's start-up; and the same command on an empty corpus (the
  fixed cost: interpreter, imports, worker processes, manifest), so that the steady-state rate of a
  long run, ``hours / (pipeline - fixed)``, is shown too.

On a machine where decoding, computing and writing share the same cores, a pipeline cannot beat
the "shared-CPU bound" ``1 / (1/decode + 1/compute [+ 1/write])`` (each stage measured with every
core); it is printed beside the figures.

    python benchmarks/corpus_throughput.py --hours 1 --format flac
    python benchmarks/corpus_throughput.py --hours 1 --format wav --repeat 3

``--formats`` measures the storage formats and Lhotse instead, on --files short files (1-6 s, 16 kHz
WAV), every round running each contender once, in a fresh process, in this order: ``--format npy``,
``--format shar``, ``--format kaldi``, then Lhotse's own extraction (``RecordingSet.from_dir``,
``CutSet.compute_and_store_features`` with its ``Fbank``, 80 bins, dither 0, into its default
``LilcomChunkyWriter``, one process per CPU with torch at one thread each, as icefall runs it), with the
same framing for arraymel (25 ms windows in a 512-point FFT, 10 ms hop, 80 mels); then reading the Shar
output back, ``arraymel.corpus.open`` against ``CutSet.from_shar`` + ``load_features``, alternated.
Medians and ranges over the rounds:

    python benchmarks/corpus_throughput.py --formats --files 2500 --repeat 5
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

SR = 16000


def make_corpus(root: str, hours: float, fmt: str, seed: int = 0) -> float:
    """Write the corpus (reused when present with the same parameters); its audio seconds."""
    import soundfile as sf

    stamp = os.path.join(root, f".corpus-{fmt}-{hours}-{seed}.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            return json.load(f)["seconds"]
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = np.random.default_rng(seed)
    subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}[fmt]
    total, i = 0.0, 0
    while total < hours * 3600:
        secs = float(rng.uniform(2.0, 20.0))
        n = int(secs * SR)
        t = np.arange(n) / SR
        f0 = rng.uniform(80, 300)
        x = 0.2 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(n)
        d = os.path.join(root, f"spk{i % 40:02d}")
        os.makedirs(d, exist_ok=True)
        sf.write(os.path.join(d, f"utt{i:05d}.{fmt}"), x.astype(np.float32), SR, subtype=subtype)
        total += n / SR
        i += 1
    with open(stamp, "w") as f:
        json.dump({"seconds": total, "files": i}, f)
    return total


def sources(root: str):
    from arraymel.corpus.discover import default_include, walk

    return walk(root, None, default_include(), ()).sources


def decode_only(srcs, settings, workers: int) -> float:
    from arraymel.corpus.decode import decode

    t = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as ex:
        for _ in ex.map(lambda s: decode(s, settings).length, srcs):
            pass
    return time.perf_counter() - t


def compute_only(items, settings) -> float:
    from arraymel.corpus.compute import Computer
    from arraymel.corpus.pipeline import Pipeline
    from arraymel.corpus.storage import Writer

    computer = Computer(settings)
    with tempfile.TemporaryDirectory() as tmp:
        bucketer = Pipeline(settings, Writer(tmp), computer=computer).bucketer  # the pipeline's batching
    t = time.perf_counter()
    n = 0
    for it in items:
        for b in bucketer.add(it):
            n += len(computer(b))
    for b in bucketer.drain():
        n += len(computer(b))
    assert n == len(items)
    return time.perf_counter() - t


def pipeline(root: str, out: str, settings, workers: int, engine: str = "auto") -> tuple[float, int]:
    """Wall time of the real command, ``python -m arraymel.cli corpus ROOT OUT``, in a fresh process."""
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "arraymel.cli", "corpus", root, out, "--device", "cpu", "--workers", str(workers), "-q"]
    if engine != "auto":  # the threaded engine on the CPU: only reachable through the Python API
        code = ("import sys; from arraymel.corpus.runner import RunOptions, run; "
                "from arraymel.corpus.settings import CorpusSettings; "
                f"sys.exit(run(RunOptions(in_dir={root!r}, out_dir={out!r}, workers={workers}, quiet=True, "
                f"engine={engine!r}, settings=CorpusSettings.create({{}}, device='cpu'))))")
        cmd = [sys.executable, "-c", code]
    t = time.perf_counter()
    rc = subprocess.run(cmd, env=env).returncode
    return time.perf_counter() - t, rc


def write_only(items, settings, out: str, workers: int) -> float:
    """Writing every output alone: serialize, SHA-256, temporary file, fsync, rename, directory fsync."""
    import hashlib

    from arraymel.corpus.storage import Writer, fsync_dir, serialize

    cfg = settings.mel
    arrays = [(it.source.key, np.zeros((cfg.num_mel_bins, cfg.n_frames(it.length)), np.float32)) for it in items]
    shutil.rmtree(out, ignore_errors=True)
    w = Writer(out)

    def one(pair):
        data = serialize(pair[1])
        hashlib.sha256(data).hexdigest()
        return w.write(pair[0], data)[1]

    t = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as ex:
        dirs = {d for ds in ex.map(one, arrays) for d in ds}
    for d in dirs:
        fsync_dir(d)
    dt = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return dt


_BARRIER = None


def _set_barrier(b) -> None:
    global _BARRIER
    _BARRIER = b
    os.environ["ARRAYMEL_NUM_THREADS"] = "1"


def _compute_part(srcs, settings):
    from arraymel.corpus.decode import decode

    items = [decode(s, settings) for s in srcs]
    compute_only(items[:3], settings)  # warm the library's state in this process
    _BARRIER.wait()
    t0 = time.time()
    compute_only(items, settings)
    return t0, time.time()


def compute_only_processes(srcs, settings, workers: int) -> float:
    """The same compute, one single-threaded process per CPU, each on its share of the (decoded) files."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    shares = [srcs[i::workers] for i in range(workers)]
    with ctx.Pool(workers, initializer=_set_barrier, initargs=(barrier,)) as pool:
        spans = pool.starmap(_compute_part, [(sh, settings) for sh in shares])
    return max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)


def make_short_corpus(root: str, files: int, seed: int = 1) -> float:
    """--files WAV files of 1-6 s (reused when present); their audio seconds."""
    import soundfile as sf

    stamp = os.path.join(root, f".short-{files}-{seed}.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            return json.load(f)["seconds"]
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(files):
        n = int(rng.uniform(1.0, 6.0) * SR)
        t = np.arange(n) / SR
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(80, 300) * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(n)
        d = os.path.join(root, f"spk{i % 40:02d}")
        os.makedirs(d, exist_ok=True)
        sf.write(os.path.join(d, f"utt{i:05d}.wav"), x.astype(np.float32), SR, subtype="PCM_16")
        total += n / SR
    with open(stamp, "w") as f:
        json.dump({"seconds": total, "files": files}, f)
    return total


#: arraymel's framing matched to Lhotse's Fbank defaults (25 ms window, 10 ms shift at 16 kHz, 80 bins)
FBANK_LIKE = ["--fft-length", "512", "--sequence-length", "400", "--sequence-stride", "160", "--num-mel-bins", "80"]

_LHOTSE = """
import sys, time, multiprocessing, concurrent.futures as cf
def one_thread():
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    from lhotse import CutSet, Fbank, FbankConfig, RecordingSet
    root, out, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    recs = RecordingSet.from_dir(root, "*.wav", num_jobs=jobs)
    cuts = CutSet.from_manifests(recordings=recs)
    ex = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=one_thread)
    with ex:
        cuts = cuts.compute_and_store_features(extractor=Fbank(FbankConfig(num_mel_bins=80, dither=0.0)),
                                               storage_path=out + "/feats", num_jobs=jobs, executor=ex)
    cuts.to_file(out + "/cuts.jsonl.gz")
"""


def _run(cmd: list[str], out: str) -> float:
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return dt


def formats_main(args) -> int:
    """npy / shar / kaldi / Lhotse, interleaved rounds; then reading Shar (see the module docstring)."""
    import statistics

    root = os.path.join(args.workdir, f"short-{args.files}")
    seconds = make_short_corpus(root, args.files)
    hours = seconds / 3600
    workers = args.decode_workers or len(os.sched_getaffinity(0))
    all_names = ("npy", "shar", "kaldi", "shar-fbank80", "lhotse")
    outs = {name: os.path.join(args.workdir, f"out-{name}") for name in all_names}
    ours = [sys.executable, "-m", "arraymel.cli", "corpus", root]
    # the formats at the command's defaults (Keras: 2048-point FFT, hop 512, 128 mels); and Shar with Lhotse's framing
    cmds = {name: [*ours, outs[name], "-q", "--device", "cpu", "--workers", str(workers), "--format", name]
            for name in ("npy", "shar", "kaldi")}
    cmds["shar-fbank80"] = [*ours, outs["shar-fbank80"], "-q", "--device", "cpu", "--workers", str(workers), *FBANK_LIKE,
                            "--format", "shar"]
    script = os.path.join(args.workdir, "lhotse_extract.py")  # a file: spawned workers re-import __main__
    with open(script, "w") as f:
        f.write(_LHOTSE)
    cmds["lhotse"] = [sys.executable, script, root, outs["lhotse"], str(workers)]
    names = [n for n in all_names if n not in args.skip]
    times: dict[str, list[float]] = {n: [] for n in names}
    loads = []
    for r in range(args.repeat):
        loads.append(os.getloadavg()[0])
        for n in names:
            times[n].append(_run(cmds[n], outs[n]))
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names) + f"; load {loads[-1]:.2f}",
              file=sys.stderr, flush=True)
    # reading the Shar output (Lhotse's framing): ours vs Lhotse's, alternated
    if "shar-fbank80" not in names:
        _run(cmds["shar-fbank80"], outs["shar-fbank80"])
    outs["shar"] = outs["shar-fbank80"]
    import arraymel.corpus

    def read_ours() -> int:
        c = arraymel.corpus.open(outs["shar"])
        return sum(int(c[k].shape[1]) for k in c)

    from lhotse import CutSet  # imported before the clock starts (about 2 s of imports)

    def read_lhotse() -> int:
        return sum(int(cut.load_features().shape[0]) for cut in CutSet.from_shar(in_dir=os.path.join(outs["shar"], "shar")))

    reads: dict[str, list[float]] = {"arraymel.corpus.open": [], "CutSet.from_shar + load_features": []}
    for _ in range(args.repeat):
        frames = []
        for name, fn in (("arraymel.corpus.open", read_ours), ("CutSet.from_shar + load_features", read_lhotse)):
            t = time.perf_counter()
            frames.append(fn())
            reads[name].append(time.perf_counter() - t)
        assert frames[0] == frames[1], frames
    load_after = os.getloadavg()

    def summary(ts: list[float]) -> dict:
        med = statistics.median(ts)
        return {"median_s": round(med, 3), "min_s": round(min(ts), 3), "max_s": round(max(ts), 3),
                "files_per_s": round(args.files / med, 1), "files_per_s_range": [round(args.files / max(ts), 1),
                                                                                 round(args.files / min(ts), 1)],
                "audio_hours_per_s": round(hours / med, 4)}

    res = {"corpus": {"files": args.files, "audio_hours": round(hours, 3), "seconds_per_file": "1-6", "format": "wav"},
           "cpus": len(os.sched_getaffinity(0)), "workers": workers, "rounds": args.repeat,
           "load_average_at_rounds": [round(x, 2) for x in loads], "load_average_after": [round(x, 2) for x in load_after],
           "write": {n: summary(times[n]) for n in names}, "read_shar": {n: summary(v) for n, v in reads.items()}}
    w = res["write"]
    if "npy" in w:
        for n in ("shar", "kaldi"):
            if n in names:
                res["write"][n]["files_per_s_vs_npy"] = round(statistics.median(
                    [a / b for a, b in zip(times["npy"], times[n])]), 3)
    if "lhotse" in w and "shar-fbank80" in w:
        res["write"]["shar-fbank80"]["files_per_s_vs_lhotse"] = round(statistics.median(
            [a / b for a, b in zip(times["lhotse"], times["shar-fbank80"])]), 3)
    r = res["read_shar"]
    res["read_shar"]["ours_vs_lhotse"] = round(r["CutSet.from_shar + load_features"]["median_s"]
                                               / r["arraymel.corpus.open"]["median_s"], 3)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{args.files} files, {hours:.3f} audio-hours; {res['cpus']} CPUs, {workers} workers; {args.repeat} "
              f"interleaved rounds; load average {min(loads):.2f}-{max(loads):.2f} at the rounds")
        for n, v in w.items():
            extra = f"  x{v['files_per_s_vs_npy']:.2f} npy (median of per-round ratios)" if "files_per_s_vs_npy" in v else ""
            if "files_per_s_vs_lhotse" in v:
                extra = f"  x{v['files_per_s_vs_lhotse']:.2f} Lhotse (median of per-round ratios)"
            print(f"  write {n:12s} median {v['median_s']:7.2f} s ({v['min_s']:.2f}-{v['max_s']:.2f})  "
                  f"{v['files_per_s']:7.1f} files/s ({v['files_per_s_range'][0]}-{v['files_per_s_range'][1]})  "
                  f"{v['audio_hours_per_s']:.3f} audio-h/s{extra}")
        for n, v in reads.items():
            v = r[n]
            print(f"  read  {n:34s} median {v['median_s']:6.2f} s ({v['min_s']:.2f}-{v['max_s']:.2f})  "
                  f"{v['files_per_s']:8.1f} files/s")
        print(f"  reading: arraymel.corpus.open is x{r['ours_vs_lhotse']:.2f} the speed of CutSet.from_shar + load_features")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", action="store_true",
                    help="compare --format npy / shar / kaldi and Lhotse's extraction on short files, and Shar reading")
    ap.add_argument("--files", type=int, default=2500, help="--formats: number of 1-6 s files (default 2500)")
    ap.add_argument("--skip", action="append", default=[], help="--formats: leave out npy, shar, kaldi or lhotse")
    ap.add_argument("--hours", type=float, default=1.0, help="audio in the corpus (default 1)")
    ap.add_argument("--format", choices=("wav", "flac", "ogg"), default="flac")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "arraymel-corpus-bench"))
    ap.add_argument("--decode-workers", type=int, default=None, help="default: the CPUs available")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds of measurements (the best of each is kept)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--threads-too", action="store_true",
                    help="also time the threaded pipeline (the GPU engine: decode threads + compute thread) on the CPU")
    args = ap.parse_args(argv)
    if args.formats:
        return formats_main(args)

    from arraymel.corpus.decode import decode
    from arraymel.corpus.settings import CorpusSettings

    root = os.path.join(args.workdir, f"corpus-{args.format}")
    seconds = make_corpus(root, args.hours, args.format)
    out = os.path.join(args.workdir, "out")
    settings = CorpusSettings.create({}, device="cpu")  # Keras defaults, 128 mels, top_db 80 per file
    workers = args.decode_workers or len(os.sched_getaffinity(0))
    srcs = sources(root)
    hours = seconds / 3600

    empty = os.path.join(args.workdir, "empty")
    os.makedirs(empty, exist_ok=True)
    decode_only(srcs, settings, workers)  # warm the page cache
    items = [decode(s, settings) for s in srcs]
    # interleaved rounds, the best of each kept: a burst of load elsewhere then hits every figure alike
    best: dict[str, float] = {}

    def keep(name: str, t: float) -> None:
        best[name] = min(best.get(name, float("inf")), t)

    for _ in range(args.repeat):
        keep("decode", decode_only(srcs, settings, workers))
        keep("compute_threads", compute_only(items, settings))
        keep("compute_procs", compute_only_processes(srcs, settings, workers))
        keep("write", write_only(items, settings, out, workers))
        t, rc = pipeline(root, out, settings, workers)
        assert rc == 0, rc
        keep("pipeline", t)
        if args.threads_too:
            t, rc = pipeline(root, out, settings, workers, engine="threads")
            assert rc == 0, rc
            keep("threads", t)
        keep("fixed", pipeline(empty, out, settings, workers)[0])  # start-up + teardown
        shutil.rmtree(out, ignore_errors=True)
    del items
    t_dec, t_wr, t_pipe, t_fixed = best["decode"], best["write"], best["pipeline"], best["fixed"]
    t_cmp_threads, t_cmp_procs = best["compute_threads"], best["compute_procs"]
    t_cmp = min(t_cmp_threads, t_cmp_procs)
    t_threads = best.get("threads")
    load = os.getloadavg()

    def rates(t):
        return {"seconds": round(t, 3), "files_per_s": round(len(srcs) / t, 2), "audio_hours_per_s": round(hours / t, 4)}

    bound = 1.0 / (t_dec / hours + t_cmp / hours)
    bound3 = 1.0 / (t_dec / hours + t_cmp / hours + t_wr / hours)
    res = {
        "corpus": {"format": args.format, "files": len(srcs), "audio_hours": round(hours, 4), "sampling_rate": SR},
        "cpus": len(os.sched_getaffinity(0)), "decode_workers": workers, "repeat": args.repeat,
        "load_average_after": [round(x, 2) for x in load],
        "decode_only": rates(t_dec), "compute_only": rates(t_cmp), "pipeline": rates(t_pipe),
        "compute_only_library_threads": rates(t_cmp_threads), "compute_only_processes": rates(t_cmp_procs),
        "pipeline_fixed_cost_seconds": round(t_fixed, 3),
        "pipeline_steady_state": rates(t_pipe - t_fixed),
        "pipeline_vs_slower_stage": round(max(t_dec, t_cmp) / t_pipe, 3),
        "steady_state_vs_slower_stage": round(max(t_dec, t_cmp) / (t_pipe - t_fixed), 3),
        "write_only": rates(t_wr),
        "threaded_pipeline": rates(t_threads) if t_threads else None,
        "shared_cpu_bound_audio_hours_per_s": round(bound, 4),
        "shared_cpu_bound_with_writes_audio_hours_per_s": round(bound3, 4),
        "pipeline_vs_shared_cpu_bound": round((hours / t_pipe) / bound, 3),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"corpus: {len(srcs)} {args.format} files, {hours:.3f} audio-hours at 16 kHz; {res['cpus']} CPUs, "
              f"{workers} workers; best of {args.repeat} interleaved rounds; load average after {load[0]:.2f}")
        for name in ("decode_only", "compute_only_library_threads", "compute_only_processes", "compute_only", "write_only",
                     "pipeline", "pipeline_steady_state"):
            r = res[name]
            print(f"  {name:28s} {r['seconds']:8.2f} s  {r['files_per_s']:9.1f} files/s  {r['audio_hours_per_s']:7.3f} audio-h/s")
        if t_threads:
            r = res["threaded_pipeline"]
            print(f"  {'threaded_pipeline (GPU engine)':28s} {r['seconds']:8.2f} s  {r['files_per_s']:9.1f} files/s  "
                  f"{r['audio_hours_per_s']:7.3f} audio-h/s")
        print(f"  pipeline start-up + teardown (a run with no files): {t_fixed:.2f} s; steady state "
              f"{res['pipeline_steady_state']['audio_hours_per_s']:.3f} audio-h/s")
        print(f"  pipeline / slower stage: {res['pipeline_vs_slower_stage']:.1%} (whole run), "
              f"{res['steady_state_vs_slower_stage']:.1%} (steady state)")
        print(f"  shared-CPU bound 1/(1/decode + 1/compute): {bound:.3f} audio-h/s; pipeline reaches "
              f"{res['pipeline_vs_shared_cpu_bound']:.1%} of it")
        print(f"  with the writes as a third stage, 1/(1/decode + 1/compute + 1/write): {bound3:.3f} audio-h/s; the "
              f"steady state reaches {res['pipeline_steady_state']['audio_hours_per_s'] / bound3:.1%} of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
