"""One batch through :class:`arraymel.MelSpectrogram`, then per-file cropping, ``top_db`` and dtype.

The batch is computed with ``top_db=None`` (dB without clipping); each file's frames are cut out
of its row(s) and clipped at ``top_db`` below that file's own maximum (per channel with
``--channels all``), which is exactly ``top_db_scope="example"`` on the file alone. On a GPU, an
out-of-memory error splits the batch in halves and retries; a single file that still does not
fit is computed on the CPU.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from arraymel.corpus.batching import Batch
from arraymel.corpus.settings import CorpusSettings

log = logging.getLogger("arraymel.corpus")


class DeviceError(Exception):
    """The requested device cannot be used (the run stops with status 1)."""


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda:N"`` for ``--device auto|cpu|cuda|cuda:N``; checks that a GPU exists."""
    d = (device or "auto").strip().lower()
    if d == "cpu":
        return "cpu"
    if d not in ("auto", "cuda", "gpu") and not d.startswith(("cuda:", "gpu:")):
        raise DeviceError(f"--device {device!r}: must be auto, cpu, cuda or cuda:N.")
    index = 0
    if ":" in d:
        try:
            index = int(d.split(":", 1)[1])
        except ValueError:
            raise DeviceError(f"--device {device!r}: must be auto, cpu, cuda or cuda:N.") from None
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        if d == "auto":
            return "cpu"
        raise DeviceError(f"--device {device}: no usable CUDA device ({type(e).__name__}: {e}); "
                          "install arraymel[cuda12] or arraymel[cuda13] on a machine with a GPU, or use --device cpu.") from None
    if count == 0:
        if d == "auto":
            return "cpu"
        raise DeviceError(f"--device {device}: no CUDA device is visible.")
    if index >= count:
        raise DeviceError(f"--device {device}: only {count} CUDA device(s) are visible (cuda:0 .. cuda:{count - 1}).")
    return f"cuda:{index}"


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc)
    return name == "OutOfMemoryError" or "CUFFT_ALLOC_FAILED" in text or "out of memory" in text.lower()


def _free_gpu_memory() -> None:
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:  # pragma: no cover - only on a GPU
        pass


@dataclasses.dataclass
class Computed:
    """The output of one file (``array``) or why there is none (``error``)."""

    item: Any
    array: np.ndarray | None = None
    error: str | None = None


class Computer:
    """Computes batches for one :class:`CorpusSettings` on one device."""

    def __init__(self, settings: CorpusSettings, device: str | None = None):
        import arraymel

        self.settings = settings
        self.cfg = settings.mel
        params = dict(settings.mel_params, top_db=None, top_db_scope="example")
        self.mel = arraymel.MelSpectrogram(**params)
        self.device = device or resolve_device(settings.device)
        self.out_dtype = np.dtype(settings.out_dtype)
        self.cpu_fallbacks = 0
        self.splits = 0
        self._buffer = np.empty(0, dtype=np.float32)

    @property
    def device_kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def __call__(self, batch: Batch) -> list[Computed]:
        cfg = self.cfg
        if not cfg.center:  # frames without centring (Kaldi's): a file shorter than one frame has none
            short = [it for it in batch.items if it.length < cfg.sequence_length]
            if short:
                rest = [it for it in batch.items if it.length >= cfg.sequence_length]
                errors = [Computed(it, error=f"too short: {it.length} samples, and a frame without centring needs "
                                             f"sequence_length={cfg.sequence_length}") for it in short]
                return errors + (self._run(batch.length, rest, self.device) if rest else [])
        return self._run(batch.length, batch.items, self.device)

    def _mel(self, batch_input: np.ndarray, device: str) -> np.ndarray:
        return self.mel(batch_input, device=device, output="numpy")

    def _input(self, batch: Batch) -> np.ndarray:
        """The batch's rows, built in a buffer reused from batch to batch (one compute thread per Computer)."""
        need = batch.rows * batch.length
        if self._buffer.size < need:
            self._buffer = np.empty(max(need, int(self._buffer.size * 1.25)), dtype=np.float32)
        preset = self.settings.preset_obj
        return batch.build(self.cfg, self._buffer, signal_step=preset.signal_step if preset else None)

    def _run(self, length: int, items: list, device: str) -> list[Computed]:
        try:
            y = self._mel(self._input(Batch(length=length, items=items)), device)
        except Exception as e:  # noqa: BLE001 - each failure is isolated, explained and recorded
            oom = is_out_of_memory(e)
            if oom and device != "cpu":
                _free_gpu_memory()
            if len(items) > 1:
                self.splits += 1
                if oom:
                    log.info("out of memory on %s for a batch of %d files: splitting it", device, len(items))
                half = len(items) // 2
                return self._run(length, items[:half], device) + self._run(length, items[half:], device)
            if oom and device != "cpu":
                self.cpu_fallbacks += 1
                log.warning("%s does not fit in the memory of %s: computing it on the CPU", items[0].source.key, device)
                return self._run(length, items, "cpu")
            what = "out of memory" if oom else f"{type(e).__name__}: {e}"
            return [Computed(items[0], error=f"mel computation failed on {device}: {what}")]
        return self._split(y, items)

    def _split(self, y: np.ndarray, items: list) -> list[Computed]:
        cfg, out = self.cfg, []
        clip = cfg.power_to_db and cfg.top_db is not None
        r = 0
        preset = self.settings.preset_obj
        for it in items:
            k = it.audio.shape[0]
            frames = cfg.n_frames(it.length)
            a = y[r : r + k, :, :frames]
            r += k
            if preset is not None:  # the preset's frame drop and log rule, on this file's frames alone
                try:
                    a = preset.finish(a, it.length)
                except ValueError as e:
                    out.append(Computed(it, error=str(e)))
                    continue
            if clip:
                a = np.maximum(a, a.max(axis=(1, 2), keepdims=True) - np.asarray(cfg.top_db, dtype=a.dtype))
            if self.settings.channels != "all":
                a = a[0]
            a = np.ascontiguousarray(a, dtype=self.out_dtype)
            if self.out_dtype != y.dtype and not np.isfinite(a).all():
                big = float(np.max(np.abs(y[r - k : r, :, :frames])))
                out.append(Computed(it, error=f"values up to {big:.6g} exceed the {self.out_dtype.name} range; "
                                              "use --out-dtype float32"))
                continue
            out.append(Computed(it, array=a))
        return out
