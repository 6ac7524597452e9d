"""``arraymel demo``: a synthetic clip (chirp, harmonic tone, noise bursts) to a labelled PNG."""

from __future__ import annotations

import argparse
import time

import numpy as np


def synth_example(seconds: float = 4.0, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A float32 test signal: a log chirp 100 Hz-6 kHz, a 220 Hz harmonic tone with a vibrato, noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sampling_rate)
    t = np.arange(n) / sampling_rate
    f0, f1 = 100.0, 6000.0
    k = np.log(f1 / f0) / seconds
    chirp = 0.3 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    vibrato = 220.0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(vibrato) / sampling_rate
    tone = sum(0.2 / h * np.sin(h * phase) for h in range(1, 9)) * (t > seconds / 4)
    bursts = np.zeros(n)
    for start in np.arange(0.5, seconds, 1.0):
        i0, i1 = int(start * sampling_rate), int((start + 0.1) * sampling_rate)
        bursts[i0:i1] = 0.2 * rng.standard_normal(i1 - i0) * np.hanning(i1 - i0)
    return (chirp + tone + bursts).astype(np.float32)


def best_device() -> str:
    """``"cuda"`` when CuPy sees a GPU, else ``"cpu"``."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return "cuda"
    except Exception:
        pass
    return "cpu"


def run(args: argparse.Namespace) -> int:
    import arraymel

    device = best_device() if args.device == "auto" else args.device
    x = synth_example(args.seconds, args.sampling_rate)
    params = dict(sampling_rate=args.sampling_rate, num_mel_bins=args.num_mel_bins,
                  fft_length=args.fft_length, sequence_stride=args.sequence_stride)
    mel = arraymel.MelSpectrogram(**params)
    mel(x, device=device)  # build window, filterbank and plans once; time the second call
    t0 = time.perf_counter()
    S = mel(x, device=device, output="device")
    if device.startswith("cuda"):
        import cupy

        cupy.cuda.get_current_stream().synchronize()  # the timing needs the finished result
    elapsed = time.perf_counter() - t0
    where = type(S).__module__.split(".")[0]
    print(f"input   {x.shape} float32, {args.seconds:g} s at {args.sampling_rate} Hz")
    print(f"output  shape {tuple(S.shape)}, dtype {S.dtype}, on {device} ({where} array)")
    print(f"time    {elapsed * 1e3:.2f} ms ({args.seconds / 3600 / elapsed:.2f} audio-hours/s)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from arraymel.plot import specshow

    fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    specshow(S, ax=ax, title="arraymel demo: chirp, harmonic tone with vibrato, noise bursts", **params)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"picture {args.out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="mel spectrogram of a built-in synthetic clip, saved as a labelled PNG",
        description="Synthesise a few seconds of audio (no download), compute its mel spectrogram on the best "
        "available device, save a labelled PNG and print shape, dtype, device and time taken.",
    )
    p.add_argument("--out", default="demo.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (GPU if CuPy sees one), cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the clip (default: %(default)s)")
    p.add_argument("--sampling-rate", type=int, default=16000, help="default: %(default)s")
    p.add_argument("--num-mel-bins", type=int, default=128, help="default: %(default)s")
    p.add_argument("--fft-length", type=int, default=1024, help="default: %(default)s")
    p.add_argument("--sequence-stride", type=int, default=128, help="default: %(default)s")
    p.set_defaults(func=run)
