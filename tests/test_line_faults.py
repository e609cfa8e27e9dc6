"""A production line's faults on one station: a unit swapped mid-attempt (the retry must not be
charged to the next unit), the ledger locked for long while a unit finishes, half-written
reports a killed station left, stations sharing a report folder."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from atfab.sim.slot import UnitSlot
from atfab.station.events import Event, EventBus
from atfab.station.ledger import Ledger
from atfab.station.station import Station, parse_port
from tests.conftest import run_with_timeout
from tests.station_support import check_report, load, load_ca

T = 90


class SwapDuringFlash:
    """Swaps the slot's unit for ``replacement`` once the first unit's flash is under way."""

    def __init__(self, slot: UnitSlot, replacement) -> None:
        self.slot, self.replacement, self.done = slot, replacement, False

    def __call__(self, ev: Event) -> None:
        if not self.done and ev.step == "flash" and ev.status == "progress" and (ev.progress or 0) > 0.2:
            self.done = True
            self.slot.insert(self.replacement)


def test_a_retry_after_a_swap_is_a_new_unit_and_the_error_stays_in_the_summary(module_pool, tmp_path: Path) -> None:
    a, b = module_pool(2)
    bus = EventBus()
    with UnitSlot(a, name="s0") as slot:
        bus.subscribe(SwapDuringFlash(slot, b))
        recipe = load(tmp_path)
        st = Station(recipe, [parse_port(f"s0={slot.flash_url},{slot.at_url}")], ca=load_ca(tmp_path),
                     station_id="t", bus=bus)
        summary = run_with_timeout(st.run, T)
    first, second = summary.results
    assert first.mac == a.mac.hex(":") and first.outcome == "ERROR"
    assert second.mac == b.mac.hex(":") and second.outcome == "PASS"
    assert second.retry_of is None                       # the next unit is not "retry of" the pulled one
    assert [r.outcome for r in summary.finals] == ["ERROR", "PASS"]     # the ERROR does not disappear
    assert summary.counts["ERROR"] == 1 and summary.exit_code == 3
    assert check_report(second.report)["retry_of"] is None
    with Ledger(recipe.ledger) as led:
        assert led.unit(a.mac.hex(":")).last_outcome == "ERROR"
        assert led.attempt(second.attempt_id).retry_of is None


def test_a_long_ledger_lock_does_not_leave_a_pass_open(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    recipe = load(tmp_path)
    bus = EventBus()
    held = threading.Event()

    def hold_lock(ev: Event) -> None:        # another process takes the file's write lock during verify
        if ev.step == "verify" and ev.status == "start" and not held.is_set():
            held.set()
            conn = sqlite3.connect(recipe.ledger, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")

            def release() -> None:
                time.sleep(4.0)              # longer than the station's ledger timeout below
                conn.execute("COMMIT")
                conn.close()

            threading.Thread(target=release, daemon=True).start()

    bus.subscribe(hold_lock)
    st = Station(recipe, [parse_port(f"m0={pool[0].flash_url},{pool[0].at_url}")], ca=load_ca(tmp_path),
                 station_id="t", bus=bus, ledger_timeout=1.0)
    summary = run_with_timeout(st.run, T)
    assert held.is_set()
    (result,) = summary.results
    assert result.outcome == "PASS" and check_report(result.report)["outcome"] == "PASS"
    with Ledger(recipe.ledger) as led:
        row = led.attempt(result.attempt_id)
    assert row.outcome == "PASS" and not row.open and row.report_path == str(result.report)


def test_orphan_temp_reports_are_removed_and_stations_do_not_share_batch_files(module_pool, tmp_path: Path) -> None:
    pool = module_pool(2)
    recipe = load(tmp_path)
    recipe.report.dir.mkdir(parents=True, exist_ok=True)
    orphan = recipe.report.dir / ".20260101T000000Z_C2D-000009_a9.json.k2j3.tmp"   # what kill -9 mid-write leaves
    orphan.write_text("{")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = recipe.report.dir / ".20260101T000000Z_C2D-000010_a10.json.x1y2.tmp"   # another station writing now
    fresh.write_text("{")
    summaries = []
    for i, sid in enumerate(("st-a", "st-b")):
        m = pool[i]
        st = Station(recipe, [parse_port(f"m{i}={m.flash_url},{m.at_url}")], ca=load_ca(tmp_path), station_id=sid)
        summaries.append(run_with_timeout(st.run, T))
    assert not orphan.exists() and fresh.exists()
    out = recipe.report.dir
    for sid in ("st-a", "st-b"):
        junit = (out / f"junit-{sid}.xml").read_text()
        assert junit.count("<testcase") == 1
        assert len((out / f"summary-{sid}.csv").read_text().splitlines()) == 2
    assert not (out / "junit.xml").exists()
