"""Each preset against its reference library: the largest difference on real speech, and CPU time, interleaved.

    .venv/bin/python benchmarks/presets.py --wav speech.wav [--rounds 11] [--batch 16] [--seconds 10]

The figures of docs/presets.md. ``--options``: instead, the distance of every option case of
tests/test_presets_options.py to its reference (the tests' signals and references), per path.

``--wav``: a mono speech recording (any rate; resampled with soxr to each
preset's rate); e.g. ``espeak-ng -w speech.wav "..."``. Without it, the bench's synthetic signal.

Difference: max |arraymel - reference| in the output's own units, over the values within 60 dB (power) of
the reference's maximum (docs/semantics.md's bound is 1e-3 there), and over every value; the NumPy path on one clip.

Time: a batch of ``--batch`` clips of ``--seconds`` s cut from the recording (circular shifts, different
gains); each round calls arraymel's preset and the reference once, in an order alternating every round, so
that a shared, noisy machine slows both alike; medians and quartiles of the rounds, then ``uptime``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import time

import numpy as np

#: 60 dB of power in each preset's output units (nemo's normalised features: every value).
SPAN_60DB = {"whisper": 1.5, "librosa": 60.0, "torchaudio": 60.0, "kaldi": 6.0 * math.log(10.0), "nemo": None}



def interleaved(calls: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each call per round, after one warm-up call each (caches, plans, imports); every round
    calls each once, the order reversed every other round, so a drift of the machine falls on all alike."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    order = list(calls)
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            calls[k]()
            times[k].append(time.perf_counter() - t0)
    return times

def load_speech(path: str | None, rate: float, seconds: float = 0.0) -> np.ndarray:
    if path is None:
        from arraymel.bench.workloads import make_batch

        return make_batch(1, seconds or 10.0, rate)[0]
    import soundfile as sf
    import soxr

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, sr, rate).astype(np.float32) if sr != rate else x


def batch_of(speech: np.ndarray, batch: int, samples: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    reps = -(-samples // speech.shape[0]) + 1
    long = np.tile(speech, reps)
    starts = rng.integers(0, speech.shape[0], batch)
    gains = 10 ** rng.uniform(-1.5, 0, batch)
    return np.stack([g * long[s : s + samples] for s, g in zip(starts, gains)]).astype(np.float32)


def difference(name: str, ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    d = np.abs(ours - ref)
    span = SPAN_60DB[name]
    top = d if span is None else d[ref >= ref.max() - span]
    return float(top.max()), float(d.max())


def main() -> None:
    import arraymel.presets as presets
    from arraymel.bench.preset_peers import reference

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wav", default=None)
    ap.add_argument("--presets", nargs="+", default=list(presets.PRESETS))
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--options", action="store_true", help="the option grids' distances (docs/presets.md) instead")
    ap.add_argument("--kaldi-routes", action="store_true",
                    help="Kaldi's two routes (the pipeline's frame step; the frames built by the preset) and "
                         "kaldi-native-fbank, interleaved, instead")
    args = ap.parse_args()
    if args.options:
        options_report()
        return
    if args.kaldi_routes:
        kaldi_routes(args)
        return

    rows = []
    for name in args.presets:
        preset = presets.get(name)
        try:
            ref_fn = reference(preset)
        except ImportError as e:
            print(f"{name}: reference not installed ({e})")
            continue
        rate = preset.config.sampling_rate
        speech = load_speech(args.wav, rate)
        top, every = difference(name, preset(speech, backend="numpy"), ref_fn(speech[None])[0])
        x = batch_of(speech, args.batch, int(round(args.seconds * rate)))
        times = interleaved({"arraymel": lambda: preset(x), "reference": lambda: ref_fn(x)}, args.rounds)
        med = {k: statistics.median(v) for k, v in times.items()}
        q = {k: statistics.quantiles(v, n=4) if len(v) > 1 else (v[0], v[0], v[0]) for k, v in times.items()}
        rows.append((name, preset.reference, top, every, med, q))

    print(f"{'preset':<11} {'max diff (top 60 dB)':>21} {'max diff (all)':>15} {'arraymel ms':>18} "
          f"{'reference ms':>18} {'speed-up':>8}   reference")
    for name, ref_name, top, every, med, q in rows:
        a, b = med["arraymel"] * 1e3, med["reference"] * 1e3
        qa = f"{q['arraymel'][0] * 1e3:.1f}-{q['arraymel'][2] * 1e3:.1f}"
        qb = f"{q['reference'][0] * 1e3:.1f}-{q['reference'][2] * 1e3:.1f}"
        print(f"{name:<11} {top:>21.2g} {every:>15.2g} {a:>7.1f} ({qa:>9}) {b:>7.1f} ({qb:>9}) {b / a:>7.1f}x   {ref_name}")
    print(f"{args.batch} x {args.seconds:g} s, {args.rounds} interleaved rounds; speech: {args.wav or 'synthetic'}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def kaldi_routes(args: argparse.Namespace) -> None:
    """Median (quartiles) ms of kaldi(num_mel_bins=80) (native route), kaldi(num_mel_bins=80, snip_edges=False)
    (framed route) and kaldi-native-fbank on the same batch, interleaved round by round."""
    import arraymel.presets as presets
    from arraymel.bench.preset_peers import reference

    native = presets.kaldi(num_mel_bins=80)
    framed = presets.kaldi(num_mel_bins=80, preemph_coeff=0.5)  # same frames as native, built by the preset
    ref_fn = reference(native)
    speech = load_speech(args.wav, 16000) * 32768
    x = batch_of(speech, args.batch, int(round(args.seconds * 16000)))
    times = interleaved({"native route": lambda: native(x), "framed route": lambda: framed(x),
                         "kaldi-native-fbank": lambda: ref_fn(x)}, args.rounds)
    for k, v in times.items():
        q = statistics.quantiles(v, n=4) if len(v) > 1 else (v[0], v[0], v[0])
        print(f"{k:<20} {statistics.median(v) * 1e3:8.1f} ms ({q[0] * 1e3:.1f}-{q[2] * 1e3:.1f})")
    print(f"{args.batch} x {args.seconds:g} s, {args.rounds} interleaved rounds; speech: {args.wav or 'synthetic'}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def options_report() -> None:
    """Markdown rows: preset, case, max |arraymel - reference| within 60 dB on the NumPy and generic paths."""
    import pathlib
    import sys
    import warnings

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    import numpy as np  # noqa: F811
    import test_presets_options as t
    import torch
    from presets_signal import speechlike

    import arraymel.presets as presets

    warnings.simplefilter("ignore")

    def top(ours, ref, span):
        ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
        keep = np.ones(ref.shape, bool) if span is None else ref >= ref.max() - span
        return float(np.abs(ours - ref)[keep].max())

    def cases():
        x22 = speechlike(11025 + 313, 22050, seed=1)
        for c, o in t.LIBROSA.items():
            ref = t.librosa_reference(x22, o)
            conv = t._as_db if o.get("db", True) is False else (lambda a: a)
            yield ("librosa", c, o, lambda b, o=o, conv=conv: conv(presets.librosa(sr=22050, **o)(x22, backend=b)),
                   conv(ref), 60.0 * o.get("power", 2.0) / 2.0)
        x8 = speechlike(8000 + 77, 16000, seed=5)
        g = t.options_goldens()
        for c, o in t.TORCHAUDIO.items():
            o = dict(o)
            if "window_fn" in o:
                o["window_fn"] = getattr(torch, o["window_fn"])
            conv = t._as_db if c == "power_only" else (lambda a: a)
            yield ("torchaudio", c, o, lambda b, o=o, conv=conv: conv(presets.torchaudio(**o)(x8, backend=b)),
                   conv(g[f"torchaudio_{c}"]), 30.0 if c == "magnitude" else 60.0, conv(t.torchaudio_float64(x8, o)))
        from transformers import ParakeetFeatureExtractor, WhisperFeatureExtractor

        for c, (o, sr) in t.WHISPER.items():
            x = speechlike(sr + 77, sr, seed=3)
            ref = WhisperFeatureExtractor(**o)(x, sampling_rate=sr, return_tensors="np", padding="longest")
            yield "whisper", c, o, lambda b, o=o, x=x: presets.whisper(**o)(x, backend=b), ref.input_features[0], 1.5
        yield ("whisper", "padding (openai-whisper)", {"padding": 16000},
               lambda b: presets.whisper(padding=16000)(x8, backend=b), g["whisper_padding"], 1.5)
        x16 = speechlike(16000 + 77, 16000, seed=4)
        for c, o in t.NEMO.items():
            ref = ParakeetFeatureExtractor(**o)(x16, sampling_rate=16000, return_tensors="np").input_features[0].T
            yield "nemo", c, o, lambda b, o=o: presets.nemo(**o)(x16, backend=b), ref, None
        xk = (speechlike(8000 + 123, 16000, seed=6) * 32768).astype(np.float32)
        for c, o in t.KALDI.items():
            x = xk if o.get("sample_frequency", 16000) == 16000 else xk[::2].copy()
            ref = t.kaldi_native(x, o)
            span = t.LN_60DB / (2 if o.get("use_power", True) is False else 1)
            conv = (lambda a: np.log(np.maximum(a, 1e-7))) if o.get("use_log_fbank", True) is False else (lambda a: a)
            yield ("kaldi", c, o, lambda b, o=o, x=x, conv=conv: conv(presets.kaldi(**o)(x, backend=b)), conv(ref),
                   span)

    print("| preset | case | options | NumPy path | generic path | float64 evaluation: NumPy path / reference |")
    print("|---|---|---|---|---|---|")
    for name, case, opts, fn, ref, span, *exact in cases():
        def show(v):
            if isinstance(v, type) or callable(v):
                return v.__name__
            return "array" if hasattr(v, "shape") else repr(v)

        shown = ", ".join(f"{k}={show(v)}" for k, v in opts.items()).replace("|", "/")
        ours = fn("numpy")
        f64 = f"{top(ours, exact[0], span):.2g} / {top(ref, exact[0], span):.2g}" if exact else ""
        print(f"| {name} | {case} | `{shown}` | {top(ours, ref, span):.2g} | {top(fn('generic'), ref, span):.2g} | {f64} |")


if __name__ == "__main__":
    main()
