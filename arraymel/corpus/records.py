"""The manifest row of a file that failed, from whatever was learnt of it before it failed.

Every engine (the threads pipeline, the process chunks, the decode processes, Dask) and the streaming
reader record failures the same way; this module depends only on the row and source types, so each of
them can import it without importing another engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arraymel.corpus.discover import Source
from arraymel.corpus.manifest import FileRecord

if TYPE_CHECKING:
    from arraymel.corpus.decode import Decoded


def failed_record(source: Source, reason: str, settings_hash: str, versions_json: str, meta: dict | None = None,
                  decoded: Decoded | None = None) -> FileRecord:
    meta = dict(meta or {})
    if decoded is not None:
        meta.update(size=decoded.size, mtime_ns=decoded.mtime_ns, sampling_rate=decoded.sampling_rate,
                    channels=decoded.channels, samples=decoded.samples)
    sr, n = meta.get("sampling_rate"), meta.get("samples")
    return FileRecord(
        key=source.key, status="failed", error=reason,
        source_size=meta.get("size", source.size), source_mtime_ns=meta.get("mtime_ns", source.mtime_ns),
        sampling_rate=sr, channels=meta.get("channels"), samples=n,
        duration_s=(n / sr) if (sr and n is not None) else None,
        mel_samples=None if decoded is None else decoded.length,
        config_hash=settings_hash, versions=versions_json,
    )
