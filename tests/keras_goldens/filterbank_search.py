"""Where Keras's float32 filterbank matters: random configurations, arraymel's two filterbanks vs live Keras.

    KERAS_BACKEND=numpy .venv/bin/python tests/keras_goldens/filterbank_search.py [--configs 672] [--seed 0]

For each random configuration (fft length, sampling rate, band count and edges, window) the input is one
second of bin-centred tones (random bins, half of them where only one band reaches, i.e. on a band's
tiny-weight edge) plus faint noise. For the values within 80 dB of Keras's maximum it measures

* ``exact``: max |arraymel - Keras| with ``filterbank="exact"`` (the default);
* ``keras``: the same with ``filterbank="keras"``;
* ``own``: Keras's own float32 rounding, max |Keras - the float64 evaluation with Keras's filterbank|;
* ``excess``: max over values of |arraymel - Keras| - |Keras - float64 with Keras's filterbank|, i.e. how
  far arraymel is from Keras beyond Keras's own rounding (docs/semantics.md: at most arraymel's float32 bound).

Printed: the counts of configurations over 2e-3 dB, the worst figures, and the worst configurations as
Python literals (tests/test_parity_keras.py keeps some of them).
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "numpy")

NEAR = 80.0  # dB below the maximum: docs/semantics.md's strict region


def random_config(rng: np.random.Generator) -> dict:
    sr = float(rng.choice([8000, 11025, 16000, 22050, 44100, 48000, round(float(rng.uniform(7000, 50000)), 1)]))
    fft = int(rng.choice([256, 400, 512, 1024, 2048]))
    cfg = {
        "fft_length": fft,
        "sequence_stride": int(rng.choice([fft // 4, fft // 2, 160])),
        "sampling_rate": sr,
        "num_mel_bins": int(rng.integers(16, 161)),
        "min_freq": float(rng.choice([0.0, 20.0, round(float(rng.uniform(0, 500)), 1)])),
        "window": [None, "hann", "hamming"][int(rng.integers(3))],
    }
    if rng.random() < 0.4:
        cfg["max_freq"] = round(float(rng.uniform(cfg["min_freq"] + 1000, sr / 2)), 1)
    return cfg


def tones_input(cfg: dict, rng: np.random.Generator) -> np.ndarray:
    """One second of 4 bin-centred tones of random amplitude (a quarter on exact band edges) plus faint noise."""
    import arraymel

    sr, fft = cfg["sampling_rate"], cfg["fft_length"]
    n = int(sr)
    t = np.arange(n) / sr
    x = 1e-4 * rng.standard_normal(n)
    fb = arraymel.mel_filterbank(num_mel_bins=cfg["num_mel_bins"], fft_length=fft, sampling_rate=sr,
                                 min_freq=cfg["min_freq"], max_freq=cfg.get("max_freq"))
    edge_bins = np.flatnonzero((fb > 0).sum(axis=1) == 1)  # bins a single band reaches: near band edges
    for _ in range(4):
        k = int(rng.choice(edge_bins)) if edge_bins.size and rng.random() < 0.5 else int(rng.integers(1, fft // 2))
        x += 10 ** rng.uniform(-2, 0) * np.sin(2 * np.pi * k * sr / fft * t)
    return x.astype(np.float32)[None]


def compare(cfg: dict, x: np.ndarray) -> dict[str, float]:
    """The figures of the module docstring for one configuration and input (dB, within 80 dB of Keras's max)."""
    import keras

    import arraymel

    k = np.asarray(keras.layers.MelSpectrogram(**cfg)(x)).astype(np.float64)
    near = k >= k.max() - NEAR
    exact = np.abs(arraymel.mel_spectrogram(x, **cfg) - k)[near]
    ours = np.abs(arraymel.mel_spectrogram(x, filterbank="keras", **cfg) - k)[near]
    own = np.abs(k - arraymel.mel_spectrogram(x.astype(np.float64), filterbank="keras", **cfg))[near]
    return {"exact": float(exact.max()), "keras": float(ours.max()), "own": float(own.max()),
            "excess_exact": float((exact - own).max()), "excess_keras": float((ours - own).max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", type=int, default=672)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=8)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-band notices
        for i in range(args.configs):
            cfg = random_config(rng)
            seed = int(rng.integers(2**31))
            x = tones_input(cfg, np.random.default_rng(seed))
            rows.append((compare(cfg, x), cfg, seed))
    col = {key: np.array([r[0][key] for r in rows]) for key in rows[0][0]}
    print(f"{args.configs} configurations; max over the values within {NEAR:g} dB of Keras's maximum (dB):")
    for key, label in (("exact", "|arraymel - Keras|, filterbank='exact'"), ("keras", "|arraymel - Keras|, filterbank='keras'"),
                       ("own", "|Keras - float64, Keras's filterbank|"),
                       ("excess_exact", "excess over Keras's rounding, 'exact'"),
                       ("excess_keras", "excess over Keras's rounding, 'keras'")):
        d = col[key]
        print(f"  {label:42s} > 2e-3: {int((d > 2e-3).sum()):4d}   > 1e-3: {int((d > 1e-3).sum()):4d}   "
              f"worst {d.max():.3g}   median {np.median(d):.2g}")
    print(f"\nworst {args.show} by excess of the exact filterbank (exact / keras / own / excess exact / excess keras):")
    for r, cfg, seed in sorted(rows, key=lambda r: -r[0]["excess_exact"])[: args.show]:
        print(f"  {r['exact']:.3g} / {r['keras']:.2g} / {r['own']:.2g} / {r['excess_exact']:.3g} / {r['excess_keras']:.2g}"
              f"  {cfg!r}  seed={seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
