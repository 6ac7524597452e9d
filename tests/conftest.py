"""Shared fixtures: the ``xp`` namespaces every generic test runs on, and GPU gating."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "numpy")


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU = _gpu_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device and CuPy (none here)")
    for item in items:
        # the marker itself: `"gpu" in item.keywords` also matches a checkout in a directory named gpu
        if item.get_closest_marker("gpu") is not None and not GPU:
            item.add_marker(skip_gpu)


def _namespaces():
    params = [pytest.param("numpy", id="numpy")]
    params.append(pytest.param("array_api_strict", id="array_api_strict"))
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return params


@pytest.fixture(params=_namespaces())
def xp(request):
    """An Array API namespace: NumPy, array-api-strict, and CuPy where a GPU is present."""
    name = request.param
    if name == "numpy":
        import array_api_compat.numpy as mod

        return mod
    if name == "cupy" and not GPU:
        pytest.skip("needs a CUDA device and CuPy")
    return importlib.import_module(name)


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)
