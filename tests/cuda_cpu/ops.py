"""The ``ops`` of :class:`arraymel._cupy.engine.Engine` on the CUDA emulator: device memory with guard
zones, launches of the compiled kernel text, and the overlapped batched FFT with NumPy/SciPy.

Memory: every buffer of :meth:`EmuOps.empty` / :meth:`EmuOps.zeros` follows a guard zone of ``0xFF``
bytes (NaN as float32 and float64, the largest integer key) and ends where an inaccessible page
begins; ``empty`` is poisoned with ``0xFF`` too, so reading unwritten memory shows as NaN. A read or
write past a buffer's end faults at once; the guards before every live buffer are checked after
every launch and FFT; both are a :class:`~cuda_cpu.build.KernelError`. An array
that did not come from these ops (the caller's input, a host-side cast) is copied into a guarded
buffer for the launch. In ``sanitize`` mode (AddressSanitizer build, libasan preloaded) buffers are
exact-size heap blocks instead, so ASan reports any byte outside them, reads included.

FFT: the layout the engine gives cuFFT (``idist < n``: overlapping frames read in place) is read
with the same strides; ``fft="float32"`` transforms float32 data in float32 with NumPy (a stand-in
for cuFFT's rounding), ``fft="exact"`` in float64, rounded once to the compute dtype.
"""

from __future__ import annotations

import ctypes
import mmap
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from arraymel._cupy import fused_kernels, kernels
from cuda_cpu.build import KernelError, Module, Pointer, build, build_many

GUARD = 4096  # bytes of poison before a buffer (after it: an inaccessible page)
POISON = 0xFF
_MAP_NORESERVE = 0x4000  # Linux; the mmap module does not export it
_LIBC = ctypes.CDLL(None, use_errno=True)


def _byte_bounds(a: np.ndarray) -> tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # NumPy < 2
        byte_bounds = np.byte_bounds
    return byte_bounds(a)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


_ALL_BUILT = False


def kernel_modules(dtype_name: str, in_dtype_name: str | None = None, sanitize: bool = False) -> Module:
    """The module of arraymel's kernels that the GPU path compiles for one (compute, input) dtype pair.

    The first call of a process compiles every module at once, in parallel (a cache hit afterwards).
    """
    global _ALL_BUILT
    if not _ALL_BUILT and not sanitize:
        build_all_kernels()
        _ALL_BUILT = True
    return build(kernels.SOURCE, kernels.name_expressions(dtype_name, in_dtype_name), sanitize)


def build_all_kernels(sanitize: bool = False) -> None:
    """Every module of :data:`arraymel._cupy.kernels.SOURCE` (all instantiations), compiled in parallel."""
    jobs = [(kernels.SOURCE, kernels.name_expressions(dt, it))
            for dt in kernels.COMPUTE_CTYPES for it in (None, *kernels.INPUT_CTYPES)]
    build_many(jobs, sanitize)


def _rfft_float32(frames: np.ndarray) -> np.ndarray:
    """A real FFT computed in single precision: NumPy's (>= 2.0), else SciPy's (NumPy 1.x works in double)."""
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        return np.fft.rfft(frames, axis=-1)
    import scipy.fft

    return scipy.fft.rfft(frames, axis=-1)


class EmuOps:
    """``empty``/``zeros``/``launch``/``rfft`` for the engine, plus :meth:`launch_expr` for any compiled kernel.

    ``launches`` records ``(kernel, grid, smem)`` per engine launch (like ``NumpyOps``); ``ffts`` the layouts.
    """

    def __init__(self, *, fft: str = "exact", shuffle: bool = False, seed: int = 0, sanitize: bool = False,
                 sample: Any = None):
        if fft not in ("exact", "float32"):
            raise ValueError(f"fft={fft!r}: 'exact' or 'float32'")
        self.fft, self.shuffle, self.seed, self.sanitize = fft, shuffle, seed, sanitize
        #: leave fresh buffers as zero pages instead of poisoning them (scale mode)
        self.zero_pages = False
        #: scale mode: a callable ``(expression, grid) -> linear block ids to run`` (None: every block)
        self.sample = sample
        self.launches: list[tuple[str, tuple, int]] = []
        self.ffts: list[Any] = []
        self._buffers: dict[int, tuple[weakref.ref, int]] = {}  # id(raw) -> (raw, payload bytes)
        self._n = 0

    # ----------------------------------------------------------------- memory
    def _alloc(self, nbytes: int, fill: int) -> np.ndarray:
        """A buffer of ``nbytes`` filled with ``fill``: guard zone, payload, then an inaccessible page.

        The payload ends exactly where a ``PROT_NONE`` page begins, so any read or write past its end
        faults (the runtime turns the fault into a :class:`KernelError`); before the payload lie
        ``GUARD`` bytes of poison, checked after every launch. Pages are mapped ``MAP_NORESERVE``, so a
        buffer costs only the pages touched (``zero_pages`` leaves the payload as zero pages).
        """
        if self.sanitize:  # exact-size heap blocks: ASan's redzones do the checking
            raw = np.empty(max(1, nbytes), np.uint8)
            raw.fill(fill)
            return raw[:nbytes]
        body = -(-(GUARD + nbytes) // mmap.PAGESIZE) * mmap.PAGESIZE
        m = mmap.mmap(-1, body + mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        raw = np.frombuffer(m, np.uint8, count=body)  # the protected page is outside the array
        if _LIBC.mprotect(ctypes.c_void_p(raw.ctypes.data + body), mmap.PAGESIZE, 0):
            raise OSError(ctypes.get_errno(), "mprotect failed")
        start = body - nbytes
        raw[:start] = POISON
        if fill and not self.zero_pages:
            raw[start:] = fill
        self._buffers[id(raw)] = (weakref.ref(raw), start, nbytes)
        return raw[start:]

    def _describe_fault(self, message: str) -> str:
        """The buffer a faulting address lies past, when it is one of ours."""
        import re

        m = re.search(r"memory fault at address (0x[0-9a-f]+)", message)
        if not m:
            return message
        addr = int(m.group(1), 16)
        for ref, start, nbytes in self._buffers.values():
            raw = ref()
            if raw is not None and raw.ctypes.data + start <= addr < raw.ctypes.data + raw.size + mmap.PAGESIZE:
                return f"{message}: byte {addr - raw.ctypes.data - start} of a buffer of {nbytes} bytes"
        return message

    def empty(self, shape: int | tuple, dtype_name: str) -> np.ndarray:
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        dt = np.dtype(dtype_name)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        return self._alloc(n, POISON).view(dt).reshape(shape)

    def zeros(self, n: int, dtype_name: str) -> np.ndarray:
        dt = np.dtype(dtype_name)
        return self._alloc(int(n) * dt.itemsize, 0).view(dt)

    def to_device(self, a: np.ndarray) -> np.ndarray:
        """A guarded copy of ``a`` (C order)."""
        out = self.empty(a.shape, a.dtype.name)
        out[...] = a
        return out

    def check_guards(self) -> None:
        """Every live buffer's guard zones are intact (a write outside a buffer shows here)."""
        dead = []
        for key, (ref, start, nbytes) in self._buffers.items():
            raw = ref()
            if raw is None:
                dead.append(key)
                continue
            if (raw[:start] != POISON).any() or (raw[start + nbytes:] != POISON).any():
                pre = np.flatnonzero(raw[:start] != POISON)
                post = np.flatnonzero(raw[start + nbytes:] != POISON)
                where = f"{start - pre[0]} bytes before" if pre.size else f"{post[-1] + 1} bytes past the end of"
                raise KernelError(f"out of bounds: a write {where} a buffer of {nbytes} bytes")
        for key in dead:
            del self._buffers[key]

    def _guarded(self, root: np.ndarray) -> bool:
        entry = self._buffers.get(id(root))
        return entry is not None and entry[0]() is root

    # ----------------------------------------------------------------- launches
    def _pointer(self, a: Any, temps: list) -> Pointer:
        offset = 0
        if isinstance(a, kernels.Ptr):
            a, offset = a.array, a.offset
        if not isinstance(a, np.ndarray):
            raise TypeError(f"kernel argument {a!r} ({type(a).__name__}): pass a NumPy scalar of the exact C type, "
                            "an array or a Ptr")
        root = _root(a)
        address = a.ctypes.data + offset * a.dtype.itemsize
        if self.sanitize or not self._guarded(root):
            # not ours (the caller's input, a host cast) or ASan mode: a copy in fresh memory for this launch
            lo, hi = _byte_bounds(root)
            src = np.ctypeslib.as_array((ctypes.c_ubyte * max(1, hi - lo)).from_address(lo))[:hi - lo]
            copy = self._alloc(hi - lo, 0)
            copy[...] = src
            temps.append((copy, src, bool(root.flags.writeable)))
            address = copy.ctypes.data + (address - lo)
        return Pointer(address, a.dtype)

    def launch_expr(self, module: Module, expression: str, grid: Sequence[int], block: Sequence[int], smem: int,
                    args: Sequence[Any]) -> None:
        """Launch any compiled instantiation: arrays and :class:`arraymel._cupy.kernels.Ptr` become device pointers,
        NumPy scalars pass as they are (their type must be the parameter's)."""
        temps: list = []
        conv = [a if isinstance(a, np.generic) else self._pointer(a, temps) for a in args]
        blocks = None
        if self.sample is not None:
            blocks = self.sample(expression, tuple(int(g) for g in grid))
        self._n += 1
        try:
            try:
                module.launch(expression, grid, block, conv, smem, shuffle=self.shuffle, seed=self.seed + self._n,
                              blocks=blocks)
            except KernelError as e:
                raise KernelError(self._describe_fault(str(e))) from None
            if not self.sanitize:
                self.check_guards()
        finally:
            for copy, src, writeable in temps:
                if writeable and not np.array_equal(copy, src):
                    src[...] = copy

    def launch(self, kernel: str, dtype_name: str, in_dtype_name: str | None, grid: tuple, block: tuple, smem: int,
               args: tuple) -> None:
        """The engine's launch: the instantiation of ``kernel`` from arraymel's kernel text (the fused
        kernel's text for ``am_fused_mel``)."""
        if kernel in fused_kernels.FUSED_KERNELS:
            expr = fused_kernels.fused_name_expression(kernel, dtype_name, in_dtype_name)
            # one library per compute dtype with every input type, as tests/test_cupy_fused.py builds it (one compile)
            exprs = [fused_kernels.fused_name_expression(k, dtype_name, it)
                     for k in fused_kernels.FUSED_KERNELS for it in kernels.INPUT_CTYPES]
            mod = build(fused_kernels.FUSED_SOURCE, exprs, self.sanitize)
        else:
            expr = kernels.name_expression(kernel, dtype_name, in_dtype_name)
            mod = kernel_modules(dtype_name, in_dtype_name if kernel in kernels.INPUT_KERNELS else None, self.sanitize)
        self.launches.append((kernel, tuple(int(g) for g in grid), int(smem)))
        self.launch_expr(mod, expr, grid, block, smem, args)

    # ----------------------------------------------------------------- FFT
    def _flat(self, a: np.ndarray) -> np.ndarray:
        """The whole allocation behind ``a`` as a flat array of its dtype (the extent cuFFT may touch)."""
        root = _root(a)
        if self._guarded(root):
            _, start, nbytes = self._buffers[id(root)]
            return root[start:start + nbytes].view(a.dtype)
        lo, hi = _byte_bounds(root)
        return np.ctypeslib.as_array((ctypes.c_ubyte * (hi - lo)).from_address(lo)).view(a.dtype)

    def rfft(self, layout: Any, src: np.ndarray, dst: np.ndarray) -> None:
        if layout.odist != layout.n // 2 + 1:
            raise KernelError("cuFFT layout: output distance must be n // 2 + 1")
        if src.dtype != np.dtype(layout.dtype_name) or dst.dtype != src.dtype:
            raise KernelError("cuFFT layout: buffers must be of the compute dtype")
        s, d = self._flat(src), self._flat(dst)
        s0 = (src.ctypes.data - s.ctypes.data) // s.itemsize
        d0 = (dst.ctypes.data - d.ctypes.data) // d.itemsize
        n, idist, batch, odist = layout.n, layout.idist, layout.batch, layout.odist
        if s0 + (batch - 1) * idist + n > s.size:
            raise KernelError(f"cuFFT layout: {batch} transforms of {n}, {idist} apart, read past the input buffer")
        if d0 + 2 * batch * odist > d.size or d0 % 2:
            raise KernelError(f"cuFFT layout: {batch} outputs of {odist} complex values overrun the output buffer")
        frames = np.lib.stride_tricks.as_strided(s[s0:], (batch, n), (idist * s.itemsize, s.itemsize), writeable=False)
        ct = np.complex64 if src.dtype == np.float32 else np.complex128
        out = d[d0:d0 + 2 * batch * odist].view(ct).reshape(batch, odist)
        step = max(1, 2**22 // max(n, 1))
        for b0 in range(0, batch, step):
            f = frames[b0:b0 + step]
            if self.fft == "float32" and src.dtype == np.float32:
                out[b0:b0 + step] = _rfft_float32(f)
            else:
                out[b0:b0 + step] = np.fft.rfft(f.astype(np.float64), axis=-1).astype(ct)
        self.ffts.append(layout)
        if not self.sanitize:
            self.check_guards()


def emulated_engine(cfg: Any, dtype_name: str, **ops_options: Any) -> Any:
    """The GPU path's :class:`~arraymel._cupy.engine.Engine` for ``cfg`` with its kernels run by the emulator."""
    from arraymel._cupy.engine import Constants, Engine, consts_host
    from arraymel._cupy.params import mel_params

    params = mel_params(cfg, dtype_name)
    ops = EmuOps(**ops_options)
    consts = {k: (ops.to_device(v) if isinstance(v, np.ndarray) else v) for k, v in consts_host(params).items()}
    return Engine(params, ops, Constants(**consts))


def emulated_fused_engine(cfg: Any, dtype_name: str, **ops_options: Any) -> Any:
    """The fused GPU path's :class:`~arraymel._cupy.fused.FusedEngine` for ``cfg`` on the emulator."""
    from arraymel._cupy.engine import Constants, consts_host
    from arraymel._cupy.fused import FusedEngine, twiddles_host
    from arraymel._cupy.params import mel_params

    params = mel_params(cfg, dtype_name)
    ops = EmuOps(**ops_options)
    consts = {k: (ops.to_device(v) if isinstance(v, np.ndarray) else v) for k, v in consts_host(params).items()}
    return FusedEngine(params, ops, Constants(**consts), ops.to_device(twiddles_host(params)))
