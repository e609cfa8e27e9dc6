"""What the live station page shows, kept up to date from the station's event stream.

:class:`LiveState` is an event subscriber (:mod:`atfab.station.events`), like the console and the
report recorder: one stream, so the page, the terminal and the reports tell the same story. It
keeps per slot the unit on it (serial, MAC), the current step and its progress, the last outcome
and how long that unit took, whether the operator paused it; for the station the counts (by the
``report`` events, so they are the counts of the reports written), units per hour and the last
failures with their failing checks. :meth:`LiveState.snapshot` is the whole state as JSON data;
:meth:`LiveState.wait` blocks until it changes (the page's server pushes a new snapshot then).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ...core.errors import OUTCOMES
from ...core.keyguard import find_private_key
from ...core.measurement import Measurement
from ..events import STATION, STEPS, Event

#: Longest text of an expected/measured value or a detail on the page.
MAX_TEXT = 200
#: Outcomes that are a verdict on the unit (units per hour counts these).
VERDICTS = ("PASS", "FAIL", "ERROR")


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _check(m: Measurement) -> dict[str, str | None]:
    return {"name": m.name, "expected": _short(m.expected), "measured": _short(m.measured), "rule": m.rule}


@dataclass
class SlotView:
    """One slot as the page shows it."""

    label: str
    serial: str | None = None
    mac: str | None = None
    step: str = "idle"              # a runner step, "waiting", "done" or "idle"
    progress: float | None = None   # of the current step (flash: bytes written), None = not known
    #: Of the whole unit: steps done (each an equal share, flash by its bytes); 1.0 once it ended.
    unit_progress: float = 0.0
    busy: bool = False              # a unit is being provisioned
    unit_started: float | None = None
    last: str | None = None         # the last unit's outcome
    last_seconds: float | None = None
    last_detail: str | None = None
    failed_checks: list[dict[str, str | None]] = field(default_factory=list)
    paused: bool = False
    units: int = 0                  # attempts ended on this slot


def _unit_progress(step: str, within: float, before: float) -> float:
    """How far a unit is when ``step`` is ``within`` done (never backwards; unknown steps keep it)."""
    if step not in STEPS:
        return before
    return max(before, round((STEPS.index(step) + min(max(within, 0.0), 1.0)) / len(STEPS), 3))


@dataclass
class Failure:
    """One FAIL or ERROR among the last ones."""

    time: float
    slot: str
    serial: str | None
    mac: str | None
    outcome: str
    detail: str | None
    checks: list[dict[str, str | None]]


class LiveState:
    """The live page's state of one station run (thread-safe; ports emit from their threads)."""

    def __init__(self, *, station_id: str, recipe: str, ports: list[str], keep_failures: int = 12,
                 clock: Any = time.time) -> None:
        self.station_id = station_id
        self.recipe = recipe
        self._clock = clock
        self._cond = threading.Condition()
        self._slots = {p: SlotView(p) for p in ports}
        self._counts = {k: 0 for k in OUTCOMES}
        self._failures: deque[Failure] = deque(maxlen=keep_failures)
        self._pending: dict[str, list[Measurement]] = {}
        self._started = clock()
        self._first_unit: float | None = None
        self._run = "running"
        self._notice: str | None = None
        self.version = 0

    # -- the event subscriber ---------------------------------------------------------------------

    def __call__(self, ev: Event) -> None:
        with self._cond:
            if ev.port == STATION:
                if ev.step == "run":
                    self._run, self._notice = ev.status, ev.detail
            else:
                self._apply(self._slots.setdefault(ev.port, SlotView(ev.port)), ev)
            self.version += 1
            self._cond.notify_all()

    def _apply(self, s: SlotView, ev: Event) -> None:
        data = ev.data or {}
        if "serial" in data and data["serial"]:
            s.serial = data["serial"]
        if "mac" in data and data["mac"]:
            s.mac = data["mac"]
        for m in data.get("measurements") or []:
            if not m.passed:
                self._pending.setdefault(s.label, []).append(m)
        if ev.step == "unit":
            if ev.status == "start":
                s.serial = s.mac = None
                s.busy, s.step, s.progress, s.unit_started = True, "connect", None, ev.time
                s.unit_progress = 0.0
                self._pending[s.label] = []
                self._first_unit = self._first_unit or ev.time
                return
            s.busy, s.step, s.progress, s.unit_progress = False, "done", None, 1.0
            self._end(s, ev.status, ev.detail, ev.time)
        elif ev.step == "report":
            s.units += 1
            self._counts[ev.status] = self._counts.get(ev.status, 0) + 1
            if ev.status != s.last:         # the report could not be sealed: the unit's outcome is ERROR
                self._end(s, ev.status, ev.detail, ev.time)
        elif ev.step == "pause":
            s.paused = ev.status == "start"
        elif ev.step == "wait":
            s.step, s.progress = ("waiting" if ev.status == "start" else "unit found"), None
        elif ev.status == "start":
            s.step, s.progress = ev.step, None
            s.unit_progress = _unit_progress(ev.step, 0.0, s.unit_progress)
        elif ev.status == "progress":
            s.step, s.progress = ev.step, ev.progress
            s.unit_progress = _unit_progress(ev.step, ev.progress or 0.0, s.unit_progress)
        elif ev.step in STEPS:              # ok / skipped / fail / error of a step
            s.unit_progress = _unit_progress(ev.step, 1.0, s.unit_progress)

    def _end(self, s: SlotView, outcome: str, detail: str | None, when: float) -> None:
        s.last, s.last_detail = outcome, _short(detail)
        s.last_seconds = round(when - s.unit_started, 1) if s.unit_started is not None else None
        s.failed_checks = [_check(m) for m in self._pending.get(s.label, [])] if outcome != "PASS" else []
        if outcome in ("FAIL", "ERROR"):
            self._failures.appendleft(Failure(when, s.label, s.serial, s.mac, outcome, s.last_detail,
                                              list(s.failed_checks)))

    # -- what the page gets -----------------------------------------------------------------------

    def end(self) -> None:
        """The run is over (the page says so; its server closes next)."""
        with self._cond:
            self._run = "ended"
            self.version += 1
            self._cond.notify_all()

    def wait(self, version: int, timeout: float) -> int:
        """Block until :attr:`version` differs from ``version`` (or ``timeout``); the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != version, timeout)
            return self.version

    def units_per_hour(self, now: float) -> float:
        """Units with a verdict (PASS, FAIL, ERROR) per hour since the first unit started."""
        done = sum(self._counts[k] for k in VERDICTS)
        if not done or self._first_unit is None or now <= self._first_unit:
            return 0.0
        return round(done * 3600.0 / (now - self._first_unit), 1)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON data (refuses private key text, which no event may carry)."""
        with self._cond:
            now = self._clock()
            snap = {
                "version": self.version, "station": self.station_id, "recipe": self.recipe, "run": self._run,
                "notice": self._notice, "now": now, "started": self._started,
                "counts": dict(self._counts), "units_per_hour": self.units_per_hour(now),
                "slots": [asdict(s) for s in self._slots.values()],
                "failures": [asdict(f) for f in self._failures],
            }
        hit = find_private_key(snap)
        if hit is not None:
            raise ValueError(f"refusing to show private key text (at {hit})")
        return snap


__all__ = ["LiveState", "SlotView", "Failure", "VERDICTS"]
