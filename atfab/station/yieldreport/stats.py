"""Yield figures of a set of unit reports: what ``atfab report html`` draws and ``--json`` prints.

A *unit* is a MAC (the serial when a report has no MAC); an *attempt* is one report. Definitions:

* **first-pass yield**: of the units whose first report in the window is not a retry of an earlier
  attempt, the share whose first verdict (PASS, FAIL or ERROR; an ABORTED attempt is no verdict)
  is PASS. Units first seen before the window are *retested* and left out of it.
* **final yield**: of the units with a verdict, the share whose last report is PASS.
* per station, port (``station:port``) and recipe: attempts by outcome, the attempt pass rate
  (PASS / verdicts) and the first-pass yield of the units first tested there.
* **failing checks** (Pareto): FAIL attempts per failed measurement, most frequent first, with the
  cumulative share; ERROR attempts per step that broke.
* **throughput**: attempts with a verdict per time bucket (10 min, 1 h or 1 day, by the span),
  as units per hour.
* **step times**: per step, the distribution of the durations of the steps that ended ``ok``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ...core.errors import OUTCOMES, InputError
from ..report import ReportEntry, UnitReport

SCHEMA = "atfab.yield-report/1"
VERDICTS = ("PASS", "FAIL", "ERROR")
BUCKETS_S = (600, 3600, 86400)


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str | None, field: str, *, now: datetime | None = None) -> datetime | None:
    """``--since``/``--until``: ISO 8601 (no zone: local time) or an age (``8h``, ``2d``) before ``now``."""
    if text is None:
        return None
    m = _AGE.match(text.strip())
    if m:
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{text!r}: expected a time like 2025-03-03T06:00 or an age like 8h, 2d",
                         field=field) from None
    return (t if t.tzinfo else t.astimezone()).astimezone(timezone.utc)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds") if t else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` (0..1) percentile of ascending ``sorted_values`` (linear interpolation)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def unit_key(r: UnitReport) -> str | None:
    """Which unit a report is about (MAC, else serial; None when it names neither)."""
    return r.mac or r.serial


@dataclass
class _Unit:
    reports: list[UnitReport]

    @property
    def first_verdict(self) -> UnitReport | None:
        return next((r for r in self.reports if r.outcome in VERDICTS), None)

    @property
    def fresh(self) -> bool:
        """First tested in the window (its first report there retries nothing)."""
        return self.reports[0].retry_of is None

    @property
    def last(self) -> UnitReport:
        return self.reports[-1]


def _group_row(key: str, reports: list[UnitReport], firsts: list[_Unit]) -> dict[str, Any]:
    counts = Counter(r.outcome for r in reports)
    verdicts = sum(counts[k] for k in VERDICTS)
    fresh = [u for u in firsts if u.first_verdict is not None]
    passed = sum(1 for u in fresh if u.first_verdict.outcome == "PASS")  # type: ignore[union-attr]
    return {"key": key, "attempts": len(reports), "counts": {k: counts.get(k, 0) for k in OUTCOMES},
            "attempt_pass_rate": _share(counts["PASS"], verdicts), "units": len(fresh),
            "first_pass": passed, "first_pass_yield": _share(passed, len(fresh))}


def _groups(reports: list[UnitReport], units: list[_Unit], key) -> list[dict[str, Any]]:
    by: dict[str, list[UnitReport]] = defaultdict(list)
    for r in reports:
        by[key(r)].append(r)
    firsts: dict[str, list[_Unit]] = defaultdict(list)
    for u in units:
        fv = u.first_verdict
        if u.fresh and fv is not None:
            firsts[key(fv)].append(u)
    return [_group_row(k, by[k], firsts[k]) for k in sorted(by)]


def _bucket_seconds(span: float) -> int:
    for b in BUCKETS_S:
        if span <= b * 24:
            return b
    return BUCKETS_S[-1]


def _throughput(reports: list[UnitReport]) -> dict[str, Any]:
    ends = [(t, r.outcome) for r in reports if r.outcome in VERDICTS and (t := _time(r.ended or r.started))]
    if not ends:
        return {"bucket_s": None, "buckets": []}
    first, last = min(t for t, _ in ends), max(t for t, _ in ends)
    size = _bucket_seconds((last - first).total_seconds())
    origin = datetime.fromtimestamp(first.timestamp() // size * size, timezone.utc)
    n = int((last - origin).total_seconds() // size) + 1
    counts = [Counter() for _ in range(n)]
    for t, outcome in ends:
        counts[int((t - origin).total_seconds() // size)][outcome] += 1
    return {"bucket_s": size, "buckets": [
        {"start": _iso(origin + timedelta(seconds=i * size)), **{k: c.get(k, 0) for k in VERDICTS},
         "units_per_hour": round(sum(c.values()) * 3600 / size, 1)} for i, c in enumerate(counts)]}


def _distribution(values: list[float]) -> dict[str, Any]:
    v = sorted(values)
    return {"count": len(v), "mean": round(sum(v) / len(v), 3), "min": round(v[0], 3),
            **{f"p{int(q * 100)}": round(percentile(v, q), 3) for q in (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)},
            "max": round(v[-1], 3)}


def _step_times(reports: list[UnitReport]) -> list[dict[str, Any]]:
    durations: dict[str, list[float]] = {}
    for r in reports:
        for s in r.steps:
            d = s.duration_s
            if s.outcome == "ok" and d is not None:
                durations.setdefault(s.name, []).append(d)
    return [{"step": name, **_distribution(v)} for name, v in durations.items()]


def yield_figures(entries: Iterable[ReportEntry], *, since: datetime | None = None,
                  until: datetime | None = None) -> dict[str, Any]:
    """The yield figures (module docstring) of the reports that started in [since, until)."""
    reports: list[UnitReport] = []
    for e in entries:
        t = _time(e.report.started)
        if t is None or (since is not None and t < since) or (until is not None and t >= until):
            continue
        reports.append(e.report)
    reports.sort(key=lambda r: (_time(r.started), r.attempt_id or 0))
    by_unit: dict[str, list[UnitReport]] = defaultdict(list)
    for r in reports:
        if (k := unit_key(r)) is not None:
            by_unit[k].append(r)
    units = [_Unit(rs) for rs in by_unit.values()]
    fresh = [u for u in units if u.fresh and u.first_verdict is not None]
    fp_passed = sum(1 for u in fresh if u.first_verdict.outcome == "PASS")  # type: ignore[union-attr]
    judged = [u for u in units if any(r.outcome in VERDICTS for r in u.reports)]
    final_passed = sum(1 for u in judged if u.last.outcome == "PASS")
    counts = Counter(r.outcome for r in reports)
    checks = Counter(m.name for r in reports if r.outcome == "FAIL" for m in r.failed_measurements)
    total_checks = sum(checks.values())
    pareto, running = [], 0
    for name, n in checks.most_common():
        running += n
        pareto.append({"check": name, "count": n, "share": _share(n, total_checks),
                       "cumulative": _share(running, total_checks)})
    error_steps = Counter(next((s.name for s in r.steps if s.outcome == "error"), "station")
                          for r in reports if r.outcome == "ERROR")
    starts = [t for r in reports if (t := _time(r.started))]
    ends = [t for r in reports if (t := _time(r.ended))]
    unit_seconds = [d for r in reports if r.outcome == "PASS" and (d := r.duration_s) is not None]
    return {
        "schema": SCHEMA,
        "window": {"since": _iso(since), "until": _iso(until), "first": _iso(min(starts)) if starts else None,
                   "last": _iso(max(ends)) if ends else None},
        "attempts": len(reports), "units": len(units), "retested_units": sum(1 for u in units if not u.fresh),
        "counts": {k: counts.get(k, 0) for k in OUTCOMES},
        "first_pass_yield": {"units": len(fresh), "passed": fp_passed, "yield": _share(fp_passed, len(fresh))},
        "final_yield": {"units": len(judged), "passed": final_passed, "yield": _share(final_passed, len(judged))},
        "by_station": _groups(reports, units, lambda r: r.station_id),
        "by_port": _groups(reports, units, lambda r: f"{r.station_id}:{r.port}"),
        "by_recipe": _groups(reports, units, lambda r: r.recipe_name),
        "failing_checks": pareto,
        "error_steps": [{"step": s, "count": n} for s, n in error_steps.most_common()],
        "throughput": _throughput(reports),
        "step_times": _step_times(reports),
        "pass_unit_seconds": _distribution(unit_seconds) if unit_seconds else None,
    }


__all__ = ["yield_figures", "parse_when", "percentile", "unit_key", "SCHEMA", "VERDICTS"]
