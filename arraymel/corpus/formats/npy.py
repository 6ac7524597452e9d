"""``--format npy`` extras: the NeMo-style JSONL manifest (``--nemo-manifest``).

NeMo's feature datasets read ``[features, frames]`` arrays (arraymel's ``.npy`` layout) through a
JSONL manifest: one line per file with ``feature_filepath`` (the ``.npy``), ``duration`` (seconds of
audio) and ``audio_filepath`` (the source). ``OUT_DIR/nemo_manifest.jsonl`` lists every committed
file in key order; it is rewritten atomically at the end of every run from the manifest.
"""

from __future__ import annotations

import json
import os

from arraymel.corpus.formats import write_part
from arraymel.corpus.storage import fsync_dir

NEMO_MANIFEST = "nemo_manifest.jsonl"


def write_nemo_manifest(manifest, out_root: str, in_root: str) -> None:
    lines = []
    for r in manifest.rows():
        if r["status"] == "ok" and r["output"]:
            lines.append(json.dumps({"feature_filepath": os.path.join(out_root, *r["output"].split("/")),
                                     "duration": r["duration_s"], "audio_filepath": os.path.join(in_root, r["key"])}))
    data = "".join(line + "\n" for line in lines).encode()
    write_part(out_root, NEMO_MANIFEST, lambda f: f.write(data))
    fsync_dir(out_root)
