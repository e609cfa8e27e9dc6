"""The unit ledger: identities, concurrency across processes, attempts, certificates, rotations."""

from __future__ import annotations

import multiprocessing
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from atfab.core.errors import InputError
from atfab.station.ledger import SCHEMA_VERSION, Ledger, LedgerError
from atfab.core.mac import normalize_mac
from atfab.station.serials import SerialScheme


@dataclass
class FakeRecipe:
    name: str
    serial: SerialScheme


COUNTER = FakeRecipe("c2-default", SerialScheme("counter", prefix="SN-", width=5, start=1))
BY_MAC = FakeRecipe("by-mac", SerialScheme("mac", prefix="M"))


def mac(i: int, hi: int = 0) -> str:
    return f"24:0a:c4:{hi:02x}:{i >> 8:02x}:{i & 0xFF:02x}"


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "line.sqlite") as led:
        yield led


def test_file_is_wal(tmp_path: Path) -> None:
    Ledger(tmp_path / "a.sqlite").close()
    conn = sqlite3.connect(tmp_path / "a.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_missing_file_refused_without_create(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        Ledger(tmp_path / "none.sqlite", create=False)
    assert "none.sqlite" in str(err.value)
    assert not (tmp_path / "none.sqlite").exists()


def test_counter_serials_and_idempotent_rereserve(ledger: Ledger) -> None:
    a = ledger.reserve_identity(mac(1), COUNTER)
    b = ledger.reserve_identity(mac(2), COUNTER)
    assert (a.serial, a.new, b.serial) == ("SN-00001", True, "SN-00002")
    again = ledger.reserve_identity(mac(1).upper().replace(":", "-"), COUNTER)
    assert again.serial == "SN-00001" and again.new is False and again.mac == mac(1)
    # a re-run under another recipe keeps the unit's identity
    other = ledger.reserve_identity(bytes.fromhex(mac(2).replace(":", "")), BY_MAC)
    assert other.serial == "SN-00002" and not other.new and other.recipe == "c2-default"
    assert ledger.reserve_identity(mac(3), COUNTER).serial == "SN-00003"


def test_counter_start_and_shared_prefix(ledger: Ledger) -> None:
    r1 = FakeRecipe("r1", SerialScheme("counter", prefix="X", width=3, start=100))
    r2 = FakeRecipe("r2", SerialScheme("counter", prefix="X", width=3, start=1))
    assert ledger.reserve_identity(mac(1), r1).serial == "X100"
    assert ledger.reserve_identity(mac(2), r2).serial == "X101"  # same counter, no collision


def test_counter_skips_taken_serials_and_exhausts(ledger: Ledger) -> None:
    small = FakeRecipe("s", SerialScheme("counter", prefix="Z", width=1, start=8))
    assert ledger.reserve_identity(mac(1), small).serial == "Z8"
    assert ledger.reserve_identity(mac(2), small).serial == "Z9"
    with pytest.raises(LedgerError, match="exhausted"):
        ledger.reserve_identity(mac(3), small)
    assert ledger.unit(mac(3)) is None  # nothing half-written


def test_mac_scheme(ledger: Ledger) -> None:
    ident = ledger.reserve_identity("24:0A:C4:00:01:02", BY_MAC)
    assert ident.serial == "M240AC4000102"


def test_unique_constraints(ledger: Ledger) -> None:
    ledger.reserve_identity(mac(1), COUNTER)
    conn = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, 'other', 'r', 'x', 'x')",
                     (mac(1),))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, 'SN-00001', 'r', 'x', 'x')",
                     (mac(9),))
    conn.close()


def test_bad_mac_is_input_error(ledger: Ledger) -> None:
    with pytest.raises(InputError):
        ledger.reserve_identity("24:0a:c4", COUNTER)
    assert normalize_mac(b"\x24\x0a\xc4\x00\x00\x01") == "24:0a:c4:00:00:01"


def _allocate(path: str, worker: int, shared: int, count: int, start, out) -> None:
    start.wait(10)
    led = Ledger(path, timeout=60)
    got = []
    for i in range(count):
        got.append((mac(i, hi=worker + 1), led.reserve_identity(mac(i, hi=worker + 1), COUNTER).serial))
        if i < shared:  # both processes also race for the same units
            got.append((mac(i, hi=0xFF), led.reserve_identity(mac(i, hi=0xFF), COUNTER).serial))
    led.close()
    out.put(got)


def test_two_processes_never_collide(tmp_path: Path) -> None:
    path = str(tmp_path / "line.sqlite")
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    count, shared = 200, 40
    procs = [ctx.Process(target=_allocate, args=(path, w, shared, count, start, out)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=120))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    by_mac: dict[str, set[str]] = {}
    for got in results:
        for m, s in got:
            by_mac.setdefault(m, set()).add(s)
    assert all(len(s) == 1 for s in by_mac.values())  # a MAC always got one identity
    serials = [next(iter(s)) for s in by_mac.values()]
    assert len(serials) == len(set(serials)) == 2 * count + shared
    with Ledger(path) as led:
        units = led.units()
    assert len(units) == 2 * count + shared
    assert sorted(u.serial for u in units) == [f"SN-{i:05d}" for i in range(1, 2 * count + shared + 1)]


def test_attempts_and_retries(ledger: Ledger) -> None:
    first = ledger.begin_attempt(recipe="c2-default", station="st1", port="socket://x:1", operator="ann")
    assert first.attempt == 1 and first.open and first.mac is None
    with pytest.raises(LedgerError):
        ledger.begin_attempt(recipe="c2-default", station="st1", port="p", retry_of=first.id)  # still open
    ident = ledger.reserve_identity(mac(1), COUNTER)
    ledger.set_attempt_unit(first.id, mac(1))
    ended = ledger.end_attempt(first.id, "ERROR", report_path="r/1.json", detail="link lost")
    assert ended.serial == ident.serial and ended.outcome == "ERROR" and not ended.open
    assert ledger.end_attempt(first.id, "ERROR").report_path == "r/1.json"  # idempotent
    with pytest.raises(LedgerError):
        ledger.end_attempt(first.id, "PASS")
    with pytest.raises(LedgerError):
        ledger.end_attempt(first.id, "MAYBE")
    second = ledger.begin_attempt(recipe="c2-default", station="st1", port="p", mac=mac(1), retry_of=first.id)
    assert (second.attempt, second.retry_of, second.serial) == (2, first.id, ident.serial)
    ledger.end_attempt(second.id, "PASS")
    assert [a.outcome for a in ledger.attempts_for(mac(1))] == ["ERROR", "PASS"]
    assert ledger.unit(ident.serial).last_outcome == "PASS"


def test_interrupted_attempts_are_closed(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    led = Ledger(path)
    led.reserve_identity(mac(1), COUNTER)
    a = led.begin_attempt(recipe="r", station="st1", port="p", mac=mac(1))
    led.begin_attempt(recipe="r", station="st2", port="p")
    led.close()  # the station "crashes" here
    with Ledger(path) as again:
        assert len(again.attempts(open_only=True)) == 2
        closed = again.close_interrupted(station="st1")
        assert [c.id for c in closed] == [a.id] and closed[0].outcome == "ABORTED"
        assert len(again.attempts(open_only=True)) == 1
        assert again.unit(mac(1)).last_outcome == "ABORTED"


def test_certificates(ledger: Ledger) -> None:
    with pytest.raises(LedgerError):
        ledger.record_certificate(mac(1), "client.0", issuer="CA1", cert_serial=5, fingerprint="aa")
    ledger.reserve_identity(mac(1), COUNTER)
    ledger.reserve_identity(mac(2), COUNTER)
    rec = ledger.record_certificate(mac(1), "client.0", issuer="CA1", cert_serial=0x5A, fingerprint="AA:BB")
    assert (rec.cert_serial, rec.fingerprint) == ("5a", "aabb")
    same = ledger.record_certificate(mac(1), "client.0", issuer="CA1", cert_serial="5A", fingerprint="aabb")
    assert same.id == rec.id
    with pytest.raises(LedgerError, match="already recorded"):
        ledger.record_certificate(mac(2), "client.0", issuer="CA1", cert_serial=0x5A, fingerprint="cc")
    ledger.record_certificate(mac(2), "client.0", issuer="CA2", cert_serial=0x5A, fingerprint="cc")  # other issuer
    assert [c.issuer for c in ledger.certificates_for(mac(2))] == ["CA2"]
    csv_text = ledger.export_units_csv()
    assert "client.0=aabb" in csv_text and csv_text.startswith("serial,mac,")


def test_rotation_journal(ledger: Ledger) -> None:
    rot = ledger.journal_rotation(mac(1), "client.0", old_cert_fp="old", old_key_fp="oldk",
                                  new_cert_fp="new", new_key_fp="newk")
    assert rot.state == "intent" and rot.pending
    with pytest.raises(LedgerError, match="pending"):
        ledger.journal_rotation(mac(1), "client.0", new_cert_fp="other")
    other_slot = ledger.journal_rotation(mac(1), "server.0", new_cert_fp="x")
    assert [r.id for r in ledger.pending_rotations(mac(1))] == [rot.id, other_slot.id]
    assert ledger.pending_rotations(mac(2)) == []
    ledger.update_rotation(rot.id, "key_written")
    assert ledger.update_rotation(rot.id, "key_written").state == "key_written"  # no-op
    with pytest.raises(LedgerError, match="back"):
        ledger.update_rotation(rot.id, "intent")
    ledger.update_rotation(rot.id, "cert_written")
    ledger.update_rotation(rot.id, "verified")
    done = ledger.update_rotation(rot.id, "done", detail="ok")
    assert not done.pending and done.detail == "ok"
    with pytest.raises(LedgerError):
        ledger.update_rotation(rot.id, "rolled_back")
    ledger.update_rotation(other_slot.id, "rolled_back")
    assert ledger.pending_rotations(mac(1)) == []
    again = ledger.journal_rotation(mac(1), "client.0", new_cert_fp="newer", old_cert_fp="new")
    assert [r.state for r in ledger.rotations_for(mac(1))] == ["done", "rolled_back", "intent"]
    with pytest.raises(LedgerError):
        ledger.update_rotation(again.id, "bogus")


def test_pending_rotation_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        led.update_rotation(led.journal_rotation(mac(1), "client.0", new_cert_fp="n").id, "key_written")
    with Ledger(path, create=False) as led:
        (pending,) = led.pending_rotations(mac(1))
        assert pending.state == "key_written" and pending.new_cert_fp == "n"


def test_cli_ledger_commands(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from atfab.cli import main

    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        ident = led.reserve_identity(mac(1), COUNTER)
        a = led.begin_attempt(recipe="c2-default", station="st1", port="p0", mac=mac(1))
        led.end_attempt(a.id, "PASS", report_path="r.json")
        led.record_certificate(mac(1), "client.0", issuer="CA", cert_serial=7, fingerprint="ab")
        led.journal_rotation(mac(1), "client.0", new_cert_fp="cd")
    runner = CliRunner()
    base = ["ledger", "--ledger", str(path)]
    res = runner.invoke(main, base + ["list"])
    assert res.exit_code == 0 and ident.serial in res.output and "PASS" in res.output
    res = runner.invoke(main, base + ["show", ident.serial])
    assert res.exit_code == 0 and "cert client.0: serial 7" in res.output and "rotation 1 client.0: intent" in res.output
    detail = json.loads(runner.invoke(main, base + ["show", mac(1).upper(), "--json"]).output)
    assert detail["unit"]["serial"] == ident.serial and detail["attempts"][0]["outcome"] == "PASS"
    res = runner.invoke(main, base + ["rotations", "--json"])
    assert [r["state"] for r in json.loads(res.output)] == ["intent"]
    res = runner.invoke(main, base + ["export"])
    assert res.output.splitlines()[1].startswith(ident.serial)
    assert runner.invoke(main, base + ["show", "SN-99999"]).exit_code == 2
    assert runner.invoke(main, ["ledger", "--ledger", str(tmp_path / "none.sqlite"), "list"]).exit_code == 2
    assert not (tmp_path / "none.sqlite").exists()


def test_one_certificate_in_several_slots_of_one_unit(ledger: Ledger) -> None:
    ledger.reserve_identity(mac(1), COUNTER)
    ledger.reserve_identity(mac(2), COUNTER)
    rec = ledger.record_certificate(mac(1), ["client.0", "mqtt.0"], issuer="CA", cert_serial=0x77,
                                    fingerprint="ee", attempt_id=None)
    assert rec.slot == "client.0"
    both = ledger.certificates_for(mac(1))
    assert [(c.id, c.slot, c.cert_serial) for c in both] == [(rec.id, "client.0", "77"), (rec.id, "mqtt.0", "77")]
    assert [c.fingerprint for c in ledger.certificates_for(mac(1), "mqtt.0")] == ["ee"]
    # the same certificate recorded again, for a slot it lacks: added, not a conflict
    assert ledger.record_certificate(mac(1), "server.0", issuer="CA", cert_serial=0x77, fingerprint="ee").id == rec.id
    assert [c.slot for c in ledger.certificates_for(mac(1))] == ["client.0", "mqtt.0", "server.0"]
    # the invariant: a serial never belongs to two units (nor to two certificates of one)
    with pytest.raises(LedgerError, match="already recorded"):
        ledger.record_certificate(mac(2), "client.0", issuer="CA", cert_serial=0x77, fingerprint="ee")
    with pytest.raises(LedgerError, match="already recorded"):
        ledger.record_certificate(mac(1), "client.0", issuer="CA", cert_serial=0x77, fingerprint="ff")
    with pytest.raises(sqlite3.IntegrityError):          # also below the API
        ledger._db._conn.execute("INSERT INTO certificates (mac, slot, issuer, cert_serial, fingerprint, created)"
                             " VALUES (?, 'client.0', 'CA', '77', 'ee', 'now')", (mac(2),))
    assert "client.0=ee;mqtt.0=ee;server.0=ee" in ledger.export_units_csv()
    assert [c.slot for c in ledger.unit_detail(mac(1)).certificates] == ["client.0", "mqtt.0", "server.0"]


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE units (id INTEGER PRIMARY KEY, mac TEXT NOT NULL UNIQUE, serial TEXT NOT NULL UNIQUE,
    recipe TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL, last_outcome TEXT);
CREATE TABLE attempts (id INTEGER PRIMARY KEY, mac TEXT, serial TEXT, attempt INTEGER NOT NULL, recipe TEXT NOT NULL,
    station TEXT NOT NULL, port TEXT NOT NULL, operator TEXT, started TEXT NOT NULL, ended TEXT,
    outcome TEXT CHECK (outcome IS NULL OR outcome IN ('PASS', 'FAIL', 'ERROR', 'ABORTED')), report_path TEXT,
    retry_of INTEGER REFERENCES attempts(id), detail TEXT);
CREATE INDEX attempts_by_mac ON attempts(mac);
CREATE TABLE certificates (id INTEGER PRIMARY KEY, mac TEXT NOT NULL REFERENCES units(mac), slot TEXT NOT NULL,
    issuer TEXT NOT NULL, cert_serial TEXT NOT NULL, fingerprint TEXT NOT NULL, key_fingerprint TEXT,
    not_before TEXT, not_after TEXT, attempt_id INTEGER REFERENCES attempts(id), created TEXT NOT NULL,
    UNIQUE (issuer, cert_serial));
CREATE INDEX certificates_by_mac ON certificates(mac);
CREATE TABLE rotations (id INTEGER PRIMARY KEY, mac TEXT NOT NULL, slot TEXT NOT NULL, old_cert_fp TEXT,
    old_key_fp TEXT, new_cert_fp TEXT NOT NULL, new_key_fp TEXT, state TEXT NOT NULL, created TEXT NOT NULL,
    updated TEXT NOT NULL, detail TEXT);
CREATE UNIQUE INDEX rotations_one_pending ON rotations(mac, slot) WHERE state NOT IN ('done', 'rolled_back');
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO counters VALUES ('prefix:SN-', 2);
INSERT INTO units VALUES (1, '24:0a:c4:00:00:01', 'SN-00001', 'c2-default', 't0', 't1', 'PASS');
INSERT INTO attempts VALUES (1, '24:0a:c4:00:00:01', 'SN-00001', 1, 'c2-default', 'st', 'p0', NULL, 't0', 't1',
    'PASS', 'r.json', NULL, NULL);
INSERT INTO certificates VALUES (1, '24:0a:c4:00:00:01', 'client.0', 'CA', '5a', 'aa', NULL, NULL, NULL, 1, 't0');
"""


def test_a_version_1_ledger_opens_and_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    with Ledger(path, create=False) as led:
        (old,) = led.certificates_for(mac(1))
        assert (old.slot, old.cert_serial, old.attempt_id) == ("client.0", "5a", 1)
        assert led.reserve_identity(mac(1), COUNTER).serial == "SN-00001"
        assert led.reserve_identity(mac(2), COUNTER).serial == "SN-00002"        # the counter carried over
        led.record_certificate(mac(1), ["client.0", "mqtt.0"], issuer="CA", cert_serial=0x5B, fingerprint="bb")
        assert [(c.slot, c.cert_serial) for c in led.certificates_for(mac(1))] == [
            ("client.0", "5a"), ("client.0", "5b"), ("mqtt.0", "5b")]
        with pytest.raises(LedgerError):
            led.record_certificate(mac(2), "client.0", issuer="CA", cert_serial=0x5A, fingerprint="aa")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(SCHEMA_VERSION)
    assert conn.execute("SELECT COUNT(*) FROM certificate_slots").fetchone()[0] == 3
    conn.close()
    with Ledger(path, create=False) as led:       # opening a migrated file again changes nothing
        assert len(led.certificates_for(mac(1))) == 3


def test_a_ledger_of_a_newer_atfab_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="schema 99"):
        Ledger(path)
