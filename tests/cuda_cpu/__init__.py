"""A CPU emulator of the CUDA subset arraymel's kernels use: the exact kernel text, compiled with g++.

- ``cuda_cpu.h``: the runtime (threads as fibers, barriers, warp shuffles, atomics, built-ins);
- :mod:`cuda_cpu.build`: compiles any CUDA source for a list of instantiations (cached by hash) and
  launches them with checked arguments;
- :mod:`cuda_cpu.ops`: the ``ops`` of :class:`arraymel._cupy.engine.Engine` (guarded device memory,
  the overlapped FFT), so the GPU path's engine runs its real kernels on the CPU.

See docs/gpu.md for what this verifies and what only a GPU can.
"""

from cuda_cpu.build import KernelError, Module, Pointer, build, build_many
from cuda_cpu.ops import EmuOps, build_all_kernels, emulated_engine, emulated_fused_engine

__all__ = ["EmuOps", "KernelError", "Module", "Pointer", "build", "build_all_kernels", "build_many", "emulated_engine",
           "emulated_fused_engine"]
