# Audio-hours per second of each library on the CPU, from a JSON written by `arraymel bench --json`
# (docs/data/bench_cpu.json): one panel per configuration and batch, the median of interleaved calls.
import json
import pathlib

import matplotlib.pyplot as plt
import numpy as np
import sitedata

run = json.loads((pathlib.Path(sitedata.__file__).parents[1] / "data" / "bench_cpu.json").read_text())
rows = [r for r in run["results"] if r["device"] == "cpu"]
panels = sorted({(r["config"], r["batch"]) for r in rows}, key=lambda p: (p[0], p[1]))
libraries = [lib for lib in ("arraymel", "librosa", "keras", "torch-stft", "arraymel-generic")
             if any(r["library"] == lib for r in rows)]
colours = dict(zip(libraries, ("#c2410c", "#2563eb", "#7c3aed", "#059669", "#9ca3af")))
fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.6), sharey=True, constrained_layout=True)
for ax, (config, batch) in zip(np.atleast_1d(axes), panels):
    got = {r["library"]: r for r in rows if (r["config"], r["batch"]) == (config, batch)}
    names = [lib for lib in libraries if lib in got]
    values = [got[lib]["audio_hours_per_s"] for lib in names]
    bars = ax.bar(range(len(names)), values, color=[colours[n] for n in names])
    ax.bar_label(bars, fmt="%.2g", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_title(f"{config}, {batch} x {got[names[0]]['seconds']:g} s", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
np.atleast_1d(axes)[0].set_ylabel("audio-hours per second (higher is faster)")
activity = run.get("cpu_activity") or {}
load = (f"; other processes used {activity['other_processes_share']:.0%} of the CPUs meanwhile"
        if activity.get("other_processes_share") is not None else "")
cpu = run["devices"][0]
start = (cpu.get("detail") or {}).get("load_average_at_start")
start = f", load average {start[0]:.1f} at the start" if start else ""
fig.suptitle(f"{cpu['name']}, {cpu['cores']} cores{start}{load}", fontsize=9)
