"""Compile CUDA kernel text with g++ against ``cuda_cpu.h`` and launch its kernels from Python.

:func:`build` takes any CUDA source and the template instantiations to export (NVRTC name
expressions such as ``am_pad_reflect<short, float>``), rewrites each ``__shared__`` array to
per-block storage of the emulator (the only change to the text), appends one C entry point per
instantiation and compiles a shared library, cached on disk by the hash of everything that goes
into it (header, source, expressions, flags): a change to a kernel changes what runs.

:class:`Module` launches an instantiation by its name expression with packed arguments (NumPy
scalars of the exact C type, :class:`Pointer` for device pointers) and checks them against the
parameter types g++ deduced from the instantiation itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEADER = Path(__file__).with_name("cuda_cpu.h")
CXX = os.environ.get("CXX", "g++")


def _has_fma() -> bool:
    try:
        return " fma " in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


#: FMA contraction like NVRTC (``-fmad=true``) where the CPU has FMA; float32 FTZ is set per launch.
BASE_FLAGS = ["-std=c++17", "-fPIC", "-shared", "-fno-strict-aliasing", "-fvisibility=hidden",
              "-fvisibility-inlines-hidden", "-fno-gnu-unique", "-Wall", "-Wno-unknown-pragmas",
              "-Wno-unused-function", "-Wno-unused-variable", "-ffp-contract=fast"]
BASE_FLAGS += ["-mfma"] if _has_fma() else []
OPT_FLAGS = ["-O2"]
#: AddressSanitizer + UBSan: the library must be loaded into a process with libasan preloaded.
SANITIZE_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


class KernelError(AssertionError):
    """A launch broke a CUDA rule: out-of-bounds memory, divergent barrier, incomplete shuffle, deadlock."""


# ------------------------------------------------------------------------------------ source rewrite
_SHARED_ARRAY = re.compile(
    r"(?<![\w])__shared__\s+((?:__align__\(\d+\)\s+)?)([A-Za-z_][\w:<>, ]*?)\s+(\w+)\s*((?:\[[^\]]+\])*)\s*;")
_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_][\w:<> ]*?)\s+(\w+)\s*\[\s*\]\s*;")


def translate(source: str) -> str:
    """The kernel text with ``__shared__`` arrays made per-block arrays of the emulator (nothing else changes).

    ``extern __shared__ T a[];`` becomes a pointer to the launch's dynamic shared memory;
    ``__shared__ T a[N]...;`` a reference to a guarded array that the runtime poisons before each block.
    """
    out = _EXTERN_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(cuemu::dynamic_smem());",
                             source)
    counter = iter(range(1, 1 << 30))
    out = _SHARED_ARRAY.sub(
        lambda m: f"auto& {m.group(3)} = cuemu::block_shared<{m.group(2)}{m.group(4)}, {next(counter)}>();", out)
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", out, flags=re.S)
    if "__shared__" in code:
        i = code.index("__shared__")
        raise ValueError(f"a __shared__ declaration the rewrite does not understand: {code[i - 60:i + 60]!r}")
    return out


def translation_unit(source: str, expressions: Sequence[str]) -> str:
    entries = []
    for i, e in enumerate(expressions):
        entries.append(
            f'extern "C" __attribute__((visibility("default"))) int cuemu_launch_{i}(const cuemu::Launch* L, void** a)'
            f" {{ return cuemu::launch_kernel(&{e}, L, a); }}\n"
            f'extern "C" __attribute__((visibility("default"))) const char* cuemu_signature_{i}()'
            f" {{ return cuemu::signature(&{e}); }}\n")
    return (f'#include "{HEADER}"\n#line 1 "kernel.cu"\n' + translate(source) +
            "\n// entry points (emulator)\n" + "".join(entries))


# ------------------------------------------------------------------------------------ compile cache
def cache_dir() -> Path:
    env = os.environ.get("CUDA_CPU_CACHE")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2] / ".pytest_cache"  # gitignored
    return (root if os.access(root.parent, os.W_OK) else Path(tempfile.gettempdir())) / "cuda_cpu"


def _flags(sanitize: bool) -> list[str]:
    return BASE_FLAGS + (SANITIZE_FLAGS if sanitize else OPT_FLAGS)


def library_path(source: str, expressions: Sequence[str], sanitize: bool = False) -> Path:
    h = hashlib.sha256()
    for part in (HEADER.read_text(), source, "\n".join(expressions), " ".join([CXX] + _flags(sanitize))):
        h.update(part.encode())
        h.update(b"\0")
    return cache_dir() / f"{h.hexdigest()[:24]}{'-asan' if sanitize else ''}.so"


def compile_library(source: str, expressions: Sequence[str], sanitize: bool = False) -> Path:
    """The cached shared library of ``expressions`` from ``source``, compiled when missing."""
    path = library_path(source, expressions, sanitize)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_cpp = tempfile.mkstemp(suffix=".cpp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(translation_unit(source, expressions))
    tmp_so = tmp_cpp[:-4] + ".so"
    try:
        r = subprocess.run([CXX, *_flags(sanitize), "-o", tmp_so, tmp_cpp], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"g++ failed on the kernel text ({', '.join(expressions)}):\n{r.stderr[-6000:]}")
        os.replace(tmp_so, path)  # atomic: concurrent builders of the same hash agree
    finally:
        for p in (tmp_cpp, tmp_so):
            if os.path.exists(p):
                os.unlink(p)
    return path


_MODULES: dict[Path, Module] = {}
_LOCK = threading.Lock()


def build(source: str, expressions: Sequence[str], sanitize: bool = False) -> Module:
    """The :class:`Module` of ``expressions`` instantiated from ``source`` (compiled once, cached on disk)."""
    path = compile_library(source, expressions, sanitize)
    with _LOCK:
        mod = _MODULES.get(path)
        if mod is None:
            mod = _MODULES[path] = Module(path, expressions)
    return mod


def build_many(jobs: Sequence[tuple[str, Sequence[str]]], sanitize: bool = False) -> list[Module]:
    """Several modules, compiled in parallel (one g++ per core)."""
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        paths = list(pool.map(lambda j: compile_library(j[0], j[1], sanitize), jobs))
    del paths
    return [build(src, exprs, sanitize) for src, exprs in jobs]


# ------------------------------------------------------------------------------------ launching
@dataclass(frozen=True)
class Pointer:
    """A device pointer argument: a host address standing for device memory, and its element dtype."""

    address: int
    dtype: np.dtype


class _Launch(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("smem", ctypes.c_ulonglong),
                ("shuffle", ctypes.c_int), ("ftz", ctypes.c_int), ("seed", ctypes.c_ulonglong),
                ("blocks", ctypes.POINTER(ctypes.c_longlong)), ("nblocks", ctypes.c_longlong),
                ("error", ctypes.c_char_p), ("error_len", ctypes.c_ulonglong)]


_CODES = {np.dtype(np.float32): "f", np.dtype(np.float64): "d", np.dtype(np.int8): "b", np.dtype(np.uint8): "B",
          np.dtype(np.int16): "h", np.dtype(np.uint16): "H", np.dtype(np.int32): "i", np.dtype(np.uint32): "I",
          np.dtype(np.int64): "q", np.dtype(np.uint64): "Q"}
_CTYPES = {"f": ctypes.c_float, "d": ctypes.c_double, "b": ctypes.c_int8, "B": ctypes.c_uint8, "h": ctypes.c_int16,
           "H": ctypes.c_uint16, "i": ctypes.c_int32, "I": ctypes.c_uint32, "q": ctypes.c_int64, "Q": ctypes.c_uint64}


def type_code(arg: Any) -> str:
    """The parameter type code an argument stands for: ``"i"`` for numpy.int32, ``"Pf"`` for a float pointer."""
    if isinstance(arg, Pointer):
        return "P" + _CODES[np.dtype(arg.dtype)]
    if isinstance(arg, np.generic) and arg.dtype in _CODES:
        return _CODES[arg.dtype]
    raise TypeError(f"kernel argument {arg!r} ({type(arg).__name__}): pass a NumPy scalar of the exact C type or a Pointer")


class Module:
    """The kernels of one compiled library, launched by name expression."""

    def __init__(self, path: Path, expressions: Sequence[str]):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.expressions = list(expressions)
        self._index = {e: i for i, e in enumerate(self.expressions)}
        self._sigs = {}
        for e, i in self._index.items():
            fn = getattr(self.lib, f"cuemu_signature_{i}")
            fn.restype = ctypes.c_char_p
            self._sigs[e] = fn().decode().rstrip(",").split(",")
            if self._sigs[e] == [""]:
                self._sigs[e] = []
            getattr(self.lib, f"cuemu_launch_{i}").argtypes = [ctypes.POINTER(_Launch), ctypes.POINTER(ctypes.c_void_p)]

    def signature(self, expression: str) -> list[str]:
        """The type codes of the instantiation's parameters (``P`` + pointee for pointers)."""
        return list(self._sigs[expression])

    def launch(self, expression: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any], smem: int = 0,
               *, shuffle: bool = False, seed: int = 0, ftz: bool | None = None,
               blocks: Sequence[int] | None = None) -> None:
        """Run ``expression`` over ``grid`` x ``block`` (every block, or only the linear ids in ``blocks``).

        ``ftz`` flushes denormals as NVRTC's ``-ftz=true`` does for float32 (the CPU's FTZ/DAZ also
        apply to double, so the default is on only when no parameter is a double or a double pointer); ``shuffle``
        randomises block order and the thread order of every round, from ``seed``.
        Raises :class:`KernelError` on a broken CUDA rule and :class:`TypeError` on an argument whose type
        is not the parameter's.
        """
        if expression not in self._index:
            raise KeyError(f"{expression!r} is not an instantiation of this module ({self.expressions})")
        sig = self._sigs[expression]
        if len(args) != len(sig):
            raise TypeError(f"{expression}: {len(args)} arguments for {len(sig)} parameters")
        storage = []
        for i, (want, a) in enumerate(zip(sig, args)):
            got = type_code(a)
            if got != want:
                raise TypeError(f"{expression}: argument {i} has type code {got}, the parameter is {want}")
            storage.append(ctypes.c_void_p(a.address) if isinstance(a, Pointer) else _CTYPES[got](a.item()))
        argv = (ctypes.c_void_p * max(1, len(storage)))(*[ctypes.cast(ctypes.pointer(s), ctypes.c_void_p) for s in storage])
        err = ctypes.create_string_buffer(1024)
        g3 = tuple(int(v) for v in grid) + (1,) * (3 - len(grid))
        b3 = tuple(int(v) for v in block) + (1,) * (3 - len(block))
        if any(v < 0 or v >= 2**32 for v in g3 + b3):
            raise KernelError(f"{expression}: grid {g3} / block {b3} outside CUDA's limits")
        ids = None
        if blocks is not None:
            ids = np.ascontiguousarray(blocks, dtype=np.int64)
        L = _Launch((ctypes.c_uint * 3)(*g3), (ctypes.c_uint * 3)(*b3), int(smem), int(bool(shuffle)),
                    int(not ({"d", "Pd"} & set(sig)) if ftz is None else ftz), int(seed) & (2**64 - 1),
                    ids.ctypes.data_as(ctypes.POINTER(ctypes.c_longlong)) if ids is not None else None,
                    0 if ids is None else ids.size, ctypes.cast(err, ctypes.c_char_p), len(err))
        rc = getattr(self.lib, f"cuemu_launch_{self._index[expression]}")(ctypes.byref(L), argv)
        if rc:
            raise KernelError(f"{expression}: {err.value.decode()}")
