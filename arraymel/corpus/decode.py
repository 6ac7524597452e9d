"""Reading one audio file into the float32 rows the mel computation takes, or saying why not.

:func:`decode` opens the file with soundfile (libsndfile), reads it as float32 (integer PCM is
scaled to [-1, 1) by libsndfile), checks it, mixes or selects channels and resamples it to the
configured rate with soxr. Every way a file can be unusable raises :class:`DecodeFailure` whose
message is the reason recorded in the manifest: an empty file, a format libsndfile does not
recognise, a decoder error, a stream shorter than its header declares (truncated), no samples,
non-finite samples, a file shorter than ``--min-seconds``, a rate mismatch under
``--no-resample``, or a source that changed while it was being read.

Decoding runs in a pool of threads (the threaded pipeline: libsndfile and soxr release the GIL) or
in decode processes that read straight into shared memory (:mod:`arraymel.corpus.decoders`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from arraymel.corpus.batching import extended, row_length
from arraymel.corpus.discover import Source
from arraymel.corpus.settings import RESAMPLE_QUALITY, CorpusSettings
from arraymel.corpus.storage import describe_os_error


class DecodeFailure(Exception):
    """This file cannot be used; ``str(exc)`` is the human-readable reason."""

    def __init__(self, reason: str, **meta):
        super().__init__(reason)
        self.reason = reason
        self.meta = meta


@dataclasses.dataclass
class Decoded:
    """One decoded file: ``audio`` is float32 of shape ``(rows, samples)`` at the configured rate."""

    source: Source
    audio: np.ndarray
    sampling_rate: float  # of the source
    channels: int  # of the source
    samples: int  # of the source, per channel
    size: int  # of the source when read
    mtime_ns: int
    #: the padded batch row(s) (``audio`` is a view of their start) when the file was read straight into
    #: them: ``(length,)``, or ``(rows, length)`` in a decode process's shared-memory slot
    row: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return self.samples / self.sampling_rate

    @property
    def length(self) -> int:
        """Samples per row fed to the mel computation (after resampling)."""
        return int(self.audio.shape[-1])


# libsndfile's log lines that reveal a damaged stream even when it decodes what is there
_WAV_DATA = re.compile(r"^\s*data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFFFFFFFFFF}
_OGG_DAMAGE = ("File ended unexpectedly without an End-Of-Stream flag set", "Last page lacks an end-of-stream bit",
               "Junk after the last page")


def libsndfile_message(exc: Exception) -> str:
    msg = str(exc)
    # "Error opening '/full/path': Format not recognised." -> "Format not recognised."
    m = re.match(r"Error opening .*?: (.*)$", msg, re.DOTALL)
    if m:
        msg = m.group(1)
    msg = msg.strip()
    if msg.startswith("Error : "):
        msg = msg[len("Error : "):]
    return msg or type(exc).__name__


def _damage_in_log(extra_info: str) -> str | None:
    """A truncation/damage reason found in libsndfile's log of the header, or None."""
    for m in _WAV_DATA.finditer(extra_info):
        declared, actual = int(m.group(1)), int(m.group(2))
        if declared > actual and declared not in _PLACEHOLDER_SIZES:
            return f"truncated: the header declares {declared} bytes of audio data but the file holds {actual}"
    found = [s for s in _OGG_DAMAGE if s in extra_info]
    if found:
        return "truncated or damaged Ogg stream (libsndfile: " + "; ".join(found) + ")"
    return None


def describe_nonfinite(data: np.ndarray, sr: float, offset: int = 0) -> str:
    """Why ``data`` (``(frames, channels)``, starting at frame ``offset`` of the file) is refused."""
    bad = ~np.isfinite(data)
    n_nan = int(np.isnan(data).sum())
    n_inf = int(bad.sum()) - n_nan
    frame, ch = np.unravel_index(int(np.argmax(bad)), bad.shape)
    frame += offset
    parts = [f"{n_nan} NaN"] if n_nan else []
    if n_inf:
        parts.append(f"{n_inf} infinite")
    where = f"first at sample {int(frame)} ({frame / sr:.3f} s)" + (f", channel {int(ch)}" if data.shape[1] > 1 else "")
    return f"non-finite samples: {' and '.join(parts)}; {where}"


def mix_channels(data: np.ndarray, mode: str) -> np.ndarray:
    """``(frames, channels)`` float32 to what is computed: ``(frames,)`` for mean/first, ``data`` for all."""
    if mode == "mean":
        return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if mode == "first":
        return data[:, 0]
    return data


def check_unchanged(path: str, st0: os.stat_result, meta: dict) -> None:
    """Refuse a decode whose source changed (size or mtime) while it was being read."""
    try:
        st1 = os.stat(path)
    except OSError:
        st1 = None
    if st1 is None or (st1.st_size, st1.st_mtime_ns) != (st0.st_size, st0.st_mtime_ns):
        raise DecodeFailure("the source changed while it was being read; it is retried on the next run", **meta)

@dataclasses.dataclass
class Opened:
    """A source opened by libsndfile, its header read and checked (see :func:`open_audio`)."""

    source: Source
    file: Any  # soundfile.SoundFile
    st0: os.stat_result
    meta: dict
    sampling_rate: float
    channels: int
    declared: int  # frames the header declares
    damage: str | None  # a truncation or damage found in libsndfile's log of the header

    def decoded_bytes(self, settings: CorpusSettings) -> int:
        """About the memory the decoded file takes when read whole (the source's samples, or more once
        resampled up), in float32 bytes."""
        up = max(1.0, float(settings.mel.sampling_rate) / self.sampling_rate)
        return int(self.declared * self.channels * 4 * up)


@contextlib.contextmanager
def open_audio(source: Source) -> Iterator[Opened]:
    """Open ``source`` and check its header, or raise :class:`DecodeFailure` with the reason.

    The file is opened by descriptor (``os.open``): a name that is not UTF-8 is read like any other,
    and a source that cannot be opened fails with the system's reason (``Permission denied``),
    which libsndfile would hide behind ``System error``.
    """
    import soundfile as sf

    try:
        st0 = os.stat(source.path)
    except FileNotFoundError:
        raise DecodeFailure("source file vanished before it could be read") from None
    except OSError as e:
        raise DecodeFailure(f"cannot stat the source: {describe_os_error(e)}") from None
    meta = {"size": st0.st_size, "mtime_ns": st0.st_mtime_ns}
    if st0.st_size == 0:
        raise DecodeFailure("empty file (0 bytes)", **meta)
    try:
        fd = os.open(source.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DecodeFailure(f"cannot open the source: {describe_os_error(e)}", **meta) from None
    try:
        try:
            f = sf.SoundFile(fd, closefd=False)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise DecodeFailure(f"not a readable audio file (libsndfile: {libsndfile_message(e)})", **meta) from None
        with f:
            sr, channels, declared = float(f.samplerate), int(f.channels), int(f.frames)
            meta.update(sampling_rate=sr, channels=channels)
            try:
                extra = f.extra_info
            except Exception:  # pragma: no cover - only a log
                extra = ""
            damage = _damage_in_log(extra)
            if declared == 0:
                raise DecodeFailure(damage or "no audio samples (the file declares 0 frames)", samples=0, **meta)
            if sr <= 0:
                raise DecodeFailure(f"invalid sampling rate {f.samplerate} in the header", **meta)
            yield Opened(source=source, file=f, st0=st0, meta=meta, sampling_rate=sr, channels=channels,
                         declared=declared, damage=damage)
    finally:
        os.close(fd)


def decode(source: Source, settings: CorpusSettings) -> Decoded:
    """Decode ``source`` for ``settings`` or raise :class:`DecodeFailure` with the reason."""
    with open_audio(source) as opened:
        return read_whole(opened, settings)


def read_whole(opened: Opened, settings: CorpusSettings, alloc: Callable[[int], np.ndarray | None] | None = None
               ) -> Decoded:
    """The whole decoded file of an :class:`Opened` source, or :class:`DecodeFailure`.

    ``alloc(n)``: where to read a mono file at the configured rate (a float32 array of ``n`` elements,
    e.g. a view of a shared-memory slot), or None to allocate it here.
    """
    import soundfile as sf

    source, f, st0, meta = opened.source, opened.file, opened.st0, opened.meta
    sr, channels, declared, damage = opened.sampling_rate, opened.channels, opened.declared, opened.damage
    target = float(settings.mel.sampling_rate)
    # A mono file at the configured rate is read straight into its padded batch row (batching.py):
    # a batch of this one file then needs no copy at all.
    direct = channels == 1 and sr == target and declared > 0
    row = None
    try:
        if direct:
            n_row = row_length(declared, settings.mel)
            row = alloc(n_row) if alloc is not None else None
            if row is None:
                row = np.empty(n_row, dtype=np.float32)
            data = f.read(frames=declared, out=row[:declared])[:, None]
            more = f.read(dtype="float32", always_2d=True)  # a header that under-counts: read the rest too
            if more.shape[0]:
                data, row = np.concatenate([data, more]), None
        else:
            data = f.read(dtype="float32", always_2d=True)
    except MemoryError:
        raise DecodeFailure(f"not enough memory to decode {declared} frames x {channels} channels", **meta) from None
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DecodeFailure(f"decoding failed, the stream is corrupt or truncated (libsndfile: {libsndfile_message(e)})",
                            **meta) from None
    n = int(data.shape[0])
    meta["samples"] = n
    if declared > 0 and n < declared:
        raise DecodeFailure(f"truncated: the header declares {declared} frames but only {n} could be decoded", **meta)
    if damage:
        raise DecodeFailure(damage, **meta)
    if n == 0:
        raise DecodeFailure("no audio samples", **meta)
    if not np.isfinite(data).all():
        raise DecodeFailure(describe_nonfinite(data, sr), **meta)
    duration = n / sr
    if duration < settings.min_seconds:
        raise DecodeFailure(f"too short: {duration:.6g} s < --min-seconds {settings.min_seconds:g}", **meta)

    if row is not None and row.shape[0] == row_length(n, settings.mel):
        m = min(row.shape[0], n + settings.mel.pad)
        row[n:m] = extended(row[None, :n], m - n, settings.mel.pad_mode)[0]
        row[m:] = 0.0
        check_unchanged(source.path, st0, meta)
        return Decoded(source=source, audio=row[None, :n], sampling_rate=sr, channels=channels, samples=n,
                       size=st0.st_size, mtime_ns=st0.st_mtime_ns, row=row)

    x = mix_channels(data, settings.channels)
    if sr != target:
        if not settings.resample:
            raise DecodeFailure(f"sampling rate {sr:g} Hz differs from the configured {target:g} Hz and --no-resample is set",
                                **meta)
        import soxr

        x = soxr.resample(np.ascontiguousarray(x), sr, target, quality=RESAMPLE_QUALITY)
        if x.shape[0] == 0:
            raise DecodeFailure(f"no samples left after resampling {n} samples from {sr:g} Hz to {target:g} Hz", **meta)
    audio = np.ascontiguousarray(x.T if x.ndim == 2 else x[None, :], dtype=np.float32)

    check_unchanged(source.path, st0, meta)
    return Decoded(source=source, audio=audio, sampling_rate=sr, channels=channels, samples=n,
                   size=st0.st_size, mtime_ns=st0.st_mtime_ns)
