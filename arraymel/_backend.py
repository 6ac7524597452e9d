"""Namespace and device detection, and the choice of a fast path.

Paths: ``"numpy"`` (the tuned CPU path, :mod:`arraymel._numpy`), ``"cupy"`` (the GPU path,
:mod:`arraymel._cupy`) and ``"generic"`` (:mod:`arraymel.core`, any Array API namespace). CuPy is
imported only when the input is a CuPy array or a CUDA device is asked for. ``backend="cupy-fused"``
is the GPU path with the fused kernel (:mod:`arraymel._cupy.fused`; opt-in, sizes it does not
cover run the cuFFT kernels): the plan's ``fft`` says which.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    input_kind: str  # "numpy" | "cupy" | "other"
    output: str | None
    fft: str = "cufft"  # the GPU path's transform: "cufft" or "fused" (backend="cupy-fused")


def choose(x: Any, *, device: Any = None, backend: str = "auto", output: str | None = None) -> Plan:
    """Pick the path for input ``x`` (see the module docstring); raises ValueError naming bad values."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed: backend must be one of {BACKENDS!r}.")
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not allowed: output must be None (like the input), 'numpy' or 'device'.")
    dev = parse_device(device)
    if isinstance(x, np.ndarray):
        kind = "numpy"
    elif is_cupy_array(x):
        kind = "cupy"
    else:
        kind = "other"

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
