"""Generated audio corpora for the ``arraymel corpus`` tests, and an independent reference decoder.

Everything is written with soundfile into a temporary directory: WAV (int16 and float32), FLAC
(int16, int24), Ogg Vorbis and, where libsndfile can encode it, MP3; mono and stereo; 8, 16, 44.1
and 48 kHz; from shorter than one frame to a minute. ``BAD`` files cover every way a file can be
unusable, with the words their recorded reason must contain.
"""

from __future__ import annotations

import os

import numpy as np

#: Mel parameters used by the tests (Keras defaults except fewer mel bins, to keep it quick).
MEL = {"num_mel_bins": 64}
#: --min-seconds used with the generated corpus: BAD short file is below it, every GOOD file above.
MIN_SECONDS = 0.01


def signal(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    """Tones, a chirp, noise and a near-silent stretch (so that top_db clipping matters); (n, channels)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    out = np.empty((n, channels), dtype=np.float64)
    for c in range(channels):
        f0 = rng.uniform(100, min(3000, sr / 4))
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * (50 + 400 * t) * t)
        x += 0.05 * rng.standard_normal(n)
        quiet = slice(n // 3, n // 2)
        x[quiet] *= 1e-4  # about -80 dB
        out[:, c] = x * (0.5 + 0.5 * c)
    return np.clip(out, -0.99, 0.99)


#: relative path -> (format, subtype, sampling rate, channels, seconds)
GOOD = {
    "wav/s16_mono_16k.wav": ("WAV", "PCM_16", 16000, 1, 3.0),
    "wav/f32_stereo_48k.wav": ("WAV", "FLOAT", 48000, 2, 2.5),
    "wav/s16_stereo_44k.wav": ("WAV", "PCM_16", 44100, 2, 1.7),
    "wav/tiny_8k.wav": ("WAV", "PCM_16", 8000, 1, 100 / 8000),  # shorter than one frame
    "wav/sub_frame_16k.wav": ("WAV", "FLOAT", 16000, 1, 200 / 16000),  # 200 samples < pad of 1024
    "flac/s16_mono_8k.flac": ("FLAC", "PCM_16", 8000, 1, 4.0),
    "flac/s24_stereo_48k.flac": ("FLAC", "PCM_24", 48000, 2, 2.0),
    "ogg/mono_16k.ogg": ("OGG", "VORBIS", 16000, 1, 3.0),
    "ogg/stereo_44k.ogg": ("OGG", "VORBIS", 44100, 2, 2.0),
    "long/minute_16k.flac": ("FLAC", "PCM_16", 16000, 1, 60.0),
    "same/b.wav": ("WAV", "PCM_16", 16000, 1, 1.0),
    "same/b.flac": ("FLAC", "PCM_16", 16000, 1, 1.5),
    "UPPER/LOUD.WAV": ("WAV", "PCM_16", 16000, 2, 1.2),
}
MP3 = {"mp3/mono_16k.mp3": ("MP3", "MPEG_LAYER_III", 16000, 1, 2.0)}

#: relative path -> words that the recorded reason must contain
BAD = {
    "bad/zero_bytes.wav": "empty file",
    "bad/garbage.flac": "not a readable audio file",
    "bad/truncated.wav": "truncated",
    "bad/truncated.flac": "corrupt or truncated",
    "bad/truncated.ogg": "truncated",
    "bad/no_samples.wav": "no audio samples",
    "bad/nan.wav": "non-finite samples",
    "bad/inf.wav": "non-finite samples",
    "bad/short.wav": "too short",
}
#: files that are not audio by name and must be ignored by the default globs
IGNORED = ("notes.txt", "wav/readme.md")


def can_write_mp3() -> bool:
    import soundfile as sf

    return "MP3" in sf.available_formats() and "MPEG_LAYER_III" in sf.available_subtypes("MP3")


def write_good(root: str, files: dict | None = None, seed: int = 0) -> list[str]:
    import soundfile as sf

    files = dict(GOOD if files is None else files)
    if files is GOOD or files == GOOD:
        if can_write_mp3():
            files.update(MP3)
    for i, (rel, (fmt, sub, sr, ch, secs)) in enumerate(sorted(files.items())):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, signal(secs, sr, ch, seed + i), sr, format=fmt, subtype=sub)
    return sorted(files)


def _truncate(path: str, fraction: float) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def write_bad(root: str) -> list[str]:
    import soundfile as sf

    def p(rel):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    open(p("bad/zero_bytes.wav"), "wb").close()
    with open(p("bad/garbage.flac"), "wb") as f:
        f.write(np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    x = signal(2.0, 16000, 1, 7)
    for rel, fmt, sub in (("bad/truncated.wav", "WAV", "PCM_16"), ("bad/truncated.flac", "FLAC", "PCM_16"),
                          ("bad/truncated.ogg", "OGG", "VORBIS")):
        sf.write(p(rel), x, 16000, format=fmt, subtype=sub)
        _truncate(p(rel), 0.6)
    sf.write(p("bad/no_samples.wav"), np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    y = signal(1.0, 16000, 1, 8).astype(np.float32)
    y[5000] = np.nan
    sf.write(p("bad/nan.wav"), y, 16000, subtype="FLOAT")
    y = signal(1.0, 16000, 2, 9).astype(np.float32)
    y[100, 1] = np.inf
    sf.write(p("bad/inf.wav"), y, 16000, subtype="FLOAT")
    sf.write(p("bad/short.wav"), signal(80 / 16000, 16000, 1, 10), 16000, subtype="PCM_16")  # 5 ms < MIN_SECONDS
    bad = dict(BAD)
    if can_write_mp3():
        sf.write(p("bad/truncated.mp3"), x, 16000, format="MP3", subtype="MPEG_LAYER_III")
        _truncate(p("bad/truncated.mp3"), 0.5)
        bad["bad/truncated.mp3"] = "truncated"
    return sorted(bad)


def bad_reasons() -> dict[str, str]:
    """BAD, plus the MP3 case where libsndfile can encode MP3."""
    return {**BAD, **({"bad/truncated.mp3": "truncated"} if can_write_mp3() else {})}


def write_ignored(root: str) -> None:
    for rel in IGNORED:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("not audio\n")


def make_corpus(root: str, *, bad: bool = True) -> tuple[list[str], list[str]]:
    """Write the test corpus under ``root``; returns (good keys, bad keys)."""
    good = write_good(root)
    write_ignored(root)
    return good, (write_bad(root) if bad else [])


def reference(path: str, *, channels: str = "mean", sampling_rate: float = 16000, **mel) -> np.ndarray:
    """The expected output, computed independently: soundfile + soxr, then arraymel on the file alone."""
    import soundfile as sf
    import soxr

    import arraymel

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    if channels == "mean":
        x = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    elif channels == "first":
        x = data[:, 0]
    else:
        x = data
    if sr != sampling_rate:
        x = soxr.resample(np.ascontiguousarray(x), sr, sampling_rate, quality="HQ")
    if x.ndim == 2:
        x = np.ascontiguousarray(x.T)
    return arraymel.mel_spectrogram(x, sampling_rate=sampling_rate, top_db_scope="example", **mel)


def crashing_chunk(sources, settings, out_root, *args):
    """A chunk function whose worker dies abruptly when its chunk holds a file named ``*CRASH*``
    (what a segmentation fault inside a decoder looks like to the engine)."""
    from arraymel.corpus.chunks import process_chunk

    if any("CRASH" in s.key for s in sources):
        os._exit(3)
    return process_chunk(sources, settings, out_root, *args)
