"""Progress while a run goes (a rich bar on a terminal, plain periodic lines otherwise) and the summary."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from arraymel.corpus.storage import printable


def _hms(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Files done of ``total`` with files/s and audio-hours/s.

    ``mode``: ``"bar"`` (rich, on a terminal), ``"lines"`` (a line every ``interval`` seconds) or
    ``"quiet"`` (nothing).
    """

    def __init__(self, total: int, *, mode: str, interval: float = 30.0, stream: TextIO | None = None):
        self.total = total
        self.mode = mode
        self.interval = interval
        self.stream = stream or sys.stderr
        self.done = 0
        self.failed = 0
        self.audio_seconds = 0.0
        self.t0 = time.monotonic()
        self._last_line = self.t0
        self._bar: Any = None
        self._task: Any = None

    @staticmethod
    def choose_mode(quiet: bool, stream: TextIO | None = None) -> str:
        if quiet:
            return "quiet"
        stream = stream or sys.stderr
        try:
            tty = stream.isatty()
        except Exception:
            tty = False
        if tty:
            try:
                import rich  # noqa: F401

                return "bar"
            except ImportError:
                pass
        return "lines"

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]mel features"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rates]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("files", total=self.total, rates="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rates=self._rates())
            self._bar.stop()
        elif self.mode == "lines" and self.done and time.monotonic() - self._last_line > 1.0:
            self._line()

    def _rates(self) -> str:
        dt = max(1e-9, time.monotonic() - self.t0)
        s = f"{self.done / dt:.1f} files/s, {self.audio_seconds / 3600 / dt:.3f} audio-h/s"
        if self.failed:
            s += f", {self.failed} failed"
        return s

    def _line(self) -> None:
        dt = time.monotonic() - self.t0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) * dt / self.done if self.done else float("nan")
        eta_s = _hms(eta) if eta == eta else "?"
        print(f"[{_hms(dt)}] {self.done}/{self.total} files ({pct:.1f}%), {self.audio_seconds / 3600:.3f} audio-h; "
              f"{self._rates()}; eta {eta_s}", file=self.stream, flush=True)
        self._last_line = time.monotonic()

    def update(self, files: int, audio_seconds: float, failed: int) -> None:
        self.done += files
        self.failed += failed
        self.audio_seconds += audio_seconds
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rates=self._rates())
        elif self.mode == "lines" and time.monotonic() - self._last_line >= self.interval:
            self._line()


def format_summary(s: dict[str, Any]) -> str:
    """The end-of-run summary (``s``: the counts of :func:`arraymel.corpus.runner.run`)."""
    lines = [
        f"arraymel corpus: {s['in_dir']} -> {s['out_dir']}",
        f"  discovered {s['discovered']} = ok {s['ok']} + failed {s['failed']} + skipped {s['skipped']}"
        + (f" + not processed {s['not_processed']} (the run stopped)" if s.get("not_processed") else ""),
    ]
    wall = s["wall_seconds"]
    hours = s["audio_seconds"] / 3600
    rate_f = s["ok"] / wall if wall > 0 else 0.0
    rate_h = hours / wall if wall > 0 else 0.0
    lines.append(f"  computed {s['ok']} files, {hours:.4f} audio-hours in {wall:.2f} s: "
                 f"{rate_f:.2f} files/s, {rate_h:.4f} audio-hours/s (device {s['device']})")
    if s["skipped"]:
        lines.append(f"  skipped {s['skipped']} files already done ({s['skipped_audio_seconds'] / 3600:.4f} audio-hours)")
    if s.get("crashes"):
        lines.append(f"  {s['crashes']} worker process(es) died during the run; the files involved were re-run one at a "
                     "time and any that killed its worker is recorded as failed")
    if s.get("leftovers"):
        lines.append(f"  removed {s['leftovers']} partial output(s) left by an interrupted run")
    if s.get("not_followed"):
        shown = ", ".join(printable(k) for k in s["not_followed"][:3]) + (" ..." if len(s["not_followed"]) > 3 else "")
        lines.append(f"  {len(s['not_followed'])} symbolic link(s) lead out of IN_DIR and were not followed: {shown}")
    unlisted = s.get("unlisted", [])
    for path, why in unlisted[:10]:
        lines.append(f"  could not list {printable(path)}: {why}")
    if len(unlisted) > 10:
        lines.append(f"  ... and {len(unlisted) - 10} more directories that could not be listed")
    if s.get("orphans"):
        lines.append(f"  {s['orphans']}")
    fails = s.get("failures", [])
    if fails:
        lines.append(f"  failed files ({len(fails)}; all of them: arraymel corpus status {s['out_dir']}):")
        for key, err in fails[:20]:
            lines.append(f"    {printable(key)}: {err}")
        if len(fails) > 20:
            lines.append(f"    ... and {len(fails) - 20} more")
    if s.get("message"):
        lines.append(f"  {s['message']}")
    return "\n".join(lines)
