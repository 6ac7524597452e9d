"""Rendering a bench document: a terminal table (rich, else plain text), Markdown, JSON and a PNG chart."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

# ---------------------------------------------------------------------- formatting helpers


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_bytes(b: int | None) -> str:
    if b is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b} B"


def fmt_rate(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.3g}" if r < 1000 else f"{r:,.0f}"


def fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.3g}x"


def fmt_agreement(row: dict[str, Any], footnote: str = "") -> str:
    a = row.get("agreement")
    if a is None:
        return "reference" if row["library"] == "arraymel" else "-"
    if a.get("value") is None:
        return f"n/a ({a.get('reference')})"
    unit = {"dB": "dB", "output": "units"}.get(a["unit"], "rel.")
    ref = a.get("reference", "")
    where = ""
    if row["library"] == "arraymel" and ref.startswith("arraymel@"):
        where = f" vs {ref.split('@', 1)[1]}"
    return f"{a['value']:.2g} {unit}{where}{footnote}"


def device_label(dev: dict[str, Any]) -> str:
    """``"cpu: AMD EPYC, 2 cores, 23.4 GiB"``, ``"cuda:0: NVIDIA H100 80GB HBM3, 79.1 GiB, 132 SMs"``."""
    parts = [dev.get("name") or "unknown"]
    if dev["kind"] == "cpu":
        if dev.get("cores"):
            parts.append(f"{dev['cores']} cores")
        if dev.get("memory_bytes"):
            parts.append(f"{dev['memory_bytes'] / 2**30:.1f} GiB RAM")
        threads = dev.get("threads") or {}
        th = []
        if threads.get("arraymel"):
            th.append(f"arraymel {threads['arraymel']['threads']} ({threads['arraymel']['fft']})")
        for p in threads.get("pools") or []:
            item = f"{p['api'] or p['library']} {p['threads']}"
            if item not in th:  # NumPy and SciPy each bundle an OpenBLAS
                th.append(item)
        if th:
            parts.append("threads: " + ", ".join(th))
        if threads.get("env"):
            parts.append("env: " + " ".join(f"{k}={v}" for k, v in threads["env"].items()))
    else:
        if dev.get("memory_bytes"):
            parts.append(f"{dev['memory_bytes'] / 2**30:.1f} GiB")
        if dev.get("cores"):
            parts.append(f"{dev['cores']} SMs")
    return f"{dev['id']}: " + ", ".join(parts)


def _footnotes(doc: dict[str, Any]) -> dict[str, int]:
    """Library -> footnote number, for the libraries whose semantics differ by design."""
    out: dict[str, int] = {}
    for row in doc["results"]:
        if row.get("note") and row["library"] not in out:
            out[row["library"]] = len(out) + 1
    return out


COLUMNS = ("config", "batch", "library", "median", "IQR", "audio-h/s", "speed vs arraymel", "peak memory",
           "max |diff| vs arraymel")


def table_rows(doc: dict[str, Any], device_id: str) -> list[list[str]]:
    notes = _footnotes(doc)
    rows = []
    for r in doc["results"]:
        if r["device"] != device_id:
            continue
        mark = f" [{notes[r['library']]}]" if r["library"] in notes else ""
        busy = " *" if _busy(r) else ""
        rows.append([
            r["config"], f"{r['batch']} x {r['seconds']:g} s", r["library"], fmt_time(r["median_s"]) + busy,
            fmt_time(r["iqr_s"]), fmt_rate(r["audio_hours_per_s"]), fmt_ratio(r["speed_vs_arraymel"]),
            fmt_bytes(r["peak_memory_bytes"]), fmt_agreement(r, mark),
        ])
    return rows


#: A row is flagged when other processes used more than this share of the machine's CPU while it was timed.
BUSY_SHARE = 0.10


def _busy(row: dict[str, Any]) -> bool:
    share = row.get("other_processes_share")
    return row["device"] == "cpu" and share is not None and share > BUSY_SHARE


def footnote_lines(doc: dict[str, Any]) -> list[str]:
    notes = _footnotes(doc)
    by_lib = {r["library"]: r["note"] for r in doc["results"] if r.get("note")}
    out = [f"[{i}] {lib}: {by_lib[lib]}" for lib, i in notes.items()]
    if any(_busy(r) for r in doc["results"]):
        out.append(f"* other processes used more than {BUSY_SHARE:.0%} of the CPU while this row was timed: "
                   "its time is likely inflated")
    return out


def skipped_lines(doc: dict[str, Any]) -> list[str]:
    lines, seen = [], set()
    for s in doc["skipped"]:
        where = f" ({s['config']}, batch {s['batch']})" if s.get("config") else ""
        line = f"{s['device']}: {s['library']}{where}: {s['status']}: {s['reason']}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def load_warning(doc: dict[str, Any]) -> str | None:
    """A warning when other processes used a noticeable share of the CPU during the run."""
    act = doc.get("cpu_activity") or {}
    share = act.get("other_processes_share")
    if share is not None and share > 0.05:
        return (f"warning: other processes used {act['cpu_s_other_processes']:.3g} CPU-seconds "
                f"({share:.0%} of the machine) during the {act['wall_s']:.3g} s run: CPU timings may be inflated")
    return None


def summary_lines(doc: dict[str, Any]) -> list[str]:
    st = doc["settings"]
    rep = st["repeat"] if st["repeat"] is not None else f"adaptive (>= 11, ~{st.get('budget_s', 1):g} s for the slowest)"
    return [
        f"arraymel {doc['versions'].get('arraymel')}, numpy {doc['versions'].get('numpy')}, "
        f"{doc['created']}; {st['dtype']} input, {st['seconds']:g} s clips; warm-up {st['warmup']}, rounds {rep}, "
        "each library called once per round, interleaved in one process; "
        "median and interquartile range of the counted calls; audio-h/s = hours of audio per second of compute.",
    ] + ([w] if (w := load_warning(doc)) else [])


# ---------------------------------------------------------------------- terminal
def print_table(doc: dict[str, Any], file: Any = None) -> None:
    """The results on the terminal: one table per device (rich when installed, plain text otherwise)."""
    try:
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
    except ImportError:
        print(format_text(doc), file=file)
        return
    console = Console(file=file, soft_wrap=False, width=max(140, Console(file=file).width))
    for dev in doc["devices"]:
        if dev.get("reason"):
            continue
        rows = table_rows(doc, dev["id"])
        if not rows:
            continue
        t = Table(title=device_label(dev), title_justify="left", show_lines=False)
        for c in COLUMNS:
            t.add_column(c, justify="right" if c not in ("config", "library") else "left", no_wrap=c != "max |diff| vs arraymel")
        for r in rows:
            style = "bold" if r[2] == "arraymel" else None
            t.add_row(*r, style=style)
        console.print(t)
    for line in footnote_lines(doc):
        console.print(line, highlight=False)
    sk = skipped_lines(doc)
    if sk:
        console.print("Skipped:", style="bold")
        for line in sk:
            console.print("  " + line, highlight=False, markup=False)
    for line in summary_lines(doc):
        console.print(line, highlight=False, style="dim")


def format_text(doc: dict[str, Any]) -> str:
    out = []
    for dev in doc["devices"]:
        if dev.get("reason"):
            continue
        rows = table_rows(doc, dev["id"])
        if not rows:
            continue
        out.append(device_label(dev))
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        out.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
        for r in rows:
            out.append("  ".join(v.ljust(w) for v, w in zip(r, widths)))
        out.append("")
    out += footnote_lines(doc)
    sk = skipped_lines(doc)
    if sk:
        out.append("Skipped:")
        out += ["  " + s for s in sk]
    out += summary_lines(doc)
    return "\n".join(out)


def format_markdown(doc: dict[str, Any]) -> str:
    """The tables as Markdown (for docs/benchmarks.md), with the devices, footnotes and skipped peers."""
    out = []
    for dev in doc["devices"]:
        if dev.get("reason"):
            continue
        rows = table_rows(doc, dev["id"])
        if not rows:
            continue
        out.append(f"**{device_label(dev)}**")
        out.append("")
        def cells(values: Iterable[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

        out.append(cells(COLUMNS))
        out.append("|" + "|".join("---" if c in ("config", "library") else "---:" for c in COLUMNS) + "|")
        for r in rows:
            lib = f"**{r[2]}**" if r[2] == "arraymel" else r[2]
            out.append(cells([r[0], r[1], lib, *r[3:]]))
        out.append("")
    for line in footnote_lines(doc):
        out.append(line + "  ")
    sk = skipped_lines(doc)
    if sk:
        out.append("")
        out.append("Skipped:")
        out += [f"- {s}" for s in sk]
    out.append("")
    out += summary_lines(doc)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- JSON
def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # NumPy scalars
        return _clean(v.item())
    return v


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write ``doc`` as JSON (NaN/inf become null, so any JSON reader takes it)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_clean(doc), f, indent=1, allow_nan=False)
        f.write("\n")


# ---------------------------------------------------------------------- PNG
def _panels(results: Iterable[dict[str, Any]]) -> list[tuple[str, int, float]]:
    seen: dict[tuple[str, int, float], None] = {}
    for r in results:
        seen[(r["config"], r["batch"], r["seconds"])] = None
    return sorted(seen, key=lambda k: (k[0], k[1]))


def plot(doc: dict[str, Any], path: str, *, log: bool | None = None) -> str:
    """A bar chart of audio-hours per second per library (bars) and device (colours), one panel per
    configuration and batch. Log scale when the values span more than 30x (or when ``log=True``)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in doc["results"] if r.get("audio_hours_per_s")]
    if not rows:
        raise ValueError("nothing to plot: no peer ran")
    panels = _panels(rows)
    libs = list(dict.fromkeys(r["library"] for r in rows))
    devs = list(dict.fromkeys(r["device"] for r in rows))
    names = {d["id"]: device_label(d).split(", threads")[0] for d in doc["devices"]}
    vals = [r["audio_hours_per_s"] for r in rows]
    if log is None:
        log = max(vals) / max(min(vals), 1e-300) > 30
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    most_bars = max(
        len({r["library"] for r in rows if (r["config"], r["batch"], r["seconds"]) == pan})
        * len({r["device"] for r in rows if (r["config"], r["batch"], r["seconds"]) == pan})
        for pan in panels
    )
    panel_w = min(8.0, max(5.0, 0.5 * most_bars + 2.0))
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(8.0, panel_w * ncols), 4.2 * nrows + 1.2), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (cfg, batch, secs) in zip(axes.flat, panels):
        sub = [r for r in rows if (r["config"], r["batch"], r["seconds"]) == (cfg, batch, secs)]
        panel_libs = [lib for lib in libs if any(r["library"] == lib for r in sub)]
        panel_devs = [dev for dev in devs if any(r["device"] == dev for r in sub)]
        width = 0.8 / len(panel_devs)
        for j, dev in enumerate(panel_devs):
            xs, hs = [], []
            for i, lib in enumerate(panel_libs):
                r = next((r for r in sub if r["library"] == lib and r["device"] == dev), None)
                if r is not None:
                    xs.append(i + (j - (len(panel_devs) - 1) / 2) * width)
                    hs.append(r["audio_hours_per_s"])
            if not xs:
                continue
            color = cmap(devs.index(dev) % 10)
            bars = ax.bar(xs, hs, width * 0.95, color=color, label=names.get(dev, dev))
            for b, h in zip(bars, hs):
                ax.annotate(f"{h:.3g}", (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom",
                            fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(panel_libs)))
        ax.set_xticklabels(panel_libs, rotation=20, ha="right")
        ax.set_title(f"{cfg}, {batch} x {secs:g} s")
        if log:
            ax.set_yscale("log")
            lo = min(r["audio_hours_per_s"] for r in sub)
            ax.set_ylim(bottom=lo / 3, top=max(r["audio_hours_per_s"] for r in sub) * 4)
        else:
            ax.set_ylim(0, max(r["audio_hours_per_s"] for r in sub) * 1.18)
        ax.set_ylabel("audio-hours per second" + (" (log)" if log else ""))
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.set_axisbelow(True)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes.flat:
        h, l_ = ax.get_legend_handles_labels()
        seen.update(zip(l_, h))
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", ncol=min(len(seen), 2), fontsize=9,
               frameon=False)
    fig.suptitle(f"arraymel bench: audio-hours per second, higher is better\n"
                 f"{doc['settings']['dtype']}, {doc['created'][:10]}", fontsize=11)
    fig_h = fig.get_size_inches()[1]
    legend_in = 0.45 + 0.22 * math.ceil(len(seen) / 2)
    fig.tight_layout(rect=(0, legend_in / fig_h, 1, 1 - 0.75 / fig_h))
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
