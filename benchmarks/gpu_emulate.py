"""``gpu_acceptance.py --emulate``: CuPy replaced by the CPU emulator of ``tests/cuda_cpu``.

A module named ``cupy`` is installed in ``sys.modules`` whose arrays are NumPy arrays with CuPy's
``device``/``data.ptr``/``get()`` (the stand-in of ``tests/test_cupy_fake.py``), whose cuFFT plans
replay the engine's layouts with NumPy, and the GPU path's compiled kernels (the cuFFT path's and
the fused one) run the exact CUDA text on the emulator (g++, guarded buffers). So
``arraymel.mel_spectrogram(cupy.asarray(x), backend="cupy" | "cupy-fused")`` runs through the same
public call, dispatch and engine as on a GPU. Nothing here is fast: timings are meaningless.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import numpy as np

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")


def install() -> types.ModuleType:
    """Install the emulated ``cupy`` (and its kernel hooks); returns it."""
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    import test_cupy_fake as fake_mod
    from test_cupy_fused import FusedFakeKernels

    fake = fake_mod.make_fake_cupy([])

    class ndarray(fake_mod.FakeArray):  # noqa: N801 - CuPy's name, so that dispatch sees a CuPy array
        pass

    ndarray.__module__ = "cupy"

    def _as(a, dtype=None):
        out = np.array(a, dtype=dtype, copy=True).view(ndarray)
        fake_mod.FakeArray.registry.append(out)
        return out

    inner_empty = fake.empty

    def empty(shape, dtype="float32"):
        return inner_empty(shape, dtype).view(ndarray)

    fake.ndarray = ndarray
    fake.asarray = _as
    fake.array = lambda a, copy=True, dtype=None: _as(a, dtype)
    fake.empty = empty
    fake.zeros = lambda shape, dtype="float32": _zeros(empty, shape, dtype)
    fake.asnumpy = lambda a: np.asarray(a).copy()
    fake.float32, fake.float64 = np.float32, np.float64
    fake.__version__ = "emulated"
    sys.modules["cupy"] = fake
    sys.modules["cupy.cuda"] = fake.cuda
    sys.modules["cupy.cuda.cufft"] = fake.cuda.cufft
    sys.modules.pop("arraymel._cupy.pipeline", None)
    pipeline = importlib.import_module("arraymel._cupy.pipeline")
    pipeline.KERNELS = fake_mod.FakeKernels()
    pipeline.FUSED_KERNEL_CACHE = FusedFakeKernels()
    from arraymel._cupy.plans import PlanCache

    pipeline.PLANS = PlanCache(maxsize=8)
    return fake


def _zeros(empty, shape, dtype):
    a = empty(shape, dtype)
    a.fill(0)
    return a


def forget() -> None:
    """Drop the stand-in's registry of live arrays (it maps raw addresses back to arrays)."""
    import test_cupy_fake as fake_mod

    fake_mod.FakeArray.registry.clear()
