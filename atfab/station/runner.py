"""The per-unit state machine: one unit on one port, from blank module to sealed report.

Steps (each one ``start`` → ``ok``/``fail``/``error``/``aborted``/``skipped`` event on the
:class:`~atfab.station.events.EventBus`)::

    connect      open the AT port (the flash port is opened by the unit's one esptool session)
    chip         esptool: connect (the session stays open until the flash step), chip type and MAC
                 (wrong chip → ERROR; MAC outside verify.mac_prefixes → FAIL)
    identity     ledger: close attempts a killed station left open on this MAC, open this attempt,
                 reserve the unit's identity (a MAC seen before keeps its serial)
    certificate  key generated in memory, certificate issued by the factory CA, recorded in the ledger
    build        the unit's own images (in memory): G3 at_customize.bin + mfg_nvs.bin, G1/G2 the
                 at_customize table + one image per item partition, G0 none
    flash        esptool, same connection: stub, firmware + unit images (regions the unit already holds
                 are skipped by MD5), reset
    boot         the AT firmware boots (``ready``) and answers ``AT``, at the rate it boots at
                 (:meth:`~atfab.station.unit_plan.UnitPlan.contact_bauds`: a firmware that reads its UART
                 from no factory partition answers at its profile's ``uart_boot_baud`` until configure
                 stores the recipe's; a unit that already holds the recipe's rate is found there)
    configure    what the recipe sets over AT (G3 AT+UART_DEF and AT+RFPOWER, G1/G2 AT+UART_DEF,
                 G0 AT+UART=); the host follows to the stored rate and the unit must answer ``AT`` there
                 (no answer: ERROR, the link, never FAIL)
    verify       the generation's verification → measurements (``checks=`` the recipe's checks)

What build, configure and verify do per firmware generation is the recipe's
:class:`~atfab.station.unit_plan.UnitPlan` (G0, G1/G2, G3 alike go through these steps).

Outcome: **PASS** every measurement held; **FAIL** one did not (the unit is bad; not retried by
default); **ERROR** the station, link or a tool failed (:class:`~atfab.core.errors.DeviceError`, a
lost link, an esptool failure; retried by default); **ABORTED** the operator stopped the run.
Every attempt is its own ledger row and report; a retry names the attempt it retries.

Certificates: a unit seen again keeps its serial, but gets a *new* key and certificate on every
attempt that reaches the certificate step (recorded in the ledger; the older ones stay as
history). The station never stores private keys, so it cannot re-install an old certificate,
and it does not read keys back out of a unit. The private key exists only in this process's
memory and in the unit's mfg_nvs image; events, reports and the ledger get fingerprints. A
recipe with ``[pki] escrow`` also gets every issued key appended to its escrow file, encrypted
to the operator's public key (:mod:`atfab.pki.escrow_policy`), right after issuance and before the
unit is flashed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esptool.targets import CHIP_DEFS

from ..core.errors import Aborted, AtfabError, DeviceError, InputError, UnitFailed
from ..core.measurement import Measurement, evaluate
from ..image.flash_set import FlashSet, Region
from ..link.at.client import AtClient
from ..link.at.errors import AtError, AtTimeout
from ..link.at.helpers import longest_payload
from ..link.flasher import Flasher, FlashSession
from ..link.transport import open_port, resolve_port
from ..pki.ca import CertificateAuthority
from ..pki.escrow import EscrowWriter
from ..pki.escrow_policy import PROVISION, escrow_identity
from ..pki.issue import UnitIdentity, issue_unit
from ..pki.slots import UNIT, SlotPlan
from .batch import BatchIndex, bind_preprogrammed
from .events import STEPS, Event, EventBus, StepData
from .ledger import DEFAULT_LEASE_S, Attempt, Ledger
from .recipe_spec import Recipe, slot_name
from .firmware_images import FirmwareImages
from .recorder import Publish, ReportRecorder, close_stale_attempt, iso
from .unit_plan import MfgNvsPlan, UnitBuild, UnitPlan, unit_plan


class StopToken:
    """How a station asks its ports to stop: ``finish`` (no new units) or ``abort`` (now)."""

    def __init__(self) -> None:
        self._finish = threading.Event()
        self._abort = threading.Event()

    def finish(self) -> None:
        self._finish.set()

    def abort(self) -> None:
        self._abort.set()
        self._finish.set()

    @property
    def finishing(self) -> bool:
        return self._finish.is_set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def check(self) -> None:
        """Raise :class:`Aborted` once an abort was requested."""
        if self._abort.is_set():
            raise Aborted("stopped by the operator")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (early) when a stop was requested."""
        return self._finish.wait(seconds)


@dataclass(frozen=True)
class PortSpec:
    """One unit slot of a station: its flash (download) port and its AT port (selectors or URLs)."""

    label: str
    flash: str
    at: str | None = None


@dataclass
class RunContext:
    """What all ports of one station run share. Read-only during a run (the ledger is thread-safe)."""

    recipe: Recipe
    ledger: Ledger
    bus: EventBus
    stop: StopToken
    reports_dir: Path
    station_id: str
    firmware: FirmwareImages
    operator: str | None = None
    ca: CertificateAuthority | None = None
    plan: SlotPlan | None = None
    #: What build, configure and verify do for this recipe's generation (default: from the recipe).
    unit_plan: UnitPlan | None = None
    flash_baud: int = 460800
    at_baud: int = 115200
    flasher_options: dict[str, Any] = field(default_factory=dict)
    ca_lock: threading.Lock = field(default_factory=threading.Lock)
    escrow: EscrowWriter | None = None   # when the recipe keeps unit keys ([pki] escrow)
    batch: BatchIndex | None = None      # pre-programmed units to recognise (atfab run --batch)
    owner: str | None = None             # this station process in the ledger (leases); default station_id
    lease_s: float = DEFAULT_LEASE_S
    ledger_wait_s: float = 600.0         # how long a sealed attempt waits for the ledger to take its outcome
    publish: Publish | None = None       # hands each sealed report to the MES spool, before the ledger ends it

    def __post_init__(self) -> None:
        if self.unit_plan is None:
            self.unit_plan = unit_plan(self.recipe, self.firmware)

    @property
    def unit(self) -> UnitPlan:
        assert self.unit_plan is not None, "set in __post_init__"
        return self.unit_plan


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt ended."""

    port: str
    attempt_id: int | None
    outcome: str
    mac: str | None
    serial: str | None
    report: Path | None
    error: str | None
    retry_of: int | None = None
    seconds: float = 0.0


@dataclass
class _Step:
    detail: str | None = None
    data: StepData = field(default_factory=lambda: StepData())
    status: str | None = None            # "skipped" / "fail" without raising


class _State:
    """What one attempt learned so far (never outlives the attempt)."""

    def __init__(self) -> None:
        self.attempt_id: int | None = None
        self.mac: str | None = None
        self.serial: str | None = None
        self.at: AtClient | None = None
        self.build: UnitBuild | None = None     # holds the private key: memory only
        self.session: FlashSession | None = None
        self.preprogrammed: dict[str, Any] | None = None   # the batch manifest's entry of this unit
        self.one_port = False                   # flash and AT on one UART0 (the AT client takes esptool's port)
        self.measurements: list[Measurement] = []

    # The steps run in order: each accessor below is set by an earlier step than those that use it.
    @property
    def unit_mac(self) -> str:
        assert self.mac is not None, "the chip step reads the MAC"
        return self.mac

    @property
    def unit_serial(self) -> str:
        assert self.serial is not None, "the identity step reserves the serial"
        return self.serial

    @property
    def client(self) -> AtClient:
        assert self.at is not None, "boot, configure and verify run only with an AT port"
        return self.at


class UnitRunner:
    """Provisions the unit on one port. One runner per port; not shared between threads."""

    def __init__(self, ctx: RunContext, port: PortSpec) -> None:
        self.ctx = ctx
        self.port = port
        self._unit: str | None = None
        self._last_progress = -1.0
        #: Rates the booted unit may answer at, the one listened at first (the unit plan's data).
        self._bauds = ctx.unit.contact_bauds(ctx.at_baud)

    # -- events ---------------------------------------------------------------------------------

    def emit(self, step: str, status: str, *, detail: str | None = None, progress: float | None = None,
             data: StepData | None = None, attempt_id: int | None = None) -> Event:
        ev = Event(self.port.label, self._unit, step, status, progress, detail, time.time(), data or None, attempt_id)
        self.ctx.bus.emit(ev)
        return ev

    @contextmanager
    def _step(self, name: str) -> Iterator[_Step]:
        self.ctx.stop.check()
        self.emit(name, "start")
        s = _Step()
        try:
            yield s
        except UnitFailed as exc:
            self.emit(name, "fail", detail=s.detail or str(exc), data=s.data)
            raise
        except (Aborted, KeyboardInterrupt) as exc:
            self.emit(name, "aborted", detail=str(exc) or "aborted", data=s.data)
            raise
        except BaseException as exc:
            self.emit(name, "error", detail=_describe(exc), data=s.data)
            raise
        self.emit(name, s.status or "ok", detail=s.detail, data=s.data)

    def _progress(self, done: int, total: int) -> None:
        self.ctx.stop.check()           # Ctrl-C lands here during a long write
        frac = done / total if total else 1.0
        if frac - self._last_progress >= 0.02 or (frac >= 1.0 > self._last_progress):
            self._last_progress = frac
            self.emit("flash", "progress", progress=frac)

    # -- a unit ---------------------------------------------------------------------------------

    def provision(self) -> list[AttemptResult]:
        """Attempts on the unit now on the port until PASS or the retry policy says stop."""
        policy = self.ctx.recipe.retry
        results: list[AttemptResult] = []
        retry_of: int | None = None
        chain = 0                        # attempts on the unit now on the port (another MAC starts anew)
        while True:
            result = self.attempt(retry_of=retry_of)
            results.append(result)
            chain = chain + 1 if retry_of is not None and result.retry_of == retry_of else 1
            if result.outcome == "PASS" or self.ctx.stop.aborted or not policy.should_retry(result.outcome, chain):
                return results
            if policy.delay_s and self.ctx.stop.wait(policy.delay_s) and self.ctx.stop.aborted:
                return results
            retry_of = result.attempt_id

    def attempt(self, *, retry_of: int | None = None) -> AttemptResult:
        """One attempt: every step, then the report is sealed and the ledger row ended."""
        ctx, recipe = self.ctx, self.ctx.recipe
        self._unit = None
        started = time.time()
        rec = ReportRecorder(ctx.reports_dir, port=self.port.label, recipe_name=recipe.name,
                             recipe_hash=recipe.hash, recipe_path=recipe.path, station_id=ctx.station_id,
                             operator=ctx.operator, transcript=recipe.report.transcript)
        ctx.bus.subscribe(rec)
        st = _State()
        error: str | None = None
        try:
            self.emit("unit", "start", data={"firmware": ctx.firmware.info, "retry_of": retry_of})
            try:
                self._run_steps(st, retry_of, started)
                failed = [m for m in st.measurements if not m.passed]
                outcome = "FAIL" if failed else "PASS"
                error = f"failed: {', '.join(m.name for m in failed)}" if failed else None
            except UnitFailed as exc:
                outcome, error = "FAIL", str(exc)
            except (Aborted, KeyboardInterrupt) as exc:
                outcome, error = "ABORTED", str(exc) or "aborted"
            except Exception as exc:  # noqa: BLE001 - DeviceError, InputError, or a bug: recorded, not fatal
                outcome, error = "ERROR", _describe(exc)
            finally:
                transcript = [e.to_json() for e in st.at.transcript] if st.at is not None else []
                if st.at is not None:
                    st.at.close()
                st.build = None
            facts: StepData = {"transcript": transcript}
            if st.attempt_id is None:       # failed before the identity step: still one row per attempt
                row = self._begin(st, retry_of, started)
                st.attempt_id = row.id
                facts["attempt_id"], facts["attempt"] = row.id, row.attempt
            self.emit("unit", outcome, detail=error, attempt_id=st.attempt_id, data=facts)
        finally:
            ctx.bus.unsubscribe(rec)
        if rec.error is not None:
            outcome, error = "ERROR", f"report not written: {_describe(rec.error)}"
        if rec.path is not None and ctx.publish is not None:
            ctx.publish(rec.path, attempt_id=st.attempt_id, outcome=outcome)   # spooled while the attempt is open
        self._end(st.attempt_id, outcome, rec.path, error)
        self.emit("report", outcome, detail=error, attempt_id=st.attempt_id,
                  data={"report": str(rec.path) if rec.path is not None else None, "serial": st.serial, "mac": st.mac})
        return AttemptResult(self.port.label, st.attempt_id, outcome, st.mac, st.serial, rec.path, error,
                             retry_of=(rec.report.retry_of if rec.report else retry_of),
                             seconds=time.time() - started)

    def _begin(self, st: _State, retry_of: int | None, started: float) -> Attempt:
        ctx = self.ctx
        return ctx.ledger.begin_attempt(recipe=ctx.recipe.name, station=ctx.station_id, port=self.port.label,
                                        mac=st.mac, serial=st.serial, operator=ctx.operator, retry_of=retry_of,
                                        started=iso(started), owner=ctx.owner, lease_s=ctx.lease_s,
                                        report_dir=ctx.reports_dir)

    def _end(self, attempt_id: int, outcome: str, report: Path | None, error: str | None) -> None:
        """The ledger takes the outcome of the report just sealed. Ordering: report first (the
        durable record), then the MES spool, then the ledger row, retried for ``ledger_wait_s`` while the ledger is
        busy or away — the attempt's lease is renewed meanwhile, so no other station closes it,
        and should this process die first, whoever closes the attempt finds the sealed report
        and keeps its outcome (never ABORTED beside a PASS report)."""
        ctx = self.ctx
        ctx.ledger.end_attempt(attempt_id, outcome, report_path=report, detail=error, timeout=ctx.ledger_wait_s)

    # -- steps ----------------------------------------------------------------------------------

    def _run_steps(self, st: _State, retry_of: int | None, started: float) -> None:
        flasher = self._connect(st)
        with ExitStack() as esptool:        # one esptool connection from the chip step to the flash step
            session = st.session = self._chip(st, flasher, esptool)
            self._identity(st, retry_of, started)
            with self._step("certificate") as s:
                identity = None
                if st.preprogrammed is not None:
                    c = st.preprogrammed["certificate"]
                    s.status, s.detail = "skipped", f"pre-programmed: {c['subject']} serial {c['serial'][:16]}… from the batch"
                    s.data = {"certificates": [{"slot": name, "serial": c["serial"], "issuer": c["issuer"],
                                                "subject": c["subject"], "fingerprint": c["sha256"],
                                                "key_fingerprint": c["spki_sha256"], "not_after": c["not_after"]}
                                               for name in self.ctx.batch.slots]}  # type: ignore[union-attr]
                elif self.ctx.plan is None or not self.ctx.plan.needs_identity:
                    s.status, s.detail = "skipped", "the recipe installs no unit certificate"
                else:
                    identity = self._issue(st, s)
            self._build(st, identity)
            del identity                    # the key now lives only in the unit image
            self._flash(st, session, esptool)
        if st.at is None:
            for name in ("boot", "configure", "verify"):
                with self._step(name) as s:
                    s.status, s.detail = "skipped", "no AT port"
            return
        with self._step("boot") as s:
            s.detail = _boot(st.at, self.ctx.recipe.verify.boot_timeout_s, announces=self.ctx.unit.announces_ready,
                             bauds=self._bauds)
        with self._step("configure") as s:
            s.detail = self.ctx.unit.configure(st.at)
            s.detail += "; " + _prove_contact(st.at, self.ctx.recipe.verify.command_timeout_s)
        with self._step("verify") as s:
            found = self.ctx.unit.verify(st.client, st.build, mac=st.mac, serial=st.serial)
            st.measurements += found
            failed = [m.name for m in st.measurements if not m.passed]
            s.data = {"measurements": found}
            s.detail = f"{len(st.measurements) - len(failed)}/{len(st.measurements)} checks passed" + (
                f"; failed: {', '.join(failed)}" if failed else "")
            if failed:
                s.status = "fail"
        st.build = None

    def _connect(self, st: _State) -> Flasher:
        ctx, recipe = self.ctx, self.ctx.recipe
        firmware = recipe.profile.firmware
        with self._step("connect") as s:
            flash_dev = resolve_port(self.port.flash)
            st.one_port = ctx.unit.one_uart and self.port.at in (None, self.port.flash)
            if st.one_port:
                # the ROM, not the stub, starts the flashed firmware on the same connection (esptool's
                # stub cannot run user code): the unit is written by the ROM loader, every region
                # (no MD5 in the ESP8266 ROM), then handed over (FlashSession.hand_over)
                s.detail = (f"flash and AT {flash_dev} (one UART0: ROM loader, then handed from esptool to AT at "
                            f"{self._bauds[0]} baud)")
                return Flasher(flash_dev, baud=ctx.flash_baud, firmware=firmware, progress=self._progress,
                               **{**ctx.flasher_options, "stub": False})
            if self.port.at is not None:
                st.at = AtClient(open_port(self.port.at, self._bauds[0]), firmware=firmware,
                                 timeout=recipe.verify.command_timeout_s)
            elif recipe.verify.checks:
                raise InputError(f"port {self.port.label}: no AT port to verify the unit on (--port FLASH,AT)",
                                 field="port")
            s.detail = f"flash {flash_dev}" + (f", AT {self.port.at} at {self._bauds[0]} baud" if st.at else "")
        return Flasher(flash_dev, baud=ctx.flash_baud, firmware=firmware, progress=self._progress,
                       **ctx.flasher_options)

    def _chip(self, st: _State, flasher: Flasher, esptool: ExitStack) -> FlashSession:
        """Open the unit's esptool session (closed by ``esptool``) and read chip and MAC."""
        recipe = self.ctx.recipe
        with self._step("chip") as s:
            session = esptool.enter_context(flasher.session())
            info = session.chip_info
            expected = _esptool_chip_name(recipe.profile.chip)
            st.mac = self._unit = info.mac
            s.data = {"chip": recipe.profile.chip, "mac": info.mac}
            s.detail = f"{info.description}, MAC {info.mac}"
            if info.chip != expected:
                raise InputError(f"port {self.port.label}: the unit is {info.chip}, recipe {recipe.name} is for "
                                 f"{expected}", field="module")
            if recipe.verify.mac_prefixes:
                m = evaluate("mac.prefix", list(recipe.verify.mac_prefixes), info.mac, "prefix")
                st.measurements.append(m)
                s.data["measurements"] = [m]
                if not m.passed:
                    raise UnitFailed(f"MAC {info.mac} is not in verify.mac_prefixes")
        return session

    def _identity(self, st: _State, retry_of: int | None, started: float) -> None:
        ctx, recipe = self.ctx, self.ctx.recipe
        with self._step("identity") as s:
            bound = self._bind_preprogrammed(st)
            ident = ctx.ledger.reserve_identity(st.unit_mac, recipe)
            st.serial = ident.serial
            resumed = []
            for old in ctx.ledger.attempts_for(st.unit_mac):
                if not old.open:
                    continue
                if ctx.ledger.is_live(old.id):      # its station still holds the lease: not ours to close
                    raise DeviceError(f"unit {st.unit_mac} is in attempt {old.id} of {old.station}:{old.port}, "
                                      "which is still running (lease held); not provisioning it here")
                close_stale_attempt(ctx.ledger, old, ctx.reports_dir, recipe_name=recipe.name,
                                    recipe_hash=recipe.hash, recipe_path=recipe.path,
                                    detected_by=f"{ctx.station_id}:{self.port.label}", publish=ctx.publish)
                resumed.append(old.id)
            if retry_of is not None and _chain_mac(ctx.ledger, retry_of) not in (None, st.unit_mac):
                retry_of = None                 # another unit is on the port: a new unit, not a retry
            if retry_of is None:
                last = ctx.ledger.attempts_for(st.unit_mac)
                if last and last[-1].outcome != "PASS":
                    retry_of = last[-1].id      # the unit is tried again: this attempt retries that one
            attempt = self._begin(st, retry_of, started)
            st.attempt_id = attempt.id
            self._unit = ident.serial
            s.data = {"serial": ident.serial, "mac": st.mac, "attempt_id": attempt.id, "attempt": attempt.attempt,
                      "retry_of": retry_of}
            s.detail = (f"serial {ident.serial} ({bound or ('new' if ident.new else 'known unit')}), attempt {attempt.id}"
                        + (f", retry of {retry_of}" if retry_of else "")
                        + (f", closed stale attempt(s) {', '.join(map(str, resumed))} as ABORTED" if resumed else ""))

    def _bind_preprogrammed(self, st: _State) -> str | None:
        """When the unit holds one of the batch's mfg_nvs images (MD5 read from the unit), give
        the identity reserved for it to its MAC; a note for the identity step's detail."""
        batch, session = self.ctx.batch, st.session
        if batch is None or session is None:
            return None
        entry = batch.units.get(session.md5(batch.offset, batch.size))
        if entry is None:
            return None
        ident = bind_preprogrammed(self.ctx.ledger, entry["placeholder"], st.unit_mac)
        if ident.serial != entry["serial"]:
            raise UnitFailed(f"the unit holds pre-programmed serial {entry['serial']} but the ledger has serial "
                             f"{ident.serial} for MAC {st.mac}")
        st.preprogrammed = entry
        return f"pre-programmed, batch {batch.batch_id}: bound to this MAC"

    def _build(self, st: _State, identity: UnitIdentity | None) -> None:
        ctx, plan = self.ctx, self.ctx.unit
        with self._step("build") as s:
            if st.preprogrammed is not None and ctx.batch is not None:   # the unit keeps the batch's mfg_nvs
                assert isinstance(plan, MfgNvsPlan), "batches are made for mfg_nvs recipes only"
                st.build = plan.preprogrammed(ctx.batch.mfg_nvs(st.preprogrammed),
                                              f"mfg_nvs from batch {ctx.batch.batch_id} ({st.preprogrammed['serial']})")
            else:
                st.build = plan.build(ctx.plan.pki_for(identity) if ctx.plan is not None else {})
            if st.build is None:
                s.status, s.detail = "skipped", plan.no_build
                return
            s.data = {"images": st.build.images}
            s.detail = st.build.detail

    def _flash(self, st: _State, session: FlashSession, esptool: ExitStack) -> None:
        ctx, profile = self.ctx, self.ctx.recipe.profile
        with self._step("flash") as s:
            regions: tuple[Region, ...] = ctx.firmware.regions
            if st.build is not None:
                regions = (*regions, *st.build.regions)
            flash_set = FlashSet(tuple(sorted(regions, key=lambda r: r.offset)), flash_mode=profile.flash_mode,
                                 flash_freq=profile.flash_freq, flash_size=profile.flash_size_str,
                                 chip=profile.chip, source=str(ctx.recipe.path))
            if st.at is not None:
                st.at.drain()               # anything the unit printed before it entered download mode
            self._last_progress = -1.0
            result = session.write(flash_set, force=st.one_port)
            if st.one_port:                 # the unit runs its firmware on this port: the AT client takes it
                st.at = AtClient(session.hand_over(self._bauds[0]), firmware=profile.firmware,
                                 timeout=ctx.recipe.verify.command_timeout_s)
            esptool.close()                 # reset (or, handed over, nothing): the unit boots its new firmware
            if result.chip.mac != st.mac:
                raise DeviceError(f"port {self.port.label}: unit changed during the attempt "
                                  f"(MAC {st.mac}, now {result.chip.mac})")
            written = [r.name for r in result.regions if r.action == "written"]
            s.data = {"flash": {"written": written, "skipped": [r.name for r in result.regions if r.action != "written"],
                                "bytes_written": result.bytes_written, "baud": result.baud}}
            s.detail = (f"wrote {', '.join(written) or 'nothing'} ({result.bytes_written} bytes), "
                        f"{len(result.regions) - len(written)} region(s) already on the unit")

    def _issue(self, st: _State, s: _Step) -> UnitIdentity:
        ctx, recipe = self.ctx, self.ctx.recipe
        ca, plan, pki = ctx.ca, ctx.plan, recipe.pki
        assert ca is not None and plan is not None and pki is not None, "only a recipe with a unit identity issues one"
        values = recipe.identity_values(serial=st.unit_serial, mac=st.unit_mac)
        with ctx.ca_lock:
            identity = issue_unit(ca, pki.identity, values, usages=plan.usages or ("clientAuth",))
        plan.check_identity(identity)
        info = identity.public_info()
        slots = [slot_name(x) for x in pki.slots if x.cert == UNIT]
        if ctx.escrow is not None:      # before the key goes anywhere else (one whole record, fsynced)
            escrow_identity(ctx.escrow, identity, serial=st.unit_serial, mac=st.unit_mac, slots=slots,
                            context=PROVISION, attempt_id=st.attempt_id, recipe=recipe.name, station=ctx.station_id)
        ctx.ledger.record_certificate(st.unit_mac, slots, issuer=info["issuer"], cert_serial=info["serial"],
                                      fingerprint=info["sha256"], key_fingerprint=info["spki_sha256"],
                                      not_before=info["not_before"], not_after=info["not_after"],
                                      attempt_id=st.attempt_id)
        s.data = {"certificates": [{"slot": name, "serial": info["serial"], "issuer": info["issuer"],
                                    "subject": info["subject"], "fingerprint": info["sha256"],
                                    "key_fingerprint": info["spki_sha256"], "not_after": info["not_after"]}
                                   for name in slots]}
        s.detail = (f"{info['subject']} serial {info['serial'][:16]}… for {', '.join(slots)}"
                    + (f"; key escrowed to {ctx.escrow.path}" if ctx.escrow is not None else ""))
        return identity


def _chain_mac(ledger: Ledger, attempt_id: int) -> str | None:
    """The MAC of the unit a retry chain is about: the nearest attempt up the chain that knew it."""
    seen: set[int] = set()
    current: int | None = attempt_id
    while current is not None and current not in seen:
        seen.add(current)
        row = ledger.attempt(current)
        if row is None:
            return None
        if row.mac is not None:
            return row.mac
        current = row.retry_of
    return None


#: With a second rate to try, how long ``ready`` is awaited at the first before the unit is looked for
#: with ``AT`` probes (a booting unit prints it well within this: the virtual module at once, a real
#: ESP32 AT / ESP8266 NONOS AT unit within about a second of its reset).
READY_WINDOW_S = 2.0
#: How long one ``AT`` probe waits while the unit's rate is not known yet.
PROBE_S = 0.5


def _boot(at: AtClient, timeout: float, *, announces: bool = True, bauds: tuple[int, ...] = ()) -> str:
    """Wait for ``ready``; without it (output missed, or a firmware that prints none) poll ``AT``
    until ``timeout``; a module silent that long gets :meth:`AtClient.settle` (a write payload
    an earlier contact cut is ended, then it must answer). Costs nothing when the module answers.
    With more than one rate in ``bauds`` (the port is at ``bauds[0]``), see :func:`_find_rate`."""
    if len(bauds) > 1:
        return _find_rate(at, timeout, announces=announces, bauds=bauds)
    start = time.monotonic()
    how = "answered AT (the firmware prints no ready)"
    if announces:
        try:
            at.wait_ready(timeout)
            how = "ready"
        except AtTimeout:
            how = "no ready seen; answered AT"
    # without a ready line to wait for, poll briefly: a probe sent while the unit still boots is lost
    poll = None if announces else min(0.5, timeout)
    while True:
        try:
            at.call("AT", timeout=poll)
            return f"{how} after {time.monotonic() - start:.2f} s"
        except (AtTimeout, AtError):
            if time.monotonic() - start > timeout:
                break
    # silent until the boot timeout: it may still read a write's payload an earlier contact cut
    # (no reset ended it); settle ends it with 0xFF and must then be answered (AtTimeout otherwise)
    if at.settle(longest_payload(at.firmware)):
        return (f"answered after ending a write payload an earlier contact left unfinished "
                f"({time.monotonic() - start:.2f} s)")
    return f"answered AT after {time.monotonic() - start:.2f} s"


def _find_rate(at: AtClient, timeout: float, *, announces: bool, bauds: tuple[int, ...]) -> str:
    """The unit's rate is one of ``bauds``: ``ready`` is awaited at the first (the rate a fresh unit
    boots at, the line's common case) for :data:`READY_WINDOW_S`; then ``AT`` is probed at each rate in
    turn, the others first (no ``ready`` at the first suggests the unit holds another), every probe
    :data:`PROBE_S`, until ``timeout`` (each rate asked at least once; the ready window is at most half of
    ``timeout``). An ``ERROR`` reply is contact at that rate (what a wrong-rate
    probe left in the unit's input) and is asked again there. The port is left at the rate that answered."""
    start = time.monotonic()
    deadline = start + timeout
    first = bauds[0]
    if announces:
        try:
            at.wait_ready(min(timeout / 2, READY_WINDOW_S))
            at.call("AT", timeout=min(timeout, PROBE_S * 2))
            return f"ready at {first} baud (the firmware's boot rate) after {time.monotonic() - start:.2f} s"
        except (AtTimeout, AtError):
            pass
    order = (*bauds[1:], first) if announces else bauds
    tried: list[str] = []
    while True:
        for baud in order:
            at.set_host_baud(baud)
            heard = False
            while True:
                try:
                    at.call("AT", timeout=PROBE_S)
                    why = "the firmware's boot rate" if baud == first else "the unit already holds the recipe's rate"
                    return (f"{'no ready at ' + str(first) + ' baud; ' if announces else ''}answered AT at {baud} "
                            f"baud ({why}) after {time.monotonic() - start:.2f} s")
                except AtError:
                    if heard or time.monotonic() > deadline:
                        break
                    heard = True          # legible ERROR: this is the rate, the probe before left noise
                except AtTimeout:
                    break
            tried.append(str(baud))
            if time.monotonic() > deadline and len(tried) >= len(order):     # every rate asked at least once
                raise DeviceError(f"no answer to AT at {' or '.join(dict.fromkeys(tried))} baud within {timeout:.1f} s "
                                  "of the boot (a unit at another rate reads noise)")


def _prove_contact(at: AtClient, timeout: float) -> str:
    """After configure: the unit answers ``AT`` at the rate the port now runs at (the one configure stored
    and the host followed to); no answer is link trouble, an ERROR of the attempt, never a FAIL."""
    try:
        at.call("AT", timeout=timeout)
    except (AtTimeout, AtError) as exc:
        raise DeviceError(f"the unit does not answer AT at {at.host_baud} baud after configure: "
                          f"{' '.join(str(exc).split())}") from exc
    return f"AT answered at {at.host_baud} baud"


def _esptool_chip_name(chip: str) -> str:
    return CHIP_DEFS[chip].CHIP_NAME


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AtfabError):
        return " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


__all__ = ["UnitRunner", "RunContext", "PortSpec", "AttemptResult", "StopToken", "STEPS"]
