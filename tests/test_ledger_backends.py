"""The ledger on both backends (SQLite file, PostgreSQL schema): same schema and migrations,
serial allocation under concurrency, attempt ownership and leases, reconnecting after the
server drops its connections, and the ``atfab ledger migrate`` / ``close-stale`` commands."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from atfab.station.ledger import SCHEMA_VERSION, LeaseKeeper, Ledger, LedgerError
from atfab.station.ledger_db import redact_url
from atfab.station.recorder import close_stale
from atfab.station.serials import SerialScheme
from tests.ledger_backends import ledger_location, pg_schema, terminate_backends

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class FakeRecipe:
    name: str
    serial: SerialScheme


COUNTER = FakeRecipe("line", SerialScheme("counter", prefix="LN-", width=6, start=1))


def mac(i: int, hi: int = 0) -> str:
    return f"24:0a:c4:{hi:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


@pytest.fixture(params=BACKENDS)
def where(request, tmp_path: Path):
    with ledger_location(request.param, tmp_path) as loc:
        yield loc


def test_same_schema_and_basic_identity(where: str) -> None:
    with Ledger(where) as led:
        assert led.dialect in ("sqlite", "postgresql")
        a = led.reserve_identity(mac(1), COUNTER)
        b = led.reserve_identity(mac(2), COUNTER)
        assert (a.serial, b.serial, a.new) == ("LN-000001", "LN-000002", True)
        assert led.reserve_identity(mac(1), COUNTER).new is False
        att = led.begin_attempt(recipe="line", station="st1", port="p0", mac=mac(1), owner="st1/x:1:a")
        assert att.owner == "st1/x:1:a" and att.lease_until is not None and att.attempt == 1
        rec = led.record_certificate(mac(1), ["client.0", "mqtt.0"], issuer="CA", cert_serial=0x10,
                                     fingerprint="aa", attempt_id=att.id)
        assert [c.slot for c in led.certificates_for(mac(1))] == ["client.0", "mqtt.0"] and rec.id
        with pytest.raises(LedgerError, match="already recorded"):
            led.record_certificate(mac(2), "client.0", issuer="CA", cert_serial=0x10, fingerprint="aa")
        done = led.end_attempt(att.id, "PASS", report_path="/r/a.json")
        assert done.outcome == "PASS" and done.lease_until is None
        assert led.unit(mac(1)).last_outcome == "PASS"
        rot = led.journal_rotation(mac(1), "client.0", new_cert_fp="bb")
        assert led.update_rotation(rot.id, "key_written").state == "key_written"
        assert "LN-000001" in led.export_units_csv()
    assert Ledger.migrate(where) == (SCHEMA_VERSION, SCHEMA_VERSION)     # nothing left to do


def test_leases_live_attempts_are_not_stale_dead_ones_are(where: str) -> None:
    with Ledger(where) as led:
        live = led.begin_attempt(recipe="line", station="a", port="p0", owner="a/h:1:x", lease_s=600)
        dead = led.begin_attempt(recipe="line", station="b", port="p0", owner="b/h:1:y", lease_s=-1)
        assert led.is_live(live.id) and not led.is_live(dead.id)
        assert [s.id for s in led.stale_attempts()] == [dead.id]
        assert led.renew_leases("b/h:1:y", 600) == 1                   # its owner came back in time
        assert led.stale_attempts() == []


def test_close_stale_writes_the_report_and_spares_live_attempts(where: str, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    with Ledger(where) as led:
        led.reserve_identity(mac(5), COUNTER)
        live = led.begin_attempt(recipe="line", station="a", port="p0", mac=mac(5), owner="a/h:1:x", lease_s=600,
                                 report_dir=reports)
        dead = led.begin_attempt(recipe="line", station="b", port="p1", owner="b/h:1:y", lease_s=-1,
                                 report_dir=reports)
    cli = run_cli(["ledger", "--ledger", where, "close-stale", "--json"], tmp_path)
    assert cli.returncode == 0, cli.stderr
    (closed,) = json.loads(cli.stdout)
    assert closed["id"] == dead.id and closed["outcome"] == "ABORTED"
    report = json.loads(Path(closed["report_path"]).read_text())
    assert report["outcome"] == "ABORTED" and report["attempt_id"] == dead.id and report["station"]["id"] == "b"
    with Ledger(where) as led:
        assert led.attempt(live.id).open
        assert close_stale(led, reports_dir=None, detected_by="test") == []


def test_lease_keeper_renews(where: str) -> None:
    with Ledger(where) as led:
        att = led.begin_attempt(recipe="line", station="a", port="p0", owner="a/h:1:k", lease_s=0.6)
        with LeaseKeeper(led, "a/h:1:k", lease_s=0.6) as keeper:
            for _ in range(100):
                if keeper.renewals >= 3:
                    break
                threading.Event().wait(0.1)
            assert keeper.renewals >= 3 and led.is_live(att.id)


def test_threads_allocate_without_duplicates(where: str) -> None:
    with Ledger(where) as led:
        led.reserve_identity(mac(0, 0xEE), COUNTER)      # schema made once

    def station(worker: int) -> list[tuple[str, str]]:
        got = []
        with Ledger(where, timeout=120) as own:          # one connection per "station"
            for i in range(40):
                got.append((mac(i, worker + 1), own.reserve_identity(mac(i, worker + 1), COUNTER).serial))
                got.append((mac(i, 0xFF), own.reserve_identity(mac(i, 0xFF), COUNTER).serial))   # shared units race
        return got

    with ThreadPoolExecutor(8) as pool:
        results = [p for part in pool.map(station, range(8)) for p in part]
    check_unique(results, expected_units=8 * 40 + 40 + 1, where=where)


def _process_station(where: str, worker: int, start, out) -> None:
    start.wait(30)
    got = []
    with Ledger(where, timeout=120) as led:
        for i in range(30):
            got.append((mac(i, worker + 1), led.reserve_identity(mac(i, worker + 1), COUNTER).serial))
            got.append((mac(i, 0xFF), led.reserve_identity(mac(i, 0xFF), COUNTER).serial))
    out.put(got)


def test_processes_allocate_without_duplicates(where: str) -> None:
    Ledger(where).close()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_process_station, args=(where, w, start, out)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = []
    try:
        for _ in procs:
            results.extend(out.get(timeout=120))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    check_unique(results, expected_units=4 * 30 + 30, where=where)


def check_unique(results: list[tuple[str, str]], *, expected_units: int, where: str) -> None:
    by_mac: dict[str, set[str]] = {}
    for m, s in results:
        by_mac.setdefault(m, set()).add(s)
    assert all(len(s) == 1 for s in by_mac.values())           # a MAC always got one identity
    serials = [next(iter(s)) for s in by_mac.values()]
    assert len(serials) == len(set(serials))                    # no serial twice
    with Ledger(where) as led:
        units = led.units()
    assert len(units) == expected_units
    assert sorted(u.serial for u in units) == [f"LN-{i:06d}" for i in range(1, expected_units + 1)]  # no gaps


def test_postgresql_connection_lost_mid_run_is_reconnected() -> None:
    with pg_schema() as url, Ledger(url, timeout=30) as led:
        a = led.reserve_identity(mac(1), COUNTER)
        assert terminate_backends() >= 1                        # the server dropped us (a restart)
        b = led.reserve_identity(mac(2), COUNTER)              # the transaction ran again on a new connection
        assert (a.serial, b.serial) == ("LN-000001", "LN-000002")
        att = led.begin_attempt(recipe="line", station="a", port="p0", mac=mac(2))
        terminate_backends()
        assert led.end_attempt(att.id, "PASS").outcome == "PASS"


def test_postgresql_older_schema_needs_migrate(tmp_path: Path) -> None:
    import psycopg
    from tests.services import require_postgres

    with pg_schema() as url:
        schema = url.split("search_path%3D", 1)[1]
        with psycopg.connect(require_postgres(), autocommit=True) as conn:     # a version-2 ledger
            from atfab.station.ledger_db import POSTGRESQL
            from atfab.station.ledger_schema import MIGRATIONS

            conn.execute(f'SET search_path TO "{schema}"')
            for version in (1, 2):
                for step in MIGRATIONS[version]:
                    conn.execute(POSTGRESQL.ddl(step if isinstance(step, str) else step["postgresql"]))
            conn.execute("INSERT INTO meta VALUES ('schema', '2')")
            conn.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES"
                         " ('24:0a:c4:00:00:01', 'LN-000001', 'line', 'x', 'x')")
        with pytest.raises(LedgerError, match="migrate"):
            Ledger(url)
        cli = run_cli(["ledger", "--ledger", url, "migrate"], tmp_path)
        assert cli.returncode == 0 and "schema 2 -> 3" in cli.stdout, cli.stderr
        with Ledger(url) as led:
            assert led.unit("LN-000001") is not None
            assert led.begin_attempt(recipe="line", station="a", port="p", owner="o").owner == "o"


def test_sqlite_file_is_migrated_by_the_command(tmp_path: Path) -> None:
    cli = run_cli(["ledger", "--ledger", str(tmp_path / "new.sqlite"), "migrate", "--json"], tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {"ledger": str(tmp_path / "new.sqlite"), "from": 0, "to": SCHEMA_VERSION}


def test_bad_ledger_url_is_one_line_exit_2(tmp_path: Path) -> None:
    cli = run_cli(["ledger", "--ledger", "mysql://db/x", "list"], tmp_path)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr


def test_redacted_url() -> None:
    assert redact_url("postgresql://ann:secret@db:5432/line") == "postgresql://ann:***@db:5432/line"
    assert redact_url("postgresql://db/line") == "postgresql://db/line"


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atfab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ})


def test_batch_reservation_and_binding(where: str) -> None:
    with Ledger(where) as led:
        placeholders = ["0f:00:00:00:00:01", "0f:00:00:00:00:02", "0f:00:00:00:00:03"]
        ids = led.reserve_batch(placeholders, COUNTER)
        assert [i.serial for i in ids] == ["LN-000001", "LN-000002", "LN-000003"]
        led.record_batch_certificates([
            {"mac": p, "slots": ["client.0", "mqtt.0"], "issuer": "CA", "cert_serial": 0x100 + n,
             "fingerprint": f"{n:064x}"} for n, p in enumerate(placeholders)])
        with pytest.raises(LedgerError, match="already recorded"):
            led.record_batch_certificates([{"mac": placeholders[0], "slots": ["client.0"], "issuer": "CA",
                                            "cert_serial": 0x100, "fingerprint": "ff"}])
        bound = led.bind_unit(placeholders[0], mac(9))
        assert bound.serial == "LN-000001" and led.unit(mac(9)).serial == "LN-000001"
        assert [c.slot for c in led.certificates_for(mac(9))] == ["client.0", "mqtt.0"]
        assert led.unit(placeholders[0]) is None
        with pytest.raises(LedgerError, match="already has serial"):
            led.bind_unit(placeholders[1], mac(9))
        assert led.release_batch(placeholders[1:]) == 2
        assert led.reserve_identity(mac(10), COUNTER).serial == "LN-000004"     # released serials are not reused


def test_batch_reservation_races_station_allocation(where: str) -> None:
    """Two batches reserve blocks while four stations allocate serials one by one, all at once:
    no serial twice, no gap, each batch one consecutive block, a serial taken by hand skipped."""
    with Ledger(where) as led:
        led._write(lambda c: c.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES"
                                       " ('24:0a:c4:ee:ee:ee', 'LN-000003', 'by-hand', 'x', 'x')"))
    go = threading.Barrier(6, timeout=30)

    def batch(k: int) -> list[tuple[str, str]]:
        with Ledger(where, timeout=120) as own:
            go.wait()
            ids = own.reserve_batch([f"0f:00:{k:02x}:00:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(400)], COUNTER)
        numbers = [int(i.serial[3:]) for i in ids]
        assert numbers == sorted(numbers) and set(range(numbers[0], numbers[-1] + 1)) - set(numbers) <= {3}
        return [(i.mac, i.serial) for i in ids]

    def station(w: int) -> list[tuple[str, str]]:
        with Ledger(where, timeout=120) as own:
            go.wait()
            return [(mac(i, w + 1), own.reserve_identity(mac(i, w + 1), COUNTER).serial) for i in range(40)]

    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(batch, k) for k in range(2)] + [pool.submit(station, w) for w in range(4)]
        results = [p for j in jobs for p in j.result(timeout=120)]
    results.append(("24:0a:c4:ee:ee:ee", "LN-000003"))
    check_unique(results, expected_units=2 * 400 + 4 * 40 + 1, where=where)


def test_recipe_ledger_url(tmp_path: Path) -> None:
    from atfab.core.errors import InputError
    from atfab.station.recipe import check_recipe, load_recipe
    from tests.station_support import write_recipe

    path = write_recipe(tmp_path)
    text = path.read_text()
    url = "postgresql://ledger-host/atfab?options=-csearch_path%3Dline1"
    path.write_text(text.replace('[ledger]\npath = "ledger.sqlite"', f'[ledger]\nurl = "{url}"'))
    assert load_recipe(path, workdir=tmp_path).ledger == url
    path.write_text(text.replace('[ledger]\npath = "ledger.sqlite"', '[ledger]\nurl = "mysql://x/y"'))
    (problem,) = check_recipe(path, workdir=tmp_path)
    assert problem.field == "ledger.url" and "postgresql://" in str(problem)
    path.write_text(text.replace('[ledger]\npath = "ledger.sqlite"', f'[ledger]\npath = "l.sqlite"\nurl = "{url}"'))
    with pytest.raises(InputError, match="not both"):
        load_recipe(path, workdir=tmp_path)
