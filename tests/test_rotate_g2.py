"""Must-show of issue 16: a G2 fleet (ESP-AT v3.0.0.0, per-item PKI partitions, AT+SYSFLASH) rotated with
faults injected into the rewrites - link drops mid-write, power loss between erase and write, a cut between
the key and certificate partitions, a refused write - then rotated again: every unit ends with a matching
pair the journal knows, the ledger records exactly that pair, nothing is left pending and no private key
reached a file. What the units hold is read from their flash with the test's own §10.2 decoder."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from atfab.cli import main
from tests.conftest import run_with_timeout
from tests.g2_fleet_support import FAULTS, PASSPHRASE, G2Fleet, run_campaign
from tests.secret_scan import assert_no_private_keys, key_markers

#: What the first run leaves (outcome, journal state, what the unit holds) per entry of FAULTS.
FIRST = [
    ("PASS", "done", "new pair"),
    ("ERROR", "rolled_back", "old pair"),                         # nothing of the staged copy landed
    ("ERROR", "done", "cert old + key none (+staged key)"),       # head erased, the staged copy holds the key
    ("ERROR", "done", "cert none + key new"),                     # certificate head erased
    ("ERROR", "rolled_back", "old pair"),
    ("ERROR", "done", "cert old + key none (+staged key)"),
    ("ERROR", "done", "cert old + key new (+staged key)"),
    ("ERROR", "done", "cert old + key new"),
    ("ERROR", "done", "cert none + key new"),
    ("FAIL", "rolled_back", "old pair"),                          # refused write: old pair put back, verified
]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("g2fleet")
    fleet, rows = run_with_timeout(run_campaign, 120, tmp)
    yield fleet, rows
    fleet.close()


def test_g2_fleet_with_faults_ends_with_whole_pairs(campaign):
    fleet, rows = campaign
    assert len(rows) == len(FAULTS) == 10
    for row, (outcome, state, mid) in zip(rows, FIRST):
        where = f"unit {row['unit']} ({row['fault']}): {row['first_line']} / {row['second_line']}"
        # the first run's journal state is what the sim's rewrite reached (a cut after the key: the
        # journal's old/new fingerprints and the unit's read-back decide on the next contact)
        assert (row["first"], row["mid"]) == (outcome, mid), where
        assert row["dry_changed_nothing"], where
        # a unit still reading the payload its link lost in a write cannot be read without ending it
        assert row["dry"] == ("ERROR" if "mid" in row["fault"] else "PASS"), where
        if "staged" in mid and "none" in mid and row["dry"] == "PASS":   # it says the repair, then the completion
            assert "would copy back the staged image" in row["dry_said"][0], where
            assert row["dry_said"][0].endswith("then would write the journalled certificate and mark done"), where
        assert row["second"] == "PASS", where
        assert row["final_matched"] and not row["final_staged"], where     # a whole pair, no stray key copy
        assert row["final"] in ("new pair", "newer pair"), where
        assert row["pending"] == 0 and row["ledger_agrees"], where
        assert set(row["journal_states"]) <= {"done", "rolled_back"}, where
        # the units the first run left without a readable key or certificate, or with a (staged) copy,
        # and those whose cut write the second contact ended (with 0xFF), were repaired on the unit
        assert bool(row["repaired"]) == ("none" in mid or "staged" in mid or "mid" in row["fault"]), where
    assert [r["journal_states"][0] for r in rows] == [s for _o, s, _m in FIRST]


def test_g2_reports_name_the_repair_and_hold_no_key(campaign):
    fleet, rows = campaign
    reports = [json.loads(p.read_text()) for p in sorted((fleet.tmp / "reports" / "rotations").glob("*.json"))]
    assert len(reports) == 20
    resumed = [s for r in reports for s in r["rotations"] if s["action"] == "resume"]
    assert any("copied back the staged image" in n for s in resumed for n in s["repaired"])
    key_bytes, command = [], ""
    for t in (t for r in reports for t in r["transcript"]):
        if t["kind"] == "command":
            command = t["text"]
        elif t["kind"] in ("raw", "payload") and '"client_key"' in command:
            key_bytes.append(t["text"])          # reads and writes of the key partition
    assert key_bytes and all("<redacted " in t for t in key_bytes)
    markers = [m for k in fleet.keys for m in key_markers(k)]
    assert_no_private_keys(fleet.tmp, allow_encrypted=("ca.key",), secrets=markers)


def test_g2_key_partition_without_room_to_stage_is_refused(tmp_path):
    """ESP32-C2 2 MB v3.0.0.0: 4 KB PKI partitions leave no sector to stage the new key in, and rewriting the
    only one in place could leave the unit without a key: the recipe is refused (exit 2, one line) before any
    unit is touched (a unit whose own table differs from the recipe's is checked again before its journal)."""
    fleet = G2Fleet(tmp_path, 1, module="esp32c2-2mb-at-v3.0")
    try:
        (m,) = fleet.pool
        before = m.flash.read(0, m.flash.size)
        r = run_with_timeout(CliRunner().invoke, 60, main, ["rotate", "--recipe", str(tmp_path / "r.toml"),
                                                            "--workdir", str(tmp_path), "--port", m.at_url],
                             env={"ATFAB_CA_PASSPHRASE": PASSPHRASE.decode()})
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert "client_key partition is 4096 bytes" in r.output and "pki.slot client.0" in r.output
        assert m.flash.read(0, m.flash.size) == before
    finally:
        fleet.close()


def test_g2_a_damaged_read_is_link_noise_not_a_fail(tmp_path):
    """One corrupted AT+SYSFLASH read (a flipped byte) before the rotation, in the staged copy's read-back
    and in the final read-back: each is read again and the rotation passes; the transcript says so."""
    fleet = G2Fleet(tmp_path, 3)
    try:
        arm = {fleet.pool[1].at_url: "intent", fleet.pool[2].at_url: "key_written"}
        fleet.pool[0].faults.corrupt_next_read = True

        def progress(port, slot, event):
            if arm.get(port) == event:
                next(m for m in fleet.pool if m.at_url == port).faults.corrupt_next_read = True

        result = run_with_timeout(fleet.rotate, 60, progress=progress)
        assert result.counts == {"PASS": 3, "FAIL": 0, "ERROR": 0}, [m.line() for m in result.modules]
        for res in result.modules:
            notes = [t for t in fleet_transcript(res) if "link noise" in t]
            assert notes, res.line()
    finally:
        fleet.close()


def fleet_transcript(module_result) -> list[str]:
    return [t["text"] for t in json.loads(open(module_result.report_path).read())["transcript"]]
