"""Which path computes a call: one table, read by :mod:`arraymel.functional`, :mod:`arraymel.transforms`,
:func:`arraymel.show_config` and every dispatch error message.

Three paths (:data:`PATHS`): ``"numpy"`` (the tuned CPU path, :mod:`arraymel._numpy`), ``"cupy"`` (the
GPU path, :mod:`arraymel._cupy`; cuFFT, or the fused kernel for ``backend="cupy-fused"``) and
``"generic"`` (:mod:`arraymel.core`, any Array API namespace). :data:`ROUTES` maps (input kind, device,
``backend=``) to a path, first matching row first; a row without a path is an error, and its message
is the table's. Adding a backend is one :data:`PATHS` entry (its module, with the loader of its state class), one
:data:`BACKENDS` entry and its rows.

Input kinds: ``"numpy"``, ``"cupy"``, ``"tensor-cpu"`` and ``"tensor-cuda"`` (a torch or JAX tensor
and where it lives: it is computed there, through DLPack, :mod:`arraymel._dlpack`), ``"other"`` (any
other Array API array). Devices: ``None`` (where the input lives), ``"cpu"``, ``"cuda"``. CuPy is
imported only when the chosen path is ``"cupy"``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from arraymel._dlpack import dlpack_device, framework_of


@dataclass(frozen=True)
class PathInfo:
    """One path and what it can do."""

    name: str
    #: The module and the class of its per-(config, dtype, device) state (imported on first use).
    module: str
    state: str
    #: Where it computes.
    device: str
    #: The transforms it can run (``fft=`` of its state; the first is the default).
    ffts: tuple[str, ...]
    #: ``workers=`` sets its CPU threads (other paths ignore it).
    uses_workers: bool
    #: What ``max_memory=`` bounds.
    max_memory: str
    summary: str
    #: Imports and returns the state class (on first use: CuPy only for the GPU path; written out as
    #: imports, so that the import contracts see them).
    load: Callable[[], Any]
    #: The state's constructor arguments, by name, from ``cfg``, ``dtype_name``, ``xp``, ``device``, ``fft``.
    args: tuple[str, ...] = ("cfg", "dtype_name")

    def build(self, cfg: Any, dtype_name: str, xp: Any = None, device: Any = None, fft: str | None = None) -> Any:
        """A new state of this path for one (config, dtype, namespace, device, transform)."""
        given = {"cfg": cfg, "dtype_name": dtype_name, "xp": xp, "device": device, "fft": fft}
        return self.load()(*(given[a] for a in self.args))


def _numpy_state() -> Any:
    from arraymel._numpy.pipeline import NumpyState

    return NumpyState


def _cupy_state() -> Any:
    from arraymel._cupy.pipeline import CupyState  # imports CuPy

    return CupyState


def _generic_state() -> Any:
    from arraymel.core.mel import GenericState

    return GenericState


PATHS: dict[str, PathInfo] = {
    "numpy": PathInfo("numpy", "arraymel._numpy.pipeline", "NumpyState", "cpu", ("pocketfft",), True,
                      "each thread's block of frames", "tuned CPU path: blocks of frames on worker threads, banded mel",
                      _numpy_state),
    "cupy": PathInfo("cupy", "arraymel._cupy.pipeline", "CupyState", "cuda", ("cufft", "fused"), False,
                     "the chunk work area on the GPU (the fused kernel has none)",
                     "GPU path: CUDA kernels around cuFFT, or one fused kernel", _cupy_state,
                     ("cfg", "dtype_name", "device", "fft")),
    "generic": PathInfo("generic", "arraymel.core.mel", "GenericState", "any", ("xp.fft",), False,
                        "a block of frames and its spectrum", "reference path on any Array API namespace", _generic_state,
                        ("cfg", "xp", "device", "dtype_name")),
}

#: ``backend=`` values: the path each forces (None: chosen from the input and ``device``) and, on the GPU,
#: the transform. The order is the one error messages list.
BACKENDS: dict[str, tuple[str | None, str | None]] = {
    "auto": (None, None),
    "generic": ("generic", None),
    "numpy": ("numpy", None),
    "cupy": ("cupy", "cufft"),
    "cupy-fused": ("cupy", "fused"),
}
#: The GPU backends and the transform each asks for.
GPU_FFTS = {b: fft for b, (path, fft) in BACKENDS.items() if path == "cupy"}
OUTPUTS = (None, "numpy", "device")

INPUT_KINDS = ("numpy", "cupy", "tensor-cpu", "tensor-cuda", "other")
DEVICES = (None, "cpu", "cuda")
_ANY = "*"
_GPU = ("cupy", "cupy-fused")


@dataclass(frozen=True)
class Route:
    """A row of the dispatch table: inputs, devices and backends it matches (``"*"``: any), and the path,
    or the error (a format string over ``device``, ``backend``, ``kind``, ``framework``, ``where``, ``type``)."""

    kinds: tuple[str, ...] | str
    devices: tuple[str | None, ...] | str
    backends: tuple[str, ...] | str
    path: str | None = None
    error: str | None = None

    def matches(self, kind: str, device: str | None, backend: str) -> bool:
        return all(sel == _ANY or value in sel
                   for sel, value in ((self.kinds, kind), (self.devices, device), (self.backends, backend)))


_TENSOR_ELSEWHERE = ("device={device!r} is not allowed for a {framework} tensor on {where}: arraymel computes a "
                     "{framework} tensor where it lives; move it first (or leave device=None).")
_TENSOR_BACKEND = ("backend={backend!r} is not allowed for a {framework} tensor on {place}: use one of {allowed!r}.")

#: The dispatch table, first matching row first.
ROUTES: tuple[Route, ...] = (
    # torch and JAX tensors: computed where they live, never moved
    Route(("tensor-cpu",), ("cuda",), _ANY, error=_TENSOR_ELSEWHERE),
    Route(("tensor-cuda",), ("cpu",), _ANY, error=_TENSOR_ELSEWHERE),
    Route(("tensor-cpu", "tensor-cuda"), _ANY, ("generic",), "generic"),
    Route(("tensor-cpu",), _ANY, ("auto", "numpy"), "numpy"),
    Route(("tensor-cpu",), _ANY, _ANY, error=_TENSOR_BACKEND),
    Route(("tensor-cuda",), _ANY, ("auto", *_GPU), "cupy"),
    Route(("tensor-cuda",), _ANY, _ANY, error=_TENSOR_BACKEND),
    # device="cuda": NumPy or CuPy input on the GPU path
    Route(_ANY, ("cuda",), ("generic", "numpy"),
          error="backend={backend!r} cannot compute on device={device_arg!r}: use backend='auto', 'cupy' or 'cupy-fused'."),
    Route(("other",), ("cuda",), _ANY, error="device={device_arg!r} needs NumPy or CuPy input; got {type}."),
    Route(_ANY, ("cuda",), _ANY, "cupy"),
    # device="cpu": the NumPy path (the generic one for other arrays or when asked for)
    Route(_ANY, ("cpu",), _GPU, error="backend={backend!r} cannot compute on device='cpu'."),
    Route(("other",), ("cpu",), _ANY, "generic"),
    Route(_ANY, ("cpu",), ("generic",), "generic"),
    Route(_ANY, ("cpu",), _ANY, "numpy"),
    # device=None: where the input lives
    Route(_ANY, (None,), ("generic",), "generic"),
    Route(("numpy",), (None,), ("numpy",), "numpy"),
    Route(_ANY, (None,), ("numpy",), error="backend='numpy' needs NumPy input (or device='cpu'); got a {kind} array."),
    Route(("other",), (None,), _GPU, error="backend={backend!r} needs NumPy or CuPy input."),
    Route(_ANY, (None,), _GPU, "cupy"),
    Route(("numpy",), (None,), ("auto",), "numpy"),
    Route(("cupy",), (None,), ("auto",), "cupy"),
    Route(("other",), (None,), ("auto",), "generic"),
)


def is_cupy_array(x: Any) -> bool:
    """True for a CuPy array, without importing CuPy when it has not been imported."""
    return "cupy" in sys.modules and type(x).__module__.split(".")[0] == "cupy"


def parse_device(device: Any) -> tuple[str, int | None] | None:
    """``None`` | ``("cpu", None)`` | ``("cuda", index or None)`` from ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a CuPy Device."""
    if device is None:
        return None
    if isinstance(device, str):
        d = device.strip().lower()
        if d == "cpu":
            return ("cpu", None)
        if d in ("cuda", "gpu"):
            return ("cuda", None)
        if d.startswith(("cuda:", "gpu:")):
            try:
                return ("cuda", int(d.split(":", 1)[1]))
            except ValueError:
                pass
        raise ValueError(f"device={device!r} is not allowed: device must be None, 'cpu', 'cuda' or 'cuda:N'.")
    mod = type(device).__module__.split(".")[0]
    if mod == "cupy":
        return ("cuda", int(device.id))
    raise ValueError(f"device={device!r} is not allowed: device must be None, 'cpu', 'cuda' or 'cuda:N'.")


@dataclass(frozen=True)
class Plan:
    """Where and how one call computes: the path, the CUDA device index, and the output form."""

    path: str
    cuda_index: int | None
    input_kind: str  # "numpy" | "cupy" | "torch" | "jax" | "other"
    output: str | None
    fft: str = "cufft"  # the GPU path's transform: "cufft" or "fused" (backend="cupy-fused")


def route(kind: str, device: str | None, backend: str) -> Route:
    """The first row of :data:`ROUTES` for (input kind, device, backend)."""
    for r in ROUTES:
        if r.matches(kind, device, backend):
            return r
    raise AssertionError(f"no dispatch row for {(kind, device, backend)!r}")  # pragma: no cover - the table is total


def choose(x: Any, *, device: Any = None, backend: str = "auto", output: str | None = None) -> Plan:
    """The :class:`Plan` for input ``x`` from the table (:data:`ROUTES`); raises ValueError naming bad values."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed: backend must be one of {tuple(BACKENDS)!r}.")
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not allowed: output must be None (like the input), 'numpy' or 'device'.")
    dev = parse_device(device)
    where = None  # where a torch/JAX tensor lives: ("cpu", 0) or ("cuda", index)
    if isinstance(x, np.ndarray):
        kind, input_kind = "numpy", "numpy"
    elif is_cupy_array(x):
        kind, input_kind = "cupy", "cupy"
    elif (framework := framework_of(x)) is not None and (where := dlpack_device(x)) is not None:
        kind, input_kind = f"tensor-{where[0]}", framework
    else:
        kind, input_kind = "other", "other"
    here = None if where is None else (f"cuda:{where[1]}" if where[0] == "cuda" else "cpu")
    if where is not None and where[0] == "cuda" and dev is not None and dev[0] == "cuda" and dev[1] not in (None, where[1]):
        raise ValueError(_TENSOR_ELSEWHERE.format(device=device, framework=input_kind, where=here))
    r = route(kind, None if dev is None else dev[0], backend)
    if r.path is None:
        allowed = tuple(b for b in BACKENDS if route(kind, None, b).path is not None)
        raise ValueError(r.error.format(device=device, device_arg=device, backend=backend, kind=input_kind,
                                        framework=input_kind, where=here, place=None if where is None else where[0],
                                        allowed=allowed, type=f"{type(x).__module__}.{type(x).__name__}"))
    if r.path == "cupy":
        index = where[1] if where is not None else (None if dev is None else dev[1])
        return Plan("cupy", index, input_kind, output, GPU_FFTS.get(backend, "cufft"))
    return Plan(r.path, None, input_kind, output)


def table() -> list[dict[str, Any]]:
    """The dispatch table as rows of plain values (what :func:`arraymel.show_config` shows)."""
    def show(sel: Any) -> Any:
        return "any" if sel == _ANY else [("where it lives" if v is None else v) for v in sel]

    return [{"input": show(r.kinds), "device": show(r.devices), "backend": show(r.backends),
             "path": r.path, "error": None if r.path else r.error} for r in ROUTES]


def fused_fallback_reason(cfg: Any, dtype_name: str = "float32") -> str | None:
    """Why ``backend="cupy-fused"`` computes ``cfg`` with the cuFFT kernels instead (None: the fused kernel
    computes it). Pure Python: CuPy is not imported."""
    from arraymel._cupy.fused import fallback_reason

    return fallback_reason(cfg, dtype_name)
