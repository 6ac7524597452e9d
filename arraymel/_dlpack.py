"""torch and JAX tensors on the fast paths, through DLPack, without copies either way.

A CPU tensor is viewed as a NumPy array (``np.from_dlpack``), computed by the NumPy path, and the
NumPy result is handed back with the framework's own ``from_dlpack``: neither the input nor the
output is copied (the NumPy path allocates its output 64-byte aligned, which JAX needs to adopt a
buffer rather than copy it).

A CUDA tensor is viewed as a CuPy array on its own device and computed by the CuPy kernels in the
framework's current stream (torch: ``torch.cuda.current_stream(device)`` as a CuPy
``ExternalStream``; JAX has no user-visible stream: CuPy's current stream, which JAX's DLPack
export orders itself against). The result goes back through DLPack inside the same stream, so
nothing is copied to the host and nothing waits on the host. (Not yet run on a GPU: the glue is
tested with stand-ins in tests/test_frameworks.py.)

The output is a plain tensor: the computation is not recorded by autograd or traceable by JAX
(``requires_grad`` input is detached; a JAX tracer, inside ``jit``, takes the generic path instead).
Neither framework is imported here: a tensor is recognised only when its framework is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

FRAMEWORKS = ("torch", "jax")
_DL_CPU, _DL_CUDA = 1, 2  # DLPack device types (DLDeviceType.kDLCPU, kDLCUDA)


def is_jax_tracer(x: Any) -> bool:
    """True for a JAX tracer (an abstract value inside ``jit``, ``grad``, ...): it has no memory to share."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, getattr(jax.core, "Tracer", ()))


def framework_of(x: Any) -> str | None:
    """``"torch"`` for a torch tensor, ``"jax"`` for a concrete JAX array, else None (no import)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array) and not is_jax_tracer(x):
        return "jax"
    return None


def dlpack_device(x: Any) -> tuple[str, int] | None:
    """``("cpu", 0)`` or ``("cuda", index)`` from ``x.__dlpack_device__()``; None for any other device."""
    try:
        kind, index = x.__dlpack_device__()
    except Exception:  # a device DLPack cannot export (torch "meta", "mps", ...)
        return None
    if int(kind) == _DL_CPU:
        return ("cpu", 0)
    if int(kind) == _DL_CUDA:
        return ("cuda", int(index))
    return None


def _exportable(x: Any, framework: str) -> Any:
    """``x`` as DLPack can export it: torch tensors are detached (a view: same memory, no autograd)."""
    if framework == "torch" and x.requires_grad:
        return x.detach()
    return x


def _export_dtype(x: Any, framework: str, dtype_name: str) -> Any:
    """bfloat16 has no NumPy or CuPy dtype: cast to the compute dtype first (the one copy the path needs anyway)."""
    if framework == "torch" and str(x.dtype) == "torch.bfloat16":
        return x.to(getattr(sys.modules["torch"], dtype_name))
    if framework == "jax" and str(x.dtype) == "bfloat16":
        return x.astype(dtype_name)
    return x


def _check_output_dtype(framework: str, dtype_name: str) -> None:
    """JAX without ``jax_enable_x64`` has no float64 arrays: it would silently truncate a float64 result."""
    if framework == "jax" and dtype_name == "float64" and not sys.modules["jax"].config.jax_enable_x64:
        raise ValueError("dtype='float64' is not allowed for JAX input while jax_enable_x64 is off (JAX would truncate "
                         "the result to float32): enable it (jax.config.update('jax_enable_x64', True)) or pass "
                         "output='numpy'.")


def _to_framework(out: Any, framework: str) -> Any:
    """A NumPy or CuPy result as a tensor of ``framework`` sharing its memory."""
    if framework == "torch":
        return sys.modules["torch"].from_dlpack(out)
    import jax.dlpack

    return jax.dlpack.from_dlpack(out)


def run_on_cpu(x: Any, framework: str, dtype_name: str, compute: Callable[[np.ndarray], np.ndarray],
               output: str | None) -> Any:
    """``compute`` on a NumPy view of CPU tensor ``x``; the result as a tensor (or NumPy for ``output="numpy"``)."""
    if output != "numpy":
        _check_output_dtype(framework, dtype_name)
    xn = np.from_dlpack(_export_dtype(_exportable(x, framework), framework, dtype_name))
    out = compute(xn)
    return out if output == "numpy" else _to_framework(out, framework)


def run_on_cuda(x: Any, framework: str, index: int, dtype_name: str, compute: Callable[[Any], Any],
                output: str | None) -> Any:
    """``compute`` on a CuPy view of CUDA tensor ``x``, on its device and in its framework's current stream.

    The result comes back as a tensor on the same device (``output="numpy"``: a NumPy copy, which waits).
    """
    try:
        import cupy
    except ImportError as e:
        raise ImportError(f"a CUDA {framework} tensor takes arraymel's GPU path, which needs CuPy: pip install "
                          "'arraymel[cuda12]' or 'arraymel[cuda13]' (the CuPy wheel matching your CUDA driver), or pass "
                          f"backend='generic' to compute with {framework} itself.") from e

    if output != "numpy":
        _check_output_dtype(framework, dtype_name)
    x = _export_dtype(_exportable(x, framework), framework, dtype_name)
    with cupy.cuda.Device(index):
        if framework == "torch":
            torch_stream = sys.modules["torch"].cuda.current_stream(index)
            stream = cupy.cuda.ExternalStream(int(torch_stream.cuda_stream), index)
        else:
            stream = cupy.cuda.get_current_stream()
        with stream:
            out = compute(cupy.from_dlpack(x))
            if output == "numpy":
                return out.get()
            # handed back inside the stream: the consumer asks for this stream, so nothing waits
            return _to_framework(out, framework)
