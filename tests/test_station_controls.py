"""Operator controls of a running station (pause/resume a slot, stop after the units in flight)
and the events that announce them, on virtual modules."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from atfab.core.errors import InputError
from atfab.station.events import STATION, Event, EventBus
from atfab.station.station import Station, parse_port
from tests.conftest import run_with_timeout
from tests.station_support import load, load_ca

T = 90


def test_pause_resume_and_stop_after_the_units_in_flight(module_pool, tmp_path: Path) -> None:
    pool = module_pool(2)
    bus = EventBus()
    ports = [parse_port(f"u{i}={m.flash_url},{m.at_url}") for i, m in enumerate(pool)]
    st = Station(load(tmp_path), ports, ca=load_ca(tmp_path), bus=bus)
    seen: list[Event] = []
    lock = threading.Lock()

    def on_event(e: Event) -> None:
        with lock:
            seen.append(e)
        if e.step == "report" and e.port == "u0":
            assert not any(x.port == "u1" and x.step == "unit" for x in seen), "u1 started while paused"
            st.resume("u1")
        elif e.step == "report" and e.port == "u1":
            st.stop(abort=False)

    bus.subscribe(on_event)
    st.pause("u1")                                 # before the run: the slot holds back its first unit
    assert st.paused == {"u1"}
    summary = run_with_timeout(st.run, T, loop=True, poll_s=0.1)
    assert sorted(r.outcome for r in summary.finals) == ["PASS", "PASS"] and not summary.interrupted
    assert st.paused == frozenset()
    steps = [(e.port, e.step, e.status) for e in seen if e.step in ("pause", "run")]
    assert ("u1", "pause", "ok") in steps and (STATION, "run", "finishing") in steps
    reports = {e.port: e for e in seen if e.step == "report"}
    for r in summary.finals:                        # the report event names the sealed report and the unit
        ev = reports[r.port]
        assert ev.status == r.outcome and ev.data is not None
        assert ev.data["report"] == str(r.report) and ev.data["serial"] == r.serial and ev.data["mac"] == r.mac
    st.stop(abort=False)                            # a second stop-after is not announced again
    assert sum(1 for e in seen if e.step == "run") == 1


def test_pause_names_a_slot(module_pool, tmp_path: Path) -> None:
    m = module_pool(1)[0]
    st = Station(load(tmp_path), [parse_port(f"u0={m.flash_url},{m.at_url}")], ca=load_ca(tmp_path))
    with pytest.raises(InputError, match="no slot 'nope'"):
        st.pause("nope")
