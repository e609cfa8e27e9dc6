"""The production station: one recipe, several unit slots provisioned in parallel.

Each port (a :class:`~atfab.station.runner.PortSpec`: flash port + AT port) runs in its own thread with
its own :class:`~atfab.station.runner.UnitRunner`, esptool loader, AT client and unit images. Shared:
the recipe, the firmware images, the factory CA (signing serialised by a lock), the slot plan,
and the ledger (SQLite; atomic serial allocation, so several *processes* may share it too).

Without ``loop`` every port provisions the unit it holds once (with the recipe's retries) and
the run ends. With ``loop`` each port then waits for the next unit (another MAC on the port, or
the port disappearing and coming back) until :meth:`Station.stop` or Ctrl-C. Ctrl-C aborts the
units in flight at their next step (or flash block), records them ``ABORTED`` and returns the
summary; a second Ctrl-C stops at once (the next run closes what it left open). SIGTERM does the
same as Ctrl-C when the station runs in the main thread (a second SIGTERM ends the process).

Operator controls (the live station page uses them; Ctrl-C and SIGTERM are :meth:`Station.stop`):
:meth:`Station.pause` / :meth:`Station.resume` a slot (its unit in flight finishes; a paused slot
starts no new unit and does not poll its port), :meth:`Station.stop` with ``abort=False`` to stop
after the units in flight. Each is announced on the event stream (``pause``, ``run`` events).

:func:`run_sim` runs a station on in-process virtual modules; :func:`demo` is ``atfab demo``.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import OUTCOMES, DeviceError, InputError, exit_code_for_outcomes
from ..core.outputs import check_output
from ..core.shipped import shipped_dir
from ..link.flasher import Flasher
from ..link.transport import is_url, resolve_port
from ..pki.ca import CA_CERT, load_ca, create_ca
from ..pki.escrow_policy import open_escrow
from ..pki.slots import plan_slots
from ..sim.server import ModulePool
from .events import STATION, Event, EventBus
from .batch import BatchIndex
from .label import LabelWriter
from .mes.publisher import ReportPublisher, spool_root
from .mes.targets import parse_targets
from .live.server import live_page, parse_ui_url
from .ledger import DEFAULT_LEASE_S, LeaseKeeper, Ledger, ledger_location, process_owner, utc_now
from .ledger_db import redact_url
from .recorder import close_stale
from .recipe import Recipe, load_recipe
from .report import ReportEntry, read_report
from .report_export import write_batch_outputs
from .firmware_images import firmware_images
from .runner import AttemptResult, PortSpec, RunContext, StopToken, UnitRunner
from .unit_plan import unit_plan

DEFAULT_FLASH_BAUD = 460800
#: The recipe atfab demo runs unless told otherwise.
DEMO_RECIPE = shipped_dir("recipes") / "esp32c2-4mb-default.toml"
_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def parse_port(text: str, index: int = 0) -> PortSpec:
    """``[LABEL=]FLASH[,AT]`` → :class:`PortSpec` (each part a device, URL or port selector).

    ``/dev/ttyUSB0,/dev/ttyUSB1`` (UART0 download + UART1 AT of a real board),
    ``slot1=serial:5A6B0012,serial:5A6B0013``, ``socket://127.0.0.1:4000,socket://127.0.0.1:4001``.
    The label (default: the flash part) names the slot in reports and the ledger.
    """
    label = None
    head, eq, rest = text.partition("=")
    if eq and "://" not in head and _LABEL.match(head):
        label, text = head, rest
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1]):
        raise InputError(f"{text!r}: expected FLASH[,AT] (e.g. /dev/ttyUSB0,/dev/ttyUSB1)", field=f"--port[{index}]")
    return PortSpec(label or parts[0], parts[0], parts[1] if len(parts) == 2 else None)


def load_recipe_ca(recipe: Recipe, passphrase: bytes) -> Any:
    """The factory CA the recipe names, decrypted with ``passphrase`` (None when no slot needs it)."""

    pki = recipe.pki
    if pki is None or not pki.needs_ca:
        return None
    if pki.ca_dir is None or not (pki.ca_dir / CA_CERT).is_file():
        hint = "`atfab demo` makes its own throwaway CA; for `atfab run` create one with `atfab ca init`"
        raise InputError(f"no factory CA in {pki.ca_dir} ({hint})", file=recipe.path, field="pki.ca")
    return load_ca(pki.ca_dir, passphrase)


@dataclass
class StationSummary:
    """What a station run did: per-attempt results, per-unit final outcomes, throughput."""

    recipe: str
    station_id: str
    ports: list[str]
    started: str
    ended: str
    seconds: float
    results: list[AttemptResult]
    finals: list[AttemptResult]                  # final attempt of each unit (see final_attempts)
    reports_dir: str
    ledger: str
    outputs: list[str] = field(default_factory=list)
    interrupted: bool = False
    publish: dict[str, Any] | None = None        # the MES spool at the end (ReportPublisher.status)
    owner: str = ""                              # this run's owner name in the ledger (attempts.owner)

    @property
    def counts(self) -> dict[str, int]:
        """Units by final outcome."""
        c = Counter(r.outcome for r in self.finals)
        return {k: c.get(k, 0) for k in OUTCOMES}

    @property
    def units_per_minute(self) -> float:
        """Units that got a verdict (PASS, FAIL or ERROR; not ABORTED) per minute of the run."""
        done = sum(1 for r in self.finals if r.outcome != "ABORTED")
        return round(done * 60.0 / self.seconds, 2) if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """The CLI's exit status (:func:`atfab.core.errors.exit_code_for_outcomes`)."""
        return exit_code_for_outcomes(self.counts, interrupted=self.interrupted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "station": self.station_id, "ports": self.ports, "started": self.started,
            "ended": self.ended, "seconds": round(self.seconds, 3), "units": len(self.finals),
            "attempts": len(self.results), "counts": self.counts, "units_per_minute": self.units_per_minute,
            "interrupted": self.interrupted, "reports_dir": self.reports_dir, "ledger": self.ledger,
            "owner": self.owner,
            "outputs": self.outputs, "publish": self.publish,
            "units_detail": [_result_dict(r) for r in self.finals],
            "attempts_detail": [_result_dict(r) for r in self.results],
        }


def _result_dict(r: AttemptResult) -> dict[str, Any]:
    return {"port": r.port, "attempt_id": r.attempt_id, "outcome": r.outcome, "serial": r.serial, "mac": r.mac,
            "retry_of": r.retry_of, "report": str(r.report) if r.report else None, "error": r.error,
            "seconds": round(r.seconds, 3)}


def wait_for_unit(ctx: RunContext, port: PortSpec, previous_mac: str | None, *, poll_s: float = 1.0) -> bool:
    """Loop mode: wait until a new unit is on ``port`` (another MAC, or the port went away and came
    back); False when the station is stopping. Polls the ROM loader (esptool) every ``poll_s``."""

    def emit(status: str, detail: str) -> None:
        ctx.bus.emit(Event(port.label, None, "wait", status, detail=detail))

    emit("start", "waiting for the next unit")
    gone = previous_mac is None
    while not ctx.stop.finishing:
        try:
            dev = resolve_port(port.flash)
            if not is_url(dev) and not os.path.exists(dev):
                raise DeviceError(f"{dev} is not there")
            mac = Flasher(dev, firmware=ctx.recipe.profile.firmware, connect_attempts=1, io_timeout=1.0,
                          step_timeout=5.0).chip_info().mac
        except (DeviceError, InputError):
            gone = True
        else:
            if gone or mac != previous_mac:
                emit("ok", f"unit {mac} on the port")
                return True
        ctx.stop.wait(poll_s)
    return False


class Station:
    """Runs ``recipe`` on ``ports`` in parallel. Subscribe to :attr:`bus` for live events.

    ``ledger``/``reports_dir``/``junit``/``csv`` override the recipe's (``False`` = no batch file);
    ``ca`` is the loaded factory CA (see :func:`load_recipe_ca`) when the recipe issues certificates;
    ``ui`` the address of the live station page (``http://127.0.0.1:8080``; None: no page) served
    while :meth:`run` runs. ``publish``: MES addresses every sealed report goes to (None: the
    recipe's ``[report] publish``), spooled under ``<reports>/spool/<station id>/``; at the end of
    :meth:`run` the spool gets up to ``publish_drain_s`` seconds to empty (the rest goes out on
    the next run). ``batch``: a batch folder or manifest (``atfab batch``) whose pre-programmed
    units are recognised by their mfg_nvs and bound to their MAC instead of getting a new identity.
    ``ledger`` is a SQLite file or a ``postgresql://`` URL; every attempt
    is owned by this station process with a lease of ``lease_s`` seconds, renewed while the run
    lasts; ``ledger_timeout`` is how long one ledger transaction waits for a busy or absent
    database (a sealed report waits much longer for its ledger row: see the runner).
    """

    def __init__(self, recipe: Recipe, ports: list[PortSpec], *, station_id: str | None = None,
                 operator: str | None = None, ledger: str | Path | None = None,
                 reports_dir: str | Path | None = None, junit: str | Path | bool | None = None,
                 csv: str | Path | bool | None = None, ca: Any = None, flash_baud: int = DEFAULT_FLASH_BAUD,
                 at_baud: int | None = None, flasher_options: dict[str, Any] | None = None,
                 bus: EventBus | None = None, ui: str | None = None, publish: list[str] | None = None,
                 publish_drain_s: float = 5.0, batch: str | Path | None = None,
                 lease_s: float = DEFAULT_LEASE_S, ledger_timeout: float = 30.0) -> None:
        if not ports:
            raise InputError("no ports: give --port FLASH[,AT] (or --sim N)", field="--port")
        labels = [p.label for p in ports]
        if len(set(labels)) != len(labels):
            raise InputError(f"port labels must differ: {', '.join(labels)}", field="--port")
        pki = recipe.pki
        if pki is not None and pki.needs_ca and ca is None:
            raise InputError("the recipe issues certificates: the factory CA is needed", file=recipe.path,
                             field="pki.ca")
        self.recipe = recipe
        self.ports = list(ports)
        self.station_id = station_id or _default_station_id()
        self.operator = operator
        self.ledger_path: Path | str = ledger_location(ledger) if ledger is not None else recipe.ledger
        self.reports_dir = Path(reports_dir) if reports_dir is not None else recipe.report.dir
        self.junit = _output(junit, recipe.report.junit, recipe.report.dir, self.reports_dir, "junit.xml",
                             self.station_id)
        self.csv = _output(csv, recipe.report.csv, recipe.report.dir, self.reports_dir, "summary.csv",
                           self.station_id)
        self.owner = process_owner(self.station_id)
        self.lease_s = lease_s
        self.ledger_timeout = ledger_timeout
        # every output is checked before any unit is touched: a report that cannot be written at
        # the end of a unit would cost the unit a certificate and a serial for nothing
        if isinstance(self.ledger_path, Path):          # a postgresql:// URL is no output path
            check_output(self.ledger_path, "ledger", field="--ledger")
        check_output(self.reports_dir, "reports folder", kind="dir", field="--reports")
        if self.junit is not None:
            check_output(self.junit, "JUnit file", field="--junit")
        if self.csv is not None:
            check_output(self.csv, "CSV summary", field="--csv")
        self.ca = ca
        self.flash_baud = flash_baud
        self.at_baud = at_baud or uart_baud(recipe)
        self.flasher_options = dict(flasher_options or {})
        if ui is not None:
            parse_ui_url(ui)                # a bad address stops the run before any unit is touched
        given = publish is not None
        self.publish = parse_targets(tuple(publish) if given else recipe.report.publish,
                                     file=None if given else recipe.path, field="--publish" if given else "report.publish")
        self.publish_drain_s = publish_drain_s
        self.batch = BatchIndex.load(batch) if batch is not None else None
        if self.batch is not None and (self.batch.recipe, self.batch.module) != (recipe.name, recipe.profile.name):
            raise InputError(f"the batch was made with recipe {self.batch.recipe} ({self.batch.module}), not "
                             f"{recipe.name} ({recipe.profile.name})", file=self.batch.folder / "manifest.json",
                             field="recipe")
        self.bus = bus or EventBus()
        self.ui = ui
        self.stop_token = StopToken()
        self._controls = threading.Condition()
        self._paused: set[str] = set()
        self._firmware = firmware_images(recipe)
        self._plan = None
        if pki is not None:
            self._plan = plan_slots(list(pki.slots), firmware=recipe.profile.firmware,
                                    factory_ca=ca.chain_certs() if ca is not None else None, source=str(recipe.path))
        self._unit_plan = unit_plan(recipe, self._firmware)    # a bad GATT table stops the run here

    def stop(self, *, abort: bool = True) -> None:
        """Stop the run: ``abort`` the units in flight (ABORTED), or let them finish first."""
        with self._controls:
            announce = not self.stop_token.aborted and (abort or not self.stop_token.finishing)
            if abort:
                self.stop_token.abort()
            else:
                self.stop_token.finish()
            self._controls.notify_all()
        if announce:
            self.bus.emit(Event(STATION, None, "run", "aborting" if abort else "finishing",
                                detail="stopping now: the units in flight end ABORTED" if abort
                                else "stopping after the units in flight"))

    def pause(self, label: str) -> None:
        """Pause slot ``label``: its unit in flight finishes, then it starts none until :meth:`resume`."""
        self._set_paused(label, True)

    def resume(self, label: str) -> None:
        """Let a paused slot go on with the next unit."""
        self._set_paused(label, False)

    @property
    def paused(self) -> frozenset[str]:
        """The labels of the paused slots."""
        with self._controls:
            return frozenset(self._paused)

    def _set_paused(self, label: str, paused: bool) -> None:
        if label not in {p.label for p in self.ports}:
            raise InputError(f"no slot {label!r} (slots: {', '.join(p.label for p in self.ports)})", field="slot")
        with self._controls:
            changed = (label in self._paused) != paused
            (self._paused.add if paused else self._paused.discard)(label)
            self._controls.notify_all()
        if changed:
            self.bus.emit(Event(label, None, "pause", "start" if paused else "ok",
                                detail="paused by the operator" if paused else "resumed by the operator"))

    def _hold(self, port: PortSpec) -> bool:
        """Wait while ``port``'s slot is paused; False when the station stops meanwhile."""
        with self._controls:
            while port.label in self._paused and not self.stop_token.finishing:
                self._controls.wait(0.5)
        return not self.stop_token.finishing

    def run(self, *, loop: bool = False, poll_s: float = 1.0, stop_after_s: float | None = None) -> StationSummary:
        """Provision the units on every port (and, with ``loop``, the ones that follow).

        ``stop_after_s``: after that many seconds, stop as :meth:`stop` with ``abort=False`` does
        (the units in flight finish, no new one starts; e.g. the end of a shift).
        """
        started, t0 = utc_now(), time.monotonic()
        timer = None
        if stop_after_s is not None:
            timer = threading.Timer(stop_after_s, self.stop, kwargs={"abort": False})
            timer.daemon = True
            timer.start()
        try:
            return self._run(started, t0, loop=loop, poll_s=poll_s)
        finally:
            if timer is not None:
                timer.cancel()

    def _run(self, started: str, t0: float, *, loop: bool, poll_s: float) -> StationSummary:
        results: list[AttemptResult] = []
        finals: list[AttemptResult] = []
        lock = threading.Lock()
        interrupted = False
        escrow = self._escrow_writer(started)
        remove_orphan_temp_files(self.reports_dir)
        with Ledger(self.ledger_path, timeout=self.ledger_timeout) as ledger, LeaseKeeper(ledger, self.owner, self.lease_s), \
                self._labels(), self._publishing() as publisher, \
                live_page(self, self.ui, station_id=self.station_id, recipe=self.recipe.name,
                          ports=[p.label for p in self.ports]):
            # what a killed run of this station (or any dead station) left open: ABORTED, with its report
            close_stale(ledger, reports_dir=self.reports_dir, detected_by=f"{self.station_id} (start)",
                        exclude_owner=self.owner, recipe_name=self.recipe.name, recipe_hash=self.recipe.hash,
                        recipe_path=self.recipe.path,
                        publish=publisher.publish_report if publisher is not None else None)
            ctx = RunContext(recipe=self.recipe, ledger=ledger, bus=self.bus, stop=self.stop_token,
                             reports_dir=self.reports_dir, station_id=self.station_id, firmware=self._firmware,
                             operator=self.operator, ca=self.ca, plan=self._plan, unit_plan=self._unit_plan,
                             flash_baud=self.flash_baud, at_baud=self.at_baud, flasher_options=self.flasher_options,
                             escrow=escrow, batch=self.batch, owner=self.owner, lease_s=self.lease_s,
                             publish=publisher.publish_report if publisher is not None else None)

            def worker(port: PortSpec) -> None:
                runner = UnitRunner(ctx, port)
                previous: str | None = None
                first = True
                while self._hold(port):
                    try:
                        if not first and not wait_for_unit(ctx, port, previous, poll_s=poll_s):
                            break
                        first = False
                        attempts = runner.provision()
                    except Exception as exc:  # noqa: BLE001 - e.g. the ledger failed: stop this port, say why
                        detail = f"port stopped: {type(exc).__name__}: {exc}"
                        runner.emit("station", "error", detail=detail)
                        attempts = [AttemptResult(port.label, None, "ERROR", None, None, None, detail)]
                        loop_on = False
                    else:
                        loop_on = loop
                    with lock:
                        results.extend(attempts)
                        finals[:] = final_attempts(results)
                    previous = attempts[-1].mac or previous
                    if not loop_on:
                        break

            threads = [threading.Thread(target=worker, args=(p,), name=f"atfab-port-{p.label}", daemon=True)
                       for p in self.ports]
            for t in threads:
                t.start()
            try:
                with _sigterm_aborts(self.stop):
                    _join(threads)
            except KeyboardInterrupt:
                interrupted = True
                self.stop(abort=True)
                _join(threads)          # a second Ctrl-C propagates: the next run closes what is left open
        summary = StationSummary(
            recipe=self.recipe.name, station_id=self.station_id, ports=[p.label for p in self.ports],
            started=started, ended=utc_now(), seconds=time.monotonic() - t0, results=results, finals=finals,
            reports_dir=str(self.reports_dir), ledger=ledger_display(self.ledger_path),
            interrupted=interrupted or self.stop_token.aborted, owner=self.owner,
        )
        if publisher is not None:
            summary.publish = publisher.last_status
        summary.outputs = [str(p) for p in self._batch_outputs(results)]
        if escrow is not None:
            summary.outputs.append(str(escrow.path))
        return summary

    @contextmanager
    def _labels(self) -> Iterator[None]:
        """While the run lasts: the labels of the units that PASS (the recipe's ``[label]``)."""
        spec = self.recipe.label
        if spec is None:
            yield
            return
        writer = self.bus.subscribe(LabelWriter(spec, self.bus, recipe=self.recipe.name, chip=self.recipe.profile.chip,
                                                module=str(self.recipe.factory_param.get("module_name", ""))))
        try:
            yield
        finally:
            self.bus.unsubscribe(writer)

    @contextmanager
    def _publishing(self) -> Iterator[ReportPublisher | None]:
        """While the run lasts: every sealed report spooled for the MES targets, drained in the background."""
        if not self.publish:
            yield None
            return
        publisher = ReportPublisher(self.publish, spool_root(self.reports_dir, self.station_id),
                                    station_id=self.station_id).start()
        try:
            yield publisher
        finally:
            publisher.stop(drain_s=self.publish_drain_s)

    def _escrow_writer(self, started: str) -> Any:
        """The key escrow file of this run (``[pki] escrow``), created with its header; else None."""

        return open_escrow(self.recipe, station_id=self.station_id, started=started)

    def _batch_outputs(self, results: list[AttemptResult]) -> list[Path]:
        if self.junit is None and self.csv is None:
            return []
        entries = [ReportEntry(r.report, read_report(r.report)) for r in results if r.report is not None]
        return write_batch_outputs(entries, junit=self.junit, csv_path=self.csv, suite_name=f"atfab.{self.recipe.name}")


@contextmanager
def _sigterm_aborts(stop: Callable[..., None]) -> Iterator[None]:
    """While the block runs (main thread only): SIGTERM aborts the run like Ctrl-C (units in flight
    end ABORTED at their next step, reports written); a second SIGTERM gets the previous handler
    (by default: the process ends at once; the next run closes what it left open)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        stop(abort=True)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        while t.is_alive():
            t.join(0.2)


def _output(given: str | Path | bool | None, default: Path | None, recipe_dir: Path, reports_dir: Path,
            name: str, station_id: str) -> Path | None:
    """A batch output path: the option if given (as it is), else the recipe's (following --reports
    when it is the default) named for the station (``junit.xml`` → ``junit-<station>.xml``), so
    stations sharing a report folder never write each other's file."""
    if given is False:
        return None
    if given is True:
        return station_file(reports_dir / name, station_id)
    if given is not None:
        return Path(given)
    if default is None:
        return None
    return station_file(reports_dir / name if default == recipe_dir / name else default, station_id)


def station_file(path: Path, station_id: str) -> Path:
    """``path`` with ``-<station>`` before its suffix (``reports/junit.xml`` → ``reports/junit-st1.xml``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in station_id)
    return path.with_name(f"{path.stem}-{safe}{path.suffix}")


def final_attempts(results: list[AttemptResult]) -> list[AttemptResult]:
    """Each unit's final attempt: every attempt no later attempt retries (an ERROR followed by
    another unit on the port stays final — it is never hidden by the next unit's result)."""
    retried = {r.retry_of for r in results if r.retry_of is not None}
    return [r for r in results if r.attempt_id is None or r.attempt_id not in retried]


def remove_orphan_temp_files(folder: Path, *, older_than_s: float = 600.0) -> list[Path]:
    """Remove the half-written ``.<name>.*.tmp`` files a killed writer left in ``folder`` (and
    below) — only those untouched for ``older_than_s``, so a live station's write in progress in a
    shared folder is never taken away. Returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for path in folder.rglob(".*.tmp"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def ledger_display(location: Path | str) -> str:
    """How summaries name a ledger (a URL without its password)."""
    return redact_url(location) if isinstance(location, str) else str(location)


def _default_station_id() -> str:
    return socket.gethostname().split(".")[0] or "station"


def uart_baud(recipe: Recipe) -> int:
    """The recipe's AT UART baud rate (``factory_param.uart_baudrate``; 115200 when it has none)."""
    baud = recipe.factory_param.get("uart_baudrate")
    return baud if isinstance(baud, int) and baud > 0 else 115200


def run_sim(recipe: Recipe, count: int, *, sim_baud: int | None = None, seed: str = "0",
            state_dir: str | Path | None = None, serial_server: bool = False,
            **station_options: Any) -> StationSummary:
    """Run a station on ``count`` in-process virtual modules (paced at ``sim_baud``; None = unpaced).

    ``serial_server``: the modules' ports are ``rfc2217://`` (the port's baud reaches the module, which
    is heard as noise at any other rate than its UART's, as on a real line) instead of ``socket://``.

    Module ``i`` has the MAC derived from ``seed`` and ``i`` (a re-run meets the same units), the
    port label ``sim<i>``. ``station_options`` go to :class:`Station` (``bus=`` to watch).
    """

    loop = station_options.pop("loop", False)
    profile = recipe.profile
    pool = ModulePool(count, chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware,
                      baud=sim_baud, seed=seed, state_dir=state_dir, serial_server=serial_server)
    with pool:
        # an ESP8266 has one UART0 for download and AT: one port per unit, as on a real line
        ports = [PortSpec(f"sim{i}", m.flash_url, None if m.shared_uart0 else m.at_url) for i, m in enumerate(pool)]
        station = Station(recipe, ports, **station_options)
        return station.run(loop=loop)


@dataclass
class DemoResult:
    """What ``atfab demo`` did: the station summary and where everything went."""

    summary: StationSummary
    out_dir: Path
    ca_dir: Path
    recipe: Path
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "ca_dir": str(self.ca_dir), "recipe": str(self.recipe),
                "seconds": round(self.seconds, 3), "summary": self.summary.to_dict()}


def demo(out_dir: str | Path = "atfab-demo", *, recipe: str | Path | None = None, count: int = 4,
         sim_baud: int | None = None, **station_options: Any) -> DemoResult:
    """``atfab demo``: a ready recipe on ``count`` virtual modules with a throwaway CA.

    The CA is created in ``<out_dir>/ca`` (a new one every time; its key encrypted with a random
    passphrase that is only held in memory); the ledger and the reports go where the recipe says,
    relative to ``out_dir``. ``sim_baud``: None paces the modules at the recipe's UART baud rate,
    0 leaves them unpaced.
    """

    t0 = time.monotonic()
    out = Path(out_dir).resolve()
    path = Path(recipe) if recipe is not None else DEMO_RECIPE
    if not path.is_file():
        raise InputError("demo recipe not found (give one with --recipe)", file=path)
    rec = load_recipe(path, workdir=out)
    ca = None
    ca_dir = out / "ca"
    if rec.pki is not None and rec.pki.needs_ca:
        passphrase = secrets.token_urlsafe(24).encode()
        out.mkdir(parents=True, exist_ok=True)
        ca = create_ca(ca_dir, common_name=f"atfab demo CA {secrets.token_hex(4)}", organization="atfab demo",
                       passphrase=passphrase, days=3650, force=True)
        del passphrase
    sim_baud = uart_baud(rec) if sim_baud is None else (sim_baud or None)
    station_options.setdefault("station_id", "demo")
    summary = run_sim(rec, count, sim_baud=sim_baud, ca=ca, **station_options)
    return DemoResult(summary, out, ca_dir, path.resolve(), time.monotonic() - t0)


__all__ = ["Station", "StationSummary", "PortSpec", "parse_port", "load_recipe_ca", "run_sim",
           "demo", "DemoResult", "uart_baud", "wait_for_unit", "DEFAULT_FLASH_BAUD", "DEMO_RECIPE"]
