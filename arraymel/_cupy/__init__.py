"""The CuPy fast path: fused CUDA kernels around an overlapped cuFFT, cached plans, bounded memory.

Modules, by idea (only :mod:`arraymel._cupy.pipeline` imports CuPy, and only when it is used):

- ``cuda/*.cuh``: the CUDA C++ sources, package data.
- :mod:`~arraymel._cupy.kernels`: reads them (``importlib.resources``), the argument lists the Python
  side must pass, and the compile cache (one module per device and dtype).
- :mod:`~arraymel._cupy.params`: what a :class:`~arraymel.MelConfig`'s host plan
  (:mod:`arraymel.core.plan`) means for the kernels (window taps, magnitude mode, launch shapes).
- :mod:`~arraymel._cupy.chunking`: the work-area budget, the batch/time chunk planner and the
  out-of-memory retry, all pure Python.
- :mod:`~arraymel._cupy.plans`: the bounded LRU of cuFFT plans (and their work areas).
- :mod:`~arraymel._cupy.engine`: the chunk loop that drives the kernels through an ``ops`` object.
- :mod:`~arraymel._cupy.fused_kernels` and :mod:`~arraymel._cupy.fused`: the opt-in fused kernel
  (``backend="cupy-fused"``: window, FFT, mel and dB in one kernel, no spectrum in memory) and its
  engine; sizes it does not cover run the cuFFT engine.
- :mod:`~arraymel._cupy.pipeline`: ``to_device`` and ``CupyState`` (imports CuPy).

The tests run the engine on a CPU emulator of the kernels (``tests/cuda_cpu``, not installed).
See docs/gpu.md for the design and what has and has not been measured.
"""
