"""``arraymel corpus``: a tree of audio files to mel features on disk, batched, resumable, crash-safe.

Every audio file ``IN_DIR/<rel>`` becomes ``OUT_DIR/<rel>.npy`` (``--format npy``; ``shar`` and ``kaldi``
write shards instead, see :mod:`~arraymel.corpus.formats`); ``OUT_DIR/manifest.sqlite``
records what was done with which configuration. The modules, one idea each:

- :mod:`~arraymel.corpus.settings`: the mel configuration, output options and their hash.
- :mod:`~arraymel.corpus.discover`: finding the files (globs, lists, symlink rules).
- :mod:`~arraymel.corpus.decode`: reading, checking, down-mixing and resampling one file.
- :mod:`~arraymel.corpus.batching`: length buckets and the padded rows of a batch.
- :mod:`~arraymel.corpus.stream`: a long file decoded, resampled, computed and written in blocks.
- :mod:`~arraymel.corpus.compute`: one batch through :func:`arraymel.mel_spectrogram`.
- :mod:`~arraymel.corpus.storage`: the lock, atomic output writes, output path checks, leftover clean-up.
- :mod:`~arraymel.corpus.manifest`: the SQLite manifest.
- :mod:`~arraymel.corpus.formats`: how outputs are stored (``npy``; ``shar`` and ``kaldi`` shards).
- :mod:`~arraymel.corpus.reader`: :func:`arraymel.corpus.open`, the features of a run as a mapping.
- :mod:`~arraymel.corpus.chunks`: a chunk of files processed start to finish inside one worker.
- :mod:`~arraymel.corpus.local`: the CPU engine, one worker process per CPU running chunks.
- :mod:`~arraymel.corpus.pipeline`: the GPU engine, decode threads -> buckets -> compute thread -> writers.
- :mod:`~arraymel.corpus.dask_runner`: the same chunks on dask.distributed workers.
- :mod:`~arraymel.corpus.runner`: a whole run (lock, resume, commits, failures, summary).
- :mod:`~arraymel.corpus.status`: ``arraymel corpus status``.
- :mod:`~arraymel.corpus.progress`: progress bar, plain lines and the summary.
- :mod:`~arraymel.corpus.cli`: the ``arraymel corpus`` command line.

Nothing here imports soundfile, soxr, rich or dask until a run needs them.
"""

from arraymel.corpus.reader import Corpus, CorpusError, open  # noqa: E402, A004 - the public reader

__all__ = ["Corpus", "CorpusError", "open"]
