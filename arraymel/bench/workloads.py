"""The benchmark workloads, shared by ``arraymel bench`` and the pytest-benchmark suites.

One definition of what is measured, so that numbers from ``benchmarks/`` and from the
harness can be compared: the named configurations, the batch sizes, the clip length, the
deterministic test signal and the audio-hours arithmetic.

>>> from arraymel.bench.workloads import config_params, make_batch, audio_hours
>>> config_params("speech")["fft_length"]
400
>>> make_batch(2, 0.5, 16000).shape
(2, 8000)
>>> audio_hours(16, 10.0) == 16 * 10 / 3600
True

Only NumPy is imported here; other namespaces are passed in (``xp=cupy``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import arraymel

#: Keras 3 ``MelSpectrogram`` defaults (what ``config="keras"`` means), in Keras's order.
KERAS_PARAMS: dict[str, Any] = arraymel.MelSpectrogram().get_config()

#: Parameters a workload may set beyond Keras's 13 (arraymel's extension; peers honour it or skip).
EXTRA_KEYS = ("top_db_scope",)

#: Named configurations: changes from the Keras defaults.
CONFIGS: dict[str, dict[str, Any]] = {
    # Keras 3 MelSpectrogram defaults: 2048-point frames every 512 samples, 128 mels, 16 kHz.
    "keras": {},
    # The usual speech front end (Whisper-like): 25 ms frames every 10 ms, 80 mels, 16 kHz.
    "speech": {"fft_length": 400, "sequence_stride": 160, "num_mel_bins": 80, "sampling_rate": 16000},
    # A small configuration for smoke tests; not a realistic workload.
    "tiny": {"fft_length": 256, "sequence_stride": 128, "num_mel_bins": 32, "sampling_rate": 8000},
}

#: Default clip length in seconds.
DEFAULT_SECONDS = 10.0

#: Default batch sizes per device kind: one clip (latency) and a throughput batch.
DEFAULT_BATCHES: dict[str, tuple[int, ...]] = {"cpu": (1, 16), "cuda": (1, 512)}


@dataclass(frozen=True)
class Workload:
    """One measured case: a configuration, a batch of ``batch`` clips of ``seconds`` seconds."""

    name: str
    config: str
    batch: int
    seconds: float = DEFAULT_SECONDS
    params: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def sampling_rate(self) -> float:
        return float(self.params["sampling_rate"])

    @property
    def samples(self) -> int:
        return clip_samples(self.seconds, self.sampling_rate)

    @property
    def audio_hours(self) -> float:
        return audio_hours(self.batch, self.seconds)

    def make_batch(self, xp: Any = np, *, seed: int = 0, dtype: str = "float32") -> Any:
        """This workload's input (see :func:`make_batch`)."""
        return make_batch(self.batch, self.seconds, self.sampling_rate, xp=xp, seed=seed, dtype=dtype)


def workload(config: str = "keras", batch: int = 16, seconds: float = DEFAULT_SECONDS,
             sampling_rate: float | None = None) -> Workload:
    """A :class:`Workload` for a named configuration (or a JSON file), e.g. ``workload("speech", 512)``."""
    name, params = resolve_config(config, sampling_rate=sampling_rate)
    return Workload(name=f"{name}-{batch}x{seconds:g}s", config=name, batch=int(batch), seconds=float(seconds),
                    params=params)


def config_params(name: str = "keras", **overrides: Any) -> dict[str, Any]:
    """The full parameter dict (Keras's 13 keys, plus any extra key the config sets) of a named config."""
    if name not in CONFIGS:
        raise ValueError(f"config={name!r} is not a named configuration: use one of {sorted(CONFIGS)} or a JSON file.")
    return {**KERAS_PARAMS, **CONFIGS[name], **overrides}


def load_config_file(path: str) -> dict[str, Any]:
    """Parameters from a JSON file: an object of Keras ``MelSpectrogram`` parameters.

    A Keras layer config (``layer.get_config()``) works too: keys that are not mel parameters
    (``name``, ``trainable``, ``dtype``) are ignored.
    """
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of MelSpectrogram parameters, got {type(raw).__name__}.")
    if "config" in raw and isinstance(raw["config"], dict):  # a serialised Keras layer
        raw = raw["config"]
    unknown = set(raw) - set(KERAS_PARAMS) - set(EXTRA_KEYS) - {"name", "trainable", "dtype", "autocast", "dtype_policy"}
    if unknown:
        raise ValueError(f"{path}: unknown parameter(s) {sorted(unknown)}; "
                         f"the parameters are {list(KERAS_PARAMS) + list(EXTRA_KEYS)}.")
    return {**KERAS_PARAMS, **{k: v for k, v in raw.items() if k in KERAS_PARAMS or k in EXTRA_KEYS}}


def resolve_config(spec: str, *, sampling_rate: float | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` for a named configuration or a JSON file path; ``sampling_rate`` overrides."""
    from arraymel.presets import PRESETS  # noqa: PLC0415

    if spec in CONFIGS:
        name, params = spec, config_params(spec)
    elif spec in PRESETS:  # a preset, run by arraymel and by its reference library (arraymel.bench.preset_peers)
        name, params = spec, {"preset": spec, "sampling_rate": PRESETS[spec]().config.sampling_rate}
    elif os.path.isfile(spec):
        name, params = os.path.splitext(os.path.basename(spec))[0], load_config_file(spec)
    else:
        raise ValueError(f"--config {spec!r}: neither a named configuration ({', '.join(sorted(CONFIGS))}), a preset "
                         f"({', '.join(PRESETS)}) nor a JSON file.")
    if sampling_rate is not None and float(sampling_rate) != float(params["sampling_rate"]):
        params = {**params, "sampling_rate": sampling_rate}
        name = f"{name}@{float(sampling_rate):g}"
    return name, params


def clip_samples(seconds: float, sampling_rate: float) -> int:
    """Samples in a clip of ``seconds`` at ``sampling_rate`` (rounded; at least 1)."""
    return max(1, int(round(float(seconds) * float(sampling_rate))))


def audio_hours(batch: int, seconds: float) -> float:
    """Hours of audio in ``batch`` clips of ``seconds`` seconds."""
    return batch * float(seconds) / 3600.0


def frames(params: dict[str, Any], samples: int) -> int:
    """Frames per clip for ``params`` (docs/semantics.md step 3; a preset's own count)."""
    if "preset" in params:
        from arraymel.presets import PRESETS  # noqa: PLC0415

        return PRESETS[params["preset"]]().n_frames(samples)
    n_fft = int(params["fft_length"])
    return 1 + (samples + 2 * (n_fft // 2) - n_fft) // int(params["sequence_stride"])


#: Distinct tonal sources; clip ``i`` uses source ``i % N_SOURCES``, circularly shifted, at its own level.
N_SOURCES = 8


def _source(k: int, t: np.ndarray, sampling_rate: float, seed: int) -> np.ndarray:
    """Tonal source ``k``: a log chirp plus a harmonic tone with tremolo, peak below 0.92."""
    rng = np.random.default_rng([seed, 1_000_003, k])
    nyq = 0.5 * sampling_rate
    duration = max(float(t[-1]), 1.0 / sampling_rate)
    f0 = 40.0 + 360.0 * rng.random()
    f1 = min(0.45 * sampling_rate, f0 * 2.0 ** (4.0 + 3.0 * rng.random()))
    rate = math.log(f1 / f0) / duration
    out = 0.35 * np.sin(2 * np.pi * f0 * np.expm1(rate * t) / rate)
    fund = 80.0 + 40.0 * k
    harm = np.zeros_like(t)
    for h in range(1, 6):
        if h * fund < nyq:
            harm += np.sin(2 * np.pi * h * fund * t + rng.random() * 2 * np.pi) / h
    out += 0.25 * (0.6 + 0.4 * np.sin(2 * np.pi * (2.0 + 3.0 * rng.random()) * t)) * harm
    return out


def _clip(i: int, source: np.ndarray, seed: int) -> np.ndarray:
    """Clip ``i``: its source circularly shifted, at a level from 0 to -24 dB in 6 dB steps, plus noise.

    Each clip depends only on ``(seed, i)`` and the clip length, so ``make_batch(16)[:2]``
    equals ``make_batch(2)``. The level steps across clips so that a batch has quiet and loud
    clips and the batch-wide ``top_db`` floor matters, as in real data.
    """
    rng = np.random.default_rng([seed, i])
    clip = np.roll(source, int(rng.integers(0, source.shape[0])))
    clip *= source.dtype.type(10.0 ** (-6.0 * (i % 5) / 20.0))
    noise = rng.standard_normal(source.shape[0], dtype=np.float32)
    noise *= np.float32(0.003)
    clip += noise
    return clip


def make_batch(batch: int, seconds: float = DEFAULT_SECONDS, sampling_rate: float = 16000, *, xp: Any = np,
               seed: int = 0, dtype: str = "float32", device: Any = None) -> Any:
    """A deterministic batch of test audio, shape ``(batch, round(seconds * sampling_rate))``.

    Built on the host with NumPy, then handed to ``xp.asarray`` (``xp=cupy`` puts it on the
    current GPU; ``device=`` is passed through when given). Amplitudes stay within [-1, 1].
    """
    if batch < 0:
        raise ValueError(f"batch={batch!r}: must be >= 0.")
    n = clip_samples(seconds, sampling_rate)
    t = np.arange(n, dtype=np.float64) / float(sampling_rate)
    out = np.empty((int(batch), n), dtype=dtype)
    sources: dict[int, np.ndarray] = {}
    for i in range(int(batch)):
        k = i % N_SOURCES
        if k not in sources:
            sources[k] = _source(k, t, float(sampling_rate), seed).astype(np.result_type(dtype, np.float32))
        out[i] = _clip(i, sources[k], seed)
    if xp is np or getattr(xp, "__name__", "") == "numpy":
        return out
    if device is not None:
        return xp.asarray(out, device=device)
    return xp.asarray(out)


#: The named workloads of the pytest-benchmark suites (CPU: benchmarks/test_cpu.py, GPU: benchmarks/test_gpu.py).
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        workload("keras", 16),
        workload("speech", 16),
        workload("keras", 1),
        workload("keras", 10000, 0.025),  # many short clips (utterances, windows): 400 samples each
        workload("speech", 10000, 0.025),
        workload("keras", 512),
        workload("speech", 512),
    )
}
