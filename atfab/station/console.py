"""Console output of a station: a live status table per port, and the final tally.

:class:`StatusRenderer` is an event subscriber (:mod:`atfab.station.events`). On a terminal (and
``NO_COLOR`` unset) it draws with rich: a table with one row per slot (unit, step, a progress bar,
the last outcome in colour, the time of the last unit) and the counts, redrawn in place, with each
unit's outcome printed above it. Otherwise (a pipe, a CI log, ``NO_COLOR``) it writes plain lines:
each step's end, the flash start and its progress in quarters, each unit's outcome. It writes to
the stream it is given (the CLI passes stdout or stderr).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..core.errors import OUTCOMES
from .events import STATION, Event

#: Colour of each outcome (rich style names).
OUTCOME_STYLE = {"PASS": "bold green", "FAIL": "bold red", "ERROR": "bold yellow", "ABORTED": "bold magenta"}


@dataclass
class _PortLine:
    unit: str = "-"
    step: str = "idle"
    progress: float | None = None
    last: str = "-"
    started: float = 0.0
    took: float | None = None
    paused: bool = False


def use_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal and ``NO_COLOR`` is not set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


class StatusRenderer:
    """Live per-port status from the event stream. ``tty`` defaults to :func:`use_terminal`.

    ``interval`` is the terminal redraw period (0: redraw on every event, for tests).
    """

    def __init__(self, stream: TextIO, ports: list[str], *, tty: bool | None = None, interval: float = 0.1) -> None:
        self.stream = stream
        self.tty = use_terminal(stream) if tty is None else tty
        self.interval = interval
        self._lines = {p: _PortLine() for p in ports}
        self._counts = {k: 0 for k in OUTCOMES}
        self._lock = threading.Lock()
        self._quarter: dict[str, int] = {}
        self._width = max([len(p) for p in ports] + [4])
        self._live: Live | None = None
        self._console: Console | None = None
        if self.tty:
            self._console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=False)

    def __call__(self, ev: Event) -> None:
        with self._lock:
            if ev.port == STATION:
                text = f"station page: {ev.detail}" if ev.step == "page" else f"station: {ev.detail or ev.status}"
                self._emit(text, "bold cyan")
                return
            line = self._lines.setdefault(ev.port, _PortLine())
            if ev.unit:
                line.unit = ev.unit
            text = self._update(line, ev)
            if self.tty:
                if text is not None:
                    self._emit(text, OUTCOME_STYLE.get(ev.status if ev.step in ("unit", "report") else "", ""))
                self._refresh()
            elif text is not None:
                self._write(text + "\n")

    def _update(self, line: _PortLine, ev: Event) -> str | None:
        """Apply ``ev`` to the port's line; the permanent text line it produces, if any."""
        who = f"{ev.port:<{self._width}}  {ev.unit or '-':<17}"
        if ev.step == "unit":
            if ev.status == "start":
                line.step, line.progress, line.started = "start", None, ev.time
                return None
            # the outcome is shown (and counted) only once the report is sealed (step "report"
            # below): a unit whose report could not be written is an ERROR, never a PASS first
            line.step, line.progress = "report", None
            line.took = ev.time - line.started if line.started else None
            return None
        if ev.step == "report":             # the final outcome
            self._counts[ev.status] = self._counts.get(ev.status, 0) + 1
            line.last, line.step = ev.status, "done"
            took = f"{line.took:.1f} s" if line.took is not None else ""
            return f"{who}  {ev.status:<7} {took}" + (f"  {ev.detail}" if ev.detail else "")
        if ev.step == "pause":
            line.paused = ev.status == "start"
            return f"{who}  {ev.detail or ('paused' if line.paused else 'resumed')}"
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

    # -- terminal drawing (rich) ------------------------------------------------------------------

    def _emit(self, text: str, style: str) -> None:
        """A permanent line: above the live table on a terminal, else plain."""
        if self._console is None:
            self._write(text + "\n")
            return
        self._start()
        self._console.print(Text(text, style=style), soft_wrap=True)
        self._refresh()

    def _start(self) -> None:
        if self._live is None and self._console is not None:
            self._live = Live(_Table(self), console=self._console, auto_refresh=self.interval > 0,
                              refresh_per_second=1 / self.interval if self.interval > 0 else 4, transient=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def _refresh(self) -> None:
        self._start()
        if self._live is not None and self.interval <= 0:
            self._live.refresh()

    def render(self) -> Group:
        """The status table and the counts as a rich renderable (drawn by the live display)."""
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold", expand=False)
        for name, width in (("slot", self._width), ("unit", 10), ("step", 11), ("progress", 21), ("last", 7),
                            ("time", 6)):
            table.add_column(name, no_wrap=True, min_width=width)
        for port, ln in list(self._lines.items()):
            step = Text("paused" if ln.paused and ln.step in ("done", "waiting", "idle") else ln.step,
                        style="yellow" if ln.paused else "cyan")
            if ln.progress is not None:
                bar: Any = Table.grid(padding=(0, 1))
                bar.add_row(ProgressBar(total=1.0, completed=ln.progress, width=16), f"{ln.progress * 100:3.0f}%")
            else:
                bar = ""
            table.add_row(port, ln.unit, step, bar, Text(ln.last, style=OUTCOME_STYLE.get(ln.last, "dim")),
                          f"{ln.took:.1f} s" if ln.took is not None else "")
        counts = Text.assemble(*[part for k in OUTCOMES
                                 for part in ((f"{k} {self._counts.get(k, 0)}", OUTCOME_STYLE[k]), "  ")])
        return Group(table, counts)

    def close(self) -> None:
        """Leave the last status table on screen."""
        with self._lock:
            if self._live is not None:
                self._live.refresh()
                self._live.stop()
                self._live = None

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class _Table:
    """What the live display draws: the renderer's state at the moment it draws."""

    def __init__(self, renderer: StatusRenderer) -> None:
        self._renderer = renderer

    def __rich__(self) -> Group:
        return self._renderer.render()


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
    publish = getattr(summary, "publish", None)
    for t in (publish or {}).get("targets", []):
        lines.append(f"publish: {t['target']}: {t['delivered']} delivered, {t['pending']} pending in {t['spool']}"
                     + (f", {t['rejected']} rejected" if t["rejected"] else "")
                     + (f" (last error: {t['last_error']})" if t["last_error"] and t["pending"] else ""))
    lines += [f"publish: {e}" for e in (publish or {}).get("errors", [])]
    return lines


__all__ = ["StatusRenderer", "summary_lines", "use_terminal", "OUTCOME_STYLE"]
