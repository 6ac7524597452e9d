"""A long file in bounded memory: decoded, resampled, computed and written block by block.

A file whose decoded audio would exceed an eighth of ``--memory-per-worker`` is never held whole:

1. libsndfile reads it in blocks; each block is checked (non-finite samples), its channels mixed
   as for a whole file, and passed through soxr's streaming resampler (``ResampleStream``, the same
   quality; its output equals ``soxr.resample`` on the whole file, see docs/corpus.md);
2. :class:`Framer` cuts the resampled stream into segments and computes each with the library
   (``top_db=None``). The frames kept from a segment are exactly the whole file's frames: a
   segment starts ``ceil(pad / hop)`` frames early (at a multiple of the hop), so that the frames
   kept never read the segment's own left reflection, and ends where the last kept frame's window
   ends; the first and last segments are the file's own ends, so their reflections are the file's;
3. the frames (dB, unclipped) go to an unnamed scratch file in OUT_DIR, frame after frame, while the
   maximum of each channel is tracked;
4. the output is then written through the usual atomic path (temporary name, fsync, rename): the
   ``.npy`` header, then the scratch read back in blocks, clipped at ``top_db`` below each channel's
   maximum, cast to the output dtype and transposed into the ``(..., num_mel_bins, frames)`` layout.

Memory is therefore a few blocks, whatever the file's length; disk use is twice the output's size
while the file is written. The arithmetic of every frame and of the clipping is the batch path's,
so the output is the same as for the file read whole (the tests compare them with
``arraymel.mel_spectrogram`` on the whole decoded file).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable

import numpy as np

from arraymel.corpus.decode import (
    DecodeFailure,
    Opened,
    check_unchanged,
    describe_nonfinite,
    libsndfile_message,
    mix_channels,
    open_audio,
    read_whole,
)
from arraymel.corpus.manifest import FileRecord
from arraymel.corpus.settings import RESAMPLE_QUALITY, CorpusSettings
from arraymel.corpus.storage import OutputError, Writer, describe_os_error, output_rel, printable


class Framer:
    """The frames of a signal that arrives in pieces, equal to the library's frames of the whole signal.

    ``mel(y)`` computes ``(rows, samples)`` -> ``(rows, num_mel_bins, frames)`` without clipping.
    :meth:`add` takes the next samples and returns the frames that are complete (or None);
    :meth:`finish` returns the rest once the signal has ended.
    """

    def __init__(self, cfg, rows: int, mel: Callable, block: int):
        self.cfg = cfg
        self.hop, self.pad = cfg.sequence_stride, cfg.pad
        self.lead = -(-self.pad // self.hop)  # frames computed before the first kept one (ceil(pad / hop))
        self.mel = mel
        self.block = max(int(block), cfg.fft_length + (self.lead + 1) * self.hop)
        self._pieces: list[np.ndarray] = []
        self._buf = np.empty((rows, 0), dtype=np.float32)
        self.start = 0  # signal index of the buffer's first sample (a multiple of the hop)
        self.received = 0  # samples received so far
        self.next = 0  # the next frame to hand out
        self._pending = 0

    def add(self, x: np.ndarray) -> np.ndarray | None:
        self._pieces.append(x)
        self._pending += x.shape[-1]
        self.received += x.shape[-1]
        if self._pending < self.block:
            return None
        return self._emit(final=False)

    def finish(self) -> np.ndarray | None:
        return self._emit(final=True)

    def _emit(self, final: bool) -> np.ndarray | None:
        if self._pieces:
            self._buf = np.concatenate([self._buf, *self._pieces], axis=-1)
            self._pieces, self._pending = [], 0
        end, cfg = self.received, self.cfg
        if final:
            stop = cfg.n_frames(end)
        else:  # frames whose whole window lies in what has been received
            stop = max(0, (end + self.pad - cfg.fft_length) // self.hop + 1)
        if stop <= self.next or end == 0:
            return None
        y = self._buf
        first = self.next - self.start // self.hop
        frames = self.mel(y)[:, :, first : first + stop - self.next]
        self.next = stop
        # keep what the next segment needs: `lead` frames before the next kept one, and at least
        # pad + 1 samples (the right reflection of the end of the signal)
        keep_from = min((stop - self.lead) * self.hop, end - (self.pad + 1))
        keep_from = max(self.start, keep_from // self.hop * self.hop)
        if keep_from > self.start:
            self._buf = self._buf[:, keep_from - self.start :].copy()
            self.start = keep_from
        return frames


def block_frames(settings: CorpusSettings) -> int:
    """Source frames read at a time (about a 64th of --memory-per-worker of float32 audio)."""
    return max(1 << 14, settings.memory_bytes // 64 // 4)


def stream_file(opened: Opened, settings: CorpusSettings, writer: Writer, mel: Callable, versions_json: str | None
                ) -> FileRecord:
    """Compute and write the output of a long file in blocks (see the module docstring).

    Raises :class:`DecodeFailure` for a file that cannot be used, :class:`OutputError` when OUT_DIR
    cannot be written; returns the failed record of a value that does not fit ``--out-dtype``.
    """
    import soundfile as sf

    source, meta, cfg = opened.source, opened.meta, settings.mel
    sr, channels, target = opened.sampling_rate, opened.channels, float(cfg.sampling_rate)
    if sr != target and not settings.resample:
        raise DecodeFailure(f"sampling rate {sr:g} Hz differs from the configured {target:g} Hz and --no-resample is set",
                            **meta)
    rows = channels if settings.channels == "all" else 1
    resampler = None
    if sr != target:
        import soxr

        resampler = soxr.ResampleStream(sr, target, rows, dtype="float32", quality=RESAMPLE_QUALITY)
    framer = Framer(cfg, rows, mel, block_frames(settings))
    n = 0
    try:
        scratch = writer.scratch(source.key)
    except OSError as e:
        raise OutputError(f"cannot create a scratch file in OUT_DIR for {printable(source.key)}: "
                          f"{describe_os_error(e)}") from None
    with os.fdopen(scratch, "w+b", buffering=0) as spill:
        peak = np.full(rows, -np.inf)
        absmax = 0.0
        frames_done = 0
        compute_dtype = None

        def put(block: np.ndarray | None) -> None:
            nonlocal absmax, frames_done, compute_dtype
            if block is None or block.shape[-1] == 0:
                return
            compute_dtype = block.dtype
            peak[:] = np.maximum(peak, block.max(axis=(1, 2)))
            absmax = max(absmax, float(np.max(np.abs(block))))
            try:
                spill.write(np.ascontiguousarray(block.transpose(2, 0, 1)).data)
            except OSError as e:
                raise OutputError(f"cannot write a scratch file in OUT_DIR for {printable(source.key)}: "
                                  f"{describe_os_error(e)}") from None
            frames_done += block.shape[-1]

        try:
            for data in opened.file.blocks(blocksize=block_frames(settings), dtype="float32", always_2d=True):
                if not np.isfinite(data).all():
                    raise DecodeFailure(describe_nonfinite(data, sr, offset=n), **meta)
                n += data.shape[0]
                x = mix_channels(data, settings.channels)
                if resampler is not None:
                    x = resampler.resample_chunk(np.ascontiguousarray(x), last=False)
                put(framer.add(np.ascontiguousarray(x.T if x.ndim == 2 else x[None, :])))
        except (sf.LibsndfileError, RuntimeError) as e:
            raise DecodeFailure(f"decoding failed, the stream is corrupt or truncated (libsndfile: {libsndfile_message(e)})",
                                **meta) from None
        if resampler is not None:
            x = resampler.resample_chunk(np.zeros((0, rows) if rows > 1 else 0, dtype=np.float32), last=True)
            put(framer.add(np.ascontiguousarray(x.T if x.ndim == 2 else x[None, :])))
        meta["samples"] = n
        if opened.declared > 0 and n < opened.declared:
            raise DecodeFailure(f"truncated: the header declares {opened.declared} frames but only {n} could be decoded",
                                **meta)
        if opened.damage:
            raise DecodeFailure(opened.damage, **meta)
        if n == 0 or framer.received == 0:
            raise DecodeFailure("no audio samples", **meta)
        if n / sr < settings.min_seconds:
            raise DecodeFailure(f"too short: {n / sr:.6g} s < --min-seconds {settings.min_seconds:g}", **meta)
        put(framer.finish())
        check_unchanged(source.path, opened.st0, meta)
        if frames_done != cfg.n_frames(framer.received):  # an internal error: never write a short output
            raise RuntimeError(f"streamed {frames_done} frames of {printable(source.key)}, expected "
                               f"{cfg.n_frames(framer.received)} for {framer.received} samples")

        out_dtype = np.dtype(settings.out_dtype)
        shape = (cfg.num_mel_bins, frames_done) if settings.channels != "all" else (rows, cfg.num_mel_bins, frames_done)
        clip = cfg.power_to_db and cfg.top_db is not None
        floor = (peak.astype(compute_dtype) - np.asarray(cfg.top_db, dtype=compute_dtype)) if clip else None
        if out_dtype != compute_dtype:  # what the batch path checks after clipping and casting
            extreme = np.concatenate([peak, floor]) if clip else np.array([absmax])
            if not np.isfinite(np.abs(extreme).astype(compute_dtype).astype(out_dtype)).all():
                return _unrepresentable(opened, settings, versions_json, absmax, framer.received)
        digest = hashlib.sha256()

        def fill(fd: int) -> None:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(out_dtype),
                                                          "fortran_order": False, "shape": shape})
            head = header.getvalue()
            os.pwrite(fd, head, 0)
            width = rows * cfg.num_mel_bins
            step = max(1, block_frames(settings) // max(1, width))
            item = np.dtype(compute_dtype).itemsize
            for t0 in range(0, frames_done, step):
                t1 = min(frames_done, t0 + step)
                raw = os.pread(scratch, (t1 - t0) * width * item, t0 * width * item)
                a = np.frombuffer(raw, dtype=compute_dtype).reshape(t1 - t0, rows, cfg.num_mel_bins)
                if clip:
                    a = np.maximum(a, floor[None, :, None])
                a = np.ascontiguousarray(a.astype(out_dtype, copy=False).reshape(t1 - t0, width).T)
                for r in range(width):
                    os.pwrite(fd, a[r].data, len(head) + (r * frames_done + t0) * out_dtype.itemsize)
            size = len(head) + width * frames_done * out_dtype.itemsize
            for off in range(0, size, 1 << 22):
                digest.update(os.pread(fd, min(1 << 22, size - off), off))

        _, dirs = writer.write_with(source.key, fill)
    return FileRecord(
        key=source.key, status="ok", output=output_rel(source.key), source_size=opened.st0.st_size,
        source_mtime_ns=opened.st0.st_mtime_ns, sampling_rate=sr, channels=channels, samples=n, duration_s=n / sr,
        mel_samples=framer.received, frames=frames_done, shape=shape, dtype=out_dtype.name, sha256=digest.hexdigest(),
        config_hash=settings.config_hash, versions=versions_json, sync_dirs=tuple(dirs),
    )


def decode_or_stream(source, settings: CorpusSettings, writer: Writer, mel: Callable, versions_json: str | None):
    """The decoded file (:class:`~arraymel.corpus.decode.Decoded`), or, for a file too long to hold
    (``--memory-per-worker``), its record once :func:`stream_file` has written its output."""
    with open_audio(source) as opened:
        if opened.decoded_bytes(settings) > settings.stream_bytes:
            preset = settings.preset_obj
            if preset is not None and (preset.signal_step or preset.log_rule or preset.drop_last_frame):
                from arraymel.corpus.records import failed_record

                return failed_record(opened.source, f"too long to hold in --memory-per-worker "
                                     f"{settings.memory_per_worker:g} MB, and the {preset.name} preset needs the whole "
                                     "file (its log rule or signal step is not computed block by block): raise "
                                     "--memory-per-worker", settings.config_hash, versions_json, opened.meta)
            return stream_file(opened, settings, writer, mel, versions_json)
        return read_whole(opened, settings)


def _unrepresentable(opened: Opened, settings: CorpusSettings, versions_json: str | None, absmax: float,
                     received: int) -> FileRecord:
    from arraymel.corpus.records import failed_record

    rec = failed_record(opened.source, f"values up to {absmax:.6g} exceed the {settings.out_dtype} range; use --out-dtype "
                                       "float32", settings.config_hash, versions_json, opened.meta)
    rec.mel_samples = received
    return rec
