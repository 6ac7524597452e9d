"""The GPU acceptance run: one command, a complete verdict (``make gpu-check``).

    python benchmarks/gpu_acceptance.py --out DIR            # on a CUDA machine with CuPy
    python benchmarks/gpu_acceptance.py --emulate --out DIR  # CuPy replaced by the CPU emulator

Writes ``DIR/gpu_acceptance.json``, ``DIR/gpu_acceptance.md`` and ``DIR/gpu_acceptance.png``:

1. parity of ``backend="cupy"`` (cuFFT) and ``backend="cupy-fused"`` against the float64 oracle
   (tests/oracle.py) on the emulator tests' grid (tests/test_cupy_emulated.py) plus Keras's defaults
   and the speech configuration, float16/32/64 input, 1-D to 3-D batches; float64 within 1e-9 dB,
   float32 within docs/semantics.md's bands or the float32 input floor (tests/f32_floor.py);
2. throughput at 512 x 10 s (audio-hours/s, CUDA events, median of at least 10 timed runs after
   warm-up) for Keras's defaults and speech, batch-1 latency (1 x 10 s), host time per call; peers in
   the same run where importable (torchaudio or torch.stft, Keras on JAX under jit, a naive CuPy
   pipeline); the device's DRAM bandwidth (a device-to-device copy) and each path's fraction of its
   DRAM bound in docs/gpu.md's model;
3. ``compute-sanitizer`` memcheck and racecheck over a small run of every kernel;
4. the corpus engine (decode processes, shared memory) on a generated 2,000-file tree with 16 decode
   processes: files/s, audio-hours/s, device busy fraction;
5. the verdict of :data:`RULE`, which was written before any GPU figure existed.

``--emulate`` runs every step on the CPU at tiny sizes (``make test`` runs it, so this script cannot
rot before a GPU arrives): the kernels are the exact CUDA text on the emulator of tests/cuda_cpu, the
timings are meaningless and marked so, the sanitizer is skipped (the emulator's guard zones and its
AddressSanitizer suite stand for it), the corpus engine drives the CPU stand-in device.

The whole run is budgeted to finish in under 8 minutes on a GPU host (one device call is at most 10).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
for _p in (ROOT, TESTS, os.path.join(ROOT, "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# ----------------------------------------------------------------------------------------------------
# The default-path rule. Written before any GPU figure existed; the verdict below applies it as it is.
RULE = (
    "For each configuration (Keras defaults 2048/512/128, speech 400/160/80), the fused path "
    "(backend='cupy-fused') becomes the default when (1) its parity holds on every grid case, "
    "(2) its throughput at 512 x 10 s is at least 1.1 x the cuFFT path's (medians of CUDA-event "
    "timings in the same run), and (3) its batch-1 latency (1 x 10 s) is no higher than the cuFFT "
    "path's. Otherwise the cuFFT path (backend='cupy') stays the default. If the cuFFT path's own "
    "parity fails anywhere, the verdict is 'blocked' whatever the speed."
)
SPEEDUP = 1.1

#: the two configurations timed, and docs/gpu.md's DRAM model: bytes moved per audio-hour
CONFIGS = {
    "keras": dict(params=dict(fft_length=2048, sequence_stride=512, num_mel_bins=128),
                  gb_per_hour={"cupy": 2.74, "cupy-fused": 0.40}),
    "speech": dict(params=dict(fft_length=400, sequence_stride=160, num_mel_bins=80),
                   gb_per_hour={"cupy": 2.20, "cupy-fused": 0.58}),
}
PATHS = ("cupy", "cupy-fused")
SR = 16000
BUDGET_S = 7 * 60  # leave a minute of the 8 for writing and slack


class Run:
    """Sizes, timer and device of this run (GPU or emulated)."""

    def __init__(self, emulate: bool, reps: int | None):
        self.emulate = emulate
        self.t0 = time.monotonic()
        self.notes: list[str] = []
        if emulate:
            import gpu_emulate

            self.cp = gpu_emulate.install()
            self.batch, self.seconds = 2, 0.5
            self.warmup, self.reps = 1, reps or 3
            self.device = "CPU emulator of tests/cuda_cpu (timings meaningless)"
        else:
            import cupy

            self.cp = cupy
            self.batch, self.seconds = 512, 10.0
            self.warmup, self.reps = 3, max(10, reps or 20)
            props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            self.device = f"{name}, {props['multiProcessorCount']} SMs, {props['totalGlobalMem'] / 2**30:.0f} GiB"

    def left(self) -> float:
        return BUDGET_S - (time.monotonic() - self.t0)

    def host(self, a) -> np.ndarray:
        return np.asarray(self.cp.asnumpy(a))

    def sync(self) -> None:
        if not self.emulate:
            self.cp.cuda.get_current_stream().synchronize()

    def time_ms(self, fn, *, events: str = "cupy") -> list[float]:
        """Per-call milliseconds of ``fn()``: CUDA events (CuPy's or torch's) around each call on a GPU, a host
        clock after synchronising for ``events="host"`` and on the emulator; warm-up calls first."""
        for _ in range(self.warmup):
            fn()
        self.sync()
        out = []
        for _ in range(self.reps):
            if self.emulate or events == "host":
                t = time.perf_counter()
                fn()
                self.sync()
                out.append((time.perf_counter() - t) * 1e3)
            elif events == "torch":
                import torch

                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b))
            else:
                a, b = self.cp.cuda.Event(), self.cp.cuda.Event()
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(self.cp.cuda.get_elapsed_time(a, b))
        return out


def _signal(shape, seed: int) -> np.ndarray:
    """The emulator grid's test signal (three tones and noise), rows at 0, -20 and -40 dB in turn."""
    from test_cupy_emulated import _signal as grid_signal

    return grid_signal(shape, seed=seed, gain_db=[0, -20, -40])


# ----------------------------------------------------------------------------------------------------
# 1. parity
def parity_grid(run: Run) -> list[tuple[str, dict, tuple]]:
    """(name, params, shape): the emulator tests' grid, Keras's defaults and speech, at this run's size."""
    try:
        from test_cupy_emulated import GRID
    except Exception as e:  # noqa: BLE001 - the tests' grid is the reference; say so if it cannot be read
        run.notes.append(f"the emulator tests' grid could not be imported ({type(e).__name__}: {e}); "
                         "Keras defaults and speech only")
        GRID = []
    grid = [(f"grid{i}", dict(p), shape) for i, (p, shape) in enumerate(GRID)]
    n = 4000 if run.emulate else 160000
    grid += [("keras-defaults", dict(CONFIGS["keras"]["params"]), (3, n)),
             ("speech", dict(CONFIGS["speech"]["params"]), (2, 2, n)),
             ("keras-defaults-1d", dict(CONFIGS["keras"]["params"]), (n + 123,))]
    if run.emulate:  # a cross-section: odd n_fft (cuFFT fallback), sequence_length < fft_length, power output
        keep = {"grid0", "grid1", "grid2", "grid5", "speech", "keras-defaults-1d"}
        grid = [g for g in grid if g[0] in keep]
    return grid


def parity(run: Run) -> dict:
    import oracle
    from f32_floor import float32_bounds
    from spec_bands import assert_spec_close, db_band_errors

    import arraymel

    dtypes = ("float32", "float64") if run.emulate else ("float16", "float32", "float64")
    result = {p: {"cases": 0, "failed": [], "max_db": {}} for p in PATHS}
    launched = {p: set() for p in PATHS}  # emulated: the kernels each path ran (the fused path must run its own)
    for name, params, shape in parity_grid(run):
        x64 = _signal(shape, seed=len(name))
        for in_dtype in dtypes:
            x = x64.astype(in_dtype)
            ref = oracle.mel_spectrogram(x.astype(np.float64), **params)
            compute = "float64" if in_dtype == "float64" else "float32"
            bounds = None
            if compute == "float32" and params.get("power_to_db", True):
                bounds = float32_bounds(x, params, ref)
            for path in PATHS:
                label = f"{name} {in_dtype}"
                r = result[path]
                r["cases"] += 1
                try:
                    before = _launches() if run.emulate else None
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        out = run.host(arraymel.mel_spectrogram(run.cp.asarray(x), backend=path, **params))
                    if before is not None:
                        after = _launches()
                        launched[path] |= set(after[0][len(before[0]):]) | set(after[1][len(before[1]):])
                    if out.dtype != np.dtype(compute) or out.shape != ref.shape:
                        raise AssertionError(f"dtype {out.dtype} shape {out.shape}, expected {compute} {ref.shape}")
                    if bounds is None or compute == "float64":
                        errs = assert_spec_close(out, ref, dtype=compute, power_to_db=params.get("power_to_db", True),
                                                 mag_exp=params.get("mag_exp", 2.0))
                    else:
                        errs = db_band_errors(out, ref, params.get("mag_exp", 2.0))
                        for band, bound in bounds.items():
                            if errs[band] > bound:
                                raise AssertionError(f"{errs[band]:.3g} dB in the band {band} > {bound:.3g}")
                    key = "float64" if compute == "float64" else "float32"
                    acc = r["max_db"].setdefault(key, {})
                    for band, v in errs.items():
                        acc[band] = max(acc.get(band, 0.0), float(v))
                except Exception as e:  # noqa: BLE001 - a failed case is a finding, recorded
                    r["failed"].append(f"{label}: {type(e).__name__}: {e}")
                if run.emulate:
                    import gpu_emulate

                    gpu_emulate.forget()
    for p in PATHS:
        result[p]["ok"] = not result[p]["failed"]
        if run.emulate:
            result[p]["emulated_kernels"] = sorted(launched[p])
    return result


def _launches() -> tuple[list[str], list[str]]:
    """The kernels the emulated GPU path has launched so far: (the cuFFT path's kernels, the fused kernel's)."""
    import arraymel._cupy.pipeline as pl

    return list(pl.KERNELS.launches), list(pl.FUSED_KERNEL_CACHE.launches)


# ----------------------------------------------------------------------------------------------------
# 2. throughput, latency, host time, peers, bandwidth
def _ours(run: Run, path: str, params: dict):
    import arraymel

    mel = arraymel.MelSpectrogram(**params)

    def call(x):
        return mel(x, backend=path)

    return call


def _naive(run: Run, params: dict):
    """The straightforward pipeline in CuPy (NumPy on the emulator): pad, frames, window, rfft, |.|^2, GEMM, dB."""
    import arraymel

    xp = np if run.emulate else run.cp
    fft, hop = params["fft_length"], params["sequence_stride"]
    w = xp.asarray(np.asarray(arraymel.get_window("hann", fft), dtype=np.float32))
    fb = xp.asarray(np.asarray(arraymel.mel_filterbank(num_mel_bins=params["num_mel_bins"], fft_length=fft),
                               dtype=np.float32))

    def call(x):
        x = xp.asarray(x)
        p = xp.pad(x, ((0, 0), (fft // 2, fft // 2)), mode="reflect")
        n = 1 + (p.shape[-1] - fft) // hop
        frames = xp.lib.stride_tricks.as_strided(p, (p.shape[0], n, fft), (p.strides[0], hop * 4, 4))
        s = xp.fft.rfft(frames * w, axis=-1)
        power = (s.real * s.real + s.imag * s.imag).astype(xp.float32)
        db = 10 * xp.log10(xp.maximum(power @ fb, 1e-10))
        return xp.maximum(db, db.max() - 80.0)

    return call


def _torch(run: Run, params: dict):
    import torch

    dev = "cpu" if run.emulate else "cuda"
    fft, hop, mels = params["fft_length"], params["sequence_stride"], params["num_mel_bins"]
    try:
        import torchaudio

        mod = torchaudio.transforms.MelSpectrogram(sample_rate=SR, n_fft=fft, hop_length=hop, n_mels=mels, f_min=20.0,
                                                   f_max=SR / 2, power=2.0, center=True, pad_mode="reflect",
                                                   mel_scale="htk").to(dev)
        db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0).to(dev)
        name = "torchaudio"

        def call(x):
            return db(mod(x))
    except Exception:  # noqa: BLE001 - torch alone: torch.stft and a GEMM with arraymel's filterbank
        import arraymel

        w = torch.hann_window(fft, device=dev)
        fb = torch.as_tensor(np.asarray(arraymel.mel_filterbank(num_mel_bins=mels, fft_length=fft), np.float32),
                             device=dev)
        name = "torch.stft"

        def call(x):
            s = torch.stft(x, fft, hop, window=w, center=True, pad_mode="reflect", return_complex=True)
            p = (s.real * s.real + s.imag * s.imag).transpose(-1, -2) @ fb
            d = 10 * torch.log10(torch.clamp(p, min=1e-10))
            return torch.maximum(d, d.max() - 80.0)

    def to_input(x_host):
        return torch.as_tensor(x_host, device=dev)

    return name, call, to_input


def _keras_jax(run: Run, params: dict):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.config.backend() != "jax":
        raise RuntimeError(f"keras is already imported with the {keras.config.backend()} backend")
    import jax

    layer = keras.layers.MelSpectrogram(fft_length=params["fft_length"], sequence_stride=params["sequence_stride"],
                                        num_mel_bins=params["num_mel_bins"], sampling_rate=SR)
    f = jax.jit(lambda x: layer(x))

    def call(x):
        return f(x).block_until_ready()

    return call, (lambda x_host: jax.device_put(x_host))


def throughput(run: Run, peers: bool) -> dict:
    out: dict = {}
    for cname, c in CONFIGS.items():
        params = c["params"]
        x_host = _signal((run.batch, int(run.seconds * SR)), seed=7).astype(np.float32)
        x1_host = x_host[:1]
        audio_h = run.batch * run.seconds / 3600.0
        res: dict = {}
        x, x1 = run.cp.asarray(x_host), run.cp.asarray(x1_host)
        for path in PATHS:
            call = _ours(run, path, params)
            ms = run.time_ms(lambda: call(x))
            lat = run.time_ms(lambda: call(x1))
            host = []
            for _ in range(run.reps):  # the host's part of one batch-1 call: its return without a sync
                t = time.perf_counter()
                call(x1)
                host.append((time.perf_counter() - t) * 1e6)
                run.sync()
            res[path] = dict(ms=statistics.median(ms), ms_runs=ms, audio_h_per_s=audio_h / (statistics.median(ms) / 1e3),
                             b1_ms=statistics.median(lat), b1_runs=lat, host_us=statistics.median(host))
        if peers:
            res["peers"] = {}
            peer_fns = [("naive CuPy" if not run.emulate else "naive (NumPy)",
                         lambda: (_naive(run, params), run.cp.asarray if not run.emulate else np.asarray, "cupy"))]
            peer_fns.append(("torch", lambda: _torch_entry(run, params)))
            peer_fns.append(("Keras on JAX (jit)", lambda: (*_keras_jax(run, params), "host")))
            for pname, make in peer_fns:
                try:
                    call, to_input, events = make()
                    if isinstance(call, tuple):  # torch: (name, call)
                        pname, call = call
                    xi, x1i = to_input(x_host), to_input(x1_host)
                    ms = run.time_ms(lambda: call(xi), events=events)
                    lat = run.time_ms(lambda: call(x1i), events=events)
                    res["peers"][pname] = dict(ms=statistics.median(ms), audio_h_per_s=audio_h / (statistics.median(ms) / 1e3),
                                               b1_ms=statistics.median(lat), timer=events if not run.emulate else "host")
                except Exception as e:  # noqa: BLE001 - a peer that cannot run is a note, not a failure
                    res["peers"][pname] = dict(skipped=f"{type(e).__name__}: {e}".splitlines()[0][:200])
        out[cname] = res
        if run.emulate:
            import gpu_emulate

            del x, x1
            gpu_emulate.forget()
    return out


def _torch_entry(run: Run, params: dict):
    name, call, to_input = _torch(run, params)
    return (name, call), to_input, "torch"


def bandwidth(run: Run) -> dict:
    n = (8 << 20) if run.emulate else (1 << 30)
    xp = np if run.emulate else run.cp
    a = xp.ones(n // 4, dtype=xp.float32)
    b = xp.empty_like(a)

    def copy():
        b[...] = a

    ms = statistics.median(run.time_ms(copy))
    return dict(bytes=2 * n, ms=ms, gb_per_s=2 * n / (ms / 1e3) / 1e9)


# ----------------------------------------------------------------------------------------------------
# 3. compute-sanitizer
def sanitizer_child() -> int:
    """A small run of every kernel (the child process that compute-sanitizer watches)."""
    import cupy

    import arraymel

    x = cupy.asarray(_signal((3, 9000), seed=3).astype(np.float32))
    configs = [
        dict(CONFIGS["keras"]["params"]),  # pitched in-place: am_pad_reflect, am_mel_smem, am_clip_top_db
        dict(CONFIGS["speech"]["params"], top_db_scope="example"),
        dict(fft_length=511, sequence_stride=100, num_mel_bins=40, window="hamming"),  # gather: am_frames_window
        dict(fft_length=400, sequence_stride=160, num_mel_bins=80, sequence_length=300),
        dict(fft_length=256, sequence_stride=64, num_mel_bins=32, power_to_db=False, mag_exp=1.0),
    ]
    for params in configs:
        for path in PATHS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                arraymel.mel_spectrogram(x, backend=path, **params)
                arraymel.mel_spectrogram(x.astype(cupy.int16), backend=path, **params)
                arraymel.mel_spectrogram(x.astype(cupy.float64), backend=path, **params)
    cupy.cuda.Device().synchronize()
    return 0


def sanitizer(run: Run) -> dict:
    if run.emulate:
        return {"skipped": "emulated run: the emulator's guard zones, poisoned buffers and its AddressSanitizer suite "
                           "(tests/test_cupy_emulator_asan.py) stand for compute-sanitizer"}
    tool = shutil.which("compute-sanitizer") or next(
        (p for p in ("/usr/local/cuda/bin/compute-sanitizer",) if os.path.exists(p)), None)
    if tool is None:
        return {"skipped": "compute-sanitizer is not on this host"}
    out = {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    for check in ("memcheck", "racecheck"):
        limit = min(150.0, max(10.0, run.left() - 150))
        t = time.monotonic()
        try:
            p = subprocess.run([tool, "--tool", check, "--error-exitcode", "99", sys.executable, os.path.abspath(__file__),
                                "--sanitizer-child"], env=env, capture_output=True, text=True, timeout=limit)
            tail = (p.stdout + p.stderr).strip().splitlines()[-6:]
            out[check] = dict(ok=p.returncode == 0, returncode=p.returncode, seconds=time.monotonic() - t, tail=tail)
        except subprocess.TimeoutExpired:
            out[check] = dict(ok=None, skipped=f"did not finish in {limit:.0f} s (budget)")
    return out


# ----------------------------------------------------------------------------------------------------
# 4. the corpus engine
def corpus(run: Run) -> dict:
    """The engine in a fresh interpreter (as ``arraymel corpus`` runs it: decode processes are forked before
    any CUDA, torch or JAX thread exists in their parent)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    limit = max(30.0, run.left() - 30)
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--corpus-child"] + (["--emulate"] if run.emulate else []),
                       env=env, capture_output=True, text=True, timeout=limit)
    if p.returncode != 0:
        raise RuntimeError(f"the corpus child failed ({p.returncode}): {(p.stdout + p.stderr).strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def corpus_child(emulate: bool) -> dict:
    import soundfile as sf

    from arraymel.corpus.compute import make_computer
    from arraymel.corpus.decoders import DecoderEngine
    from arraymel.corpus.discover import default_include, walk
    from arraymel.corpus.settings import CorpusSettings
    from arraymel.corpus.storage import fsync_dir

    files, secs, workers = (40, 1.0, 2) if emulate else (2000, 10.0, 16)
    device = "stand-in" if emulate else "cuda:0"
    root = tempfile.mkdtemp(prefix="arraymel-gpu-corpus-")
    try:
        src = os.path.join(root, "src")
        os.makedirs(src)
        for i in range(8):
            sf.write(os.path.join(src, f"{i}.flac"), _signal((int(secs * SR),), seed=i).astype(np.float32) * 0.5, SR,
                     subtype="PCM_16")
        tree = os.path.join(root, "in")
        for j in range(files):
            d = os.path.join(tree, f"d{j % 40:02d}")
            os.makedirs(d, exist_ok=True)
            shutil.copy(os.path.join(src, f"{j % 8}.flac"), os.path.join(d, f"f{j:05d}.flac"))
        settings = CorpusSettings.create({}, device=device)
        out_dir = os.path.join(root, "out")
        sources = walk(tree, out_dir, default_include(), ()).sources
        computer = make_computer(settings)
        engine = DecoderEngine(settings, out_dir, computer=computer, decode_workers=workers)
        ok = failed = 0
        audio = 0.0
        t = time.perf_counter()
        try:
            for group in engine.run(sources):
                for d in sorted({d for r in group for d in r.sync_dirs}):
                    fsync_dir(d)
                ok += sum(r.status == "ok" for r in group)
                failed += sum(r.status == "failed" for r in group)
                audio += sum(r.duration_s or 0.0 for r in group if r.status == "ok")
        finally:
            engine.close()
        wall = time.perf_counter() - t
        busy = getattr(computer, "device_seconds", 0.0)
        return dict(files=files, seconds_per_file=secs, decode_processes=workers, device=engine.device, ok=ok,
                    failed=failed, wall_s=wall, files_per_s=ok / wall, audio_h_per_s=audio / 3600 / wall,
                    device_busy=busy / wall, batches=engine.batches, crashes=engine.crashes)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# 5. verdict, report
def verdict(par: dict, thr: dict) -> dict:
    out = {}
    for cname in CONFIGS:
        t = thr.get(cname, {})
        if not par.get("cupy", {}).get("ok", False):
            out[cname] = dict(default="blocked", why="the cuFFT path's parity failed")
            continue
        f, c = t.get("cupy-fused"), t.get("cupy")
        if not (f and c):
            out[cname] = dict(default="cupy", why="no timing of both paths")
            continue
        speed = f["audio_h_per_s"] / c["audio_h_per_s"]
        lat = f["b1_ms"] / c["b1_ms"]
        checks = {"parity": par.get("cupy-fused", {}).get("ok", False), "throughput": speed >= SPEEDUP,
                  "latency": lat <= 1.0}
        out[cname] = dict(default="cupy-fused" if all(checks.values()) else "cupy", checks=checks,
                          fused_over_cufft_throughput=speed, fused_over_cufft_b1_latency=lat)
    return out


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}{unit}" if abs(v) < 1000 else f"{v:,.0f}{unit}"
    return f"{v}{unit}"


def report_md(rep: dict) -> str:
    emu = rep["emulated"]
    L = ["# GPU acceptance run", ""]
    L.append(f"- device: {rep['device']}")
    L.append(f"- command: `{rep['command']}`; {rep['wall_s']:.0f} s; host {rep['host']}")
    if emu:
        L.append("- **emulated: every timing below is meaningless** (the CPU emulator of tests/cuda_cpu at tiny sizes); "
                 "parity is real")
    L += ["", "## The rule (written before any GPU figure)", "", rep["rule"], "", "## Verdict", ""]
    for cname, v in rep["verdict"].items():
        extra = ""
        if "checks" in v:
            extra = (f" (parity {'ok' if v['checks']['parity'] else 'FAILED'}; throughput fused/cuFFT "
                     f"{v['fused_over_cufft_throughput']:.2f}x, needs >= {SPEEDUP}; batch-1 latency fused/cuFFT "
                     f"{v['fused_over_cufft_b1_latency']:.2f}x, needs <= 1)")
        L.append(f"- {cname}: default **{v['default']}**{extra}{'; ' + v['why'] if 'why' in v else ''}")
    if emu:
        L.append("- (emulated: this verdict applies the rule to meaningless timings; it shows the rule at work, "
                 "nothing about a GPU)")
    L += ["", "## Parity against the float64 oracle", "", "| path | cases | failed | max dB error, float32 (by band) | "
          "max dB error, float64 |", "|---|---|---|---|---|"]
    for p in PATHS:
        r = rep["parity"][p]
        f32 = r["max_db"].get("float32", {})
        f64 = r["max_db"].get("float64", {})
        L.append(f"| {p} | {r['cases']} | {len(r['failed'])} | "
                 + ", ".join(f"{b}: {v:.2g}" for b, v in f32.items()) + f" | {max(f64.values()) if f64 else 0:.2g} |")
    for p in PATHS:
        for f in rep["parity"][p]["failed"][:20]:
            L.append(f"- {p} FAILED {f}")
    unit = " (meaningless)" if emu else ""
    L += ["", f"## Throughput{unit}", "",
          f"{rep['batch']} x {rep['seconds']:g} s, float32; median of {rep['reps']} timed runs after warm-up "
          f"({'host clock' if emu else 'CUDA events'}).", "",
          "| config | path | ms per batch | audio-hours/s | batch-1 ms | host us per call | DRAM-model bound h/s | "
          "fraction of bound |", "|---|---|---|---|---|---|---|---|"]
    for cname, res in rep["throughput"].items():
        for p in PATHS:
            r = res[p]
            m = rep["model"][cname][p]
            L.append(f"| {cname} | {p} | {_fmt(r['ms'])} | {_fmt(r['audio_h_per_s'])} | {_fmt(r['b1_ms'])} | "
                     f"{_fmt(r['host_us'])} | {_fmt(m['bound_h_per_s'])} | {_fmt(m['fraction'])} |")
        for pname, r in res.get("peers", {}).items():
            if "skipped" in r:
                L.append(f"| {cname} | {pname} | skipped: {r['skipped']} | | | | | |")
            else:
                L.append(f"| {cname} | {pname} | {_fmt(r['ms'])} | {_fmt(r['audio_h_per_s'])} | {_fmt(r['b1_ms'])} | "
                         f"| | |")
    bw = rep["bandwidth"]
    L += ["", f"DRAM bandwidth (device-to-device copy of {bw['bytes'] / 2 / 2**20:.0f} MiB, read + write): "
              f"{bw['gb_per_s']:.0f} GB/s{unit}; the bound is that bandwidth over docs/gpu.md's bytes per audio-hour.", ""]
    L += ["## compute-sanitizer", ""]
    san = rep["sanitizer"]
    if "skipped" in san:
        L.append(f"skipped: {san['skipped']}")
    else:
        for k, v in san.items():
            L.append(f"- {k}: {'ok' if v.get('ok') else v.get('skipped') or 'ERRORS'}" +
                     (f" ({v['seconds']:.0f} s)" if "seconds" in v else ""))
            for line in v.get("tail", []) if not v.get("ok") else []:
                L.append(f"    {line}")
    c = rep["corpus"]
    L += ["", f"## Corpus engine{unit}", ""]
    if "error" in c:
        L.append(f"failed: {c['error']}")
    else:
        L.append(f"{c['files']} x {c['seconds_per_file']:g} s FLAC, {c['decode_processes']} decode processes, "
                 f"{c['device']}: {c['ok']} ok, {c['failed']} failed, {c['files_per_s']:.0f} files/s, "
                 f"{c['audio_h_per_s']:.2f} audio-hours/s, device busy {100 * c['device_busy']:.1f}% of the wall time, "
                 f"{c['batches']} batches.")
    if rep["notes"]:
        L += ["", "## Notes", ""] + [f"- {n}" for n in rep["notes"]]
    return "\n".join(L) + "\n"


def plot(rep: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"no PNG: matplotlib unavailable ({e})"
    if not rep["throughput"]:
        return "no PNG: no throughput was measured"
    fig, axes = plt.subplots(1, len(rep["throughput"]), figsize=(11, 4))
    for ax, (cname, res) in zip(np.atleast_1d(axes), rep["throughput"].items()):
        names = list(PATHS) + [k for k, v in res.get("peers", {}).items() if "skipped" not in v]
        vals = [res[p]["audio_h_per_s"] if p in PATHS else res["peers"][p]["audio_h_per_s"] for p in names]
        ax.barh(names, vals, color=["C0", "C1"] + ["C7"] * (len(names) - 2))
        ax.set_title(f"{cname}, {rep['batch']} x {rep['seconds']:g} s")
        ax.set_xlabel("audio-hours/s" + (" (emulated: meaningless)" if rep["emulated"] else ""))
        ax.invert_yaxis()
    fig.suptitle(f"arraymel GPU acceptance: {rep['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="The GPU acceptance run (docs/gpu.md, make gpu-check).")
    ap.add_argument("--out", default="gpu-check", help="directory for gpu_acceptance.json/.md/.png")
    ap.add_argument("--emulate", action="store_true", help="the CPU emulator as the device, tiny sizes")
    ap.add_argument("--reps", type=int, help="timed runs per measurement (GPU: at least 10, default 20)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-corpus", action="store_true")
    ap.add_argument("--sanitizer-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sanitizer_child:
        return sanitizer_child()
    if args.corpus_child:
        print(json.dumps(corpus_child(args.emulate)))
        return 0
    os.makedirs(args.out, exist_ok=True)
    run = Run(args.emulate, args.reps)
    import arraymel

    rep: dict = dict(rule=RULE, emulated=run.emulate, device=run.device, batch=run.batch, seconds=run.seconds,
                     reps=run.reps, host=f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average "
                                        + " ".join(f"{v:.2f}" for v in os.getloadavg()),
                     command=" ".join([os.path.basename(sys.executable), *sys.argv]),
                     versions=dict(arraymel=arraymel.__version__, numpy=np.__version__, python=platform.python_version(),
                                   cupy=getattr(run.cp, "__version__", "?")),
                     notes=run.notes)

    def step(name, fn, default):
        t = time.monotonic()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            v = fn()
        except Exception as e:  # noqa: BLE001 - one failed step is recorded; the others still run
            traceback.print_exc()
            run.notes.append(f"{name} failed: {type(e).__name__}: {e}")
            v = default(e)
        print(f"[gpu-check] {name}: {time.monotonic() - t:.1f} s", flush=True)
        return v

    rep["parity"] = step("parity", lambda: parity(run),
                         lambda e: {p: {"cases": 0, "failed": [f"step failed: {e}"], "max_db": {}, "ok": False}
                                    for p in PATHS})
    if args.no_corpus:
        rep["corpus"] = {"error": "skipped (--no-corpus)"}
    elif run.left() < 60:
        rep["corpus"] = {"error": "skipped: the 8-minute budget is spent"}
    else:
        rep["corpus"] = step("corpus engine", lambda: corpus(run), lambda e: {"error": f"{type(e).__name__}: {e}"})
    rep["throughput"] = step("throughput", lambda: throughput(run, peers=not args.no_peers), lambda e: {})
    rep["bandwidth"] = step("bandwidth", lambda: bandwidth(run), lambda e: dict(bytes=0, ms=0.0, gb_per_s=float("nan")))
    rep["model"] = {}
    for cname, c in CONFIGS.items():
        rep["model"][cname] = {}
        for p in PATHS:
            bound = rep["bandwidth"]["gb_per_s"] / c["gb_per_hour"][p]
            got = rep["throughput"].get(cname, {}).get(p, {}).get("audio_h_per_s")
            rep["model"][cname][p] = dict(bound_h_per_s=bound, fraction=(got / bound) if got and bound == bound else None)
    rep["sanitizer"] = step("compute-sanitizer", lambda: sanitizer(run), lambda e: {"skipped": f"failed: {e}"})
    rep["verdict"] = verdict(rep["parity"], rep["throughput"])
    rep["wall_s"] = time.monotonic() - run.t0
    note = plot(rep, os.path.join(args.out, "gpu_acceptance.png"))
    if note:
        run.notes.append(note)
    with open(os.path.join(args.out, "gpu_acceptance.json"), "w") as f:
        json.dump(rep, f, indent=1, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    md = report_md(rep)
    with open(os.path.join(args.out, "gpu_acceptance.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
