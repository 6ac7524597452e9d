"""``--format kaldi``: Kaldi binary float matrices, ``OUT_DIR/kaldi/feats.NNNNNN.ark``, indexed by ``feats.scp``.

Each file's features are one matrix of ``(frames, num_mel_bins)`` float32 (Kaldi's layout, binary
``FM``), keyed by :func:`~arraymel.corpus.formats.member_id` of the file's key (no white space, as
Kaldi requires). ``OUT_DIR/kaldi/feats.scp`` (``<id> <ark path>:<offset>``, the ark's absolute path)
and ``utt2num_frames`` list every committed file sorted by id (byte order, as Kaldi's tools expect);
they are rewritten atomically at the end of every run from the manifest (a run killed before its end
leaves them as the previous run wrote them, and the next run brings them up to date). kaldiio
(``kaldiio.load_scp``) and Kaldi's own readers (``copy-feats scp:feats.scp ark,t:-``) read them.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from arraymel.corpus.formats import SUBDIRS, Staging, member_id, write_part
from arraymel.corpus.storage import fsync_dir

#: the binary marker, the token of a float32 matrix, and the sizes of its two dimensions (int32)
_HEADER = b"\0BFM "


def matrix_bytes(array: np.ndarray) -> bytes:
    """One Kaldi binary float32 matrix of ``array`` (arraymel's ``(bins, frames)``): ``(frames, bins)``.

    Examples
    --------
    >>> import numpy as np
    >>> from arraymel.corpus.formats.kaldi import matrix_bytes
    >>> b = matrix_bytes(np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> b[:5], len(b) == 15 + 6 * 4
    (b'\\x00BFM ', True)
    """
    t = np.ascontiguousarray(array.T, dtype="<f4")
    rows, cols = t.shape
    return _HEADER + b"\x04" + struct.pack("<i", rows) + b"\x04" + struct.pack("<i", cols) + t.tobytes()


class KaldiWriter:
    def __init__(self, settings, out_root: str, in_root: str):
        self.settings, self.out_root, self.in_root = settings, out_root, in_root
        self.dir = SUBDIRS["kaldi"]

    def parts(self, k: int) -> list[str]:
        return [f"{self.dir}/feats.{k:06d}.ark"]

    def write_shard(self, k: int, records, arrays) -> list[dict]:
        (ark_rel,) = self.parts(k)

        def ark(f) -> None:
            for r, a in zip(records, arrays):
                if a is None:
                    continue
                uid = member_id(r.key)
                f.write(uid.encode("ascii") + b" ")
                data = matrix_bytes(a)
                r.member, r.offset, r.nbytes, r.output = uid, f.tell(), len(data), ark_rel
                f.write(data)

        staging = Staging(self.out_root)
        staging.write(ark_rel, ark)
        return staging.publish()

    def finish(self, manifest) -> None:
        """Rewrite ``feats.scp`` and ``utt2num_frames`` from the manifest's committed rows."""
        lines = []
        for r in manifest.rows(order="shard"):
            if r["status"] == "ok" and r.get("shard") is not None and r.get("member"):
                ark = os.path.join(self.out_root, *r["output"].split("/"))
                lines.append((r["member"].encode("ascii"), f"{ark}:{r['offset']}", r["frames"]))
        lines.sort()
        scp = "".join(f"{uid.decode()} {where}\n" for uid, where, _ in lines).encode()
        u2n = "".join(f"{uid.decode()} {n}\n" for uid, _, n in lines).encode()
        write_part(self.out_root, f"{self.dir}/feats.scp", lambda f: f.write(scp))
        write_part(self.out_root, f"{self.dir}/utt2num_frames", lambda f: f.write(u2n))
        fsync_dir(os.path.join(self.out_root, self.dir))
        fsync_dir(self.out_root)
