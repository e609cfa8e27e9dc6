"""Console output of a station: a live status line per port, and the final tally.

:class:`StatusRenderer` is an event subscriber (:mod:`atfab.station.events`). On a terminal it keeps one
line per port up to date in place (port, unit serial, step, progress %, last outcome) and prints
each unit's outcome above them; otherwise (a pipe, a CI log) it writes plain lines: each step's
end, the flash start and its progress in quarters, each unit's outcome. It writes to the stream
it is given (the CLI passes stdout or stderr) and flushes every write.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ..core.errors import OUTCOMES
from .events import Event


@dataclass
class _PortLine:
    unit: str = "-"
    step: str = "idle"
    progress: float | None = None
    last: str = "-"
    started: float = 0.0


class StatusRenderer:
    """Live per-port status from the event stream. ``tty`` defaults to ``stream.isatty()``."""

    def __init__(self, stream: TextIO, ports: list[str], *, tty: bool | None = None, interval: float = 0.1) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval
        self._lines = {p: _PortLine() for p in ports}
        self._counts = {k: 0 for k in OUTCOMES}
        self._lock = threading.Lock()
        self._drawn = 0
        self._last_draw = 0.0
        self._quarter: dict[str, int] = {}
        self._width = max([len(p) for p in ports] + [4])

    def __call__(self, ev: Event) -> None:
        with self._lock:
            line = self._lines.setdefault(ev.port, _PortLine())
            if ev.unit:
                line.unit = ev.unit
            text = self._update(line, ev)
            if self.tty:
                if text is not None:
                    self._clear()
                    self._write(text + "\n")
                if text is not None or time.monotonic() - self._last_draw >= self.interval:
                    self._draw()
            elif text is not None:
                self._write(text + "\n")

    def _update(self, line: _PortLine, ev: Event) -> str | None:
        """Apply ``ev`` to the port's line; the permanent text line it produces, if any."""
        who = f"{ev.port:<{self._width}}  {ev.unit or '-':<17}"
        if ev.step == "unit":
            if ev.status == "start":
                line.step, line.progress, line.started = "start", None, ev.time
                return None
            line.last, line.step, line.progress = ev.status, "done", None
            self._counts[ev.status] = self._counts.get(ev.status, 0) + 1
            took = f"{ev.time - line.started:.1f} s" if line.started else ""
            return f"{who}  {ev.status:<7} {took}" + (f"  {ev.detail}" if ev.detail else "")
        if ev.step == "wait":
            line.step, line.progress = ("waiting" if ev.status == "start" else "unit found"), None
            return None if self.tty else f"{who}  {ev.detail or ev.status}"
        if ev.status == "start":
            line.step, line.progress = ev.step, None
            if ev.step == "flash":
                self._quarter[ev.port] = 0
                return None if self.tty else f"{who}  flash   start"
            return None
        if ev.status == "progress":
            line.progress = ev.progress
            quarter = int((ev.progress or 0.0) * 4)
            if not self.tty and 0 < quarter < 4 and quarter > self._quarter.get(ev.port, 0):
                self._quarter[ev.port] = quarter
                return f"{who}  {ev.step:<7} {quarter * 25}%"
            return None
        line.progress = None
        if self.tty and ev.status == "ok":
            return None
        return f"{who}  {ev.step:<11} {ev.status}" + (f"  {ev.detail}" if ev.detail else "")

    # -- terminal drawing -----------------------------------------------------------------------

    def _status(self, port: str, line: _PortLine) -> str:
        pct = f"{line.progress * 100:3.0f}%" if line.progress is not None else "    "
        return f"{port:<{self._width}}  {line.unit:<17}  {line.step:<11} {pct}  last: {line.last}"

    def _clear(self) -> None:
        if self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        self._clear()
        rows = [self._status(p, ln) for p, ln in self._lines.items()]
        c = self._counts
        rows.append(f"PASS {c['PASS']}  FAIL {c['FAIL']}  ERROR {c['ERROR']}  ABORTED {c['ABORTED']}")
        self._write("".join(f"\x1b[2K{r}\n" for r in rows))
        self._drawn = len(rows)
        self._last_draw = time.monotonic()

    def close(self) -> None:
        """Leave the last status block on screen as plain text."""
        with self._lock:
            if self.tty:
                self._draw()
                self._drawn = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def summary_lines(summary: Any) -> list[str]:
    """The final tally of a :class:`~atfab.station.station.StationSummary` as text lines."""
    c = summary.counts
    units = len(summary.finals)
    lines = [f"{units} unit(s), {len(summary.results)} attempt(s) in {summary.seconds:.1f} s "
             f"({summary.units_per_minute} units/min): PASS {c['PASS']}, FAIL {c['FAIL']}, "
             f"ERROR {c['ERROR']}, ABORTED {c['ABORTED']}" + ("  (interrupted)" if summary.interrupted else "")]
    for r in summary.finals:
        if r.outcome != "PASS":
            lines.append(f"  {r.port}: {r.serial or r.mac or '-'} {r.outcome}: {r.error or ''}")
    lines.append(f"reports: {summary.reports_dir}")
    lines.append(f"ledger:  {summary.ledger}")
    lines += [f"batch:   {p}" for p in summary.outputs]
    return lines


__all__ = ["StatusRenderer", "summary_lines"]
