"""The live station page's server over plain HTTP: the snapshot on connect, what a cross-site request
cannot do (token, Host, Origin), bad --ui addresses; and its state from events."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.core.measurement import Measurement
from atfab.station.events import STATION, Event
from atfab.station.live.server import TOKEN_HEADER, LivePage, parse_ui_url
from atfab.station.live.state import LiveState
from atfab.station.station import Station, parse_port
from tests.station_support import PASSPHRASE, load, load_ca, write_recipe


@pytest.fixture
def page(module_pool, tmp_path: Path):
    m = module_pool(1)[0]
    station = Station(load(tmp_path), [parse_port(f"bay0={m.flash_url},{m.at_url}")], ca=load_ca(tmp_path))
    state = LiveState(station_id="s", recipe="r", ports=["bay0"])
    station.bus.subscribe(state)
    p = LivePage(station, state, "http://127.0.0.1:0").start()
    try:
        yield p
    finally:
        p.close(linger=0)


def request(page: LivePage, method: str, path: str, body: dict | None = None, **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", page.port if page.port else int(page.url.rsplit(":", 1)[1][:-1]),
                                      timeout=10)
    headers.setdefault("Host", page.url.split("/")[2])
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read(), resp


def test_actions_need_the_run_token_this_host_and_origin(page: LivePage) -> None:
    station = page.station
    assert request(page, "POST", "/api/pause", {"slot": "bay0"})[0] == 403                     # no token
    assert request(page, "POST", "/api/pause", {"slot": "bay0"}, **{TOKEN_HEADER: "guess"})[0] == 403
    assert request(page, "POST", "/api/stop", {}, **{TOKEN_HEADER: page.token, "Origin": "http://evil.example"})[0] == 403
    assert request(page, "GET", "/state", Host="rebound.example:80")[0] == 421                 # DNS rebinding
    assert request(page, "POST", "/api/stop", {}, **{TOKEN_HEADER: page.token, "Host": "evil.example"})[0] == 421
    assert station.paused == frozenset() and not station.stop_token.finishing               # nothing happened
    status, body, _ = request(page, "POST", "/api/pause", {"slot": "nope"}, **{TOKEN_HEADER: page.token})
    assert status == 400 and b"no slot 'nope'" in body
    assert request(page, "POST", "/api/pause", {"slot": "bay0"}, **{TOKEN_HEADER: page.token,
                                                                    "Origin": page.url.rstrip("/")})[0] == 200
    assert station.paused == {"bay0"}
    assert request(page, "POST", "/api/stop", {}, **{TOKEN_HEADER: page.token})[0] == 200
    assert station.stop_token.finishing and not station.stop_token.aborted


def test_page_and_stream(page: LivePage) -> None:
    status, html, resp = request(page, "GET", "/")
    assert status == 200 and page.token.encode() in html
    csp = resp.getheader("Content-Security-Policy")
    assert "frame-ancestors 'none'" in csp and "script-src 'nonce-" in csp and resp.getheader("X-Frame-Options") == "DENY"
    conn = http.client.HTTPConnection("127.0.0.1", int(page.url.rsplit(":", 1)[1][:-1]), timeout=10)
    conn.request("GET", "/events", headers={"Host": page.url.split("/")[2]})
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "text/event-stream"
    assert resp.readline() == b"retry: 1000\n" and resp.readline() == b"\n"
    assert resp.readline() == b"event: state\n"                  # the whole state at once on connect
    snap = json.loads(resp.readline().removeprefix(b"data: "))
    assert snap["token"] == page.token and [s["label"] for s in snap["slots"]] == ["bay0"]
    page.station.pause("bay0")                                    # a change is pushed
    resp.readline()
    assert resp.readline() == b"event: state\n"
    assert json.loads(resp.readline().removeprefix(b"data: "))["slots"][0]["paused"] is True
    conn.close()


def test_state_from_events() -> None:
    st = LiveState(station_id="s", recipe="r", ports=["a", "b"], clock=lambda: 100.0)
    bad = Measurement("rf_power.wifi", 78, 60, "equal", "fail")
    for ev in [Event("a", None, "unit", "start", time=10.0), Event("a", None, "chip", "ok", data={"mac": "24:0a:c4:00:00:01"}),
               Event("a", "S-1", "identity", "ok", data={"serial": "S-1"}), Event("a", "S-1", "flash", "progress", progress=0.5)]:
        st(ev)
    s = st.snapshot()["slots"][0]
    assert (s["serial"], s["mac"], s["step"], s["progress"], s["busy"]) == ("S-1", "24:0a:c4:00:00:01", "flash", 0.5, True)
    # the unit's bar: connect, chip, identity done (3 of 9 steps) and flash half written -> 5.5 / 9
    assert s["unit_progress"] == round(5.5 / 9, 3)
    st(Event("a", "S-1", "verify", "fail", data={"measurements": [bad, Measurement("x", 1, 1, "equal", "pass")]}))
    st(Event("a", "S-1", "unit", "FAIL", detail="failed: rf_power.wifi", time=14.0))
    st(Event("a", "S-1", "report", "FAIL", data={"report": "/r.json"}, time=14.1))
    st(Event(STATION, None, "run", "finishing", detail="stopping after the units in flight"))
    snap = st.snapshot()
    s = snap["slots"][0]
    assert s["last"] == "FAIL" and s["last_seconds"] == 4.0 and not s["busy"]
    assert s["unit_progress"] == 1.0
    assert s["failed_checks"] == [{"name": "rf_power.wifi", "expected": "78", "measured": "60", "rule": "equal"}]
    assert snap["counts"]["FAIL"] == 1 and snap["run"] == "finishing" and snap["failures"][0]["slot"] == "a"
    assert snap["units_per_hour"] == round(3600 / 90, 1)
    st(Event("b", None, "unit", "start", time=20.0))
    st(Event("b", "S-2", "unit", "PASS", time=21.0))
    st(Event("b", "S-2", "report", "ERROR", detail="report not written: disk full", time=21.1))  # sealing failed
    b = st.snapshot()["slots"][1]
    assert b["last"] == "ERROR" and st.snapshot()["counts"] == {"PASS": 0, "FAIL": 1, "ERROR": 1, "ABORTED": 0}


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "https://127.0.0.1:8080", "http://127.0.0.1:99999",
                                 "http://127.0.0.1:8080/x", "http://:8080"])
def test_bad_ui_address(url: str) -> None:
    with pytest.raises(InputError, match="--ui"):
        parse_ui_url(url)


def test_cli_refuses_a_bad_ui_address_before_touching_a_unit(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", str(write_recipe(tmp_path)), "--sim", "1", "--ui", "ftp://x"],
                             env={"ATFAB_CA_PASSPHRASE": PASSPHRASE})
    assert res.exit_code == 2 and "--ui" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "ledger.sqlite").exists()
