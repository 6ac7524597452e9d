"""The CUDA sources of the GPU path (loaded from ``cuda/*.cuh``), the arguments each kernel takes, and the
compile cache.

The sources are self-contained CUDA C++ (no ``#include``), so that the same text compiles with
NVRTC at run time (through ``cupy.RawModule``) and with ``nvcc`` in the tests (no GPU needed:
``tests/test_kernels_compile.py`` builds every instantiation for sm_80 and sm_90). Kernels are
C++ templates over the compute type ``T`` (float or double) and, for those that read the user's
signal, over its element type ``TIn`` (every integer width and float32/float64), instantiated
through NVRTC name expressions such as ``am_pad_reflect<short, float>``.

Kernels (one launch each; see docs/gpu.md for the passes):

``am_pad_reflect``
    The centred (reflect-padded) signal segment of a chunk, cast to ``T``, laid out with a row
    pitch that is a multiple of the hop, so that one cuFFT plan with input distance = hop reads
    every frame of every row in place (frames are never materialised).
``am_frames_window``
    The general path: frames gathered with reflect indexing (or zeros outside the signal) and
    multiplied by an arbitrary window (array windows, ``sequence_length < fft_length``, or when the
    pitched layout would waste too many transforms); with ``frame_step``, Kaldi's per-frame mean
    removal and pre-emphasis first (one block per frame).
``am_mel_smem``
    Over the spectrum, once: the periodic Hann/Hamming window applied after the FFT as a
    three-tap combination of neighbouring bins (exact: the window is a sum of two complex
    exponentials), ``|X| ** mag_exp``, the sparse mel filterbank (each band reads only its own
    bins), the power-to-dB conversion, the transposed ``(rows, mels, frames)`` store, and the
    block maximum for ``top_db`` folded into one ``atomicMax`` per block on an order-preserving
    integer key (NaN is the largest key, so NaN propagates as in Keras).
``am_mel_direct``
    The same without shared memory, for spectra too long for one frame's power row to fit.
``am_clip_top_db``
    The ``top_db`` clip in place, with the batch-wide or per-example maximum.

Every kernel's parameter list is declared in :data:`KERNEL_PARAMS`; :func:`pack_args` turns keyword
values into exactly those C types (a wrong type or a missing argument is a Python error, never a
silently misread kernel argument), and a test checks the declarations against the sources.
The sources are the files of ``arraymel/_cupy/cuda/`` (package data, read with ``importlib.resources``),
concatenated in :data:`SOURCE_FILES` order; the tests' CPU emulator compiles the same text.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any

import numpy as np

#: Threads per block of every kernel (the sources assume a multiple of 32; ``__launch_bounds__``).
BLOCK = 256
#: Elements per thread of the pad and clip kernels.
PAD_ITEMS = 4
CLIP_ITEMS = 4
#: Shared memory a mel block may use without an opt-in (48 KiB, less the reduction scratch).
SMEM_LIMIT = 48 * 1024 - 1024

# --------------------------------------------------------------------------------------- sources
#: The CUDA files of the cuFFT path, in the order of the translation unit (package data in ``cuda/``).
SOURCE_FILES = ("common.cuh", "pad.cuh", "frames.cuh", "mel_bands.cuh", "mel_smem.cuh", "mel_direct.cuh", "clip.cuh")


def read_source(name: str) -> str:
    """The text of one CUDA file of ``arraymel/_cupy/cuda/`` (installed with the package)."""
    return resources.files("arraymel._cupy").joinpath("cuda", name).read_text(encoding="utf-8")


def translation_unit(names: tuple[str, ...]) -> str:
    """The files ``names``, concatenated in order: one self-contained text (no ``#include``)."""
    return "".join(read_source(n) for n in names)


#: The whole translation unit of the cuFFT path (what NVRTC compiles).
SOURCE = translation_unit(SOURCE_FILES)

# --------------------------------------------------------------------------------------- types
#: Compute dtypes and their C types.
COMPUTE_CTYPES: dict[str, str] = {"float32": "float", "float64": "double"}
#: Key dtype of the ordered max per compute dtype.
KEY_DTYPES: dict[str, str] = {"float32": "uint32", "float64": "uint64"}
#: Input dtypes the signal kernels read natively (others are cast on the device first).
INPUT_CTYPES: dict[str, str] = {
    "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
    "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
    "float32": "float", "float64": "double",
}

#: Kernels templated on the compute type alone, and those also on the input type.
CORE_KERNELS = ("am_mel_smem", "am_mel_direct", "am_clip_top_db")
INPUT_KERNELS = ("am_pad_reflect", "am_frames_window")

#: Each kernel's parameters, in order, as ``(C type, name)``. ``T``/``TIn`` are the template types,
#: ``K`` the key type of ``T``. Checked against the sources by a test.
KERNEL_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "am_pad_reflect": (
        ("const TIn*", "x"), ("long long", "row_stride"), ("long long", "sample_stride"), ("long long", "n"),
        ("long long", "seg_start"), ("long long", "pitch"), ("long long", "tail"), ("int", "zero_pad"), ("T*", "out"),
    ),
    "am_frames_window": (
        ("const TIn*", "x"), ("long long", "row_stride"), ("long long", "sample_stride"), ("long long", "n"),
        ("long long", "seg_start"), ("int", "hop"), ("int", "n_fft"), ("int", "frames"), ("const T*", "window"),
        ("int", "has_window"), ("int", "zero_pad"), ("int", "frame_step"), ("int", "win_len"), ("T", "preemph"),
        ("T*", "out"),
    ),
    "am_mel_smem": (
        ("const T*", "spec"), ("long long", "frames_row"), ("int", "frames"), ("int", "tiles"), ("int", "fpb"),
        ("int", "stride_s"), ("int", "nb"), ("int", "n_fft"), ("int", "bin_lo"), ("int", "nbu"), ("int", "taps"),
        ("T", "tap_a"), ("T", "tap_b"), ("int", "pmode"), ("T", "half_exp"), ("const int*", "bands"),
        ("const T*", "weights"), ("int", "n_mels"), ("T*", "out"), ("long long", "out_row"),
        ("long long", "out_band"), ("int", "db"), ("T", "min_power"), ("T", "ref_db"), ("int", "has_ref"),
        ("K*", "max_keys"), ("int", "max_mode"),
    ),
    "am_mel_direct": (
        ("const T*", "spec"), ("long long", "frames_row"), ("int", "frames"), ("int", "tiles"), ("int", "nb"),
        ("int", "n_fft"), ("int", "taps"), ("T", "tap_a"), ("T", "tap_b"), ("int", "pmode"), ("T", "half_exp"),
        ("const int*", "bands"), ("const T*", "weights"), ("int", "n_mels"), ("T*", "out"),
        ("long long", "out_row"), ("long long", "out_band"), ("int", "db"), ("T", "min_power"), ("T", "ref_db"),
        ("int", "has_ref"), ("K*", "max_keys"), ("int", "max_mode"),
    ),
    "am_clip_top_db": (
        ("T*", "out"), ("long long", "row_elems"), ("int", "tiles"), ("const K*", "max_keys"), ("int", "per_row"),
        ("T", "top_db"),
    ),
}

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def name_expression(kernel: str, dtype_name: str, in_dtype_name: str | None = None) -> str:
    """The NVRTC name expression of one instantiation, e.g. ``am_pad_reflect<short, float>``."""
    t = COMPUTE_CTYPES[dtype_name]
    if kernel in INPUT_KERNELS:
        if in_dtype_name is None:
            raise ValueError(f"{kernel} needs the input dtype")
        return f"{kernel}<{INPUT_CTYPES[in_dtype_name]}, {t}>"
    if kernel not in CORE_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}")
    return f"{kernel}<{t}>"


def name_expressions(dtype_name: str, in_dtype_name: str | None = None) -> list[str]:
    """The instantiations one module holds: the core kernels, or the input kernels for one input dtype."""
    if in_dtype_name is None:
        return [name_expression(k, dtype_name) for k in CORE_KERNELS]
    return [name_expression(k, dtype_name, in_dtype_name) for k in INPUT_KERNELS]


class Ptr:
    """A device pointer argument: the first element of ``array`` plus ``offset`` elements (negative for
    the rows of a reversed view). ``dtype`` is the array's, so :func:`pack_args` checks it like an array."""

    __slots__ = ("array", "offset")

    def __init__(self, array: Any, offset: int = 0):
        self.array = array
        self.offset = int(offset)

    @property
    def dtype(self) -> Any:
        return self.array.dtype

    def __repr__(self) -> str:
        return f"Ptr({type(self.array).__name__}[{self.array.dtype}], +{self.offset})"


class Unbound:
    """Stands for an array of ``dtype_name`` in arguments packed once (:class:`Prepared`), before the array
    exists: every launch replaces it (so a prepared argument list never keeps a call's buffers alive)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype_name: str):
        self.dtype = np.dtype(dtype_name)


class Prepared:
    """One kernel's arguments for a run: packed and checked once by :func:`pack_args`; per launch,
    :meth:`args` replaces only the arguments that change (a cheap conversion by declared C type)."""

    __slots__ = ("kernel", "_args", "_pos", "_ftype")

    def __init__(self, kernel: str, dtype_name: str, in_dtype_name: str | None, values: Mapping[str, Any],
                 declared: Mapping[str, tuple] | None = None):
        declared = KERNEL_PARAMS if declared is None else declared
        self.kernel = kernel
        self._args = list(pack_args(kernel, dtype_name, in_dtype_name, values, declared))
        self._pos = {name: (i, ctype) for i, (ctype, name) in enumerate(declared[kernel])}
        self._ftype = np.dtype(dtype_name).type

    def bind(self, **changes: Any) -> Prepared:
        """A copy with some arguments replaced (what stays fixed for a whole call); :meth:`args` then per launch."""
        new = object.__new__(Prepared)
        new.kernel, new._pos, new._ftype = self.kernel, self._pos, self._ftype
        new._args = list(self.args(**changes))
        return new

    def args(self, **changes: Any) -> tuple:
        out = self._args.copy()
        for name, v in changes.items():
            i, ctype = self._pos[name]
            if ctype == "int":
                out[i] = np.int32(v)  # NumPy raises OverflowError out of range
            elif ctype == "long long":
                out[i] = np.int64(v)
            elif ctype == "T":
                out[i] = self._ftype(v)
            else:
                if v.dtype != out[i].dtype:
                    raise TypeError(f"{self.kernel}: argument {name} changed dtype from {out[i].dtype} to {v.dtype}")
                out[i] = v
        return tuple(out)


def pack_args(kernel: str, dtype_name: str, in_dtype_name: str | None, values: Mapping[str, Any],
              declared: Mapping[str, tuple] | None = None) -> tuple:
    """The argument tuple of one launch, in declaration order, each value in its exact C type.

    Arrays (NumPy or CuPy) or :class:`Ptr` must have the element dtype the parameter declares; scalars are range
    checked and converted to ``numpy.int32``/``int64`` or the compute float type. Unknown or
    missing names raise. ``declared`` is the parameter table (default :data:`KERNEL_PARAMS`; the fused
    kernels pass :data:`arraymel._cupy.fused_kernels.FUSED_PARAMS`).
    """
    spec = (KERNEL_PARAMS if declared is None else declared)[kernel]
    names = [n for _, n in spec]
    extra = set(values) - set(names)
    if extra:
        raise TypeError(f"{kernel}: unknown argument(s) {sorted(extra)}")
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"{kernel}: missing argument(s) {missing}")
    dt = np.dtype(dtype_name)
    elem = {"T": dt, "TIn": np.dtype(in_dtype_name) if in_dtype_name else None,
            "K": np.dtype(KEY_DTYPES[dtype_name]), "int": np.dtype(np.int32)}
    out = []
    for ctype, name in spec:
        v = values[name]
        if ctype.endswith("*"):
            base = ctype.replace("const ", "").rstrip("*").strip()
            want = elem[base]
            got = getattr(v, "dtype", None)
            if got is None or np.dtype(got) != want:
                raise TypeError(f"{kernel}: argument {name} ({ctype}) needs an array of {want}, got {got}")
            out.append(v)
        elif ctype == "int":
            out.append(_int(kernel, name, v, np.int32, _INT32))
        elif ctype == "long long":
            out.append(_int(kernel, name, v, np.int64, _INT64))
        elif ctype == "T":
            out.append(dt.type(v))
        else:  # pragma: no cover - the declarations above use only these
            raise TypeError(f"{kernel}: unsupported parameter type {ctype}")
    return tuple(out)


def _int(kernel: str, name: str, v: Any, typ: type, bounds: tuple[int, int]) -> Any:
    if isinstance(v, (bool, np.bool_)):
        v = int(v)
    if not isinstance(v, (int, np.integer)):
        raise TypeError(f"{kernel}: argument {name} must be an integer, got {type(v).__name__}")
    if not bounds[0] <= int(v) <= bounds[1]:
        raise OverflowError(f"{kernel}: argument {name}={int(v)} does not fit {np.dtype(typ).name}")
    return typ(int(v))


# --------------------------------------------------------------------------------------- compile cache
class KernelCache:
    """Compiled kernels, one NVRTC module per (device, compute dtype[, input dtype]), built on first use.

    CuPy keeps the compiled binary in its on-disk cache as well, so a new process loads rather
    than recompiles. Thread-safe; ``compiled`` counts the modules built by this process. A cache is
    for one translation unit: ``source``, the kernels templated on the input type, and the
    functions that name one instantiation and the instantiations of one module (defaults: this
    module's kernels; :mod:`arraymel._cupy.fused_kernels` makes one for the fused kernels).
    """

    def __init__(self, source: str = SOURCE, input_kernels: tuple = INPUT_KERNELS, expression: Any = None,
                 expressions: Any = None) -> None:
        self.source = source
        self.input_kernels = input_kernels
        self._expression = expression or name_expression
        self._expressions = expressions or name_expressions
        self._modules: dict[tuple, Any] = {}
        self._functions: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.compiled = 0

    def function(self, device_id: int, kernel: str, dtype_name: str, in_dtype_name: str | None = None) -> Any:
        """The ``cupy.RawKernel`` of one instantiation on ``device_id``."""
        key = (device_id, kernel, dtype_name, in_dtype_name if kernel in self.input_kernels else None)
        fn = self._functions.get(key)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._functions.get(key)
            if fn is None:
                mod = self._module(device_id, dtype_name, key[3])
                import cupy

                with cupy.cuda.Device(device_id):
                    fn = mod.get_function(self._expression(kernel, dtype_name, key[3]))
                self._functions[key] = fn
            return fn

    def _module(self, device_id: int, dtype_name: str, in_dtype_name: str | None) -> Any:
        key = (device_id, dtype_name, in_dtype_name)
        mod = self._modules.get(key)
        if mod is None:
            import cupy

            with cupy.cuda.Device(device_id):
                mod = cupy.RawModule(code=self.source, options=("--std=c++14",),
                                     name_expressions=self._expressions(dtype_name, in_dtype_name))
                mod.compile()
            self._modules[key] = mod
            self.compiled += 1
        return mod

    def __len__(self) -> int:
        return len(self._modules)


KERNELS = KernelCache()
