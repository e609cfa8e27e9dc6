"""Ledger throughput: identity allocations per second on SQLite and PostgreSQL with 1, 4 and 16
concurrent stations (one process and one connection each, all allocating from one counter),
plus a full per-unit bookkeeping cycle (reserve + begin/end attempt + certificate) per second
and the time to write one unit report.

    python bench/bench_ledger.py [--units 300] [--stations 1,4,16] [--backends sqlite,postgresql]
                                 [--pg "host=127.0.0.1 port=5432 dbname=test"]

PostgreSQL runs in a schema of its own (created and dropped). Every run checks that no serial
was handed out twice.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from atfab.core.measurement import evaluate
from atfab.station.ledger import Ledger
from atfab.station.report import ReportBuilder
from atfab.station.serials import SerialScheme


@dataclass
class _Recipe:
    name: str
    serial: SerialScheme


RECIPE = _Recipe("bench", SerialScheme("counter", prefix="B-", width=8))


def _mac(worker: int, i: int) -> str:
    return f"02:{worker:02x}:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def _station(location: str, worker: int, n: int, start, done) -> None:
    with Ledger(location, timeout=300) as led:
        led.units(limit=1)                       # connected before the clock starts
        start.wait(120)
        for i in range(n):
            led.reserve_identity(_mac(worker, i), RECIPE)
    done.put(worker)


def allocations_per_second(location: str, stations: int, units: int) -> float:
    ctx = multiprocessing.get_context("fork")
    start, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_station, args=(location, w, units, start, done)) for w in range(stations)]
    for p in procs:
        p.start()
    time.sleep(0.5 + 0.05 * stations)            # let every station connect
    t0 = time.perf_counter()
    start.set()
    for _ in procs:
        done.get(timeout=600)
    dt = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    return stations * units / dt


def _check(location: str, expected: int) -> None:
    with Ledger(location) as led:
        serials = [u.serial for u in led.units()]
    assert len(serials) == len(set(serials)) == expected, (len(serials), len(set(serials)), expected)


def _bookkeeping(location: str, units: int) -> float:
    with Ledger(location) as led:
        t0 = time.perf_counter()
        for i in range(units):
            mac = _mac(0xEE, i)
            ident = led.reserve_identity(mac, RECIPE)
            a = led.begin_attempt(recipe="bench", station="s", port="p", mac=mac)
            led.record_certificate(mac, "client.0", issuer="CN=bench", cert_serial=i + 1, fingerprint=f"{i:064x}",
                                   attempt_id=a.id)
            led.end_attempt(a.id, "PASS", report_path=f"{ident.serial}.json")
        return units / (time.perf_counter() - t0)


def _pg_schema(conninfo: str):
    import psycopg

    name = f"atfab_bench_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    parts = dict(p.split("=", 1) for p in conninfo.split())
    url = (f"postgresql://{parts.get('host', '127.0.0.1')}:{parts.get('port', '5432')}/{parts.get('dbname', 'test')}"
           f"?options={quote('-csearch_path=' + name)}")

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    return url, drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=300, help="identities each station allocates")
    ap.add_argument("--stations", default="1,4,16", help="concurrent station counts")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg", default="host=127.0.0.1 port=5432 dbname=test", help="libpq conninfo")
    args = ap.parse_args()
    counts = [int(x) for x in args.stations.split(",")]
    print(f"identity allocations per second ({args.units} per station, one counter, one process per station)")
    print(f"{'backend':12} " + " ".join(f"{n:>3} station(s)" for n in counts) + "   bookkeeping cycle/s")
    for backend in args.backends.split(","):
        figures = []
        cycle = 0.0
        for n in counts:
            with tempfile.TemporaryDirectory() as tmp:
                if backend == "sqlite":
                    location, drop = str(Path(tmp) / "ledger.sqlite"), (lambda: None)
                else:
                    location, drop = _pg_schema(args.pg)
                try:
                    Ledger(location).close()
                    figures.append(allocations_per_second(location, n, args.units))
                    _check(location, n * args.units)
                    if n == counts[0]:
                        cycle = _bookkeeping(location, min(args.units, 300))
                finally:
                    drop()
        print(f"{backend:12} " + " ".join(f"{f:14.0f}" for f in figures) + f"   {cycle:10.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reports"
        t0 = time.perf_counter()
        for i in range(200):
            b = ReportBuilder(out, recipe_name="bench", recipe_hash="sha256:0", station_id="s", port="p",
                              attempt_id=i, tools={"atfab": "x"})
            b.set_unit(chip="esp32c2", mac=_mac(0xEF, i), serial=f"B-{i:08d}")
            for n in range(12):
                b.add_measurement(evaluate(f"check{n}", n, n))
            b.set_transcript([{"direction": "tx", "text": "AT+GMR"}] * 100)
            b.seal()
        dtr = time.perf_counter() - t0
    print(f"unit report (12 measurements, 100 transcript lines), atomic write: {dtr / 200 * 1000:.2f} ms")


if __name__ == "__main__":
    main()
