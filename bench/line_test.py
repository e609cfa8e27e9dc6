"""A production line rehearsal: several station processes on one PostgreSQL ledger, each with its
own fixture of virtual modules whose units are swapped and pulled mid-attempt, one station
``kill -9``ed and restarted, the database restarted mid-run; then the line's books are checked.

    python bench/line_test.py [--stations 3] [--ports 8] [--seconds 120] [--pg private|URL]
                              [--mqtt 127.0.0.1:1883 | --mqtt none]

``--pg private`` (default) runs a PostgreSQL server of its own (initdb in a temporary folder, as
the ``postgres`` user, on a free port) so restarting it disturbs nobody; ``--pg URL`` uses a
given server and ``--pg-restart CMD`` restarts it (e.g. ``"pg_ctlcluster 15 main restart"``);
without a restart command the stations' connections are cut instead (``pg_terminate_backend``,
what a restart does to a client).

Each station is ``atfab run RECIPE --port sN=FLASH,AT ... --loop --stop-after S`` with its own
``--station-id``, all writing their reports to one shared folder. Each fixture (a process of
its own: ``line_test.py fixture``) puts a :class:`atfab.sim.slot.UnitSlot` in front of every
port; an "operator" per slot swaps in a fresh unit (a new MAC), pulls the unit for a moment,
or re-seats a unit it pulled before, at random moments — often mid-flash.

Every station also publishes its sealed reports to the MES, an MQTT topic of its own on the
broker ``--mqtt`` (default 127.0.0.1:1883; ``none``: no MES), through its spool; a subscriber
collects what arrives.

Checked at the end (printed; all but the first row must be 0):
units / attempts / swaps / pulls; duplicate serials; duplicate certificate serials or
fingerprints; attempts left open; attempts without an owner; attempts without a report file;
reports whose outcome differs from the ledger; sealed reports whose MES message never arrived
(by message id ``<station>:<attempt>``; a repeat is allowed: at least once); per station run:
attempts missing from its summary, final ERRORs the summary does not count, exit status not 3
although an ERROR is final.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
PASSPHRASE = "line test passphrase"


# ------------------------------------------------------------------------------------- fixture


def fixture_main(argv: list[str]) -> None:
    """``line_test.py fixture``: slots with swapping units until SIGTERM; ports to --ready, counts to --stats."""
    from atfab.sim.module import VirtualModule
    from atfab.sim.slot import UnitSlot
    from atfab.station.recipe import load_recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", type=Path, required=True)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--seed", default="0")
    ap.add_argument("--ready", type=Path, required=True)
    ap.add_argument("--stats", type=Path, required=True)
    ap.add_argument("--swap-s", default="3,9", help="seconds between an operator's actions (min,max)")
    ap.add_argument("--baud", type=int, default=230400, help="UART pacing of the modules (0: unpaced)")
    args = ap.parse_args(argv)
    profile = load_recipe(args.recipe, workdir=args.recipe.parent).profile
    lo, hi = (float(x) for x in args.swap_s.split(","))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stats = {"modules": 0, "swaps": 0, "pulls": 0, "reseats": 0}
    lock = threading.Lock()
    made: list[VirtualModule] = []

    def new_module(slot: int, n: int) -> VirtualModule:
        m = VirtualModule(chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware,
                          baud=args.baud or None,
                          seed=f"line:{args.seed}:{slot}:{n}", name=f"f{args.seed}-s{slot}-{n}").start()
        with lock:
            stats["modules"] += 1
            made.append(m)
        return m

    slots = [UnitSlot(new_module(i, 0), name=f"s{i}").start() for i in range(args.slots)]

    def operator(i: int) -> None:
        rng = random.Random(f"{args.seed}:{i}")
        slot, n, pulled = slots[i], 0, None
        while not stop.wait(rng.uniform(lo, hi)):
            if rng.random() < 0.6:          # act mid-attempt: once the station is on the flash port
                deadline = time.monotonic() + hi
                while not slot.connected("flash") and time.monotonic() < deadline and not stop.wait(0.02):
                    pass
                if stop.wait(rng.uniform(0.0, 1.0)):
                    return
            action = rng.random()
            if action < 0.3:                                    # pull, wait, seat the next unit
                pulled = slot.module
                slot.pull()
                with lock:
                    stats["pulls"] += 1
                if stop.wait(rng.uniform(0.3, 1.5)):
                    return
            if pulled is not None and rng.random() < 0.2:      # the pulled unit comes back (a retry)
                slot.insert(pulled)
                with lock:
                    stats["reseats"] += 1
                pulled = None
                continue
            n += 1
            old = slot.module
            slot.insert(new_module(i, n))
            with lock:
                stats["swaps"] += 1
            pulled = old if old is not None else pulled

    threads = [threading.Thread(target=operator, args=(i,), daemon=True) for i in range(args.slots)]
    for t in threads:
        t.start()
    ports = [f"s{i}={s.flash_url},{s.at_url}" for i, s in enumerate(slots)]
    tmp = args.ready.with_suffix(".tmp")
    tmp.write_text(json.dumps(ports))
    tmp.rename(args.ready)
    stop.wait()
    with lock:
        args.stats.write_text(json.dumps(stats))
    os._exit(0)        # the modules' threads are daemons; the ports close with the process


# ---------------------------------------------------------------------------------- PostgreSQL


@dataclass
class Postgres:
    """Where the ledger lives and how to restart its server."""

    url: str
    restart: Callable[[list[int]], str]          # given the station pids; says what it did
    close: Callable[[], None] = lambda: None


def _pg_url(host: str, port: int, db: str, schema: str | None = None) -> str:
    url = f"postgresql://{host}:{port}/{db}"
    return url + (f"?options={quote('-csearch_path=' + schema)}" if schema else "")


@contextmanager
def private_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of this run's own (trust auth), stopped and removed afterwards."""
    bindir = Path("/usr/lib/postgresql")
    versions = sorted(bindir.glob("*/bin/initdb"))
    if not versions:
        raise SystemExit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin); use --pg URL")
    bin_ = versions[-1].parent
    root = Path(tempfile.mkdtemp(prefix="atfab-line-pg-"))
    os.chmod(root, 0o777)
    data = root / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = [*as_pg, str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60"]
    opts = ["-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"]
    subprocess.run([*as_pg, str(bin_ / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*pg_ctl, *opts, "start"], check=True, capture_output=True)

    def restart(_pids: list[int]) -> str:
        t0 = time.monotonic()
        subprocess.run([*pg_ctl, *opts, "-m", "fast", "restart"], check=True, capture_output=True)
        return f"private server restarted (pg_ctl restart -m fast, {time.monotonic() - t0:.1f} s)"

    try:
        yield Postgres(_pg_url("127.0.0.1", port, "postgres").replace("://", "://postgres@", 1), restart)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def shared_postgres(conninfo: str, restart_cmd: str | None = None) -> Iterator[Postgres]:
    """A schema of its own in an existing server; a restart command, else connections cut."""
    import psycopg

    parts = dict(p.split("=", 1) for p in conninfo.split())
    schema = f"atfab_line_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def restart(pids: list[int]) -> str:
        if restart_cmd:
            subprocess.run(restart_cmd, shell=True, check=True, capture_output=True)
            return f"server restarted ({restart_cmd})"
        names = [f"atfab-{pid}" for pid in pids]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE application_name = ANY(%s)", (names,)).fetchall()
        return f"{len(rows)} station connection(s) cut by the server (pg_terminate_backend)"

    def close() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    try:
        yield Postgres(_pg_url(parts.get("host", "127.0.0.1"), int(parts.get("port", 5432)),
                               parts.get("dbname", "test"), schema), restart)
    finally:
        close()


# ------------------------------------------------------------------------------------ the MES


class MesTopic:
    """A subscriber to one fresh topic of the broker at ``host:port``: the line's MES."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.url = f"mqtt://{host}:{port}/atfab/line/{secrets.token_hex(6)}"
        self.ids: list[str] = []
        self._cond = threading.Condition()
        ready = threading.Event()
        topic = self.url.split("/", 3)[3]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"line-mes-{secrets.token_hex(4)}")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._message
        self.client.connect(host, port)
        self.client.loop_start()
        if not ready.wait(30):
            raise RuntimeError(f"no SUBACK from the MQTT broker {host}:{port}")

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.ids.append(str(json.loads(msg.payload).get("id")))
            self._cond.notify_all()

    def wait_for(self, wanted: set[str], timeout: float) -> set[str]:
        """Wait until every id in ``wanted`` arrived (or ``timeout`` s); the ids still missing."""
        with self._cond:
            self._cond.wait_for(lambda: wanted <= set(self.ids), timeout)
            return wanted - set(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------ the line


@dataclass
class StationRun:
    station_id: str
    proc: subprocess.Popen
    stdout: Path
    killed: bool = False
    exit_code: int | None = None
    summary: dict[str, Any] | None = None


@dataclass
class LineResult:
    figures: dict[str, int]
    problems: dict[str, int]
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def lines(self) -> list[str]:
        out = [f"  {e}" for e in self.events]
        out += [f"{k:44} {v}" for k, v in self.figures.items()]
        out += [f"{k:44} {v}" for k, v in self.problems.items()]
        return out


class Line:
    """``stations`` station processes × ``ports`` slots on the ledger at ``pg.url`` in ``work``."""

    def __init__(self, work: Path, pg: Postgres, *, stations: int = 3, ports: int = 8, seconds: float = 120,
                 kill_at: float | None = 0.35, pg_restart_at: float | None = 0.55, swap_s: str = "3,9",
                 seed: str = "0", baud: int = 230400, mqtt: tuple[str, int] | None = None) -> None:
        self.work, self.pg = work, pg
        self.stations, self.ports, self.seconds = stations, ports, seconds
        self.kill_at, self.pg_restart_at, self.swap_s, self.seed = kill_at, pg_restart_at, swap_s, seed
        self.baud = baud
        self.mqtt = mqtt
        self.mes: MesTopic | None = None
        self.reports = work / "reports"                  # one folder shared by all stations
        self.events: list[str] = []
        self.t0 = 0.0

    def _log(self, text: str) -> None:
        self.events.append(f"t={time.monotonic() - self.t0:6.1f}s {text}")

    def _recipe(self) -> Path:
        from atfab.pki.ca import create_ca

        ca = self.work / "ca"
        if not (ca / "ca.crt").exists():
            create_ca(ca, common_name="Line Test CA", organization="atfab line test", passphrase=PASSPHRASE.encode())
        text = RECIPE.read_text(encoding="utf-8")
        text = text.replace('ca = "../certs/demo-ca"', f'ca = "{ca}"').replace("demo_ca = true", "demo_ca = false")
        path = self.work / "recipe.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def _env(self) -> dict[str, str]:
        return {**os.environ, "ATFAB_CA_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}

    def _fixture(self, recipe: Path, k: int) -> tuple[subprocess.Popen, Path, Path]:
        ready, stats = self.work / f"fixture{k}.ready", self.work / f"fixture{k}.stats"
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "fixture", "--recipe", str(recipe),
                                 "--slots", str(self.ports), "--seed", f"{self.seed}-{k}", "--ready", str(ready),
                                 "--stats", str(stats), "--swap-s", self.swap_s, "--baud", str(self.baud)],
                                env=self._env(), stdout=subprocess.DEVNULL,
                                stderr=open(self.work / f"fixture{k}.err", "w"))
        return proc, ready, stats

    def _ready(self, k: int, proc: subprocess.Popen, ready: Path) -> list[str]:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fixture {k} did not start: {(self.work / f'fixture{k}.err').read_text()[-2000:]}")
            time.sleep(0.1)
        return json.loads(ready.read_text())

    def _station(self, recipe: Path, station_id: str, ports: list[str], seconds: float, n: int) -> StationRun:
        out = self.work / f"{station_id}.{n}.json"
        args = [sys.executable, "-m", "atfab.cli", "run", str(recipe), "--loop", "--station-id", station_id,
                "--ledger", self.pg.url, "--reports", str(self.reports), "--workdir", str(self.work),
                "--json", "--stop-after", f"{seconds:.1f}", "--poll", "0.3"]
        if self.mes is not None:
            args += ["--publish", self.mes.url]
        for p in ports:
            args += ["--port", p]
        proc = subprocess.Popen(args, env=self._env(), cwd=self.work, stdout=open(out, "w"),
                                stderr=open(self.work / f"{station_id}.{n}.err", "w"))
        return StationRun(station_id, proc, out)

    def _wait_open_attempt(self, station_id: str, timeout: float = 20.0) -> list[int]:
        """Wait (up to ``timeout``) until ``station_id`` has an attempt in flight; their ids."""
        from atfab.station.ledger import Ledger

        deadline = time.monotonic() + timeout
        with Ledger(self.pg.url) as led:
            while True:
                ids = [a.id for a in led.attempts(open_only=True, station=station_id)]
                if ids or time.monotonic() > deadline:
                    return ids
                time.sleep(0.05)

    def run(self) -> LineResult:
        self.mes = MesTopic(*self.mqtt) if self.mqtt is not None else None
        try:
            return self._run()
        finally:
            if self.mes is not None:
                self.mes.close()

    def _run(self) -> LineResult:
        from atfab.station.ledger import Ledger

        self.work.mkdir(parents=True, exist_ok=True)
        recipe = self._recipe()
        Ledger.migrate(self.pg.url)
        started = [self._fixture(recipe, k) for k in range(self.stations)]
        fixtures = [(proc, self._ready(k, proc, ready), stats) for k, (proc, ready, stats) in enumerate(started)]
        self.t0 = time.monotonic()
        runs = [self._station(recipe, f"st{k}", fixtures[k][1], self.seconds, 0) for k in range(self.stations)]
        self._log(f"{self.stations} stations x {self.ports} ports started")
        live = list(runs)
        plan = []
        if self.kill_at is not None:
            plan.append((self.kill_at * self.seconds, "kill"))
        if self.pg_restart_at is not None:
            plan.append((self.pg_restart_at * self.seconds, "pg"))
        for at, what in sorted(plan):
            time.sleep(max(0.0, at - (time.monotonic() - self.t0)))
            if what == "kill":
                victim = live[min(1, len(live) - 1)]
                in_flight = self._wait_open_attempt(victim.station_id)
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait(30)
                victim.killed = True
                self._log(f"{victim.station_id} kill -9 (pid {victim.proc.pid}) with attempt(s) {in_flight} in flight")
                time.sleep(1.0)
                rest = max(5.0, self.seconds - (time.monotonic() - self.t0))
                k = int(victim.station_id[2:])
                again = self._station(recipe, victim.station_id, fixtures[k][1], rest, 1)
                runs.append(again)
                live[live.index(victim)] = again
                self._log(f"{victim.station_id} restarted (pid {again.proc.pid})")
            else:
                self._log("PostgreSQL: " + self.pg.restart([r.proc.pid for r in live]))
        for r in runs:
            if not r.killed:
                try:
                    r.exit_code = r.proc.wait(self.seconds + 300)
                except subprocess.TimeoutExpired:
                    r.proc.kill()
                    r.exit_code = r.proc.wait(30)
                text = r.stdout.read_text()
                r.summary = json.loads(text) if text.strip() else None
        self._log("stations ended: exit " + ", ".join(f"{r.station_id}={r.exit_code}" for r in runs if not r.killed))
        stats = []
        for proc, _ports, _path in fixtures:
            proc.send_signal(signal.SIGTERM)
        for proc, _ports, path in fixtures:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            stats.append(json.loads(path.read_text()) if path.exists() else {})
        return self.check(runs, stats)

    def check(self, runs: list[StationRun], fixture_stats: list[dict]) -> LineResult:
        from atfab.station.ledger import Ledger
        from atfab.station.report import read_report

        with Ledger(self.pg.url) as led:
            units = led.units()
            attempts = led.attempts()
            certs = [c for u in units for c in led.certificates_for(u.mac)]
        serials = [u.serial for u in units]
        by_id = {a.id: a for a in attempts}
        cert_keys = {(c.issuer, c.cert_serial) for c in certs}
        cert_ids = {c.id for c in certs}
        fingerprints = {c.id: c.fingerprint for c in certs}
        no_report = mismatch = 0
        for a in attempts:
            if a.open:
                continue
            if not a.report_path or not Path(a.report_path).is_file():
                no_report += 1
                continue
            if read_report(Path(a.report_path)).outcome != a.outcome:
                mismatch += 1
        sealed_ids = {f"{a.station}:{a.id}" for a in attempts if a.report_path and Path(a.report_path).is_file()}
        unpublished = len(self.mes.wait_for(sealed_ids, 30.0)) if self.mes is not None else 0
        retried = {a.retry_of for a in attempts if a.retry_of is not None}
        missing_in_summary = errors_hidden = bad_exit = no_summary = 0
        for r in runs:
            if r.killed:
                continue
            if r.summary is None:
                no_summary += 1
                continue
            mine = {a.id for a in attempts if a.owner == r.summary["owner"]}
            listed = {d["attempt_id"] for d in r.summary["attempts_detail"] if d["attempt_id"] is not None}
            missing_in_summary += len(mine - listed)
            final_errors = sum(1 for i in mine if by_id[i].outcome == "ERROR" and i not in retried)
            errors_hidden += max(0, final_errors - r.summary["counts"]["ERROR"])
            if r.summary["counts"]["ERROR"] and not r.summary["counts"]["ABORTED"] and r.exit_code != 3:
                bad_exit += 1
        killed_owner_attempts = [a for a in attempts if any(r.killed for r in runs)
                                 and a.station == next((r.station_id for r in runs if r.killed), "")
                                 and a.outcome == "ABORTED" and a.detail and "killed" in a.detail]
        figures = {
            "units in the ledger": len(units),
            "attempts": len(attempts),
            "attempts PASS / FAIL / ERROR / ABORTED": 0,
            "certificates": len(cert_ids),
            "unit swaps / pulls / re-seats (all fixtures)": 0,
            "attempts of the killed station closed ABORTED": len(killed_owner_attempts),
        }
        if self.mes is not None:
            figures["MES messages received / distinct ids"] = f"{len(self.mes.ids)} / {len(set(self.mes.ids))}"  # type: ignore[assignment]
        outcomes = [sum(1 for a in attempts if a.outcome == o) for o in ("PASS", "FAIL", "ERROR", "ABORTED")]
        figures["attempts PASS / FAIL / ERROR / ABORTED"] = " / ".join(map(str, outcomes))  # type: ignore[assignment]
        figures["unit swaps / pulls / re-seats (all fixtures)"] = " / ".join(  # type: ignore[assignment]
            str(sum(s.get(k, 0) for s in fixture_stats)) for k in ("swaps", "pulls", "reseats"))
        for r in runs:
            if r.summary is not None:
                c = r.summary["counts"]
                figures[f"{r.station_id} summary units PASS/FAIL/ERROR/ABORTED, exit"] = (  # type: ignore[assignment]
                    f"{c['PASS']}/{c['FAIL']}/{c['ERROR']}/{c['ABORTED']}, exit {r.exit_code}")
        problems = {
            "duplicate serials": len(serials) - len(set(serials)),
            "duplicate certificate serials (issuer, serial)": len(cert_ids) - len(cert_keys),
            "duplicate certificate fingerprints": len(cert_ids) - len(set(fingerprints.values())),
            "attempts left open": sum(1 for a in attempts if a.open),
            "attempts without an owner": sum(1 for a in attempts if not a.owner),
            "attempts without a report file": no_report,
            "reports whose outcome differs from the ledger": mismatch,
            "sealed reports the MES never got": unpublished,
            "station runs without a summary": no_summary,
            "attempts missing from their station's summary": missing_in_summary,
            "final ERRORs not counted in the summary": errors_hidden,
            "exit status hiding an ERROR": bad_exit,
            "batch files shared between stations": int((self.reports / "junit.xml").exists()),
        }
        return LineResult(figures, problems, self.events)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "fixture":
        fixture_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=3)
    ap.add_argument("--ports", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--swap-s", default="3,9")
    ap.add_argument("--baud", type=int, default=230400, help="UART pacing of the virtual modules (0: unpaced)")
    ap.add_argument("--pg", default="private", help="'private' or a libpq conninfo of an existing server")
    ap.add_argument("--pg-restart", default=None, help="shell command restarting the --pg server")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    ap.add_argument("--mqtt", default="127.0.0.1:1883", help="host:port of the MES broker, or 'none'")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    work = args.keep or Path(tempfile.mkdtemp(prefix="atfab-line-"))
    pg_cm = private_postgres() if args.pg == "private" else shared_postgres(args.pg, args.pg_restart)
    t0 = time.monotonic()
    with pg_cm as pg:
        print(f"PostgreSQL ready after {time.monotonic() - t0:.1f} s", flush=True)
        result = Line(work, pg, stations=args.stations, ports=args.ports, seconds=args.seconds,
                      swap_s=args.swap_s, baud=args.baud,
                      mqtt=None if args.mqtt == "none" else (args.mqtt.rsplit(":", 1)[0], int(args.mqtt.rsplit(":", 1)[1]))
                      ).run()
    print(f"line test: {args.stations} stations x {args.ports} ports, {args.seconds:.0f} s, "
          f"PostgreSQL {args.pg}; wall {time.monotonic() - t0:.0f} s; work folder {work}")
    for line in result.lines():
        print(line)
    print("RESULT:", "OK (every problem count is 0)" if result.ok else "PROBLEMS")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
