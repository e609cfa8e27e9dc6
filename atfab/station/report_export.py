"""Batch outputs from unit reports: JUnit XML (one testcase per attempt) and a CSV summary."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ..core.fsutil import atomic_write
from .report import ReportEntry, UnitReport

CSV_COLUMNS = [
    "attempt_id", "attempt", "retry_of", "started", "ended", "duration_s", "recipe", "recipe_hash",
    "station", "operator", "port", "chip", "mac", "serial", "outcome", "failed_checks", "error", "report",
]


def _case_name(r: UnitReport) -> str:
    who = r.serial or r.mac or f"port {r.port}"
    return f"{who} attempt {r.attempt}"


def _failure_text(r: UnitReport) -> str:
    lines = [m.describe() for m in r.failed_measurements]
    lines += [f"step {s.name}: {s.outcome}: {s.detail}" for s in r.steps if s.outcome not in ("ok", "skipped")]
    if r.error:
        lines.append(r.error)
    return "\n".join(lines)


def junit_xml(entries: Sequence[ReportEntry], *, suite_name: str = "atfab") -> str:
    """JUnit XML: PASS → passed, FAIL → ``<failure>``, ERROR/ABORTED → ``<error type=...>``."""
    suite = ET.Element("testsuite", name=suite_name)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for entry in entries:
        r = entry.report
        seconds = r.duration_s or 0.0
        total += seconds
        case = ET.SubElement(suite, "testcase", classname=f"{suite_name}.{r.recipe_name}",
                             name=_case_name(r), time=f"{seconds:.3f}")
        counts["tests"] += 1
        text = _failure_text(r)
        if r.outcome == "FAIL":
            counts["failures"] += 1
            first = r.failed_measurements[0].describe() if r.failed_measurements else (r.error or "unit failed")
            ET.SubElement(case, "failure", message=first, type="FAIL").text = text
        elif r.outcome in ("ERROR", "ABORTED", None):
            counts["errors"] += 1
            ET.SubElement(case, "error", message=r.error or (r.outcome or "not sealed"),
                          type=r.outcome or "UNSEALED").text = text
        props = ET.SubElement(case, "properties")
        for key, value in (("mac", r.mac), ("serial", r.serial), ("station", r.station_id), ("port", r.port),
                           ("attempt_id", r.attempt_id), ("retry_of", r.retry_of), ("report", entry.path)):
            if value is not None:
                ET.SubElement(props, "property", name=key, value=str(value))
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_csv(entries: Sequence[ReportEntry]) -> str:
    """One CSV row per unit attempt (columns :data:`CSV_COLUMNS`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        r = entry.report
        writer.writerow([
            r.attempt_id, r.attempt, r.retry_of, r.started, r.ended, r.duration_s, r.recipe_name,
            r.recipe_hash, r.station_id, r.operator, r.port, r.chip, r.mac, r.serial, r.outcome,
            ";".join(m.name for m in r.failed_measurements), r.error, entry.path,
        ])
    # csv writes None as an empty field
    return out.getvalue()


def write_batch_outputs(entries: Sequence[ReportEntry], *, junit: str | Path | None = None,
                        csv_path: str | Path | None = None, suite_name: str = "atfab") -> list[Path]:
    """Write the JUnit XML and/or CSV summary atomically; returns the paths written."""
    written: list[Path] = []
    if junit is not None:
        written.append(atomic_write(junit, junit_xml(entries, suite_name=suite_name)))
    if csv_path is not None:
        written.append(atomic_write(csv_path, summary_csv(entries)))
    return written


__all__ = ["junit_xml", "summary_csv", "write_batch_outputs", "CSV_COLUMNS"]
