"""Ledger throughput: identities reserved per second from one or several processes on one file,
plus a full per-unit bookkeeping cycle (reserve + begin/end attempt + certificate) per second,
and the time to write one unit report.

    python bench/bench_ledger.py [--units 500] [--procs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from atfab.station.ledger import Ledger
from atfab.core.measurement import evaluate
from atfab.station.report import ReportBuilder
from atfab.station.serials import SerialScheme


@dataclass
class _Recipe:
    name: str
    serial: SerialScheme


RECIPE = _Recipe("bench", SerialScheme("counter", prefix="B-", width=8))


def _mac(worker: int, i: int) -> str:
    return f"02:{worker:02x}:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def _reserve(path: str, worker: int, n: int) -> None:
    with Ledger(path, timeout=120) as led:
        for i in range(n):
            led.reserve_identity(_mac(worker, i), RECIPE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=500, help="units per process")
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ledger.sqlite")
        Ledger(path).close()
        t0 = time.perf_counter()
        _reserve(path, 0, args.units)
        dt1 = time.perf_counter() - t0
        print(f"reserve_identity, 1 process:  {args.units / dt1:8.0f} units/s")

        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_reserve, args=(path, w + 1, args.units)) for w in range(args.procs)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        dtn = time.perf_counter() - t0
        total = args.units * args.procs
        print(f"reserve_identity, {args.procs} processes: {total / dtn:8.0f} units/s (all on one file)")
        with Ledger(path) as led:
            serials = [u.serial for u in led.units()]
        assert len(serials) == len(set(serials)) == args.units * (args.procs + 1)

        with Ledger(path) as led:
            t0 = time.perf_counter()
            for i in range(args.units):
                mac = _mac(0xEE, i)
                ident = led.reserve_identity(mac, RECIPE)
                a = led.begin_attempt(recipe="bench", station="s", port="p", mac=mac)
                led.record_certificate(mac, "client.0", issuer="CN=bench", cert_serial=i + 1, fingerprint=f"{i:064x}")
                led.end_attempt(a.id, "PASS", report_path=f"{ident.serial}.json")
            dtc = time.perf_counter() - t0
        print(f"full bookkeeping cycle (4 transactions): {args.units / dtc:8.0f} units/s")

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
