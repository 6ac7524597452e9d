"""``--format shar``: Lhotse Shar shards, ``OUT_DIR/shar/cuts.NNNNNN.jsonl.gz`` beside ``features.NNNNNN.tar``.

``lhotse.CutSet.from_shar(in_dir=OUT_DIR/shar)`` reads them: one cut per file (its id is
:func:`~arraymel.corpus.formats.member_id` of the key), with its recording's metadata (the source file,
its sampling rate, channels, samples and duration) and a features manifest (``type`` names arraymel and
the configuration hash). The tar holds, per cut, ``<id>.npy`` (the ``(frames, num_mel_bins)`` matrix
Lhotse expects; ``<id>.llc`` with ``--shar-compression lilcom``) then ``<id>.json`` (the features manifest),
as Lhotse's own writer does; ``webdataset.WebDataset(tars).decode()`` reads the same tars.

Lhotse derives a cut's frame count from its duration (``(round(duration * sr) + hop // 2) // hop``) and
``load_features`` keeps that many frames, while arraymel's count follows the configuration (centred
frames: ``1 + samples // hop``; Kaldi's ``snip_edges`` drops the edges). So a cut's ``duration`` is the
span of its features, ``frames * hop / sampling_rate``: ``cut.num_frames`` is then exactly the stored
count and ``cut.load_features()`` returns every frame. The audio's own duration is the recording's
(``cut.recording.duration``) and ``cut.custom["audio_duration"]``.

Everything written is a function of the files and the configuration (fixed tar headers, gzip without a
time stamp), so a resumed run writes the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import numpy as np

from arraymel.corpus.formats import SUBDIRS, Staging, member_id


def _info(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o644, 0, 0, "", ""
    return ti


def npy_header(a: np.ndarray) -> bytes:
    """The ``.npy`` header of ``a`` (what :func:`numpy.save` writes before the data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(a))
    return buf.getvalue()


def _ustar(name: bytes, size: int) -> bytes:
    """The 512-byte POSIX ustar header of a regular file ``name`` (at most 100 bytes) of ``size`` bytes, mode 644,
    owner 0, time 0: what ``tarfile`` writes for such a member, built directly (``TarInfo.tobuf`` costs more than
    the rest of a member)."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[148:156] = b"        "
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _add(t: tarfile.TarFile, info: tarfile.TarInfo, bufs: list) -> int:
    """Append a member made of ``bufs`` to ``t`` without copying them (``TarFile.addfile`` reads a file object
    in blocks); the offset of its data in the tar."""
    name = info.name.encode("ascii")  # member ids are ASCII (formats.member_id)
    if len(name) <= 100 and info.size < 8 ** 11:
        t.fileobj.write(_ustar(name, info.size))
    else:  # a long name: tarfile's own (GNU) long-name header
        t.fileobj.write(info.tobuf(tarfile.GNU_FORMAT, t.encoding, t.errors))
    start = t.fileobj.tell()
    for b in bufs:
        t.fileobj.write(b)
    pad = -info.size % tarfile.BLOCKSIZE
    if pad:
        t.fileobj.write(b"\0" * pad)
    t.offset = t.fileobj.tell()
    t.members.append(info)
    return start


def _rate(v: float):
    return int(v) if float(v).is_integer() else float(v)


class SharWriter:
    def __init__(self, settings, out_root: str, in_root: str):
        self.settings, self.out_root, self.in_root = settings, out_root, in_root
        self.dir = SUBDIRS["shar"]
        mel = settings.mel
        self.sr = _rate(mel.sampling_rate)
        self.hop = int(mel.sequence_stride)
        self.frame_shift = self.hop / float(mel.sampling_rate)
        self.feature_type = f"arraymel-mel:{settings.config_hash[:16]}"
        self.lilcom = settings.shar_compression == "lilcom"

    def parts(self, k: int) -> list[str]:
        return [f"{self.dir}/cuts.{k:06d}.jsonl.gz", f"{self.dir}/features.{k:06d}.tar"]

    def member_bytes(self, array: np.ndarray) -> tuple[list, int, str]:
        """The stored bytes of one matrix (Lhotse's ``(frames, features)`` layout) as a list of buffers, their
        total size, and the member's extension."""
        t = np.ascontiguousarray(array.T)
        if self.lilcom:
            import lilcom

            data = lilcom.compress(t, tick_power=-5)
            return [data], len(data), ".llc"
        head = npy_header(t)
        return [head, t], len(head) + t.nbytes, ".npy"

    def _features(self, cid: str, frames: int, bins: int) -> dict:
        span = frames * self.hop / float(self.settings.mel.sampling_rate)
        return {"type": self.feature_type, "num_frames": frames, "num_features": bins, "frame_shift": self.frame_shift,
                "sampling_rate": self.sr, "start": 0, "duration": span, "storage_type": "shar", "storage_path": "",
                "storage_key": "", "recording_id": cid, "channels": 0}

    def write_shard(self, k: int, records, arrays) -> list[dict]:
        cuts_rel, tar_rel = self.parts(k)
        cuts = []

        def tar(f) -> None:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as t:
                for r, a in zip(records, arrays):
                    if a is None:
                        continue
                    cid = member_id(r.key)
                    bufs, size, ext = self.member_bytes(a)
                    r.member, r.nbytes, r.output = cid, size, tar_rel
                    r.offset = _add(t, _info(cid + ext, size), bufs)
                    feats = self._features(cid, int(a.shape[-1]), int(a.shape[0]))
                    meta = (json.dumps(feats) + "\n").encode()
                    _add(t, _info(cid + ".json", len(meta)), [meta])
                    src_rate = int(round(r.sampling_rate)) if r.sampling_rate else self.sr
                    cuts.append({
                        "id": cid, "start": 0, "duration": feats["duration"], "channel": 0, "supervisions": [],
                        "features": feats,
                        "recording": {"id": cid, "sources": [{"type": "file", "channels": list(range(r.channels or 1)),
                                                              "source": os.path.join(self.in_root, r.key)}],
                                      "sampling_rate": src_rate, "num_samples": r.samples,
                                      "duration": r.samples / src_rate, "channel_ids": list(range(r.channels or 1))},
                        "custom": {"source": r.key, "audio_duration": r.duration_s, "arraymel_config": self.settings.config_hash},
                        "type": "MonoCut",
                    })

        staging = Staging(self.out_root)
        staging.write(tar_rel, tar)

        def jsonl(f) -> None:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as g:
                for c in cuts:
                    g.write((json.dumps(c) + "\n").encode())

        staging.write(cuts_rel, jsonl)
        return staging.publish()  # both renamed only once both are written and fsynced

    def finish(self, manifest) -> None:
        pass  # every shard is complete in itself
