"""The libraries ``arraymel bench`` compares, each behind a small adapter.

A :class:`Peer` says whether it can run (its library imports) and where (which device kinds,
which parameters), builds its callable once outside the timing (:meth:`Peer.build`), puts the
input where it computes, and converts its output to arraymel's layout ``(..., mels, frames)``
on the host for the agreement figure. ``note`` says where its semantics differ from Keras's
by design, so that a non-zero agreement figure is read correctly.

Every optional library (librosa, keras, torch, torchaudio, cupy) is imported inside a method,
never at module import. A peer that cannot run gives a reason; it never raises from
:meth:`Peer.unavailable` or :meth:`Peer.unsupported`.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from arraymel.bench.devices import Device


# ---------------------------------------------------------------------- parameters, window, filterbank
def resolved(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with Keras's defaults resolved (sequence_length, max_freq) and the scope filled in."""
    p = dict(params)
    p.setdefault("top_db_scope", "batch")
    if p.get("sequence_length") is None:
        p["sequence_length"] = p["fft_length"]
    if not p.get("max_freq"):
        p["max_freq"] = int(p["sampling_rate"] / 2)
    if p.get("window") is None:  # Keras's NumPy/JAX backends: ones over the whole frame
        p["sequence_length"] = p["fft_length"]
    return p


def window_array(params: dict[str, Any]) -> np.ndarray:
    """The window of length ``sequence_length`` (periodic Hann/Hamming, ones, or the given array), float64.

    The library's own builder, so that peers with a window of their own (torch) use exactly Keras's.
    """
    import arraymel  # noqa: PLC0415

    p = resolved(params)
    return np.array(arraymel.get_window(p["window"], int(p["sequence_length"])))


def padded_window(params: dict[str, Any]) -> np.ndarray:
    """The window zero-padded to ``fft_length``, ``(fft_length - sequence_length) // 2`` zeros on the left."""
    import arraymel  # noqa: PLC0415

    p = resolved(params)
    return np.array(arraymel.get_window(p["window"], int(p["sequence_length"]), fft_length=int(p["fft_length"])))


def keras_filterbank(params: dict[str, Any]) -> np.ndarray:
    """The HTK mel filterbank of Keras/TensorFlow, ``(fft_length // 2 + 1, num_mel_bins)``, float64.

    The library's own (docs/semantics.md step 7), for the peers that apply a filterbank themselves
    (torch-stft, naive-cupy); tests/oracle.py is the independent check of it.
    """
    import arraymel  # noqa: PLC0415

    p = resolved(params)
    return np.array(arraymel.mel_filterbank(num_mel_bins=int(p["num_mel_bins"]), fft_length=int(p["fft_length"]),
                                            sampling_rate=float(p["sampling_rate"]), min_freq=float(p["min_freq"]),
                                            max_freq=float(p["max_freq"])))


def _torch_runner(fn: Callable[[Any], Any], x_host: np.ndarray, device: Device, dev: Any) -> Runner:
    """A Runner for a torch callable: input on the torch device, CUDA-event timing and torch's peak on a GPU."""
    import torch  # noqa: PLC0415

    x = torch.from_numpy(np.ascontiguousarray(x_host)).to(dev)
    cuda = device.kind == "cuda"
    return Runner(fn=fn, x=x, to_numpy=lambda y: y.detach().cpu().numpy(), timer="torch" if cuda else "cpu",
                  memory="torch-cuda" if cuda else None, cuda_index=device.index)


# ---------------------------------------------------------------------- adapters
@dataclass
class Runner:
    """What one peer times on one device: ``fn(x)`` with ``x`` already in place."""

    fn: Callable[[Any], Any]
    x: Any
    to_numpy: Callable[[Any], np.ndarray]
    timer: str = "cpu"  # see arraymel.bench.timing.TIMERS
    memory: str | None = "tracemalloc"  # see arraymel.bench.timing.MEMORY_METHODS
    cuda_index: int | None = None


def _missing(module: str, extra: str = "") -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{module} is not installed{extra}"


def _import_reason(module: str, hint: str = "") -> str | None:
    """None when ``module`` imports; else why not (cached: a failed import is not retried)."""
    if module in _IMPORT_FAILURES:
        return _IMPORT_FAILURES[module]
    why = _missing(module, hint)
    if why is None:
        try:
            importlib.import_module(module)
        except Exception as e:  # a broken install must not stop the benchmark
            why = f"{module} fails to import ({type(e).__name__}: {e}){hint}"
    if why is not None:
        _IMPORT_FAILURES[module] = why
    return why


_IMPORT_FAILURES: dict[str, str] = {}


def _cupy_device_reason(device: Device) -> str | None:
    why = _import_reason("cupy", " (pip install 'arraymel[cuda12]')")
    if why:
        return why
    import cupy  # noqa: PLC0415

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"CuPy finds no CUDA device ({type(e).__name__})"
    if device.index is None or device.index >= count:
        return f"CuPy sees {count} CUDA device(s), not {device.id}"
    return None


def _torch_device(device: Device) -> Any:
    import torch  # noqa: PLC0415

    return torch.device("cpu") if device.kind == "cpu" else torch.device("cuda", device.index or 0)


def _torch_device_reason(device: Device) -> str | None:
    if device.kind == "cpu":
        return None
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        return "torch has no CUDA support here (a CPU-only build, or no driver)"
    if (device.index or 0) >= torch.cuda.device_count():
        return f"torch sees {torch.cuda.device_count()} CUDA device(s), not {device.id}"
    return None


class Peer:
    """Base adapter. Subclasses set ``name``, ``kinds``, ``note`` and implement :meth:`build`."""

    name = "peer"
    kinds: tuple[str, ...] = ("cpu",)
    #: How the peer's semantics differ from Keras's by design ("" when they do not).
    note = ""
    #: Distributions whose versions the report records for this peer.
    packages: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        """None when the peer's libraries import; else the reason."""
        return None

    def device_reason(self, device: Device) -> str | None:
        """None when the peer runs on ``device``; else the reason."""
        if device.kind not in self.kinds:
            return f"runs on {' or '.join(self.kinds)} only"
        return None

    def params_reason(self, params: dict[str, Any]) -> str | None:
        """None when the peer can compute ``params``; else the reason."""
        return None

    def unsupported(self, device: Device, params: dict[str, Any]) -> str | None:
        """None when the peer runs ``params`` on ``device``; else the reason."""
        return self.device_reason(device) or self.params_reason(params)

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<peer {self.name}>"


class ArraymelPeer(Peer):
    """arraymel itself, through :class:`arraymel.MelSpectrogram` (window and filterbank cached)."""

    name = "arraymel"
    kinds = ("cpu", "cuda")
    backend = "auto"
    packages = ("arraymel", "numpy", "scipy", "cupy-cuda12x", "cupy-cuda13x")

    def device_reason(self, device: Device) -> str | None:
        why = super().device_reason(device)
        if why or device.kind == "cpu":
            return why
        return _cupy_device_reason(device)

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import arraymel  # noqa: PLC0415

        if "preset" in params:  # arraymel bench --config whisper (arraymel.bench.preset_peers)
            import arraymel.presets  # noqa: PLC0415

            mel = arraymel.presets.get(params["preset"])
        else:
            mel = arraymel.MelSpectrogram(**params)
        backend = self.backend
        if device.kind == "cpu":
            return Runner(fn=lambda x: mel(x, backend=backend), x=x_host, to_numpy=np.asarray)
        import cupy  # noqa: PLC0415

        with cupy.cuda.Device(device.index):
            x = cupy.asarray(x_host)
            cupy.cuda.Device().synchronize()

        def fn(x: Any) -> Any:
            return mel(x, backend=backend)

        return Runner(fn=fn, x=x, to_numpy=lambda y: cupy.asnumpy(y), timer="cupy", memory="cupy-pool",
                      cuda_index=device.index)


class ArraymelGenericPeer(ArraymelPeer):
    """arraymel's pure Array API path (``backend="generic"``): what any other namespace gets."""

    name = "arraymel-generic"
    backend = "generic"
    note = "arraymel's generic Array API path (same semantics; a check of the fast path)"


class ArraymelFusedPeer(ArraymelPeer):
    """arraymel's fused GPU kernel (``backend="cupy-fused"``, opt-in): the spectrum never leaves the chip."""

    name = "arraymel-fused"
    kinds = ("cuda",)
    backend = "cupy-fused"
    note = "arraymel's fused GPU kernel (opt-in; same semantics; docs/gpu.md)"

    def params_reason(self, params: dict[str, Any]) -> str | None:
        import arraymel  # noqa: PLC0415

        if "preset" in params:
            return "the presets run the cuFFT path (their framing is not in the fused kernel)"
        why = arraymel.MelSpectrogram(fft_length=int(params.get("fft_length", 2048))).fused_fallback_reason()
        return f"{why}: arraymel-fused would run the cuFFT path" if why else None


class LibrosaPeer(Peer):
    """``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` with Keras's parameters."""

    name = "librosa"
    kinds = ("cpu",)
    packages = ("librosa", "numba", "soxr")
    note = ("triangles linear in Hz (Keras: linear in mel): a few hundredths of a dB apart by design "
            "(0.04 dB for the keras config, 0.06 dB for speech, on the bench signal)")

    def unavailable(self) -> str | None:
        return _import_reason("librosa", " (pip install 'arraymel[bench]')")

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import librosa  # noqa: PLC0415

        p = resolved(params)
        window: Any = p["window"]
        if window is None:
            window = "boxcar"
        elif not isinstance(window, str):
            window = window_array(p)
        kw = dict(
            sr=float(p["sampling_rate"]), n_fft=int(p["fft_length"]), hop_length=int(p["sequence_stride"]),
            win_length=int(p["sequence_length"]), window=window, center=True, pad_mode="reflect",
            power=float(p["mag_exp"]), n_mels=int(p["num_mel_bins"]), fmin=float(p["min_freq"]),
            fmax=float(p["max_freq"]), htk=True, norm=None,
        )
        db_kw = dict(ref=float(p["ref_power"]), amin=float(p["min_power"]), top_db=p["top_db"])
        to_db, per_example = bool(p["power_to_db"]), p["top_db_scope"] == "example"

        def fn(x: np.ndarray) -> np.ndarray:
            S = librosa.feature.melspectrogram(y=x, **kw)
            if not to_db:
                return S
            if per_example and S.ndim > 2:  # librosa's top_db is over whatever one call is given
                flat = S.reshape(-1, *S.shape[-2:])
                return np.stack([librosa.power_to_db(s, **db_kw) for s in flat]).reshape(S.shape)
            return librosa.power_to_db(S, **db_kw)  # one call over the whole batch: Keras's batch scope

        return Runner(fn=fn, x=x_host, to_numpy=np.asarray)


class KerasPeer(Peer):
    """``keras.layers.MelSpectrogram`` on Keras 3's NumPy backend (``KERAS_BACKEND=numpy``)."""

    name = "keras"
    kinds = ("cpu",)
    packages = ("keras", "jax", "jaxlib", "scipy")
    note = ""

    def unavailable(self) -> str | None:
        if "keras" not in _IMPORT_FAILURES and "keras" not in __import__("sys").modules:
            os.environ.setdefault("KERAS_BACKEND", "numpy")
        why = _import_reason("keras", " (pip install 'arraymel[bench]')")
        if why and "jax" in why:
            why += "; Keras 3's NumPy backend imports jax: pip install jax"
        if why:
            return why
        import keras  # noqa: PLC0415

        backend = keras.backend.backend()
        if backend != "numpy":
            return (f"Keras is set to the {backend!r} backend; this peer measures the NumPy backend "
                    "(set KERAS_BACKEND=numpy before Keras is first imported)")
        return None

    def params_reason(self, params: dict[str, Any]) -> str | None:
        if params.get("top_db") is None and params.get("power_to_db", True):
            return "Keras raises TypeError for top_db=None"
        if params.get("top_db_scope", "batch") != "batch":
            return "Keras has only the batch scope for top_db"
        return None

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import keras  # noqa: PLC0415

        from arraymel.bench.workloads import KERAS_PARAMS  # noqa: PLC0415

        layer = keras.layers.MelSpectrogram(**{k: params[k] for k in KERAS_PARAMS if k in params})
        return Runner(fn=layer, x=x_host, to_numpy=lambda y: np.asarray(keras.ops.convert_to_numpy(y)))


class TorchaudioPeer(Peer):
    """``torchaudio.transforms.MelSpectrogram(mel_scale="htk", norm=None)`` + dB (``amplitude_to_DB``).

    The dB step calls ``torchaudio.functional.amplitude_to_DB`` (what ``AmplitudeToDB`` calls)
    so that ``min_power`` and ``ref_power`` are honoured (``AmplitudeToDB`` fixes amin=1e-10,
    ref=1). Its ``top_db`` floor is one maximum over a 2-D or 3-D input but one per item of the
    leading dimension for 4-D input: the spectrogram is reshaped to ``(N, mels, frames)`` for
    Keras's batch scope and to ``(N, 1, mels, frames)`` for the per-example scope.
    """

    name = "torchaudio"
    kinds = ("cpu", "cuda")
    packages = ("torch", "torchaudio")
    note = ("triangles linear in Hz (Keras: linear in mel), bin frequencies up to sample_rate // 2: "
            "a few hundredths of a dB apart by design")

    def unavailable(self) -> str | None:
        return _import_reason("torch") or _import_reason("torchaudio")

    def device_reason(self, device: Device) -> str | None:
        return super().device_reason(device) or _torch_device_reason(device)

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import torch  # noqa: PLC0415
        import torchaudio  # noqa: PLC0415

        p = resolved(params)
        dev = _torch_device(device)
        w = p["window"]
        if w == "hann":
            window_fn = torch.hann_window
        elif w == "hamming":
            window_fn = torch.hamming_window
        else:
            fixed = torch.as_tensor(window_array(p), dtype=torch.float32)

            def window_fn(n: int, **_: Any) -> Any:
                return fixed.clone()

        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=int(p["sampling_rate"]), n_fft=int(p["fft_length"]), win_length=int(p["sequence_length"]),
            hop_length=int(p["sequence_stride"]), f_min=float(p["min_freq"]), f_max=float(p["max_freq"]), pad=0,
            n_mels=int(p["num_mel_bins"]), window_fn=window_fn, power=float(p["mag_exp"]), normalized=False,
            center=True, pad_mode="reflect", norm=None, mel_scale="htk",
        ).to(dev)
        to_db, per_example = bool(p["power_to_db"]), p["top_db_scope"] == "example"
        amin, top_db = float(p["min_power"]), p["top_db"]
        db_mult = math.log10(max(amin, abs(float(p["ref_power"]))))

        def fn(x: Any) -> Any:
            with torch.inference_mode():
                S = mel(x)
                if not to_db:
                    return S
                shape = S.shape
                flat = S.reshape(-1, 1, *shape[-2:]) if per_example else S.reshape(-1, *shape[-2:])
                return torchaudio.functional.amplitude_to_DB(flat, 10.0, amin, db_mult, top_db).reshape(shape)

        return _torch_runner(fn, x_host, device, dev)


class TorchStftPeer(Peer):
    """A ``torch.stft`` pipeline: power, matmul with Keras's (mel-domain) filterbank, dB."""

    name = "torch-stft"
    kinds = ("cpu", "cuda")
    packages = ("torch",)
    note = ""

    def unavailable(self) -> str | None:
        return _import_reason("torch")

    def device_reason(self, device: Device) -> str | None:
        return super().device_reason(device) or _torch_device_reason(device)

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import torch  # noqa: PLC0415

        p = resolved(params)
        dev = _torch_device(device)
        n_fft, hop = int(p["fft_length"]), int(p["sequence_stride"])
        win = torch.as_tensor(window_array(p), dtype=torch.float32, device=dev)
        fbT = torch.as_tensor(keras_filterbank(p).T.copy(), dtype=torch.float32, device=dev)  # (mels, bins)
        mag_exp, to_db = float(p["mag_exp"]), bool(p["power_to_db"])
        amin, top_db, per_example = float(p["min_power"]), p["top_db"], p["top_db_scope"] == "example"
        ref_db = 10.0 * math.log10(max(abs(float(p["ref_power"])), amin))

        def fn(x: Any) -> Any:
            with torch.inference_mode():
                lead = x.shape[:-1]
                X = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length=hop, win_length=win.shape[0], window=win,
                               center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
                P = X.real.square() + X.imag.square() if mag_exp == 2.0 else X.abs().pow(mag_exp)
                M = torch.matmul(fbT, P)  # (N, mels, frames)
                if to_db:
                    M = 10.0 * torch.log10(torch.clamp(M, min=amin)) - ref_db
                    if top_db is not None:
                        peak = M.amax(dim=(-2, -1), keepdim=True) if per_example else M.max()
                        M = torch.maximum(M, peak - top_db)
                return M.reshape(*lead, *M.shape[-2:])

        return _torch_runner(fn, x_host, device, dev)


class NaiveCupyPeer(Peer):
    """A straightforward CuPy pipeline: strided frames x window, ``cupy.fft.rfft``, power, matmul, dB."""

    name = "naive-cupy"
    kinds = ("cuda",)
    packages = ("cupy-cuda12x", "cupy-cuda13x")
    note = ""

    def unavailable(self) -> str | None:
        return _import_reason("cupy", " (pip install 'arraymel[cuda12]')")

    def device_reason(self, device: Device) -> str | None:
        return super().device_reason(device) or _cupy_device_reason(device)

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import cupy as cp  # noqa: PLC0415

        p = resolved(params)
        n_fft, hop, pad = int(p["fft_length"]), int(p["sequence_stride"]), int(p["fft_length"]) // 2
        mag_exp, to_db = float(p["mag_exp"]), bool(p["power_to_db"])
        amin, top_db, per_example = float(p["min_power"]), p["top_db"], p["top_db_scope"] == "example"
        ref_db = 10.0 * math.log10(max(abs(float(p["ref_power"])), amin))
        with cp.cuda.Device(device.index):
            w = cp.asarray(padded_window(p), dtype=cp.float32)
            fb = cp.asarray(keras_filterbank(p), dtype=cp.float32)  # (bins, mels)
            x = cp.asarray(x_host)

        def fn(x: Any) -> Any:
            xp_ = cp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
            n_frames = 1 + (xp_.shape[-1] - n_fft) // hop
            frames = cp.lib.stride_tricks.as_strided(
                xp_, shape=(*xp_.shape[:-1], n_frames, n_fft), strides=(*xp_.strides[:-1], hop * xp_.itemsize, xp_.itemsize))
            X = cp.fft.rfft(frames * w, axis=-1)
            P = X.real * X.real + X.imag * X.imag if mag_exp == 2.0 else cp.abs(X) ** mag_exp
            M = P @ fb  # (..., frames, mels)
            if to_db:
                M = 10.0 * cp.log10(cp.maximum(M, amin)) - ref_db
                if top_db is not None:
                    peak = M.max(axis=(-2, -1), keepdims=True) if per_example else M.max()
                    M = cp.maximum(M, peak - top_db)
            return cp.swapaxes(M, -1, -2)

        return Runner(fn=fn, x=x, to_numpy=lambda y: cp.asnumpy(y), timer="cupy", memory="cupy-pool",
                      cuda_index=device.index)


class PresetReferencePeer(Peer):
    """The library a preset reproduces (:mod:`arraymel.bench.preset_peers`); runs only preset configurations."""

    name = "preset-reference"
    note = "the preset's reference library (docs/presets.md)"
    packages = ("transformers", "librosa", "kaldi-native-fbank", "torchaudio", "torch")

    def params_reason(self, params: dict[str, Any]) -> str | None:
        from arraymel.bench.preset_peers import REFERENCE_MODULES  # noqa: PLC0415

        if "preset" not in params:
            return "runs the presets' configurations only (--config whisper, librosa, torchaudio, kaldi, nemo)"
        for module in REFERENCE_MODULES[params["preset"]]:
            why = _import_reason(module)
            if why:
                return why
        return None

    def build(self, params: dict[str, Any], device: Device, x_host: np.ndarray) -> Runner:
        import arraymel.presets  # noqa: PLC0415
        from arraymel.bench.preset_peers import reference  # noqa: PLC0415

        fn = reference(arraymel.presets.get(params["preset"]))
        return Runner(fn=fn, x=np.ascontiguousarray(x_host), to_numpy=np.asarray)


def preset_reason(peer: Peer, params: dict[str, Any]) -> str | None:
    """Why ``peer`` does not run a preset configuration (arraymel's own peers and the reference do)."""
    if "preset" not in params or peer.name.startswith("arraymel") or isinstance(peer, PresetReferencePeer):
        return None
    return f"computes Keras's features, not the {params['preset']} preset's (its reference is preset-reference)"


#: Every peer, by name, in the order the report lists them (arraymel, the reference, first).
PEERS: dict[str, Peer] = {
    p.name: p
    for p in (ArraymelPeer(), ArraymelGenericPeer(), ArraymelFusedPeer(), LibrosaPeer(), KerasPeer(), TorchaudioPeer(),
              TorchStftPeer(),
              NaiveCupyPeer(), PresetReferencePeer())
}

REFERENCE = "arraymel"


def get(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}: the peers are {', '.join(PEERS)}") from None


def agreement(out: np.ndarray, ref: np.ndarray, *, db: bool) -> float:
    """How far ``out`` is from ``ref``: max |difference| in dB, or (power output) max |difference| / max |ref|."""
    a = np.asarray(out, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shape {a.shape} differs from arraymel's {b.shape}")
    if a.size == 0:
        return 0.0
    d = np.abs(a - b)
    if np.isnan(d).any():
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return math.inf
        d = np.nan_to_num(d, nan=0.0)
    if db:
        return float(d.max())
    scale = float(np.nanmax(np.abs(b))) or 1.0
    return float(d.max() / scale)
