"""Run the comparison: every (device, configuration, batch, peer), into one JSON-ready document.

:func:`run_benchmark` is what ``arraymel bench`` calls; the document it returns is described
by :mod:`arraymel.bench.schema` and rendered by :mod:`arraymel.bench.report`.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.metadata
import math
import platform
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from arraymel.bench import devices as _devices
from arraymel.bench import peers as _peers
from arraymel.bench import timing as _timing
from arraymel.bench import workloads as _w

SCHEMA_ID = "arraymel-bench/1"

#: Distributions whose versions every report records (None when not installed).
VERSIONED = (
    "arraymel", "numpy", "scipy", "array-api-compat", "cupy-cuda12x", "cupy-cuda13x", "cupy", "librosa", "numba",
    "keras", "jax", "jaxlib", "torch", "torchaudio", "pytest-benchmark", "rich", "matplotlib",
)


def versions(extra: Iterable[str] = ()) -> dict[str, str | None]:
    """Installed versions (from package metadata, without importing anything)."""
    out: dict[str, str | None] = {}
    for dist in (*VERSIONED, *extra):
        if dist in out:
            continue
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    if out.get("arraymel") is None:  # a source checkout that is not pip-installed
        try:
            import arraymel  # noqa: PLC0415

            out["arraymel"] = getattr(arraymel, "__version__", None)
        except Exception:
            pass
    return out


def _free_device_memory() -> None:
    gc.collect()
    if "cupy" in sys.modules:
        try:
            sys.modules["cupy"].get_default_memory_pool().free_all_blocks()
        except Exception:
            pass
    if "torch" in sys.modules:
        try:
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if hasattr(v, "tolist"):
            v = np.asarray(v, dtype=np.float64).tolist()
        out[k] = v
    return out


def run_benchmark(
    *,
    device_specs: list[str] | None = None,
    peer_names: list[str] | None = None,
    configs: list[str] | None = None,
    batches: list[int] | None = None,
    seconds: float = _w.DEFAULT_SECONDS,
    sampling_rate: float | None = None,
    repeat: int | None = None,
    warmup: int = 1,
    budget_s: float = 1.0,
    seed: int = 0,
    measure_memory: bool = True,
    command: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure and compare; returns the report document (see :mod:`arraymel.bench.schema`).

    ``peer_names=None`` runs every known peer; arraymel itself always runs on each device, as
    the reference for the speed ratio and the agreement. The libraries of one (device,
    configuration, batch) are timed interleaved in this process, one call each per round
    (:func:`arraymel.bench.timing.measure_interleaved`), as a program that uses them runs them. ``batches=None`` uses
    :data:`arraymel.bench.workloads.DEFAULT_BATCHES` for each device's kind.
    """
    say = progress or (lambda _msg: None)
    names = list(_peers.PEERS) if not peer_names else [n for n in peer_names]
    for n in names:
        _peers.get(n)  # raises on an unknown name
    names = [_peers.REFERENCE] + [n for n in dict.fromkeys(names) if n != _peers.REFERENCE]
    resolved_configs = [_w.resolve_config(c, sampling_rate=sampling_rate) for c in (configs or ["keras"])]

    activity = _devices.CpuActivity().start()
    devs = _devices.resolve(device_specs)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []

    def skip(device: str, library: str, reason: str, kind: str = "skipped", config: str | None = None,
             batch: int | None = None) -> None:
        skipped.append({"device": device, "library": library, "config": config, "batch": batch, "status": kind,
                        "reason": reason})
        where = f" ({config}, batch {batch})" if config else ""
        say(f"{device}: {library}{where} {kind}: {reason}")

    # Peers that cannot import are skipped once per device, with the reason.
    unavailable = {n: _peers.get(n).unavailable() for n in names}
    cpu_reference: dict[tuple[str, int], np.ndarray] = {}

    for dev in devs:
        if not dev.available:
            for n in names:
                skip(dev.id, n, dev.reason or "device not available")
            continue
        runnable = []
        for n in names:
            if unavailable[n]:
                skip(dev.id, n, unavailable[n])
            elif why := _peers.get(n).device_reason(dev):
                skip(dev.id, n, why)
            else:
                runnable.append(n)
        dev_batches = list(batches) if batches else list(_w.DEFAULT_BATCHES.get(dev.kind, (1, 16)))
        for cname, params in resolved_configs:
            db = bool(params.get("power_to_db", True))
            # a preset's features are in its own units (log10 / 4, ln, normalised): an absolute difference in them
            unit = "output" if "preset" in params else ("dB" if db else "relative")
            for batch in dev_batches:
                x_host = _w.make_batch(batch, seconds, float(params["sampling_rate"]), seed=seed)
                n_samples = x_host.shape[-1]
                hours = _w.audio_hours(batch, seconds)
                runners: dict[str, Any] = {}
                for n in runnable:
                    peer = _peers.get(n)
                    why = _peers.preset_reason(peer, params) or peer.params_reason(params)
                    if why:
                        skip(dev.id, n, why, config=cname, batch=batch)
                        continue
                    try:
                        runners[n] = peer.build(params, dev, x_host)
                    except Exception as e:  # a peer that fails is reported, never fatal
                        skip(dev.id, n, f"{type(e).__name__}: {e}", kind="error", config=cname, batch=batch)
                        _free_device_memory()
                if not runners:
                    continue
                say(f"{dev.id}: {cname} {batch}x{seconds:g}s: {', '.join(runners)}, interleaved ...")

                def timing_failed(name: str, e: BaseException, dev: Any = dev, cname: str = cname, batch: int = batch,
                                  runners: dict = runners) -> None:  # this row's values (bound now, not at call time)
                    skip(dev.id, name, f"{type(e).__name__}: {e}", kind="error", config=cname, batch=batch)
                    runners.pop(name, None)

                # Every library in one process, one call each per round (see timing.measure_interleaved).
                row_activity = _devices.CpuActivity().start()
                timings = _timing.measure_interleaved(
                    {n: (r.fn, r.x, r.timer, r.cuda_index) for n, r in runners.items()},
                    repeat=repeat, warmup=warmup, budget_s=budget_s, on_error=timing_failed)
                competing = row_activity.stop()
                ref_out: np.ndarray | None = None
                ref_median = timings[_peers.REFERENCE].median if _peers.REFERENCE in timings else None
                for n, tm in timings.items():
                    peer, runner = _peers.get(n), runners[n]
                    try:
                        out = np.asarray(runner.to_numpy(tm.first_output))
                        tm.first_output = None
                        mem, mem_method = None, None
                        if measure_memory and runner.memory:
                            mem = _timing.peak_memory(runner.fn, runner.x, method=runner.memory,
                                                      device=runner.cuda_index)
                            mem_method = runner.memory if mem is not None else None
                    except Exception as e:  # a peer that fails is reported, never fatal
                        skip(dev.id, n, f"{type(e).__name__}: {e}", kind="error", config=cname, batch=batch)
                        _free_device_memory()
                        continue
                    med = tm.median
                    q1, q3 = tm.quartiles
                    agreement = None
                    try:
                        if n == _peers.REFERENCE:
                            ref_out = out
                            if dev.kind == "cpu":
                                cpu_reference[(cname, batch)] = out
                            elif (cname, batch) in cpu_reference:
                                agreement = {
                                    "value": _peers.agreement(out, cpu_reference[(cname, batch)], db=db),
                                    "unit": unit, "reference": "arraymel@cpu",
                                }
                        elif ref_out is not None:
                            agreement = {"value": _peers.agreement(out, ref_out, db=db),
                                         "unit": unit, "reference": f"arraymel@{dev.id}"}
                    except ValueError as e:
                        agreement = {"value": None, "unit": unit, "reference": str(e)}
                    if agreement is not None and agreement["value"] is not None and not math.isfinite(agreement["value"]):
                        agreement["value"] = None
                        agreement["reference"] += " (NaN in different places)"
                    row = {
                        "device": dev.id, "library": n, "config": cname, "batch": batch, "seconds": float(seconds),
                        "samples": int(n_samples), "frames": _w.frames(params, int(n_samples)),
                        "audio_hours": hours, "timer": tm.timer, "warmup": tm.warmup, "repeat": len(tm.times),
                        "times_s": tm.times, "median_s": med, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1,
                        "audio_hours_per_s": hours / med if med > 0 else None,
                        "speed_vs_arraymel": (ref_median / med) if (ref_median and med > 0) else None,
                        "peak_memory_bytes": mem, "memory_method": mem_method,
                        "agreement": agreement, "note": peer.note,
                        "other_processes_share": (competing or {}).get("other_processes_share"),
                    }
                    results.append(row)
                    say(f"{dev.id}: {cname} {batch}x{seconds:g}s {n}: {med * 1e3:.3g} ms, "
                        f"{row['audio_hours_per_s']:.3g} audio-h/s")
                    del out
                runners.clear()
                _free_device_memory()

    run_activity = activity.stop()
    doc = {
        "schema": SCHEMA_ID,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "settings": {
            "seconds": float(seconds), "sampling_rate": sampling_rate, "batches": list(batches) if batches else None,
            "repeat": repeat, "warmup": int(warmup), "budget_s": float(budget_s), "seed": int(seed), "dtype": "float32",
            "timers": {"cpu": "time.perf_counter", "cupy": "CUDA events (cupy.cuda.Event)",
                       "torch": "CUDA events (torch.cuda.Event)"},
        },
        "devices": [d.to_json() for d in devs],
        "cpu_activity": run_activity,
        "configs": {name: _json_params(params) for name, params in resolved_configs},
        "peers": {n: {"note": _peers.get(n).note, "kinds": list(_peers.get(n).kinds)} for n in names},
        "memory_methods": dict(_timing.MEMORY_METHODS),
        "results": results,
        "skipped": skipped,
    }
    return doc

