"""The fault campaign (bench/fault_campaign.py): a seeded slice, the harness's own checks, regressions.

The slice runs provisioning and rotation with random faults on unpaced virtual modules and
requires every invariant count to be 0. The harness tests make sure the ground truth and the
report checks would notice a false PASS, a key/cert mismatch, a truncated report and a
duplicate serial (an invariant that cannot fail is no invariant).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atfab.station.ledger import Ledger
from atfab.station.report import SCHEMA
from atfab.station.fleet import ROTATION_SCHEMA
from atfab.core.mac import normalize_mac
from atfab.sim.at_boot import nvs_editor
from bench.campaign_lib import (
    READS, Trigger, check_duplicates, content_problems, ledger_claims_good, read_device, report_problem,
)
from bench.fault_campaign import INVARIANTS, NO_FAULT, Campaign, Fault, Slot, unexpected_exception
from tests.conftest import run_with_timeout


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return Campaign(tmp_path_factory.mktemp("campaign"), seed="7", workers=3, modules_per_worker=1,
                    step_timeout=60.0)


@pytest.fixture
def unit(campaign):
    """A freshly provisioned module (PASS) and an open ledger handle."""
    slot = Slot("t", campaign.new_module(200, 0))
    ledger = Ledger(campaign.ledger_path)
    try:
        res = run_with_timeout(campaign.step, 90, slot, "provision", NO_FAULT, ledger=ledger, station_id="test")
        assert res.outcome == "PASS", [a.error for a in res.attempts]
        yield slot, ledger, res
    finally:
        ledger.close()
        slot.module.stop()


def _view(campaign, slot):
    return read_device(slot.module.flash.snapshot(), campaign.recipe.profile, campaign.fw.regions)


def test_seeded_slice_keeps_every_invariant(tmp_path: Path) -> None:
    camp = Campaign(tmp_path, seed="7", workers=4, modules_per_worker=1, step_timeout=60.0)
    run_with_timeout(camp.run, 170, 30)
    table = camp.table(30)
    assert camp.done == 30, table
    assert {k: camp.tally.c[k] for k in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), table
    assert camp.tally.c["runs:provision"] + camp.tally.c["runs:rotate"] == 30
    assert camp.tally.c["runs:rotate"] > 0 and any(k.startswith("fired:") for k in camp.tally.c), table


def test_ground_truth_matches_a_passing_unit_and_sees_tampering(campaign, unit) -> None:
    slot, ledger, res = unit
    view = _view(campaign, slot)
    reported = json.loads(Path(res.attempts[-1].report).read_text())["certificates"][0]["fingerprint_sha256"]
    assert content_problems(view, campaign.expected, reported) == []
    good, current = ledger_claims_good(ledger, normalize_mac(slot.module.mac))
    assert good and current == reported
    # another factory parameter, another key: both seen, independently of atfab.verify.unit
    part = campaign.recipe.profile.mfg_nvs
    editor = nvs_editor(slot.module.flash, part)
    editor.set("factory_param", "max_tx_power", "i8", 60)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    editor.set("client_key", "client_key", "blob", other)
    problems = content_problems(_view(campaign, slot), campaign.expected, reported)
    assert any("max_tx_power" in p for p in problems) and "key does not match the certificate" in problems


def test_report_and_duplicate_checks_notice_damage(campaign, unit, tmp_path: Path) -> None:
    slot, ledger, res = unit
    attempt = res.attempts[-1]
    assert report_problem(attempt.report, schema=SCHEMA, outcome="PASS", attempt_id=attempt.attempt_id) is None
    text = Path(attempt.report).read_text()
    cut = tmp_path / "reports" / "cut.json"
    cut.parent.mkdir()
    cut.write_text(text[: len(text) // 2])
    assert "unreadable" in report_problem(cut, schema=SCHEMA)
    assert "missing" in report_problem(tmp_path / "nope.json", schema=SCHEMA)
    data = json.loads(text)
    data["unit"]["mac"] = "24:0a:c4:ff:ff:ff"                 # same serial, another MAC
    cut.write_text(json.dumps(data))
    problems = check_duplicates(campaign.ledger_path, [tmp_path / "reports"])
    assert any(data["unit"]["serial"] in p for p in problems)


def test_unexpected_exception_text() -> None:
    assert unexpected_exception("TypeError: 'NoneType' object is not subscriptable")
    assert unexpected_exception("report not written: ValueError: a report with failed measurements cannot PASS")
    assert not unexpected_exception("report not written: refusing to write")
    assert not unexpected_exception("link lost: AT port closed")
    assert not unexpected_exception("LinkLost: AT port closed")       # an atfab error class name
    assert not unexpected_exception(None)


@pytest.mark.parametrize("read", [1, 3])        # the key read before the writes, the key read-back
def test_rotation_with_an_unreadable_key_still_writes_its_report(campaign, unit, read) -> None:
    """Regression: a corrupted key read-back made the rotation report say "readable private key",
    which the report writer refuses (any case): the module ended ERROR without a report. Since the
    one re-read rule (atfab.link.at.reread) one damaged read is read again: the rotation passes."""
    slot, ledger, _ = unit

    def arm(plan, link):
        plan.corrupt_next_read = True

    fault = Fault("corrupt_read", f"raw read {read}", trigger=Trigger(arm, nth=read, match=READS))
    res = run_with_timeout(campaign.step, 90, slot, "rotate", fault, ledger=ledger, station_id="test", mode="new-key")
    mr = res.module_result
    assert res.fired and mr.outcome == "PASS", (mr.outcome, mr.error, [s.message for s in mr.slots])
    assert report_problem(mr.report_path, schema=ROTATION_SCHEMA, outcome="PASS") is None
    good, current = ledger_claims_good(ledger, normalize_mac(slot.module.mac))
    assert good and content_problems(_view(campaign, slot), campaign.expected, current) == []


def test_link_recv_racing_a_close_is_link_closed() -> None:
    """Regression: power_loss() closes the AT link from another thread; when that landed between
    recv's closed-check and ``settimeout`` the OSError (EBADF) escaped, killed the module's AT
    thread and left the module deaf for good (found by the campaign: power_cut)."""
    import socket

    from atfab.sim.link import Link, LinkClosed

    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        link = Link(conn)
        conn.close()                       # the socket is gone, the flag not yet set: the race window
        with pytest.raises(LinkClosed):
            link.recv(16, timeout=0.01)
    finally:
        client.close()
        server.close()


def test_module_answers_after_power_losses_during_an_idle_at_connection(unit) -> None:
    from atfab.link.transport import open_port

    module = unit[0].module
    for _ in range(30):
        port = open_port(module.at_url, 115200)
        module.power_loss()
        port.close()
    port = open_port(module.at_url, 115200)
    port.timeout = 0.2

    def ask() -> bytes:
        seen = b""
        for _ in range(50):
            port.write(b"AT\r\n")
            seen += port.read(64)
            if b"OK" in seen:
                return seen
        return seen
    try:
        assert b"OK" in run_with_timeout(ask, 30)
    finally:
        port.close()


def test_a_bug_the_runner_swallows_counts_as_a_crash(campaign, unit, monkeypatch) -> None:
    from atfab.station.unit_plan import MfgNvsPlan

    slot, ledger, _ = unit

    def broken(self, at):
        raise TypeError("planted bug")

    monkeypatch.setattr(MfgNvsPlan, "configure", broken)
    before = campaign.tally.c["crashes"]
    res = run_with_timeout(campaign.step, 90, slot, "provision", NO_FAULT, ledger=ledger, station_id="test")
    assert res.outcome == "ERROR"
    campaign.check(0, slot, res, ledger, "test")
    assert campaign.tally.c["crashes"] > before
    assert any("planted bug" in ex for ex in campaign.tally.examples["crashes"])


def test_a_planted_false_pass_is_counted(campaign, unit, monkeypatch) -> None:
    """A runner that builds the wrong content and verifies nothing: PASS report, wrong device."""
    import atfab.station.unit_plan
    from atfab.station.unit_plan import MfgNvsPlan

    slot, ledger, _ = unit
    real = atfab.station.unit_plan.build_unit_images

    def wrong(profile, content, **kw):
        content.factory_param["max_tx_power"] = 60
        return real(profile, content, **kw)

    monkeypatch.setattr(atfab.station.unit_plan, "build_unit_images", wrong)
    monkeypatch.setattr(MfgNvsPlan, "verify", lambda self, at, build, **kw: [])
    before = {k: campaign.tally.c[k] for k in ("false_pass", "unknown_mismatch")}
    res = run_with_timeout(campaign.step, 90, slot, "provision", NO_FAULT, ledger=ledger, station_id="test")
    assert res.outcome == "PASS"
    campaign.check(0, slot, res, ledger, "test")
    assert {k: campaign.tally.c[k] - before[k] for k in before} == {"false_pass": 1, "unknown_mismatch": 1}
    assert "max_tx_power" in campaign.tally.examples["false_pass"][-1]
