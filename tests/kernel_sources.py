"""Test helpers over the GPU path's CUDA text: every instantiation, the kernels' signatures read from the
text (to check the Python declarations against it), and NumPy twins of the ordered ``top_db`` keys."""

from __future__ import annotations

import re

import numpy as np

from arraymel._cupy import fused_kernels, kernels


def all_name_expressions() -> list[str]:
    """Every instantiation the cuFFT path can ask for (float32 and float64, every input dtype)."""
    out: list[str] = []
    for dt in kernels.COMPUTE_CTYPES:
        out += kernels.name_expressions(dt)
        for it in kernels.INPUT_CTYPES:
            out += kernels.name_expressions(dt, it)
    return out


def all_fused_name_expressions() -> list[str]:
    """Every instantiation the fused path can ask for."""
    return [e for dt in kernels.COMPUTE_CTYPES for it in kernels.INPUT_CTYPES
            for e in fused_kernels.fused_name_expressions(dt, it)]


def parse_signatures(source: str = kernels.SOURCE) -> dict[str, tuple[tuple[str, str], ...]]:
    """``{kernel: ((C type, name), ...)}`` read from the ``__global__`` definitions of ``source``.

    Types are normalised to the vocabulary of :data:`arraymel._cupy.kernels.KERNEL_PARAMS`
    (``am_key_t<T>`` -> ``K``, ``__restrict__`` dropped).
    """
    sigs = {}
    for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(([^)]*)\)", source):
        params = []
        for raw in m.group(2).split(","):
            p = " ".join(raw.replace("__restrict__", " ").split())
            ctype, name = p.rsplit(" ", 1)
            while name.startswith("*"):
                ctype, name = ctype + "*", name[1:]
            ctype = ctype.replace("am_key_t<T>", "K").replace(" *", "*")
            params.append((ctype, name))
        sigs[m.group(1)] = tuple(params)
    return sigs


def encode_keys(v: np.ndarray) -> np.ndarray:
    """NumPy twin of the device's ``to_key``: an unsigned key whose order is the float order; NaN is the largest."""
    v = np.asarray(v)
    if v.dtype == np.float32:
        ut, top = np.uint32, np.uint32(0x80000000)
    elif v.dtype == np.float64:
        ut, top = np.uint64, np.uint64(0x8000000000000000)
    else:
        raise TypeError(f"keys of {v.dtype}: float32 or float64 only")
    b = v.view(ut)
    k = np.where((b & top) != 0, ~b, b | top)
    return np.where(np.isnan(v), np.iinfo(ut).max, k).astype(ut)


def decode_key(k: int | np.integer, dtype_name: str) -> float:
    """NumPy twin of ``from_key``: the float a key encodes (the all-ones key is NaN)."""
    if dtype_name == "float32":
        ut, ft, top = np.uint32, np.float32, 0x80000000
    else:
        ut, ft, top = np.uint64, np.float64, 0x8000000000000000
    k = int(k)
    if k == int(np.iinfo(ut).max):
        return ft(np.nan)
    b = (k & (top - 1)) if (k & top) else (~k & int(np.iinfo(ut).max))
    return np.array([b], dtype=ut).view(ft)[0]


def with_layout(engine, layout):
    """``engine`` (an :class:`~arraymel._cupy.engine.Engine`), its plans made in ``layout`` (``"inplace"`` or
    ``"gather"``; None: its own choice), so that a test runs both layouts whatever the planner prefers."""
    from arraymel._cupy.chunking import _plan_path

    engine.__dict__.pop("plan", None)
    if layout is None:
        return engine
    planned = type(engine).plan

    def plan(batch, samples, budget):
        prob = engine.problem(batch, samples)
        if layout == "inplace" and not prob.inplace_ok:
            raise ValueError("the pitched (in-place FFT) layout needs window=None or a named window over the whole frame")
        chosen = planned(engine, batch, samples, budget)
        return chosen if chosen.path == layout else _plan_path(prob, layout, budget)

    engine.plan = plan
    return engine


def force_layout(state, layout):
    """Make a :class:`~arraymel._cupy.pipeline.CupyState` compute in ``layout`` (see :func:`with_layout`)."""
    with_layout(state.engine, layout)
    return state
