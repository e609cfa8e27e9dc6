"""The per-unit runner on virtual modules (unpaced): steps, outcomes, retries, resume, key handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from atfab.core.errors import InputError
from atfab.station.events import Event, EventBus, SecretInEvent
from atfab.station.ledger import Ledger
from atfab.image.nvs.reader import read_nvs
from atfab.station.runner import STEPS
from atfab.verify.checks import check_of
from atfab.station.station import Station, parse_port
from tests.conftest import run_with_timeout
from tests.secret_scan import assert_no_private_keys, key_markers
from tests.station_support import check_report, load, load_ca, write_recipe
from atfab.station.recipe import load_recipe

T = 60  # seconds any station run in these tests may take before it counts as a hang


def station(pool, tmp: Path, recipe=None, **kw) -> Station:
    recipe = recipe or load(tmp)
    ports = [parse_port(f"m{i}={m.flash_url},{m.at_url}") for i, m in enumerate(pool)]
    return Station(recipe, ports, ca=load_ca(tmp), station_id="t", **kw)


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)

    def steps(self, port: str = "m0") -> list[tuple[str, str]]:
        return [(e.step, e.status) for e in self.events if e.port == port and e.status != "progress"]


def unit_key_pem(module) -> bytes:
    """The private key the station wrote into the module's mfg_nvs (the only place it may be)."""
    from atfab.image.profiles import load_profile

    part = load_profile("esp32c2-4mb").mfg_nvs
    image = read_nvs(module.flash.read(part.offset, part.size))
    (entry,) = image.keys("client_key")
    return entry.value


def test_one_unit_passes_and_the_report_is_built_from_events(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    bus = EventBus()
    seen = bus.subscribe(Collector())
    st = station(pool, tmp_path, bus=bus)
    summary = run_with_timeout(st.run, T)
    assert summary.counts["PASS"] == 1 and not bus.errors
    (result,) = summary.results
    data = check_report(result.report)
    assert data["outcome"] == "PASS" and data["unit"]["mac"] == pool[0].mac.hex(":")
    assert data["unit"]["serial"] == "C2D-000001" and data["unit"]["chip"] == "esp32c2"
    assert [s["name"] for s in data["steps"]] == list(STEPS)
    # the event stream and the report tell the same story
    ends = [(e.step, e.status) for e in seen.events if e.step in STEPS and e.ended]
    assert ends == [(s["name"], s["outcome"]) for s in data["steps"]]
    assert seen.steps()[0] == ("unit", "start") and seen.steps()[-2:] == [("unit", "PASS"), ("report", "PASS")]
    assert any(e.step == "flash" and e.status == "progress" for e in seen.events)
    names = {m["name"] for m in data["measurements"]}
    assert {"at.alive", "gmr.module_name", "sta_mac", "uart_def", "rf_power.wifi", "at_customize.partitions",
            "factory_param.max_tx_power", "country", "gmr.recipe_version"} <= names
    assert any(check_of(n) == "pki" for n in names)
    # certificate: in the report, in the ledger, chained to the test CA
    (cert,) = data["certificates"]
    with Ledger(tmp_path / "ledger.sqlite") as led:
        (rec,) = led.certificates_for(data["unit"]["mac"])
        attempt = led.attempt(result.attempt_id)
    assert (rec.fingerprint, rec.cert_serial, rec.attempt_id) == (cert["fingerprint_sha256"], cert["serial"],
                                                                  result.attempt_id)
    assert attempt.outcome == "PASS" and attempt.report_path == str(result.report)
    # the key is on the unit and nowhere on disk
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(unit_key_pem(pool[0]), None)
    assert_no_private_keys(tmp_path, secrets=key_markers(key))
    assert all("PRIVATE KEY" not in repr(e) for e in seen.events)


def test_failing_check_is_fail_and_not_retried(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    path = write_recipe(tmp_path)                    # the unit's firmware is not the one the recipe wants
    path.write_text(path.read_text().replace("[verify]\n", '[verify]\nat_version = "v9.9.0.0"\n'))
    recipe = load_recipe(path, workdir=tmp_path)
    summary = run_with_timeout(station(pool, tmp_path, recipe=recipe).run, T)
    (result,) = summary.results                      # [retry] on = ["ERROR"]: a FAIL stays a FAIL
    assert result.outcome == "FAIL" and summary.exit_code == 1
    data = check_report(result.report)
    failed = [m["name"] for m in data["measurements"] if m["outcome"] == "fail"]
    assert failed and data["error"] == f"failed: {', '.join(failed)}"
    assert data["steps"][-1] == {**data["steps"][-1], "name": "verify", "outcome": "fail"}


def test_a_corrupted_read_back_is_error_then_retried_not_fail(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    pool[0].faults.corrupt_next_read = True          # one byte flipped on one read-back: link noise
    summary = run_with_timeout(station(pool, tmp_path).run, T)
    first, second = summary.results
    assert (first.outcome, second.outcome) == ("ERROR", "PASS") and second.retry_of == first.attempt_id
    assert "re-read" in first.error and summary.exit_code == 0
    assert [s["outcome"] for s in check_report(first.report)["steps"] if s["name"] == "verify"] == ["error"]


def test_link_drop_mid_flash_is_error_then_retried(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    pool[0].faults.flash.drop_after_rx = 3000         # the chip read sends less; the flash session more
    summary = run_with_timeout(station(pool, tmp_path).run, T)
    first, second = summary.results
    assert first.outcome == "ERROR" and second.outcome == "PASS"
    assert second.retry_of == first.attempt_id and summary.counts == {"PASS": 1, "FAIL": 0, "ERROR": 0, "ABORTED": 0}
    bad, good = check_report(first.report), check_report(second.report)
    assert [s["outcome"] for s in bad["steps"] if s["name"] == "flash"] == ["error"]
    assert good["attempt"] == 2 and good["retry_of"] == first.attempt_id
    assert bad["unit"]["serial"] == good["unit"]["serial"]            # same unit, same serial
    assert bad["certificates"][0]["serial"] != good["certificates"][0]["serial"]   # fresh key per attempt


def test_no_retry_when_the_policy_says_one_attempt(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    pool[0].faults.at.drop_after_tx = 20              # the AT link drops during boot
    summary = run_with_timeout(station(pool, tmp_path, recipe=load(tmp_path, retry="attempts = 1")).run, T)
    (result,) = summary.results
    assert result.outcome == "ERROR" and "link lost" in result.error and summary.exit_code == 3


def test_abort_mid_flash_then_resume(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    bus = EventBus()
    st = station(pool, tmp_path, bus=bus)
    bus.subscribe(lambda e: st.stop() if e.step == "flash" and e.status == "progress" else None)
    summary = run_with_timeout(st.run, T)
    (aborted,) = summary.results
    assert aborted.outcome == "ABORTED" and summary.interrupted and summary.exit_code == 130
    data = check_report(aborted.report)
    assert [s["outcome"] for s in data["steps"] if s["name"] == "flash"] == ["aborted"]
    summary = run_with_timeout(station(pool, tmp_path).run, T)
    (done,) = summary.results
    assert done.outcome == "PASS" and done.retry_of == aborted.attempt_id
    assert check_report(done.report)["unit"]["serial"] == data["unit"]["serial"]


def test_attempt_left_open_by_a_killed_run_is_closed_as_aborted(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    recipe = load(tmp_path)
    mac = pool[0].mac
    with Ledger(recipe.ledger) as led:                # what a SIGKILLed station leaves behind
        serial = led.reserve_identity(mac, recipe).serial
        stale = led.begin_attempt(recipe=recipe.name, station="old", port="m0", mac=mac, lease_s=0)  # lease passed
    summary = run_with_timeout(station(pool, tmp_path, recipe=recipe).run, T)
    (result,) = summary.results
    assert result.outcome == "PASS" and result.retry_of == stale.id and result.serial == serial
    with Ledger(recipe.ledger) as led:
        closed = led.attempt(stale.id)
    assert closed.outcome == "ABORTED" and closed.report_path
    old = check_report(Path(closed.report_path))
    assert old["outcome"] == "ABORTED" and old["attempt_id"] == stale.id and "killed" in old["error"]
    reports = sorted(recipe.report.dir.glob("*.json"))
    assert [check_report(p)["outcome"] for p in reports].count("PASS") == 1


def test_a_live_attempt_of_another_station_is_never_closed(module_pool, tmp_path: Path) -> None:
    pool = module_pool(1)
    recipe = load(tmp_path)
    mac = pool[0].mac
    with Ledger(recipe.ledger) as led:                # another station works on this MAC, lease renewed
        led.reserve_identity(mac, recipe)
        live = led.begin_attempt(recipe=recipe.name, station="other", port="p7", mac=mac, lease_s=600,
                                 owner="other/elsewhere:1:abc")
    summary = run_with_timeout(station(pool, tmp_path, recipe=recipe).run, T)
    assert {r.outcome for r in summary.results} == {"ERROR"} and summary.exit_code == 3
    assert "still running" in summary.results[0].error
    with Ledger(recipe.ledger) as led:
        assert led.attempt(live.id).open                          # untouched
        led.end_attempt(live.id, "PASS")


def test_a_unit_seen_again_keeps_its_serial_and_gets_a_new_certificate(module_pool, tmp_path: Path) -> None:
    pool = module_pool(2)
    first = run_with_timeout(station(pool, tmp_path).run, T)
    again = run_with_timeout(station(pool, tmp_path).run, T)
    key = {r.mac: r.serial for r in first.finals}
    assert {r.mac: r.serial for r in again.finals} == key and len(set(key.values())) == 2
    assert all(r.retry_of is None for r in again.finals)          # re-provisioning a PASS unit is no retry
    flash = [s for r in again.finals for s in check_report(r.report)["steps"] if s["name"] == "flash"]
    assert all("wrote mfg_nvs.bin (" in s["detail"] for s in flash)   # unchanged firmware is skipped by MD5
    with Ledger(tmp_path / "ledger.sqlite") as led:
        for mac in key:
            certs = led.certificates_for(mac)
            assert len(certs) == 2 and certs[0].fingerprint != certs[1].fingerprint


def test_port_specs() -> None:
    assert parse_port("/dev/ttyUSB0,/dev/ttyUSB1") == parse_port("/dev/ttyUSB0, /dev/ttyUSB1")
    spec = parse_port("slot1=serial:5A6B,location:1-1.2")
    assert (spec.label, spec.flash, spec.at) == ("slot1", "serial:5A6B", "location:1-1.2")
    spec = parse_port("socket://127.0.0.1:4000")
    assert (spec.label, spec.at) == ("socket://127.0.0.1:4000", None)
    for bad in ("", "a,b,c", "x=,y", "/dev/a,"):
        with pytest.raises(InputError):
            parse_port(bad)


def test_check_names() -> None:
    assert check_of("client_cert.client_cert.0.sha256") == "pki"
    assert check_of("mfg_nvs.client_key.keys") == "pki"
    assert check_of("mfg_nvs.factory_param.keys") == "factory_param"
    assert check_of("uart_cur.baud") == "uart" and check_of("at.echo_off") == "boot"
    assert check_of("something.else") is None


def test_events_never_carry_private_keys() -> None:
    bus = EventBus()
    got = bus.subscribe(Collector())
    with pytest.raises(SecretInEvent):
        bus.emit(Event("p", None, "build", "ok", data={"x": [b"-----BEGIN PRIVATE KEY" b"-----"]}))
    bus.emit(Event("p", None, "build", "ok", detail="fine"))
    assert [e.detail for e in got.events] == ["fine"]


def test_nothing_on_the_port_is_error_with_a_report_per_attempt(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:                       # a port number nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"socket://127.0.0.1:{s.getsockname()[1]}"
    st = Station(load(tmp_path), [parse_port(f"x={dead},{dead}")], ca=load_ca(tmp_path), station_id="t")
    summary = run_with_timeout(st.run, T)
    first, second = summary.results
    assert (first.outcome, second.outcome) == ("ERROR", "ERROR") and second.retry_of == first.attempt_id
    docs = [check_report(r.report) for r in summary.results]
    assert [d["attempt"] for d in docs] == [1, 2] and docs[1]["retry_of"] == first.attempt_id
    assert docs[0]["unit"] == {"chip": None, "mac": None, "serial": None}
    assert [s["outcome"] for s in docs[0]["steps"]] == ["error"] and "cannot open" in docs[0]["error"]
    assert summary.exit_code == 3


def test_one_identity_in_two_slots_is_recorded_for_both(module_pool, tmp_path: Path) -> None:
    """Like recipes/esp32-wroom-32.toml (client.0 + mqtt.0 share the unit identity), on a C2."""
    from atfab.station.recipe import load_recipe
    from tests.station_support import write_recipe

    path = write_recipe(tmp_path)
    path.write_text(path.read_text() + '\n[[pki.slot]]\nset = "mqtt"\ncert = "unit"\nkey = "unit"\n'
                                       'ca = ["factory_ca"]\n')
    recipe = load_recipe(path, workdir=tmp_path)
    summary = run_with_timeout(station(module_pool(1), tmp_path, recipe=recipe).run, T)
    (result,) = summary.results
    assert result.outcome == "PASS", result.error
    data = check_report(result.report)
    assert [c["slot"] for c in data["certificates"]] == ["client.0", "mqtt.0"]
    assert len({c["serial"] for c in data["certificates"]}) == 1
    with Ledger(recipe.ledger) as led:
        certs = led.certificates_for(result.mac)
    assert [(c.slot, c.cert_serial, c.attempt_id) for c in certs] == [
        ("client.0", data["certificates"][0]["serial"], result.attempt_id),
        ("mqtt.0", data["certificates"][0]["serial"], result.attempt_id)]


def _cut_write(module) -> None:
    """An earlier contact dies inside an AT+SYSMFG write payload: the module keeps reading it."""
    from atfab.core.firmware import firmware_for
    from atfab.link.at.client import AtClient
    from atfab.link.at.errors import LinkLost
    from atfab.link.transport import open_port

    module.faults.drop_in_sysmfg_write = 1
    with AtClient(open_port(module.at_url), firmware=firmware_for("esp32c2"), timeout=2) as at:
        with pytest.raises(LinkLost):
            at.sysmfg_write("client_cert", "client_cert", 8, b"x" * 200)


def test_a_unit_left_reading_a_cut_write(module_pool, tmp_path: Path) -> None:
    """A unit whose last contact was cut mid-write. The boot step's last resort: a module silent until the
    boot timeout gets AtClient.settle (0xFF ends the payload), then it must answer. A station run on such a
    unit: the flash step's reset ends the write (as on the real core), the unit passes."""
    from atfab.core.firmware import firmware_for
    from atfab.link.at.client import AtClient
    from atfab.link.transport import open_port
    from atfab.station.runner import _boot

    pool = module_pool(1)
    assert run_with_timeout(station(pool, tmp_path).run, T).counts["PASS"] == 1
    _cut_write(pool[0])
    with AtClient(open_port(pool[0].at_url), firmware=firmware_for("esp32c2"), timeout=1) as at:
        how = run_with_timeout(_boot, T, at, 0.3, announces=False)
        assert "ending a write payload" in how
        at.at()
    _cut_write(pool[0])
    summary = run_with_timeout(station(pool, tmp_path).run, T)
    assert summary.counts["PASS"] == 1, [r.error for r in summary.results]
