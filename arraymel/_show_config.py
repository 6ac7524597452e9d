"""``arraymel.show_config()``: what arraymel computes with here (as ``numpy.show_config``).

Everything is looked up when it is called, never at ``import arraymel``: SciPy is imported only
to name the FFT in use, and CuPy only when it is installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from typing import Any

MODES = ("stdout", "dicts")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _workers() -> dict[str, Any]:
    from arraymel import _threads
    from arraymel._threads import binding

    default, source = _threads.default_rule()
    env = os.environ.get(_threads.ENV, "").strip()
    try:
        bind = "not available here"
        if hasattr(os, "sched_setaffinity"):
            bind = ("a call on every CPU binds each thread to its own CPU" if binding.enabled()
                    else f"off (set {binding.PIN_ENV}=1 to bind)")
    except ValueError as e:
        bind = str(e)
    return {"default": default, "source": source, "cpus_available": _threads.cpu_count(), "env": env or None,
            "binding": bind}


def _fft() -> dict[str, Any]:
    from arraymel._numpy.fft import rfft_impl

    name = rfft_impl()[0]
    dist = "scipy" if name == "scipy.fft" else "numpy"
    return {"name": name, "version": _version(dist), "float32": "float32 transform for float32 input",
            "threads": "one per worker (workers=1 inside each)"}


def _blas() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process and their threads (threadpoolctl), else NumPy's build info."""
    import numpy  # noqa: F401  (loads NumPy's BLAS so that it is listed)

    try:
        import threadpoolctl
    except ImportError:
        blas = (numpy.show_config(mode="dicts").get("Build Dependencies", {}) or {}).get("blas", {}) or {}
        return [{"api": "blas", "library": blas.get("name"), "version": blas.get("version"), "threads": None,
                 "note": "threads unknown: install threadpoolctl"}]
    return [{"api": p.get("internal_api"), "library": os.path.basename(p.get("filepath", "")),
             "version": p.get("version"), "threads": p.get("num_threads"),
             "threading_layer": p.get("threading_layer")}
            for p in threadpoolctl.threadpool_info()]


def _cuda() -> dict[str, Any]:
    """CuPy and its CUDA devices; CuPy is not imported when it is not installed."""
    if importlib.util.find_spec("cupy") is None:
        return {"cupy": None, "devices": [], "note": "CuPy is not installed (pip install 'arraymel[cuda12]')"}
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
        devices = []
        for i in range(count):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props.get("name", b"")
            devices.append({"index": i, "name": name.decode(errors="replace") if isinstance(name, bytes) else str(name),
                            "memory_bytes": int(props.get("totalGlobalMem", 0)),
                            "compute_capability": f"{props.get('major')}.{props.get('minor')}"})
        return {"cupy": cupy.__version__, "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "devices": devices}
    except Exception as e:  # a CuPy built for another CUDA, no driver, no device
        return {"cupy": _version("cupy") or "installed", "devices": [], "note": f"{type(e).__name__}: {e}"}


def _dispatch() -> dict[str, Any]:
    """The paths, the ``backend=`` values and the dispatch table (:mod:`arraymel._backend`)."""
    from arraymel import _backend

    paths = {p.name: {"device": p.device, "ffts": list(p.ffts), "workers": p.uses_workers,
                      "max_memory": p.max_memory, "summary": p.summary} for p in _backend.PATHS.values()}
    return {"paths": paths, "backends": list(_backend.BACKENDS), "routes": _backend.table()}


def config() -> dict[str, Any]:
    """The configuration as a dict (what ``show_config(mode="dicts")`` returns)."""
    from arraymel._version import __version__

    return {
        "arraymel": __version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "machine": {"system": platform.system(), "machine": platform.machine()},
        "fft": _fft(),
        "workers": _workers(),
        "blas": _blas(),
        "blas_in_calls": "left as set (arraymel changes no BLAS or OpenMP thread count)",
        "cuda": _cuda(),
        "dispatch": _dispatch(),
    }


def show_config(mode: str = "stdout") -> dict[str, Any] | None:
    """Show how arraymel computes here: its version, the FFT in use, the worker threads, the BLAS
    libraries and their threads, CuPy's CUDA devices if any, and the paths a call can take.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        ``"stdout"`` prints a summary; ``"dicts"`` returns it as a dict (as ``numpy.show_config``).

    Returns
    -------
    info : dict or None
        With ``mode="dicts"``: keys ``arraymel``, ``python``, ``numpy``, ``machine``, ``fft``,
        ``workers``, ``blas``, ``blas_in_calls``, ``cuda`` and ``dispatch`` (each path's capabilities,
        the ``backend=`` values and the dispatch table's rows, first match first); None with
        ``mode="stdout"``.

    Raises
    ------
    ValueError
        An unknown ``mode``.

    See Also
    --------
    get_workers : The thread count a call uses.

    Notes
    -----
    Nothing is imported that a call would not import: CuPy is only asked for its devices when it
    is installed.

    Examples
    --------
    >>> import arraymel
    >>> cfg = arraymel.show_config(mode="dicts")
    >>> cfg["workers"]["default"] >= 1 and cfg["fft"]["name"] in ("scipy.fft", "numpy.fft")
    True
    >>> sorted(cfg["dispatch"]["paths"]), cfg["dispatch"]["backends"][0]
    (['cupy', 'generic', 'numpy'], 'auto')
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not allowed: mode must be one of {MODES!r}.")
    cfg = config()
    if mode == "dicts":
        return cfg
    w, f, cuda = cfg["workers"], cfg["fft"], cfg["cuda"]
    lines = [
        f"arraymel {cfg['arraymel']} (python {cfg['python']}, numpy {cfg['numpy']}, "
        f"{cfg['machine']['system']} {cfg['machine']['machine']})",
        f"fft: {f['name']} {f['version'] or ''}".rstrip() + f", {f['threads']}",
        f"workers: {w['default']} (from {w['source']}; {w['cpus_available']} CPUs available); binding: {w['binding']}",
        f"blas: {cfg['blas_in_calls']}",
    ]
    for b in cfg["blas"]:
        lines.append(f"  {b['api']}: {b['library']} {b['version'] or ''}, {b['threads']} threads"
                     + (f" ({b['threading_layer']})" if b.get("threading_layer") else ""))
    if cuda["devices"]:
        lines.append(f"cuda: cupy {cuda['cupy']}, runtime {cuda.get('cuda_runtime')}")
        for d in cuda["devices"]:
            lines.append(f"  cuda:{d['index']}: {d['name']}, {d['memory_bytes'] / 2**30:.1f} GiB, "
                         f"compute capability {d['compute_capability']}")
    else:
        lines.append(f"cuda: no device ({cuda.get('note', 'none found')})")
    lines.append("paths (backend=" + "|".join(cfg["dispatch"]["backends"]) + "):")
    for name, p in cfg["dispatch"]["paths"].items():
        lines.append(f"  {name} ({p['device']}; fft {'/'.join(p['ffts'])}): {p['summary']}")
    print("\n".join(lines), file=sys.stdout)
    return None
