"""Per-unit reports: atomic writes, schema fields, PRIVATE KEY guard, JUnit/CSV export."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from atfab.station import report as report_mod
from atfab.core.errors import DeviceError, InputError, UnitFailed
from atfab.core.measurement import Measurement, evaluate
from atfab.station.report import ReportBuilder, ReportLeakError, list_reports, read_report
from atfab.station.report_export import junit_xml, summary_csv, write_batch_outputs

T0 = datetime(2024, 5, 8, 8, 50, 59, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        self.t += timedelta(milliseconds=250)
        return self.t


def builder(out: Path, attempt_id: int = 7, **kw) -> ReportBuilder:
    args = dict(recipe_name="esp32c2-4mb-default", recipe_hash="sha256:abc", station_id="st1",
                port="socket://127.0.0.1:5000", operator="ann", usb_serial="A1", usb_location="1-1.2",
                attempt_id=attempt_id, tools={"atfab": "0.1.0"}, clock=Clock())
    args.update(kw)
    return ReportBuilder(out, **args)


def full(out: Path, attempt_id: int = 7, measured: int = 78, **kw) -> ReportBuilder:
    b = builder(out, attempt_id, **kw)
    b.set_unit(chip="esp32c2", mac="24:0A:C4:00:00:01", serial="SN-000001")
    b.set_firmware(version="v4.1.0.0", source="synthetic")
    b.add_image("esp-at.bin", "11" * 32)
    b.add_image("mfg_nvs.bin", "22" * 32)
    b.add_certificate("client.0", serial=0x1234, issuer="CN=Factory CA", fingerprint="33" * 32,
                      key_fingerprint="44" * 32)
    b.add_step("flash", T0, T0 + timedelta(seconds=3), "ok", {"bytes": 123})
    with b.step("verify") as st:
        st.detail = "12 checks"
    b.add_measurement(evaluate("rf_power", 78, measured, "equal"))
    b.add_measurement(Measurement("uart_baud", [115200, 2], 115273, "tolerance_pct", "pass"))
    b.set_transcript([{"dir": "tx", "data": b"AT+GMR\r\n"}, {"dir": "rx", "data": "OK"}])
    return b


def test_schema_fields(tmp_path: Path) -> None:
    b = full(tmp_path)
    path = b.seal()
    assert path.parent == tmp_path and path.name.endswith("_SN-000001_a7.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "atfab.unit-report/1"
    assert data["outcome"] == "PASS" and data["attempt"] == 1 and data["retry_of"] is None
    assert data["recipe"] == {"name": "esp32c2-4mb-default", "hash": "sha256:abc", "path": None}
    assert data["station"] == {"id": "st1", "operator": "ann", "port": "socket://127.0.0.1:5000",
                               "usb_serial": "A1", "location": "1-1.2"}
    assert data["unit"] == {"chip": "esp32c2", "mac": "24:0a:c4:00:00:01", "serial": "SN-000001"}
    assert data["images"]["mfg_nvs.bin"] == "22" * 32
    assert data["certificates"][0]["serial"] == "1234"
    assert data["certificates"][0]["fingerprint_sha256"] == "33" * 32
    assert [s["name"] for s in data["steps"]] == ["flash", "verify"]
    assert data["steps"][0]["duration_s"] == 3.0 and data["steps"][1]["outcome"] == "ok"
    assert data["measurements"][0] == {"name": "rf_power", "expected": 78, "measured": 78,
                                       "rule": "equal", "outcome": "pass"}
    assert data["transcript"][0]["data"] == "AT+GMR\r\n"
    assert data["started"] < data["ended"]
    again = read_report(path)
    assert again.serial == "SN-000001" and again.measurements[1].measured == 115273
    assert again.to_dict() == data


def test_default_tools_include_versions(tmp_path: Path) -> None:
    b = builder(tmp_path, tools=None)
    assert set(b.report.tools) == {"atfab", "esptool", "esp-idf-nvs-partition-gen", "cryptography", "pyserial"}
    assert b.report.tools["esptool"]


def test_outcomes(tmp_path: Path) -> None:
    failing = full(tmp_path, attempt_id=1, measured=60)
    with pytest.raises(ValueError):
        failing.seal("PASS")
    assert read_report(failing.seal()).outcome == "FAIL"
    b = builder(tmp_path, attempt_id=2)
    with pytest.raises(DeviceError):
        with b.step("connect"):
            raise DeviceError("no answer")
    assert b.report.steps[0].outcome == "error" and "no answer" in b.report.steps[0].detail
    assert read_report(b.seal(error="no answer")).outcome == "ERROR"
    c = builder(tmp_path, attempt_id=3)
    with pytest.raises(UnitFailed):
        with c.step("verify"):
            raise UnitFailed("bad")
    assert c.derive_outcome() == "FAIL"
    d = builder(tmp_path, attempt_id=4, attempt=2, retry_of=3)
    path = d.seal("ABORTED")
    rep = read_report(path)
    assert (rep.outcome, rep.attempt, rep.retry_of) == ("ABORTED", 2, 3)
    with pytest.raises(ValueError):
        d.seal("PASS")  # sealed once
    with pytest.raises(ValueError):
        builder(tmp_path, attempt_id=5).seal("MAYBE")


def test_crash_while_serialising_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(data):
        raise RuntimeError("serializer crashed")

    monkeypatch.setattr(report_mod, "encode", boom)
    with pytest.raises(RuntimeError):
        full(tmp_path).seal()
    assert list(tmp_path.iterdir()) == []


def test_crash_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import atfab.core.fsutil

    def crash(src, dst):
        raise OSError("power lost")

    monkeypatch.setattr(atfab.core.fsutil.os, "replace", crash)
    with pytest.raises(OSError):
        full(tmp_path).seal()
    assert list(tmp_path.iterdir()) == []  # neither the report nor its temp file


def test_private_key_guard(tmp_path: Path) -> None:
    b = full(tmp_path)
    b.set_transcript([{"dir": "tx", "data": b"-----BEGIN EC PRIVATE KEY" b"-----\nMHc...\n"}])
    with pytest.raises(ReportLeakError, match=r"transcript\[0\]\.data"):
        b.seal()
    assert list(tmp_path.iterdir()) == []
    b2 = builder(tmp_path)
    b2.add_step("pki", T0, T0, "ok", {"-----BEGIN PRIVATE KEY" "-----": 1})  # keys are checked too
    with pytest.raises(ReportLeakError):
        b2.seal()
    b3 = builder(tmp_path)
    b3.add_measurement(Measurement("key", "x", "begin rsa private key", "equal", "fail"))
    with pytest.raises(ReportLeakError):
        b3.seal()
    assert list(tmp_path.iterdir()) == []


def _batch(tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    full(out, attempt_id=1, measured=60).seal()
    err = builder(out, attempt_id=2, attempt=2, retry_of=1)
    err.set_unit(mac="24:0a:c4:00:00:01", serial="SN-000001")
    err.seal("ERROR", error="link lost")
    other = full(out, attempt_id=3)
    other.set_unit(mac="24:0a:c4:00:00:02", serial="SN-000002")
    other.seal()
    (out / "notes.json").write_text('{"something": "else"}')  # other JSON is ignored
    return out


def test_list_filters(tmp_path: Path) -> None:
    out = _batch(tmp_path)
    assert [e.report.attempt_id for e in list_reports(out)] == [1, 2, 3]
    assert [e.report.attempt_id for e in list_reports(out, outcome="fail")] == [1]
    assert [e.report.attempt_id for e in list_reports(out, serial="SN-000001")] == [1, 2]
    assert [e.report.attempt_id for e in list_reports(out, mac="240AC4000002")] == [3]
    with pytest.raises(InputError):
        list_reports(tmp_path / "missing")
    (out / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json"):
        list_reports(out)


def test_read_rejects_other_documents(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"schema": "other/1"}')
    with pytest.raises(InputError, match="schema"):
        read_report(p)
    with pytest.raises(InputError):
        read_report(tmp_path / "none.json")


def test_junit_and_csv(tmp_path: Path) -> None:
    entries = list_reports(_batch(tmp_path))
    root = ET.fromstring(junit_xml(entries))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert cases[0].find("failure").get("message").startswith("rf_power: expected 78")
    assert cases[1].find("error").get("type") == "ERROR" and cases[1].get("name") == "SN-000001 attempt 2"
    assert cases[2].find("failure") is None and cases[2].find("error") is None
    rows = list(csv.DictReader(io.StringIO(summary_csv(entries))))
    assert [r["outcome"] for r in rows] == ["FAIL", "ERROR", "PASS"]
    assert rows[0]["failed_checks"] == "rf_power" and rows[1]["retry_of"] == "1"
    assert rows[1]["error"] == "link lost" and rows[2]["serial"] == "SN-000002"
    written = write_batch_outputs(entries, junit=tmp_path / "o" / "junit.xml", csv_path=tmp_path / "o" / "s.csv")
    assert [p.name for p in written] == ["junit.xml", "s.csv"]


def test_evaluate_rules() -> None:
    assert evaluate("b", [115200, 2], 115273, "tolerance_pct").passed
    assert not evaluate("b", [115200, 2], 120000, "tolerance_pct").passed
    assert evaluate("r", (40, 84), 78, "range").expected == [40, 84]
    assert not evaluate("r", [40, 84], None, "range").passed
    assert evaluate("m", ["24:0a:c4", "ec:da"], "ec:da:3b:00:00:01", "prefix").passed
    assert evaluate("p", None, "x", "present").passed
    with pytest.raises(ValueError):
        evaluate("x", 1, 1, "nonsense")
    with pytest.raises(ValueError):
        Measurement("x", 1, 1, "equal", "PASS")


def test_cli_report_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atfab.cli import main

    out = _batch(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["report", "list", str(out), "--outcome", "fail"])
    assert res.exit_code == 0 and "SN-000001" in res.output and "failed: rf_power" in res.output
    res = runner.invoke(main, ["report", "list", str(out), "--json"])
    assert res.exit_code == 0 and [r["outcome"] for r in json.loads(res.output)] == ["FAIL", "ERROR", "PASS"]
    first = list_reports(out)[0].path
    res = runner.invoke(main, ["report", "show", str(first)])
    assert res.exit_code == 0 and res.output.startswith("FAIL  SN-000001") and "rf_power" in res.output
    assert json.loads(runner.invoke(main, ["report", "show", str(first), "--json"]).output)["outcome"] == "FAIL"
    res = runner.invoke(main, ["report", "export", str(out), "--format", "csv", "--serial", "SN-000002"])
    assert res.exit_code == 0 and len(res.output.splitlines()) == 2
    target = tmp_path / "junit.xml"
    res = runner.invoke(main, ["report", "export", str(out), "--format", "junit", "-o", str(target)])
    assert res.exit_code == 0 and ET.parse(target).getroot().find("testsuite").get("tests") == "3"
    res = runner.invoke(main, ["report", "show", str(tmp_path / "none.json")])
    assert res.exit_code == 2


def test_prose_about_a_key_does_not_cost_a_report(tmp_path):
    """Only key armor is refused: an error message that mentions a private key still gets its report."""
    b = builder(tmp_path)
    b.add_step("certificate", T0, T0, "error", {"error": "private key does not match the certificate"})
    path = b.seal("ERROR", error="client.0: private key does not match the certificate")
    assert read_report(path).outcome == "ERROR"
