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


#: ``--device stand-in``: the device time of a batch at this many audio-hours per second (the fused
#: kernel's model on an H100, docs/gpu.md).
STAND_IN_RATE = 1400.0


def parse_stand_in(device: str) -> float | None:
    """The rate (audio-hours/s) of ``stand-in`` / ``stand-in:RATE``; None for any other device."""
    d = (device or "").strip().lower()
    if not (d == "stand-in" or d.startswith("stand-in:")):
        return None
    if d == "stand-in":
        return STAND_IN_RATE
    try:
        rate = float(d.split(":", 1)[1])
    except ValueError:
        rate = float("nan")
    if not rate > 0 or rate == float("inf"):
        raise DeviceError(f"--device {device!r}: stand-in:RATE needs a positive number of audio-hours per second.")
    return rate


def resolve_device(device: str) -> str:
    """``"cpu"``, ``"cuda:N"`` or ``"stand-in:RATE"`` for ``--device auto|cpu|cuda|cuda:N|stand-in[:RATE]``;
    checks that a GPU exists."""
    d = (device or "auto").strip().lower()
    if d == "cpu":
        return "cpu"
    rate = parse_stand_in(d)
    if rate is not None:
        return f"stand-in:{rate:g}"
    if d not in ("auto", "cuda", "gpu") and not d.startswith(("cuda:", "gpu:")):
        raise DeviceError(f"--device {device!r}: must be auto, cpu, cuda, cuda:N or stand-in[:RATE].")
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
        #: device time of the batches launched through :meth:`launch` (CUDA events; the stand-in's model)
        self.device_seconds = 0.0
        self._buffer = np.empty(0, dtype=np.float32)

    @property
    def device_kind(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def __call__(self, batch: Batch, batch_input: np.ndarray | None = None) -> list[Computed]:
        """The outputs of ``batch`` (``batch_input``: its rows, already built; built here without it)."""
        self._built = None if batch_input is None else (batch, batch_input)
        try:
            return self._call(batch)
        finally:
            self._built = None

    def _call(self, batch: Batch) -> list[Computed]:
        cfg = self.cfg
        if not cfg.center:  # frames without centring (Kaldi's): a file shorter than one frame has none
            short = [it for it in batch.items if it.length < cfg.sequence_length]
            if short:
                rest = [it for it in batch.items if it.length >= cfg.sequence_length]
                errors = [Computed(it, error=f"too short: {it.length} samples, and a frame without centring needs "
                                             f"sequence_length={cfg.sequence_length}") for it in short]
                return errors + (self._run(batch.length, rest, self.device) if rest else [])
        return self._run(batch.length, batch.items, self.device)

    # ------------------------------------------------------------------ the engines' two-step interface
    def host_buffer(self, n: int) -> np.ndarray:
        """A flat float32 host buffer of ``n`` elements to build a batch in: page-locked (pinned) on a GPU, so
        that its copy to the device is asynchronous; plain memory elsewhere."""
        if self.device_kind == "cuda":
            try:
                import cupy

                mem = cupy.cuda.alloc_pinned_memory(max(1, n) * 4)
                return np.frombuffer(mem, dtype=np.float32, count=n)
            except Exception:  # noqa: BLE001 - no pinned memory: pageable works, synchronously
                pass
        return np.empty(n, dtype=np.float32)

    def launch(self, batch: Batch, batch_input: np.ndarray):
        """Start computing ``batch`` (its rows built in ``batch_input``); :meth:`collect` returns the outputs.

        On a GPU the host-to-device copy goes on a copy stream of its own and the computation waits for it
        on the device, so the engine builds and launches the next batch while this one computes; here the
        computation runs at once (the CPU, or a GPU through the library's synchronous call)."""
        if self.device_kind == "cuda":
            pending = self._launch_cuda(batch, batch_input)
            if pending is not None:
                return pending
        return ("done", self(batch, batch_input))

    def collect(self, pending) -> list[Computed]:
        if pending[0] == "done":
            return pending[1]
        _, batch, out_host, start, done, _x = pending
        done.synchronize()  # only now may the device input ``_x`` go back to the pool
        import cupy

        self.device_seconds += cupy.cuda.get_elapsed_time(start, done) / 1e3
        return self._split(out_host, batch.items)

    def _launch_cuda(self, batch: Batch, batch_input: np.ndarray):
        """H2D on the copy stream, the mel computation on the compute stream after it, D2H into pinned memory;
        None when anything is unusual (the synchronous path then handles splitting and fallbacks)."""
        cfg = self.cfg
        if not cfg.center or self.settings.preset_obj is not None:
            return None
        try:
            import cupy

            with cupy.cuda.Device(int(self.device.split(":")[1])):
                if getattr(self, "_streams", None) is None:
                    self._streams = (cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True))
                copy, compute = self._streams
                x = cupy.empty(batch_input.shape, dtype=cupy.float32)
                x.set(batch_input, stream=copy)
                compute.wait_event(copy.record())
                # the device time starts on the compute stream, once the copy and the previous batch are done: an
                # event on the copy stream would fire while the previous batch still computes, and the batches'
                # intervals would overlap (device_seconds, the busy fraction, counted twice)
                start = compute.record()
                with compute:
                    y = self.mel(x, output="device")
                if y.dtype == cupy.float32:  # into pinned memory, without waiting (CuPy >= 13: blocking=False)
                    out = self.host_buffer(int(y.size)).reshape(y.shape)
                    try:
                        y.get(stream=compute, out=out, blocking=False)
                    except TypeError:
                        y.get(stream=compute, out=out)
                else:
                    out = y.get(stream=compute)
                # x is kept until collect(): freed here, CuPy's pool would give its memory to the next batch's
                # input at once, and that batch's copy (copy stream) could overwrite it while this batch's
                # kernels (compute stream) still read it
                return ("cuda", batch, out, start, compute.record(), x)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: the synchronous path splits the batch
            if is_out_of_memory(e):
                _free_gpu_memory()
            return None

    def _mel(self, batch_input: np.ndarray, device: str) -> np.ndarray:
        return self.mel(batch_input, device=device, output="numpy")

    def _input(self, batch: Batch) -> np.ndarray:
        """The batch's rows, built in a buffer reused from batch to batch (one compute thread per Computer)."""
        built = getattr(self, "_built", None)
        if built is not None and built[0].length == batch.length and len(built[0].items) == len(batch.items) \
                and all(a is b for a, b in zip(built[0].items, batch.items)):
            return built[1]
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


class StandInComputer(Computer):
    """A CPU stand-in for a GPU (``--device stand-in[:RATE]``): the GPU's batch sizes, the GPU's time, no GPU.

    It takes batches as the GPU path does (``device_kind == "cuda"``: the GPU's ``--batch-seconds``) and
    returns each one once the device would have finished it at ``rate`` audio-hours per second (padded
    samples of the batch; batches queue one after the other, as on one device), sleeping meanwhile, so
    that an engine can be measured as if a GPU drove it on a machine without one. Its outputs have the
    real shapes and dtype but are zero-filled: it measures the engine (decoding, batching, writing),
    never the features. ``device_seconds`` is the device time it modelled.
    """

    def __init__(self, settings: CorpusSettings, rate: float = STAND_IN_RATE):
        super().__init__(settings, device="cpu")
        self.rate = float(rate)
        self.device = f"stand-in:{self.rate:g}"
        self._free_at = 0.0

    @property
    def device_kind(self) -> str:
        return "cuda"

    def seconds(self, batch: Batch) -> float:
        """The modelled device time of ``batch``."""
        return batch.samples / float(self.cfg.sampling_rate) / 3600.0 / self.rate

    def launch(self, batch: Batch, batch_input: np.ndarray):
        import time

        t = self.seconds(batch)
        self.device_seconds += t
        self._free_at = max(time.monotonic(), self._free_at) + t
        return ("stand-in", batch, self._free_at)

    def collect(self, pending) -> list[Computed]:
        import time

        _, batch, ready = pending
        wait = ready - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return self._placeholder(batch)

    def __call__(self, batch: Batch, batch_input: np.ndarray | None = None) -> list[Computed]:
        return self.collect(self.launch(batch, batch_input))

    def _placeholder(self, batch: Batch) -> list[Computed]:
        cfg, out = self.cfg, []
        preset = self.settings.preset_obj
        for it in batch.items:
            k = it.audio.shape[0]
            # the frames the computation keeps (a preset's own count: Whisper drops the last frame)
            shape = (cfg.num_mel_bins, preset.n_frames(it.length) if preset is not None else cfg.n_frames(it.length))
            if self.settings.channels == "all":
                shape = (k, *shape)
            out.append(Computed(it, array=np.zeros(shape, dtype=self.out_dtype)))
        return out


def record_config_hash(settings: CorpusSettings, computer: Computer) -> str:
    """The ``config_hash`` a manifest row of ``computer``'s outputs carries: the settings' own, except for the
    stand-in, whose zero-filled outputs must never pass for computed features (a later run on the same OUT_DIR
    resumes only rows of its own hash, so it computes them)."""
    if isinstance(computer, StandInComputer):
        return f"stand-in (zero-filled outputs) {settings.config_hash}"
    return settings.config_hash


def make_computer(settings: CorpusSettings, device: str | None = None) -> Computer:
    """The :class:`Computer` for ``device`` (``resolve_device``'s form): a :class:`StandInComputer` for
    ``stand-in:RATE``."""
    device = device or resolve_device(settings.device)
    rate = parse_stand_in(device)
    if rate is not None:
        return StandInComputer(settings, rate)
    return Computer(settings, device=device)
