"""The MES stream: sealed reports published to MQTT (the machine's Mosquitto) and HTTP (a loopback
server), through an on-disk spool that keeps them while the MES is down."""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.station.mes.publisher import SCHEMA, ReportPublisher, spool_root
from atfab.station.mes.spool import Spool
from atfab.station.mes.targets import parse_target, parse_targets
from atfab.station.recipe import load_recipe
from atfab.station.station import run_sim
from tests.conftest import run_with_timeout
from tests.secret_scan import assert_no_private_keys
from tests.services import require_mqtt
from tests.station_support import PASSPHRASE, load, load_ca, write_recipe

T = 120.0
WAIT = 30.0          # every wait on a delivery ends after this many seconds


class TcpGate:
    """A loopback TCP forwarder to a real service that can be switched off (connections refused,
    open ones cut) and on again on the same port: the MES going down and coming back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._open:
                c.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


class Subscriber:
    """Collects every message on one topic of the real broker."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[bytes] = []
        self._cond = threading.Condition()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert ready.wait(WAIT), "the test subscriber did not get its SUBACK"

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(msg.payload)
            self._cond.notify_all()

    def wait_for(self, n: int) -> list[dict]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.messages) >= n, WAIT), f"{len(self.messages)} of {n} arrived"
            return [json.loads(m) for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Mes(ThreadingHTTPServer):
    """A loopback MES endpoint: 503 while ``down``, 400 on /reject, else records the JSON body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MesHandler)
        self.down = False
        self.got: list[tuple[dict, dict]] = []          # (headers, body)
        self.cond = threading.Condition()
        self.tries = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, pred, what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, WAIT), what


class _MesHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        mes: Mes = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with mes.cond:
            mes.tries += 1
            if mes.down or self.path == "/reject":
                code = 503 if mes.down else 400
            else:
                mes.got.append((dict(self.headers), json.loads(body)))
                code = 200
            mes.cond.notify_all()
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mes():
    server = Mes()
    yield server
    server.shutdown()
    server.server_close()


def _reports(reports_dir: Path) -> dict[str, dict]:
    """Sealed unit reports by file name."""
    return {p.name: json.loads(p.read_text()) for p in reports_dir.glob("*.json")}


def _fake_report(folder: Path, i: int, text: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"unit{i}_a{i}.json"
    path.write_text(json.dumps({"schema": "atfab.unit-report/1", "outcome": "PASS", "attempt_id": i,
                                "unit": {"serial": f"S{i}"}, "note": text}))
    return path


def test_mqtt_broker_down_then_up_delivers_exactly_the_reports(tmp_path: Path) -> None:
    host, port = require_mqtt()
    topic = f"atfab/test/{uuid.uuid4().hex}"
    sub = Subscriber(host, port, topic)
    gate = TcpGate((host, port))                        # down: nothing listens on its port
    url = f"mqtt://127.0.0.1:{gate.port}/{topic}"
    recipe = load(tmp_path)
    try:
        summary = run_with_timeout(run_sim, T, recipe, 3, ca=load_ca(tmp_path), station_id="st-1",
                                   publish=[url], publish_drain_s=0.2)
        assert summary.exit_code == 0
        reports = _reports(recipe.report.dir)
        assert len(reports) == 3
        (target,) = summary.publish["targets"]
        assert (target["delivered"], target["pending"]) == (0, 3) and target["last_error"]
        spool = Path(target["spool"])
        assert spool.parent == spool_root(recipe.report.dir, "st-1") and len(list(spool.glob("*.msg"))) == 3
        assert_no_private_keys(spool)
        assert sub.messages == []

        # the broker comes back; a new start of the station's publisher (a restart) drains the spool
        gate.up()
        publisher = ReportPublisher(parse_targets([url]), spool_root(recipe.report.dir, "st-1"), station_id="st-1",
                                    timeout=5.0).start()
        try:
            assert publisher.wait_drained(WAIT), publisher.status()
        finally:
            status = publisher.stop()
        assert status["pending"] == 0 and status["targets"][0]["delivered"] == 3
        got = sub.wait_for(3)
        assert len(got) == 3
        assert {m["report_file"] for m in got} == set(reports)
        for m in got:
            assert m["schema"] == SCHEMA and m["station"] == "st-1" and m["outcome"] == "PASS"
            assert m["report"] == reports[m["report_file"]]              # the sealed report, unchanged
            assert m["id"] == f"st-1:{m['report']['attempt_id']}"
        text = b"".join(sub.messages)
        assert b"PRIVATE KEY" not in text
    finally:
        gate.down()
        sub.close()


def test_mqtt_broker_up_delivers_during_the_run(tmp_path: Path) -> None:
    host, port = require_mqtt()
    topic = f"atfab/test/{uuid.uuid4().hex}"
    sub = Subscriber(host, port, topic)
    recipe = load(tmp_path)
    try:
        summary = run_with_timeout(run_sim, T, recipe, 2, ca=load_ca(tmp_path), station_id="st-2",
                                   publish=[f"mqtt://{host}:{port}/{topic}"], publish_drain_s=WAIT)
        assert summary.exit_code == 0 and summary.publish["pending"] == 0
        got = sub.wait_for(2)
        assert {m["report_file"] for m in got} == set(_reports(recipe.report.dir))
    finally:
        sub.close()


def test_http_down_then_up_in_order_and_across_a_restart(tmp_path: Path, mes: Mes) -> None:
    root = tmp_path / "reports" / "spool" / "st"
    targets = parse_targets([mes.url + "/mes/reports"])
    mes.down = True
    pub = ReportPublisher(targets, root, station_id="st", timeout=5.0, min_backoff_s=0.05, max_backoff_s=0.2).start()
    paths = [_fake_report(tmp_path / "reports", i) for i in range(5)]
    for p in paths[:3]:
        assert pub.publish_report(p, attempt_id=int(p.stem.rsplit("a", 1)[1]), outcome="PASS")
    mes.wait_for(lambda: mes.tries >= 2, "the publisher did not retry")
    assert pub.stop()["pending"] == 3 and mes.got == []                 # stopped while the MES is down

    pub = ReportPublisher(targets, root, station_id="st", timeout=5.0, min_backoff_s=0.05, max_backoff_s=0.2).start()
    for p in paths[3:]:                                                 # new reports after the restart
        pub.publish_report(p, attempt_id=int(p.stem.rsplit("a", 1)[1]), outcome="PASS")
    mes.down = False
    try:
        assert pub.wait_drained(WAIT), pub.status()
    finally:
        status = pub.stop()
    assert status["targets"][0]["delivered"] == 5 and status["pending"] == 0
    ids = [body["id"] for _, body in mes.got]
    assert ids == [f"st:{i}" for i in range(5)]                         # oldest first, restarts included
    assert [h["Idempotency-Key"] for h, _ in mes.got] == ids
    assert all(h["Content-Type"] == "application/json" for h, _ in mes.got)


def test_http_rejection_moves_the_message_aside(tmp_path: Path, mes: Mes) -> None:
    root = tmp_path / "spool"
    pub = ReportPublisher(parse_targets([mes.url + "/reject", mes.url + "/ok"]), root, station_id="st",
                          timeout=5.0).start()
    pub.publish_report(_fake_report(tmp_path / "r", 1), attempt_id=1)
    try:
        assert pub.wait_drained(WAIT), pub.status()
    finally:
        status = pub.stop()
    rejected, ok = status["targets"]
    assert (rejected["rejected"], rejected["delivered"], ok["delivered"]) == (1, 0, 1)
    (moved,) = pub.states[0].spool.rejected()
    assert "HTTP 400" in (moved.parent / (moved.name + ".reason")).read_text()
    assert json.loads(moved.read_bytes())["id"] == "st:1"


def test_private_key_text_is_never_spooled(tmp_path: Path, mes: Mes) -> None:
    pub = ReportPublisher(parse_targets([mes.url]), tmp_path / "spool", station_id="st")
    leak = "-----BEGIN " + "PRIVATE KEY-----\nAAAA\n-----END " + "PRIVATE KEY-----"
    assert not pub.publish_report(_fake_report(tmp_path / "r", 1, leak), attempt_id=1)
    assert pub.pending() == 0 and "private key" in pub.errors[0]


def test_spool_is_atomic_ordered_and_survives_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", label="http://x:80/")
    first = spool.put(b'{"id": 1}')
    second = spool.put(b'{"id": 2}')
    (tmp_path / "s" / ".half.msg.tmp").write_bytes(b'{"id"')         # a write killed before its rename
    again = Spool(tmp_path / "s", label="http://x:80/")
    assert again.pending() == [first, second]
    assert not list((tmp_path / "s").glob(".*.tmp"))
    again.delivered(first)
    assert Spool(tmp_path / "s").pending() == [second]


def test_publish_addresses_are_checked(tmp_path: Path) -> None:
    assert parse_target("mqtt://h/atfab/reports").port == 1883
    t = parse_target("http://u:secret@h:8080/in?x=1")
    assert (t.port, t.path, t.username) == (8080, "/in?x=1", "u") and "secret" not in t.shown + t.key
    for bad, what in [("ftp://h/x", "scheme"), ("mqtt://h", "no topic"), ("mqtt://h/a/#", "wildcards"),
                      ("http:///x", "no host"), ("mqtt://h:99999/t", "not an address")]:
        with pytest.raises(InputError, match=what):
            parse_target(bad)
    path = write_recipe(tmp_path)
    text = path.read_text()
    for value, field in [('["mqtt://h"]', "report.publish[0]"), ('"http://h"', "report.publish"),
                         ('["http://h", "http://h"]', "report.publish")]:
        path.write_text(text.replace("[report]\n", f"[report]\npublish = {value}\n", 1))
        with pytest.raises(InputError) as info:
            load_recipe(path, workdir=tmp_path)
        assert field in str(info.value)


def test_cli_run_publish(tmp_path: Path, mes: Mes) -> None:
    recipe = write_recipe(tmp_path)
    res = CliRunner().invoke(main, ["run", str(recipe), "--sim", "2", "--sim-baud", "0", "--json",
                                    "--workdir", str(tmp_path), "--station-id", "cli-st",
                                    "--publish", mes.url + "/in", "--publish-wait", str(WAIT)],
                             env={"ATFAB_CA_PASSPHRASE": PASSPHRASE}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["publish"]["targets"][0]["delivered"] == 2
    assert sorted(body["report_file"] for _, body in mes.got) == sorted(
        Path(u["report"]).name for u in summary["units_detail"])


def test_close_stale_publishes_the_reports_it_seals_through_the_station_spool(tmp_path: Path) -> None:
    """`atfab ledger close-stale --publish`: the ABORTED report it writes for a dead station's
    attempt reaches the MES (real Mosquitto, PostgreSQL ledger) with the id that station would have
    used; a message it could not deliver waits in that station's own spool."""
    from atfab.station.ledger import Ledger
    from tests.ledger_backends import pg_schema

    host, port = require_mqtt()
    topic = f"atfab/test/{uuid.uuid4().hex}"
    sub = Subscriber(host, port, topic)
    reports = tmp_path / "reports"
    try:
        with pg_schema() as url:
            with Ledger(url) as led:
                dead = led.begin_attempt(recipe="line", station="st-dead", port="p1", owner="st-dead/h:1:y",
                                         lease_s=-1, report_dir=reports)
            res = CliRunner().invoke(main, ["ledger", "--ledger", url, "close-stale", "--json", "--publish",
                                            f"mqtt://{host}:{port}/{topic}", "--publish-wait", str(WAIT)],
                                     catch_exceptions=False)
            assert res.exit_code == 0, res.output
            out = json.loads(res.stdout)
            (closed,) = out["closed"]
            assert closed["id"] == dead.id and out["publish"]["pending"] == 0
            (msg,) = sub.wait_for(1)
            assert msg["id"] == f"st-dead:{dead.id}" and msg["station"] == "st-dead" and msg["outcome"] == "ABORTED"
            assert msg["report"] == json.loads(Path(closed["report_path"]).read_text())
            (target,) = out["publish"]["targets"]
            assert Path(target["spool"]).parent == spool_root(reports, "st-dead")

            recipe = write_recipe(tmp_path)             # the addresses may come from the line's recipe
            recipe.write_text(recipe.read_text().replace(
                "[report]\n", f'[report]\npublish = ["mqtt://{host}:{port}/{topic}"]\n', 1))
            with Ledger(url) as led:
                again = led.begin_attempt(recipe="line", station="st-dead", port="p2", owner="st-dead/h:1:y",
                                          lease_s=-1, report_dir=reports)
            res = CliRunner().invoke(main, ["ledger", "--ledger", url, "close-stale", "--recipe", str(recipe),
                                            "--workdir", str(tmp_path), "--publish-wait", str(WAIT)],
                                     env={"ATFAB_CA_PASSPHRASE": PASSPHRASE}, catch_exceptions=False)
            assert res.exit_code == 0 and "1 delivered, 0 still spooled" in res.output, res.output
            assert sub.wait_for(2)[1]["id"] == f"st-dead:{again.id}"
    finally:
        sub.close()


_KILLED_WHILE_SPOOLING = """
import os, signal, sys
from atfab.station.mes import publisher
publisher.ReportPublisher.publish_report = lambda self, *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from atfab.cli import main
main(sys.argv[1:])
"""


def test_kill_9_between_sealing_and_spooling_loses_no_message(tmp_path: Path) -> None:
    """A station killed (SIGKILL, a real process) after sealing a report and before spooling it:
    the ledger still holds the attempt open, so the station's next start finds the sealed report,
    spools it and the MES (real Mosquitto) gets it, PASS, with the id of the first run; the ledger
    is PostgreSQL."""
    import subprocess
    import sys

    from atfab.station.ledger import Ledger
    from tests.ledger_backends import pg_schema

    host, port = require_mqtt()
    topic = f"atfab/test/{uuid.uuid4().hex}"
    sub = Subscriber(host, port, topic)
    recipe = write_recipe(tmp_path)
    reports = load_recipe(recipe, workdir=tmp_path).report.dir
    args = ["run", str(recipe), "--sim", "1", "--sim-baud", "0", "--workdir", str(tmp_path), "--station-id", "st-k",
            "--publish", f"mqtt://{host}:{port}/{topic}", "--publish-wait", str(WAIT)]
    try:
        with pg_schema() as url:
            killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_SPOOLING, *args, "--ledger", url],
                                    cwd=tmp_path, env={**os.environ, "ATFAB_CA_PASSPHRASE": PASSPHRASE},
                                    capture_output=True, text=True, timeout=T)
            assert killed.returncode == -9, killed.stderr
            (sealed,) = _reports(reports).values()
            assert sealed["outcome"] == "PASS" and not list(reports.glob("spool/*/*/*.msg"))
            with Ledger(url) as led:
                assert led.attempt(sealed["attempt_id"]).open           # the mark of a report maybe not spooled

            res = CliRunner().invoke(main, [*args, "--ledger", url, "--json"],
                                     env={"ATFAB_CA_PASSPHRASE": PASSPHRASE}, catch_exceptions=False)
            assert res.exit_code == 0, res.output
            got = {m["id"]: m for m in sub.wait_for(2)}
            first = got[f"st-k:{sealed['attempt_id']}"]
            assert first["outcome"] == "PASS" and first["report"] == sealed
            with Ledger(url) as led:
                assert led.attempt(sealed["attempt_id"]).outcome == "PASS"     # its outcome stands
                assert led.attempts(open_only=True) == []
    finally:
        sub.close()
