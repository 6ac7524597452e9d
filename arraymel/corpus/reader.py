"""``arraymel.corpus.open(OUT_DIR)``: the features of a corpus run, whatever its ``--format``, as a mapping.

The manifest is read once when the corpus is opened (and closed again), so a :class:`Corpus` holds no
database connection and can be handed to ``DataLoader`` workers (fork or spawn); files are opened
lazily in each process.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from arraymel.corpus.manifest import Manifest, ManifestError
from arraymel.corpus.storage import MANIFEST_NAME, sha256_file

__all__ = ["Corpus", "CorpusError", "open"]


class CorpusError(Exception):
    """An output of a corpus run is missing or damaged, or OUT_DIR holds no readable corpus; the message names
    the file.

    See Also
    --------
    open : Raises it for a directory that holds no corpus; reading raises it for a damaged file.

    Examples
    --------
    >>> import tempfile, arraymel.corpus
    >>> try:
    ...     arraymel.corpus.open(tempfile.mkdtemp())
    ... except arraymel.corpus.CorpusError as e:
    ...     print("holds no corpus" in str(e))
    True
    """


class Corpus(Mapping):
    """A read-only mapping of key -> features of a finished (or partly finished) ``arraymel corpus`` run.

    Keys are the source files' paths relative to IN_DIR (``"spk1/utt1.wav"``), in the manifest's order
    (sorted); only files committed as ok are present. Every value is a float32 (or float16) array in
    arraymel's layout, ``(num_mel_bins, frames)`` (``(channels, num_mel_bins, frames)`` for an ``npy`` run
    with ``--channels all``), whatever the storage: Shar and Kaldi store the transpose, as their stacks
    expect, and it is undone here.

    Before the first read from a file (a ``.npy``, or a shard's file), its size and SHA-256 are checked
    against the manifest; a difference raises :class:`CorpusError` naming the file.

    Parameters
    ----------
    out_dir : str or path-like
        The run's OUT_DIR (use :func:`arraymel.corpus.open`).

    Attributes
    ----------
    format : str
        ``"npy"``, ``"shar"`` or ``"kaldi"``.
    config : dict
        The mel configuration the features were computed with (``MelSpectrogram.get_config()`` form,
        loadable with ``arraymel.MelSpectrogram.from_config``).
    config_hash : str
        The SHA-256 of the run's canonical configuration (``arraymel corpus status``).

    Raises
    ------
    CorpusError
        As :func:`open` raises it.

    See Also
    --------
    open : How a Corpus is made.
    arraymel.torch.CorpusDataset : A PyTorch dataset over a Corpus.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile
    >>> import arraymel.corpus
    >>> from arraymel.cli import main
    >>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> sf.write(f"{src}/b.wav", np.zeros(16000, np.float32), 16000)
    >>> sf.write(f"{src}/a.wav", np.zeros(8000, np.float32), 16000)
    >>> main(["corpus", src, out, "-q", "--workers", "1"])
    0
    >>> corpus = arraymel.corpus.open(out)
    >>> len(corpus), corpus.format, corpus["a.wav"].shape, corpus["a.wav"].dtype
    (2, 'npy', (128, 16), dtype('float32'))
    >>> "c.wav" in corpus
    False
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.root = os.path.realpath(os.fspath(out_dir))
        path = os.path.join(self.root, MANIFEST_NAME)
        if not os.path.isfile(path):
            raise CorpusError(f"{out_dir} holds no corpus: {path} does not exist (run `arraymel corpus IN_DIR {out_dir}`).")
        try:
            m = Manifest(path, readonly=True)
        except ManifestError as e:
            raise CorpusError(str(e)) from None
        try:
            canonical = json.loads(m.meta("config") or "{}")
            self.config: dict[str, Any] = json.loads(m.meta("mel_config") or "{}")
            self.config_hash: str | None = m.meta("config_hash")
            self.format: str = (canonical.get("storage") or {}).get("format", "npy")
            self._compression = (canonical.get("storage") or {}).get("compression", "npy")
            rows = [r for r in m.rows(order="shard" if self.format != "npy" else "key") if r["status"] == "ok"]
            shards = m.shards() if self.format != "npy" else {}
        finally:
            m.close()
        if self.format != "npy":
            rows = [r for r in rows if r.get("shard") in shards and r.get("member")]
            rows.sort(key=lambda r: r["key"])
        self._keys = [r["key"] for r in rows]
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._rows = rows
        # (path relative to OUT_DIR) -> (size, sha256) of every file that values are read from
        self._expected: dict[str, tuple[int | None, str | None]] = {}
        if self.format == "npy":
            for r in rows:
                self._expected[r["output"]] = (None, r["sha256"])
        else:
            for row in shards.values():
                for p in row["parts"]:
                    self._expected[p["path"]] = (p["size"], p["sha256"])
        self._checked: set[str] = set()
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    # ------------------------------------------------------------------ Mapping
    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __getitem__(self, key: str) -> np.ndarray:
        i = self._index.get(key)
        if i is None:
            raise KeyError(key)
        return self._read(self._rows[i])

    def keys_in_order(self) -> list[str]:
        """The keys, in the manifest's order (the same as iterating).

        Returns
        -------
        list of str
            The keys of the files committed as ok, sorted as the manifest sorts them.

        See Also
        --------
        frames : The frames of each, without reading the features.

        Examples
        --------
        >>> import numpy as np, soundfile as sf, tempfile
        >>> import arraymel.corpus
        >>> from arraymel.cli import main
        >>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> sf.write(f"{src}/b.wav", np.zeros(16000, np.float32), 16000)
        >>> sf.write(f"{src}/a.wav", np.zeros(8000, np.float32), 16000)
        >>> main(["corpus", src, out, "-q", "--workers", "1"])
        0
        >>> arraymel.corpus.open(out).keys_in_order()
        ['a.wav', 'b.wav']
        """
        return list(self._keys)

    def frames(self, key: str) -> int:
        """The number of frames of ``key``'s features, from the manifest (nothing is read).

        Parameters
        ----------
        key : str
            A key of the corpus (the source's path relative to IN_DIR).

        Returns
        -------
        int
            The last axis of ``corpus[key]``: for sorting or bucketing by length without reading.

        Raises
        ------
        KeyError
            When ``key`` is not in the corpus.

        See Also
        --------
        duration : The audio's duration, also from the manifest.

        Examples
        --------
        >>> import numpy as np, soundfile as sf, tempfile
        >>> import arraymel.corpus
        >>> from arraymel.cli import main
        >>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> sf.write(f"{src}/b.wav", np.zeros(16000, np.float32), 16000)
        >>> sf.write(f"{src}/a.wav", np.zeros(8000, np.float32), 16000)
        >>> main(["corpus", src, out, "-q", "--workers", "1"])
        0
        >>> corpus = arraymel.corpus.open(out)
        >>> corpus.frames("b.wav"), corpus["b.wav"].shape[-1]
        (32, 32)
        """
        return int(self._rows[self._index[key]]["frames"])

    def duration(self, key: str) -> float:
        """The audio duration of ``key`` in seconds, from the manifest.

        Parameters
        ----------
        key : str
            A key of the corpus (the source's path relative to IN_DIR).

        Returns
        -------
        float
            The source's samples divided by its sampling rate (before any resampling).

        Raises
        ------
        KeyError
            When ``key`` is not in the corpus.

        See Also
        --------
        frames : The features' frames, from the manifest.

        Examples
        --------
        >>> import numpy as np, soundfile as sf, tempfile
        >>> import arraymel.corpus
        >>> from arraymel.cli import main
        >>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> sf.write(f"{src}/b.wav", np.zeros(16000, np.float32), 16000)
        >>> sf.write(f"{src}/a.wav", np.zeros(8000, np.float32), 16000)
        >>> main(["corpus", src, out, "-q", "--workers", "1"])
        0
        >>> arraymel.corpus.open(out).duration("a.wav")
        0.5
        """
        return float(self._rows[self._index[key]]["duration_s"])

    def __repr__(self) -> str:
        return f"<arraymel.corpus.Corpus {self.root!r}: {len(self)} files, format {self.format}>"

    # ------------------------------------------------------------------ reading
    def _fd(self, rel: str) -> int:
        if os.getpid() != self._pid:  # a forked DataLoader worker: descriptors of its own
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(rel)
        if fd is None:
            path = os.path.join(self.root, *rel.split("/"))
            self._check(rel, path)
            try:
                fd = self._fds[rel] = os.open(path, os.O_RDONLY)
            except OSError as e:
                raise CorpusError(f"cannot read {path}: {e.strerror or e}") from None
        return fd

    def _check(self, rel: str, path: str) -> None:
        if rel in self._checked:
            return
        size, sha = self._expected.get(rel, (None, None))
        what = "shard file" if self.format != "npy" else "output"
        try:
            actual = os.path.getsize(path)
            if size is not None and actual != size:
                raise CorpusError(f"the {what} {path} is damaged: {actual} bytes, the manifest recorded {size}; "
                                  "run `arraymel corpus` on this OUT_DIR again to rewrite it")
            if sha is not None and sha256_file(path) != sha:
                raise CorpusError(f"the {what} {path} is damaged: its SHA-256 differs from the manifest's; "
                                  "run `arraymel corpus` on this OUT_DIR again to rewrite it")
        except OSError as e:
            raise CorpusError(f"the {what} {path} cannot be read: {e.strerror or e}") from None
        self._checked.add(rel)

    def _read(self, r: dict) -> np.ndarray:
        fd = self._fd(r["output"])
        if self.format == "npy":
            return np.load(io.BytesIO(_pread_all(fd)), allow_pickle=False)
        data = os.pread(fd, r["nbytes"], r["offset"])
        if len(data) != r["nbytes"]:
            raise CorpusError(f"the shard file {os.path.join(self.root, r['output'])} is shorter than the manifest says")
        if self.format == "kaldi":
            rows, cols = int.from_bytes(data[6:10], "little"), int.from_bytes(data[11:15], "little")
            a = np.frombuffer(data, dtype="<f4", offset=15).reshape(rows, cols)
        elif self._compression == "lilcom":
            import lilcom

            a = lilcom.decompress(data)
        else:
            a = np.load(io.BytesIO(data), allow_pickle=False)
        return np.ascontiguousarray(a.T)

    def close(self) -> None:
        """Close the files opened for reading (reading again reopens them).

        A Corpus is also a context manager that closes them on leaving; a DataLoader worker's copy opens
        its own.

        See Also
        --------
        open : Opens the corpus (no file is opened until a value is read).

        Examples
        --------
        >>> import numpy as np, soundfile as sf, tempfile
        >>> import arraymel.corpus
        >>> from arraymel.cli import main
        >>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> sf.write(f"{src}/b.wav", np.zeros(16000, np.float32), 16000)
        >>> sf.write(f"{src}/a.wav", np.zeros(8000, np.float32), 16000)
        >>> main(["corpus", src, out, "-q", "--workers", "1"])
        0
        >>> with arraymel.corpus.open(out) as corpus:
        ...     first = corpus["a.wav"]
        >>> corpus.close()  # again: nothing left to close
        >>> corpus["a.wav"].shape == first.shape  # reading reopens
        True
        """
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def __del__(self) -> None:
        try:
            if os.getpid() == self._pid:
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _pread_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


def open(out_dir: str | os.PathLike) -> Corpus:  # noqa: A001 - the public name: arraymel.corpus.open
    """Open the output of ``arraymel corpus`` (any ``--format``) as a read-only mapping of key -> features.

    Parameters
    ----------
    out_dir : str or path-like
        The run's OUT_DIR (the directory holding ``manifest.sqlite``).

    Returns
    -------
    Corpus
        ``len``, iteration over keys in manifest order, ``corpus[key]`` -> ``(num_mel_bins, frames)``
        array, ``corpus.config`` (the mel configuration), ``corpus.format``.

    Raises
    ------
    CorpusError
        No manifest in ``out_dir``, a damaged manifest, or (when read) a file whose size or SHA-256
        differs from the manifest's; the message names the file.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> import arraymel.corpus
    >>> from arraymel.cli import main
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(f"{d}/in")
    >>> sf.write(f"{d}/in/a.wav", np.zeros(16000, np.float32), 16000)
    >>> main(["corpus", f"{d}/in", f"{d}/out", "--format", "shar", "-q", "--workers", "1"])
    0
    >>> corpus = arraymel.corpus.open(f"{d}/out")
    >>> list(corpus), corpus["a.wav"].shape, corpus.format
    (['a.wav'], (128, 32), 'shar')
    """
    return Corpus(out_dir)
