"""The yield report: figures from real report files (built with the report API), the HTML file
(self-contained, plots inline) and --json through the CLI."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.core.measurement import Measurement
from atfab.station.report import ReportBuilder, list_reports
from atfab.station.yieldreport.stats import parse_when, yield_figures

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)
ok = Measurement("rf_power.wifi", 78, 78, "equal", "pass")
bad = Measurement("rf_power.wifi", 78, 60, "equal", "fail")
bad_uart = Measurement("uart_def", 115200, 9600, "equal", "fail")


def write(out: Path, aid: int, mac: str, outcome: str, minute: int, *, port: str = "p0", retry_of: int | None = None,
          measurements=(ok,), station: str = "s1") -> None:
    start = T0 + timedelta(minutes=minute)
    b = ReportBuilder(out, recipe_name="r", recipe_hash="sha256:0", station_id=station, port=port, attempt_id=aid,
                      retry_of=retry_of, started=start, tools={})
    b.set_unit(chip="esp32c2", mac=mac, serial=f"S-{mac[-2:]}")
    b.add_step("flash", start, start + timedelta(seconds=14), "error" if outcome == "ERROR" else "ok")
    if outcome != "ERROR":
        b.add_step("verify", start + timedelta(seconds=14), start + timedelta(seconds=18),
                   "fail" if outcome == "FAIL" else "ok")
        b.add_measurements(list(measurements))
    b.seal(outcome, ended=start + timedelta(seconds=18))


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    write(out, 1, "24:0a:c4:00:00:01", "PASS", 0)
    write(out, 2, "24:0a:c4:00:00:02", "FAIL", 1, measurements=(bad, bad_uart))
    write(out, 3, "24:0a:c4:00:00:03", "ERROR", 2, port="p1")
    write(out, 4, "24:0a:c4:00:00:03", "PASS", 3, port="p1", retry_of=3)
    write(out, 5, "24:0a:c4:00:00:02", "PASS", 70, retry_of=2)          # back from rework
    write(out, 6, "24:0a:c4:00:00:04", "FAIL", 71, port="p1", measurements=(bad,))
    write(out, 7, "24:0a:c4:00:00:09", "PASS", 72, retry_of=99)          # first seen before the window
    return out


def test_figures(reports: Path) -> None:
    f = yield_figures(list_reports(reports))
    assert f["attempts"] == 7 and f["units"] == 5 and f["retested_units"] == 1
    assert f["counts"] == {"PASS": 4, "FAIL": 2, "ERROR": 1, "ABORTED": 0}
    assert f["first_pass_yield"] == {"units": 4, "passed": 1, "yield": 0.25}          # only unit 01
    assert f["final_yield"] == {"units": 5, "passed": 4, "yield": 0.8}
    assert f["failing_checks"][0] == {"check": "rf_power.wifi", "count": 2, "share": 0.6667, "cumulative": 0.6667}
    assert f["failing_checks"][1]["check"] == "uart_def" and f["failing_checks"][1]["cumulative"] == 1.0
    assert f["error_steps"] == [{"step": "flash", "count": 1}]
    p1 = next(g for g in f["by_port"] if g["key"] == "s1:p1")
    assert p1["attempts"] == 3 and p1["attempt_pass_rate"] == round(1 / 3, 4) and p1["first_pass_yield"] == 0.0
    tp = f["throughput"]
    assert tp["bucket_s"] == 600 and sum(b["PASS"] + b["FAIL"] + b["ERROR"] for b in tp["buckets"]) == 7
    flash = next(s for s in f["step_times"] if s["step"] == "flash")
    assert flash["count"] == 6 and flash["p50"] == 14.0
    later = yield_figures(list_reports(reports), since=T0 + timedelta(minutes=60))
    assert later["attempts"] == 3 and later["retested_units"] == 2


def test_cli_html_and_json(reports: Path, tmp_path: Path) -> None:
    out = tmp_path / "yield.html"
    res = CliRunner().invoke(main, ["report", "html", str(reports), "--since", "2025-03-03T08:00+00:00", "-o", str(out),
                                    "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout)
    assert figures["schema"] == "atfab.yield-report/1" and figures["attempts"] == 7
    html = out.read_text()
    assert html.count("<svg") >= 5 and "first-pass yield" in html and "25.0 %" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)     # nothing fetched
    assert "<script" not in html and "@import" not in html and not re.search(r"url\((?!#)", html)


def test_cli_bad_times(reports: Path) -> None:
    res = CliRunner().invoke(main, ["report", "html", str(reports), "--since", "yesterday", "--json"])
    assert res.exit_code == 2 and "--since" in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["report", "html", str(reports)])
    assert res.exit_code == 2 and "-o" in res.output
    now = datetime(2025, 3, 3, 12, tzinfo=timezone.utc)
    assert parse_when("8h", "--since", now=now) == now - timedelta(hours=8)
    with pytest.raises(InputError):
        parse_when("8 parsecs", "--since")
