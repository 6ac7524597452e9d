"""Namespace and device detection, and the choice of a fast path.

Paths: ``"numpy"`` (the tuned CPU path, :mod:`arraymel._numpy`), ``"cupy"`` (the GPU path,
:mod:`arraymel._cupy`) and ``"generic"`` (:mod:`arraymel.core`, any Array API namespace). CuPy is
imported only when the input is a CuPy array, a CUDA tensor, or a CUDA device is asked for.
``backend="cupy-fused"`` is the GPU path with the fused kernel (:mod:`arraymel._cupy.fused`; opt-in,
sizes it does not cover run the cuFFT kernels): the plan's ``fft`` says which.

torch and JAX tensors take the fast paths through DLPack (:mod:`arraymel._dlpack`): a CPU tensor the
NumPy path, a CUDA tensor the CuPy path on its own device. Other Array API arrays take the generic path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from arraymel._dlpack import dlpack_device, framework_of

BACKENDS = ("auto", "generic", "numpy", "cupy", "cupy-fused")
#: The GPU backends and the transform each asks for.
GPU_FFTS = {"cupy": "cufft", "cupy-fused": "fused"}
OUTPUTS = (None, "numpy", "device")


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


def choose(x: Any, *, device: Any = None, backend: str = "auto", output: str | None = None) -> Plan:
    """Pick the path for input ``x`` (see the module docstring); raises ValueError naming bad values."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed: backend must be one of {BACKENDS!r}.")
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not allowed: output must be None (like the input), 'numpy' or 'device'.")
    dev = parse_device(device)
    tensor_device = None  # where a torch/JAX tensor lives: ("cpu", 0) or ("cuda", index)
    if isinstance(x, np.ndarray):
        kind = "numpy"
    elif is_cupy_array(x):
        kind = "cupy"
    elif (framework := framework_of(x)) is not None and (tensor_device := dlpack_device(x)) is not None:
        kind = framework
    else:
        kind = "other"
    if tensor_device is not None:
        return _choose_for_tensor(kind, tensor_device, dev, device, backend, output)

    fft = GPU_FFTS.get(backend, "cufft")
    if dev is not None and dev[0] == "cuda":
        if backend not in ("auto", *GPU_FFTS):
            raise ValueError(f"backend={backend!r} cannot compute on device={device!r}: use backend='auto', 'cupy' or 'cupy-fused'.")
        if kind == "other":
            raise ValueError(f"device={device!r} needs NumPy or CuPy input; got {type(x).__module__}.{type(x).__name__}.")
        return Plan("cupy", dev[1], kind, output, fft)
    if dev is not None and dev[0] == "cpu":
        if backend in GPU_FFTS:
            raise ValueError(f"backend={backend!r} cannot compute on device='cpu'.")
        if kind == "other":
            return Plan("generic", None, kind, output)
        return Plan("generic" if backend == "generic" else "numpy", None, kind, output)

    if backend == "generic":
        return Plan("generic", None, kind, output)
    if backend == "numpy":
        if kind != "numpy":
            raise ValueError(f"backend='numpy' needs NumPy input (or device='cpu'); got a {kind} array.")
        return Plan("numpy", None, kind, output)
    if backend in GPU_FFTS:
        if kind == "other":
            raise ValueError(f"backend={backend!r} needs NumPy or CuPy input.")
        return Plan("cupy", None, kind, output, fft)
    if kind == "numpy":
        return Plan("numpy", None, kind, output)
    if kind == "cupy":
        return Plan("cupy", None, kind, output)
    return Plan("generic", None, kind, output)


def _choose_for_tensor(kind: str, where: tuple[str, int], dev: tuple | None, device: Any, backend: str,
                       output: str | None) -> Plan:
    """The plan for a torch/JAX tensor on ``where``: the fast path of its own device, never a transfer."""
    on_cuda = where[0] == "cuda"
    if dev is not None and (dev[0] != where[0] or (on_cuda and dev[1] not in (None, where[1]))):
        here = f"cuda:{where[1]}" if on_cuda else "cpu"
        raise ValueError(f"device={device!r} is not allowed for a {kind} tensor on {here}: arraymel computes a "
                         f"{kind} tensor where it lives; move it first (or leave device=None).")
    if backend == "generic":
        return Plan("generic", None, kind, output)
    allowed = ("auto", *GPU_FFTS) if on_cuda else ("auto", "numpy")
    if backend not in allowed:
        raise ValueError(f"backend={backend!r} is not allowed for a {kind} tensor on {where[0]}: use one of "
                         f"{(*allowed, 'generic')!r}.")
    if on_cuda:
        return Plan("cupy", where[1], kind, output, GPU_FFTS.get(backend, "cufft"))
    return Plan("numpy", None, kind, output)
