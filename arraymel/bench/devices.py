"""The devices a benchmark runs on, named as they really are.

``"cpu"``: the CPU model (``/proc/cpuinfo``, else :mod:`platform`), the cores this process may
use (``os.sched_getaffinity``), RAM, and the thread pools the libraries will use.
``"cuda:N"``: the GPU's name and memory from ``cupy.cuda.runtime.getDeviceProperties`` (or
torch when CuPy is missing). Nothing here imports CuPy or torch until a GPU is asked about.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Device:
    """A benchmark device: ``id`` is ``"cpu"`` or ``"cuda:N"``; ``reason`` is set when it cannot be used."""

    id: str
    kind: str  # "cpu" | "cuda"
    index: int | None = None
    name: str = "unknown"
    cores: int | None = None
    memory_bytes: int | None = None
    threads: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def label(self) -> str:
        """A short human name: ``"AMD EPYC (2 cores)"``, ``"NVIDIA H100 80GB HBM3 (79.1 GiB)"``."""
        if self.kind == "cpu":
            return f"{self.name} ({self.cores} cores)" if self.cores else self.name
        mem = f", {self.memory_bytes / 2**30:.1f} GiB" if self.memory_bytes else ""
        return f"{self.id} {self.name}{mem}"

    def to_json(self) -> dict:
        return asdict(self)


def parse_device_id(spec: str) -> tuple[str, int | None]:
    """``"cpu"`` -> ``("cpu", None)``; ``"cuda"``/``"gpu"`` -> ``("cuda", 0)``; ``"cuda:1"`` -> ``("cuda", 1)``."""
    s = str(spec).strip().lower()
    if s == "cpu":
        return "cpu", None
    if s in ("cuda", "gpu"):
        return "cuda", 0
    if s.startswith(("cuda:", "gpu:")):
        try:
            idx = int(s.split(":", 1)[1])
        except ValueError:
            idx = -1
        if idx >= 0:
            return "cuda", idx
    raise ValueError(f"--device {spec!r}: use 'cpu', 'cuda' or 'cuda:N'.")


# ---------------------------------------------------------------------- CPU
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


#: Environment that changes CPU timings: thread counts, and OpenBLAS's kernel choice and spin time.
THREAD_ENV = ("ARRAYMEL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def cpu_threads() -> dict[str, Any]:
    """The thread pools in use: the affinity, the environment limits, arraymel's workers and FFT, and
    the BLAS/OpenMP pools, as :func:`arraymel.show_config` reports them."""
    info: dict[str, Any] = {"affinity": cpu_cores()}
    env = {k: os.environ[k] for k in THREAD_ENV if k in os.environ}
    if env:
        info["env"] = env
    try:
        from arraymel import show_config  # noqa: PLC0415

        cfg = show_config(mode="dicts")
    except Exception:  # the NumPy path is missing or broken: the benchmark will say so
        return info
    info["arraymel"] = {"threads": cfg["workers"]["default"], "fft": cfg["fft"]["name"]}
    info["pools"] = [{"api": p["api"], "library": p["library"], "threads": p["threads"]} for p in cfg["blas"]]
    return info


def cpu_device() -> Device:
    return Device(
        id="cpu", kind="cpu", name=cpu_model(), cores=cpu_cores(), memory_bytes=ram_bytes(), threads=cpu_threads(),
        detail={"machine": platform.machine(), "system": platform.system(), "load_average_at_start": _loadavg()},
    )


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine inflates CPU timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


# ---------------------------------------------------------------------- CUDA
def _cupy_count() -> tuple[int, str | None]:
    try:
        import cupy  # noqa: PLC0415
    except Exception as e:  # ImportError, or a CuPy built for another CUDA
        return 0, f"CuPy is not importable ({type(e).__name__}: {e})"
    try:
        return int(cupy.cuda.runtime.getDeviceCount()), None
    except Exception as e:  # no driver, no device
        return 0, f"no CUDA device visible to CuPy ({type(e).__name__}: {e})"


def _torch_count() -> int:
    try:
        import importlib.util  # noqa: PLC0415

        if importlib.util.find_spec("torch") is None:
            return 0
        import torch  # noqa: PLC0415

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


def cuda_device(index: int) -> Device:
    """The GPU ``index``: name and memory from CuPy (or torch), or a ``reason`` why it cannot be used."""
    dev = Device(id=f"cuda:{index}", kind="cuda", index=index)
    count, why = _cupy_count()
    if count > index:
        import cupy  # noqa: PLC0415

        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props.get("name", b"")
        dev.name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        dev.memory_bytes = int(props.get("totalGlobalMem", 0)) or None
        dev.cores = int(props.get("multiProcessorCount", 0)) or None  # streaming multiprocessors
        dev.detail = {
            "compute_capability": f"{props.get('major')}.{props.get('minor')}",
            "multiprocessors": props.get("multiProcessorCount"),
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        }
        return dev
    tcount = _torch_count()
    if tcount > index:
        import torch  # noqa: PLC0415

        p = torch.cuda.get_device_properties(index)
        dev.name, dev.memory_bytes = p.name, int(p.total_memory)
        dev.cores = int(getattr(p, "multi_processor_count", 0)) or None
        dev.detail = {"compute_capability": f"{p.major}.{p.minor}", "note": "named by torch; CuPy is not usable: " + (why or "")}
        return dev
    if why is None:
        why = f"CuPy sees {count} CUDA device(s)"
    dev.reason = f"{dev.id} is not available: {why}"
    return dev


def cuda_count() -> int:
    count, _ = _cupy_count()
    return count or _torch_count()


def resolve(specs: list[str] | None) -> list[Device]:
    """The devices to run on: those asked for (each, usable or with a reason), or every usable one."""
    if not specs:
        return [cpu_device()] + [cuda_device(i) for i in range(cuda_count())]
    out: list[Device] = []
    seen: set[str] = set()
    for spec in specs:
        kind, idx = parse_device_id(spec)
        key = "cpu" if kind == "cpu" else f"cuda:{idx}"
        if key in seen:
            continue
        seen.add(key)
        out.append(cpu_device() if kind == "cpu" else cuda_device(idx))
    return out


# ---------------------------------------------------------------------- competing load
def _proc_stat_busy() -> float | None:
    """Seconds of CPU time the whole machine has spent busy (all cores, all processes), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
        if fields[0] != "cpu":
            return None
        v = [int(x) for x in fields[1:]]
        busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal (not idle, iowait)
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class CpuActivity:
    """How much CPU other processes used while a benchmark ran (they inflate CPU timings).

    ``start()`` and ``stop()`` read the machine's busy CPU time (/proc/stat) and this process's
    own (``os.times``); the difference is what everything else used.
    """

    def __init__(self) -> None:
        self._t0 = self._busy0 = self._self0 = None

    def start(self) -> CpuActivity:
        import time  # noqa: PLC0415

        self._t0, self._busy0, self._self0 = time.perf_counter(), _proc_stat_busy(), _self_cpu()
        return self

    def stop(self) -> dict[str, Any] | None:
        import time  # noqa: PLC0415

        busy1 = _proc_stat_busy()
        if self._busy0 is None or busy1 is None:
            return None
        wall = time.perf_counter() - self._t0
        own = _self_cpu() - self._self0
        total = busy1 - self._busy0
        others = max(0.0, total - own)
        cores = cpu_cores()
        return {
            "wall_s": round(wall, 3), "cpu_s_this_process": round(own, 3), "cpu_s_machine": round(total, 3),
            "cpu_s_other_processes": round(others, 3), "cores": cores,
            "other_processes_share": round(others / (wall * (os.cpu_count() or cores)), 4) if wall > 0 else None,
        }


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
