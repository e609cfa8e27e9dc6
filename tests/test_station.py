"""The parallel station, `atfab run` and `atfab demo` on virtual modules (unpaced unless said)."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from atfab.cli import main
from atfab.station.console import StatusRenderer
from atfab.station.events import Event, EventBus
from atfab.station.ledger import Ledger
from atfab.station.station import Station, parse_port, run_sim
from tests.conftest import run_with_timeout
from tests.secret_scan import assert_no_private_keys
from tests.station_support import PASSPHRASE, check_report, load, load_ca, write_recipe

T = 60


def cli(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATFAB_CA_PASSPHRASE": PASSPHRASE}
    return subprocess.run([sys.executable, "-m", "atfab.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_four_ports_in_parallel_then_a_rerun_reuses_identities(tmp_path: Path) -> None:
    recipe = load(tmp_path)
    first = run_with_timeout(run_sim, T, recipe, 4, ca=load_ca(tmp_path), station_id="s1")
    assert first.counts["PASS"] == 4 and len(first.results) == 4 and first.exit_code == 0
    docs = [check_report(r.report) for r in first.finals]
    assert len({d["unit"]["serial"] for d in docs}) == 4
    assert len({d["unit"]["mac"] for d in docs}) == 4
    assert len({d["certificates"][0]["fingerprint_sha256"] for d in docs}) == 4
    assert {d["station"]["port"] for d in docs} == {"sim0", "sim1", "sim2", "sim3"}
    out = recipe.report.dir
    assert (out / "junit-s1.xml").read_text().count("<testcase") == 4
    assert len((out / "summary-s1.csv").read_text().splitlines()) == 5
    again = run_with_timeout(run_sim, T, recipe, 4, ca=load_ca(tmp_path), station_id="s1")   # same seeds: same units
    assert {r.mac: r.serial for r in again.finals} == {r.mac: r.serial for r in first.finals}
    with Ledger(recipe.ledger) as led:
        assert len(led.units()) == 4 and len(led.attempts()) == 8
    assert_no_private_keys(tmp_path)


def test_two_station_processes_share_one_ledger(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "atfab.cli", "run", str(recipe), "--sim", "3", "--sim-seed", seed,
                               "--sim-baud", "0", "--ledger", str(tmp_path / "shared.sqlite"), "--reports",
                               str(tmp_path / f"reports-{seed}"), "--station-id", f"st-{seed}", "--json"],
                              cwd=tmp_path, env={**os.environ, "ATFAB_CA_PASSPHRASE": PASSPHRASE},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in ("a", "b")]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    serials = []
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr
        summary = json.loads(stdout)
        assert summary["counts"]["PASS"] == 3
        serials += [u["serial"] for u in summary["units_detail"]]
    assert len(serials) == 6 and len(set(serials)) == 6
    with Ledger(tmp_path / "shared.sqlite") as led:
        assert sorted(u.serial for u in led.units()) == sorted(serials)


def _lines(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _run_until_flashing(tmp_path: Path, m, station_id: str, *, json_out: bool) -> tuple[subprocess.Popen, list[str]]:
    """Start ``atfab run`` on module ``m`` in a child process; return it 0.2 s after it logged the
    flash step's start (or after 60 s), with the status lines seen so far. With ``json_out`` the
    status goes to stderr and stdout is left unread for the summary; without, both share stdout."""
    recipe = write_recipe(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "atfab.cli", "run", str(recipe), "--port",
                             f"u0={m.flash_url},{m.at_url}", "--baud", "115200", "--station-id", station_id,
                             *(["--json"] if json_out else [])],
                            cwd=tmp_path, env={**os.environ, "ATFAB_CA_PASSPHRASE": PASSPHRASE},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE if json_out else subprocess.STDOUT,
                            text=True)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr if json_out else proc.stdout, q), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "".join(seen)
            seen.append(line)
            if "flash   start" in line:
                break
        time.sleep(0.2)
    except BaseException:
        proc.kill()
        raise
    return proc, seen


def test_killed_mid_flash_then_rerun_leaves_one_pass_marked_as_retry(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1, baud=115200)          # paced: the flash step takes about a second
    m = pool[0]
    proc, _ = _run_until_flashing(tmp_path, m, "killed", json_out=False)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    rec = load(tmp_path)
    with Ledger(rec.ledger) as led:
        (killed,) = led.attempts()
    assert killed.open and killed.mac == m.mac.hex(":")          # the killed run could not close it
    ports = [parse_port(f"u0={m.flash_url},{m.at_url}")]
    summary = run_with_timeout(Station(rec, ports, ca=load_ca(tmp_path), station_id="again").run, T)
    (done,) = summary.results
    assert done.outcome == "PASS" and done.retry_of == killed.id
    with Ledger(rec.ledger) as led:
        closed = led.attempt(killed.id)
    assert closed.outcome == "ABORTED"
    outcomes = sorted(check_report(p)["outcome"] for p in rec.report.dir.glob("*.json"))
    assert outcomes == ["ABORTED", "PASS"]
    assert check_report(done.report)["retry_of"] == killed.id


def test_sigterm_mid_flash_aborts_like_ctrl_c(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1, baud=115200)          # paced: the flash step takes about a second
    m = pool[0]
    proc, seen = _run_until_flashing(tmp_path, m, "termed", json_out=True)
    try:
        proc.send_signal(signal.SIGTERM)
        stdout = proc.stdout.read()
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(seen)
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["counts"]["ABORTED"] == 1
    (unit,) = summary["units_detail"]
    data = check_report(Path(unit["report"]))
    assert data["outcome"] == "ABORTED" and [s["outcome"] for s in data["steps"] if s["name"] == "flash"] == ["aborted"]
    with Ledger(load(tmp_path).ledger) as led:
        (attempt,) = led.attempts()
    assert attempt.outcome == "ABORTED" and attempt.report_path == unit["report"]


def test_loop_waits_for_the_next_unit(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    m = pool[0]
    bus = EventBus()
    st = Station(load(tmp_path), [parse_port(f"u0={m.flash_url},{m.at_url}")], ca=load_ca(tmp_path), bus=bus)
    passes = []

    def on_event(e: Event) -> None:
        if e.step == "unit" and e.status == "PASS":
            passes.append(e.unit)
            if len(passes) == 1:                      # the operator puts a new module into the slot
                mac = bytes.fromhex("240ac4aabbcc")
                m.identity, m.mac = replace(m.identity, mac=mac), mac
                m.flash.erase_all()
            else:
                st.stop(abort=False)

    bus.subscribe(on_event)
    summary = run_with_timeout(st.run, T, loop=True, poll_s=0.1)
    assert [r.outcome for r in summary.finals] == ["PASS", "PASS"] and summary.exit_code == 0
    assert len({r.mac for r in summary.finals}) == 2 and len(set(passes)) == 2


def test_cli_run_sim_json(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    res = cli(["run", str(recipe), "--sim", "2", "--sim-baud", "0", "--json", "--operator", "ann"], tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["counts"] == {"PASS": 2, "FAIL": 0, "ERROR": 0, "ABORTED": 0} and summary["units"] == 2
    assert summary["units_per_minute"] > 0
    for u in summary["units_detail"]:
        assert check_report(Path(u["report"]))["station"]["operator"] == "ann"
    assert "PASS" in res.stderr                   # the status lines went to stderr


def test_cli_run_rejects_missing_ports_and_bad_passphrase(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["run", str(recipe)], env={"ATFAB_CA_PASSPHRASE": PASSPHRASE})
    assert res.exit_code == 2 and "--port" in res.output
    res = runner.invoke(main, ["run", str(recipe), "--sim", "1"], env={"ATFAB_CA_PASSPHRASE": "wrong passphrase!"})
    assert res.exit_code == 2 and "passphrase" in res.output


def test_demo(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    reports = sorted((tmp_path / "demo" / "reports").rglob("*.json"))
    assert len(reports) == 4 and all(check_report(p)["outcome"] == "PASS" for p in reports)
    assert "4 PASS report(s) in" in res.output and str(tmp_path / "demo") in res.output
    assert (tmp_path / "demo" / "ledger.sqlite").is_file()
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "demo" / "ca" / "ca.key").read_bytes()
    assert_no_private_keys(tmp_path)


def test_console_plain_and_tty() -> None:
    events = [Event("p0", None, "unit", "start", time=1.0), Event("p0", "C2D-1", "flash", "start"),
              Event("p0", "C2D-1", "flash", "progress", progress=0.5), Event("p0", "C2D-1", "flash", "ok", detail="wrote"),
              Event("p0", "C2D-1", "unit", "PASS", time=3.5), Event("p0", "C2D-1", "report", "PASS", time=3.6)]
    plain = io.StringIO()
    r = StatusRenderer(plain, ["p0", "p1"], tty=False)
    for e in events:
        r(e)
    text = plain.getvalue()
    assert "flash   50%" in text and "flash       ok  wrote" in text and "PASS    2.5 s" in text
    assert "\x1b[" not in text
    tty = io.StringIO()
    r = StatusRenderer(tty, ["p0", "p1"], tty=True, interval=0)
    for e in events[:3]:
        r(e)
    assert " 50%" in tty.getvalue() and "\x1b[2K" in tty.getvalue() and "━" in tty.getvalue()   # a progress bar
    r(events[-2])
    r(events[-1])
    r.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", tty.getvalue())
    assert "PASS 1  FAIL 0  ERROR 0  ABORTED 0" in screen and "PASS    2.5 s" in screen
    assert "\x1b[1;32mPASS" in tty.getvalue()                   # in colour


def test_console_never_shows_pass_for_a_report_that_was_not_sealed() -> None:
    """Issue 12: the outcome appears when the report is sealed; a sealing failure is an ERROR only."""
    plain = io.StringIO()
    r = StatusRenderer(plain, ["p0"], tty=False)
    for e in (Event("p0", None, "unit", "start", time=1.0), Event("p0", "C2D-1", "unit", "PASS", time=2.0),
              Event("p0", "C2D-1", "report", "ERROR", time=2.1, detail="report not written: disk full")):
        r(e)
    r.close()
    text = plain.getvalue()
    assert "PASS" not in text.replace("PASS 0", "") and "ERROR   1.0 s  report not written: disk full" in text


def test_console_falls_back_to_plain_lines(monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert StatusRenderer(Terminal(), ["p0"]).tty
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    r = StatusRenderer(out, ["p0"])
    r(Event("p0", None, "unit", "start", time=1.0))
    r(Event("p0", "C2D-1", "unit", "FAIL", time=2.0, detail="failed: rf_power"))
    r(Event("p0", "C2D-1", "report", "FAIL", time=2.1, detail="failed: rf_power"))
    r.close()
    assert not r.tty and out.getvalue() == "p0    C2D-1              FAIL    1.0 s  failed: rf_power\n"
    assert not StatusRenderer(io.StringIO(), ["p0"]).tty
