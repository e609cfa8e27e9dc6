"""The rotation fleet driver: ``atfab rotate`` over many deployed modules (docs/rotation.md).

It reads the recipe, journals in the ledger and writes one report per module, one thread per
port - the station's job, as :mod:`atfab.station.runner` does it for provisioning; what happens
to one slot of one unit (reading and writing its items, resolving a journalled rotation, the
results) is :mod:`atfab.rotation`.

For each module (one thread and one :class:`~atfab.link.at.client.AtClient` per port):

1. ``identify``: the base MAC (:func:`atfab.link.at.mac.read_base_mac`: ``AT+CIPSTAMAC?``, or
   ``AT+BLEADDR?`` − 2 on BLE-only firmware) keys the ledger; check the inventory's expectations.
2. ``recover``: resolve every pending rotation the ledger journalled for this unit, from what the
   unit holds now (:func:`atfab.rotation.journal.resume`).
3. ``rotate <slot>``: read the slot's certificate and key (fingerprints; the old key stays in
   memory for a rollback), issue the new identity (``new-key``: new key + certificate, the key
   appended to the recipe's ``[pki] escrow`` file if it has one; ``recertify``: a new certificate
   for the public key of the certificate on the unit), journal the intent, write key then
   certificate, read both back (SHA-256, key matches certificate), record the certificate,
   ``done``. A write the unit refuses, or a read-back that differs, puts the old pair back
   (verified) and ends ``rolled_back``. A lost link leaves the journal pending for the next
   contact.
4. ``restart``: ``AT+RST`` when a slot changed (recipe ``[rotate] restart``).

Each module gets an ``atfab.rotation-report/1`` report (the unit report's layout, plus a
``rotations`` section); :func:`rotate_fleet` returns a :class:`FleetResult`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from ..core.errors import DeviceError, InputError
from ..core.inputs import PEM_LIMIT, read_bytes
from ..core.measurement import FAIL as M_FAIL, Measurement, evaluate
from ..link.at.client import AtClient
from ..link.at.errors import AtBusy, AtError, AtResponseError
from ..link.at.mac import read_base_mac
from ..link.transport import open_port
from ..pki.ca import CertificateAuthority
from ..pki.checks import parse_pem_certs
from ..pki.escrow import EscrowWriter
from ..pki.escrow_policy import ROTATION, escrow_identity, open_escrow
from ..pki.issue import issue_unit, sign_unit_certificate
from ..pki.keys import cert_sha256, spki_sha256
from ..pki.slots import FAMILIES, UNIT, plan_slots
from ..rotation.device import PairState, Secret, SlotPlace, SlotStore, leaf_certificate, slot_places
from ..rotation.inventory import RotateTarget
from ..rotation.journal import JournalDetail, certificate_facts, pem_of, record_done, resume
from ..rotation.results import ERROR, FAIL, PASS, FleetResult, ModuleResult, SlotResult
from ..rotation.stores import cert_file_problem, check_layout, longest_write, open_slot
from .ledger import Ledger, utc_now
from .recipe_checks import PKI_SIZE_ESTIMATE
from .recipe_spec import ROTATE_MODES, Recipe, slot_name
from .report import ReportBuilder, StepHandle

ROTATION_SCHEMA = "atfab.rotation-report/1"
Progress = Callable[[str, str, str], None]          # (port, slot, event)


@dataclass
class RotateOptions:
    """How :func:`rotate_fleet` runs; ``None`` fields take the recipe's ``[rotate]`` values."""

    mode: str | None = None
    slots: tuple[str, ...] = ()
    restart: bool | None = None
    dry_run: bool = False
    station_id: str = field(default_factory=socket.gethostname)
    operator: str | None = None
    report_dir: Path | None = None          # default: <recipe report.dir>/rotations
    reports: bool = True                    # write one report per module (never in a dry run)
    baud: int | None = None
    timeout: float | None = None            # AT reply timeout (default: recipe verify.command_timeout_s)
    workers: int | None = None              # default: one thread per module
    progress: Progress | None = None        # called from the module threads
    opener: Callable[[str, int | None], Any] | None = None   # port opener (default transport.open_port)


@dataclass(frozen=True)
class _Plan:
    recipe: Recipe
    ca: CertificateAuthority | None
    mode: str
    targets: tuple[tuple[SlotPlace, tuple[str, ...]], ...]    # slots to rotate + their usages
    places: dict[str, SlotPlace]                              # every unit slot (for recovery)
    restart: bool
    options: RotateOptions
    escrow: EscrowWriter | None = None                        # new-key mode with a [pki] escrow
    factory_issuers: tuple[x509.Name, ...] = ()               # subjects of the factory CA chain


class IdentityMismatch(DeviceError):
    """The unit holds a factory certificate for another identity than the ledger has for its MAC
    (typically: rotating against another line's ledger). The unit is not touched (ERROR)."""


def _factory_chain(recipe: Recipe, ca: CertificateAuthority | None) -> list:
    if ca is not None:
        return ca.chain_certs()
    pki = recipe.pki
    if pki is None or pki.ca_dir is None or not (pki.ca_dir / "ca.crt").is_file():
        return []
    certs = parse_pem_certs(read_bytes(pki.ca_dir / "ca.crt", "CA certificate", limit=PEM_LIMIT),
                            file=pki.ca_dir / "ca.crt")
    chain = pki.ca_dir / "chain.pem"
    return certs[:1] + (parse_pem_certs(read_bytes(chain, "CA chain", limit=PEM_LIMIT), file=chain)
                        if chain.is_file() else [])


def _chain_fits(recipe: Recipe, ca: CertificateAuthority, places: list[SlotPlace]) -> None:
    """A rotated certificate file (leaf + the CA's intermediates) must fit where the unit's firmware
    keeps it (one AT+SYSMFG write of 1..8191 bytes, ground truth §6; a G1/G2 certificate partition):
    refused before any unit is touched."""
    assert recipe.pki is not None
    leaf, _key = PKI_SIZE_ESTIMATE.get(recipe.pki.identity.key_type, PKI_SIZE_ESTIMATE["rsa-4096"])
    chain = len(ca.intermediates_pem())
    problem = cert_file_problem(recipe.profile, places, leaf + chain)
    if problem is not None:
        raise InputError(f"a rotated certificate file (about {leaf} bytes of certificate + {chain} bytes of CA chain) "
                         f"would be {problem}", file=recipe.path, field="pki.ca")


def plan_rotation(recipe: Recipe, ca: CertificateAuthority | None, options: RotateOptions) -> _Plan:
    """Check the recipe and options; which slots are rotated and where they live."""
    if recipe.pki is None:
        raise InputError("the recipe has no [pki] table: nothing to rotate", file=recipe.path, field="pki")
    mode = options.mode or recipe.rotate.mode
    if mode not in ROTATE_MODES:
        raise InputError(f"must be one of {', '.join(ROTATE_MODES)}, not {mode!r}", field="--mode")
    if ca is None and not options.dry_run:
        raise InputError("rotation needs the factory CA (with its key)", file=recipe.path, field="pki.ca")
    plan = plan_slots(list(recipe.pki.slots), firmware=recipe.profile.firmware,
                      factory_ca=_factory_chain(recipe, ca) or None, source=str(recipe.path))
    places = slot_places(plan)
    wanted = options.slots or recipe.rotate.slots or tuple(places)
    specs = {slot_name(s): s for s in recipe.pki.slots if s.cert == UNIT}
    targets = []
    for name in wanted:
        if name not in places or name not in specs:
            raise InputError(f"{name!r} is not a unit identity slot of the recipe (those are: "
                             f"{', '.join(places) or 'none'})", file=recipe.path, field="--slot")
        spec = specs[name]
        targets.append((places[name], tuple(spec.usage or (FAMILIES[spec.family][1],))))
    check_layout(recipe.profile, [p for p, _u in targets], file=recipe.path)
    if ca is not None:
        _chain_fits(recipe, ca, [p for p, _u in targets])
    restart = recipe.rotate.restart if options.restart is None else options.restart
    issuers = tuple(c.subject for c in _factory_chain(recipe, ca))
    return _Plan(recipe, ca, mode, tuple(targets), places, restart, options, factory_issuers=issuers)


def _default_opener(port: str, baud: int | None) -> Any:
    return open_port(port, baud)


class _Readback(Exception):
    """Read-back after a write differs from what was written (message: the differences)."""


class _ModuleRun:
    """One module's rotation on its own port; :meth:`run` never raises for unit or link trouble."""

    def __init__(self, plan: _Plan, target: RotateTarget, ledger: Ledger | None) -> None:
        self.plan = plan
        self.target = target
        self.ledger = ledger
        self.opts = plan.options
        self.res = ModuleResult(target.port, target.name)
        self.builder: ReportBuilder | None = None
        self.mac = ""
        self.serial: str | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _event(self, slot: str, event: str) -> None:
        if self.opts.progress is not None:
            self.opts.progress(self.target.port, slot, event)

    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[StepHandle]:
        if self.builder is None:
            yield StepHandle(name)
            return
        with self.builder.step(name) as handle:
            yield handle

    def _report_start(self) -> None:
        r = self.plan.recipe
        if self.opts.dry_run or not self.opts.reports:
            return
        self.builder = ReportBuilder(self.opts.report_dir or r.report.dir / "rotations", recipe_name=r.name,
                                     recipe_hash=r.hash, recipe_path=r.path, station_id=self.opts.station_id,
                                     port=self.target.port, operator=self.opts.operator, schema=ROTATION_SCHEMA)

    def _report_seal(self, client: AtClient | None) -> None:
        b = self.builder
        if b is None:
            return
        b.set_unit(chip=self.plan.recipe.profile.chip, mac=self.res.mac, serial=self.res.serial)
        b.set_section("rotation", {"mode": self.plan.mode, "inventory": {"mac": self.target.mac,
                                                                          "serial": self.target.serial,
                                                                          "name": self.target.name}})
        b.set_section("rotations", [s.to_json() for s in self.res.slots])
        if client is not None and self.plan.recipe.report.transcript:
            b.set_transcript(client.transcript)
        self.res.report_path = str(b.seal(self.res.outcome, error=self.res.error))

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> ModuleResult:
        started = time.monotonic()
        client: AtClient | None = None
        self._report_start()
        try:
            with self._step("connect"):
                port = (self.opts.opener or _default_opener)(self.target.port, self.opts.baud)
                client = AtClient(port, firmware=self.plan.recipe.profile.firmware,
                                  timeout=self.opts.timeout or self.plan.recipe.verify.command_timeout_s)
                # a write an earlier contact left reading its payload is ended (not in a dry run: read only)
                client.settle(longest_write(client.firmware), end_pending=not self.opts.dry_run)
            with self._step("identify") as h:
                self._identify(client)
                h.detail = {"mac": self.mac, "serial": self.serial}
            settled = self._recover(client)
            for place, usages in self.plan.targets:
                if place.slot not in settled:
                    self._rotate_slot(client, place, usages)
            if self.plan.restart and not self.opts.dry_run and any(
                    s.state == "done" and s.action != "plan" for s in self.res.slots):
                with self._step("restart"):
                    client.restart(wait_ready=True, timeout=self.plan.recipe.verify.boot_timeout_s)
        except (DeviceError, InputError) as exc:
            self.res.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one module's bug must not hide the others' results
            self.res.error = f"{type(exc).__name__}: {exc}"
        finally:
            if client is not None:
                client.close()
            self.res.outcome = self._outcome()
            self.res.duration_s = round(time.monotonic() - started, 3)
            try:
                self._report_seal(client)
            except (DeviceError, OSError) as exc:
                self.res.outcome, self.res.error = ERROR, f"report not written: {exc}"
        return self.res

    def _outcome(self) -> str:
        outcomes = {s.outcome for s in self.res.slots}
        if self.res.error or ERROR in outcomes:
            return ERROR
        return FAIL if FAIL in outcomes else PASS

    def _identify(self, client: AtClient) -> None:
        self.mac = self.res.mac = read_base_mac(client)
        t = self.target
        if t.mac is not None and t.mac != self.mac:
            raise DeviceError(f"unit on {t.port} has MAC {self.mac}, the inventory expects {t.mac}: not touched")
        unit = self.ledger.unit(self.mac) if self.ledger is not None else None
        if unit is not None:
            self.serial = unit.serial
        elif t.serial is not None:
            raise DeviceError(f"unit {self.mac} is not in the ledger, the inventory expects serial {t.serial}")
        # an unknown unit is registered once its certificate shows it is not another ledger's unit
        if t.serial is not None and self.serial != t.serial:
            raise DeviceError(f"unit {self.mac} is serial {self.serial} in the ledger, the inventory expects "
                              f"{t.serial}: not touched")
        self.res.serial = self.serial

    def _recover(self, client: AtClient) -> set[str]:
        """Resolve pending rotations of this unit; the slots not to rotate now: those that ended
        ``done`` and those still pending (unresolved: an ERROR already)."""
        pending = self.ledger.pending_rotations(self.mac) if self.ledger is not None else []
        done: set[str] = set()
        if not pending:
            return done
        with self._step("recover") as h:
            for rot in pending:
                detail = JournalDetail.loads(rot.detail)
                place = self.plan.places.get(rot.slot)
                if detail is not None:
                    (cns, ck), (kns, kk) = detail.cert_item.split("/", 1), detail.key_item.split("/", 1)
                    index = int(rot.slot.rsplit(".", 1)[-1]) if rot.slot[-1:].isdigit() else 0
                    place = SlotPlace(rot.slot, index, cns, ck, kns, kk)
                if place is None:
                    self.res.slots.append(SlotResult(rot.slot, "resume", ERROR, rot.state, rot.id, message=(
                        f"rotation {rot.id}: slot {rot.slot} is not in this recipe and the journal does not "
                        f"say where it lives; left pending")))
                    done.add(rot.slot)
                    continue
                result = resume(rot, open_slot(client, place), self.ledger,  # type: ignore[arg-type]
                                dry_run=self.opts.dry_run, progress=lambda e, s=rot.slot: self._event(s, e))
                self.res.slots.append(result)
                if result.state == "done" or result.outcome != PASS or (
                        self.opts.dry_run and result.unit_holds not in ("old_pair", "ledger_pair")):
                    done.add(rot.slot)
                if result.state == "done":
                    self._add_done(result)
            bad = [s for s in self.res.slots if s.action == "resume" and s.outcome != PASS]
            h.detail = [s.message for s in self.res.slots if s.action == "resume"]
            if bad:
                h.outcome = "error"
        return done

    def _add_done(self, r: SlotResult) -> None:
        if self.builder is None or r.certificate is None:
            return
        c = r.certificate
        self.builder.add_certificate(r.slot, serial=c["serial"], issuer=c["issuer"], subject=c["subject"],
                                     fingerprint=c["fingerprint_sha256"],
                                     key_fingerprint=c["key_fingerprint_sha256"], not_after=c["not_after"])
        after = r.after
        self.builder.add_measurements([
            evaluate(f"{r.slot}.cert_sha256", r.new_cert_fp, after.cert_fp if after else None),
            evaluate(f"{r.slot}.key_matches_cert", True, after.matched if after else None),
        ])

    # -- one slot -----------------------------------------------------------------------------------
    def _rotate_slot(self, client: AtClient, place: SlotPlace, usages: tuple[str, ...]) -> None:
        r = SlotResult(place.slot, "plan" if self.opts.dry_run else "rotate", ERROR, mode=self.plan.mode)
        self.res.slots.append(r)
        with self._step(f"rotate {place.slot}") as h:
            try:
                self._rotate(client, open_slot(client, place), r, usages)
            finally:
                h.detail = r.message or None
                if r.outcome == FAIL:
                    h.outcome = "fail"
                    if self.builder is not None:
                        self.builder.add_measurement(Measurement(f"{r.slot}.rotation", "done", r.state, "equal",
                                                                 M_FAIL, r.message))
                elif r.outcome == ERROR:
                    h.outcome = "error"
            if r.state == "done":
                self._add_done(r)

    def _issue(self, slot: str, old_cert: Any, usages: tuple[str, ...]) -> tuple[Any, bytes, Secret | None]:
        recipe, ca = self.plan.recipe, self.plan.ca
        assert ca is not None and recipe.pki is not None
        template = recipe.pki.identity
        values = recipe.identity_values(serial=self.serial or "", mac=self.mac)
        if self.plan.mode == "new-key":
            ident = issue_unit(ca, template, values, usages=usages)
            if self.plan.escrow is not None:    # before the key goes anywhere else (one whole record, fsynced)
                escrow_identity(self.plan.escrow, ident, serial=self.serial or self.mac, mac=self.mac, slots=[slot],
                                context=ROTATION, recipe=recipe.name, station=self.opts.station_id)
            return ident.cert, ident.cert_file_pem(), Secret(ident.private_key_pem_for_mfg())
        cert = sign_unit_certificate(ca, old_cert.public_key(), template.subject_name(values), template.san(values),
                                     days=template.days, usages=usages, source=template.source)
        return cert, pem_of(cert) + ca.intermediates_pem(), None

    def _rotate(self, client: AtClient, io: SlotStore, r: SlotResult, usages: tuple[str, ...]) -> None:
        slot = r.slot
        state, old_file, old_key = io.read_pair(with_key=not self.opts.dry_run)
        r.before = state
        try:
            self._check_holder(leaf_certificate(old_file) if old_file else None)
        except IdentityMismatch as exc:
            r.message = str(exc)
            raise
        if self.opts.dry_run:
            ok = state.cert_fp is not None
            r.outcome = PASS if ok else FAIL
            r.message = (f"would {'issue a new key and certificate' if self.plan.mode == 'new-key' else 're-certify the key'}"
                         if ok else f"cannot rotate: {state.problem}")
            return
        if state.problem or not state.matched or old_file is None:
            r.outcome = FAIL
            r.message = f"not rotated: the slot does not hold a valid pair ({state.problem or 'key mismatch'})"
            return
        new_cert, new_file, new_key = self._issue(slot, leaf_certificate(old_file), usages)
        extra = io.prepare(new_file, new_key, file=self.plan.recipe.path,        # before the journal and any write
                           field=f"pki.slot {slot}")
        r.new_cert_fp, r.new_key_fp = cert_sha256(new_cert), spki_sha256(new_cert)
        p = io.place
        detail = JournalDetail(self.plan.mode, f"{p.cert_ns}/{p.cert_key}", f"{p.key_ns}/{p.key_key}",
                               new_file.decode("ascii"), extra=extra)
        assert self.ledger is not None
        rot = self.ledger.journal_rotation(self.mac, slot, new_cert_fp=r.new_cert_fp, new_key_fp=r.new_key_fp,
                                           old_cert_fp=state.cert_fp, old_key_fp=state.key_fp,
                                           detail=detail.dumps("intent"))
        r.rotation_id, r.state = rot.id, rot.state
        self._event(slot, "intent")
        wrote_key = wrote_cert = False

        def advance(new_state: str) -> None:
            self.ledger.update_rotation(rot.id, new_state)  # type: ignore[union-attr]
            r.state = new_state
            self._event(slot, new_state)

        try:
            if new_key is not None:
                wrote_key = True
                io.write_key(new_key)
                advance("key_written")
            wrote_cert = True
            io.write_cert(new_file)
            advance("cert_written")
            problems, after = io.check_readback(new_file, new_key)
            r.after = after
            if problems:
                raise _Readback("; ".join(problems))
            record_done(self.ledger, rot, new_cert, "rotated", detail)
            r.state, r.outcome = "done", PASS
            r.certificate = certificate_facts(new_cert)
            r.message = f"rotated (rotation {rot.id})"
            self._event(slot, "done")
        except (AtError, _Readback) as exc:
            if isinstance(exc, (AtBusy, AtResponseError)):
                self._left_pending(r, rot.id, exc)
                raise
            # The unit answered ERROR (it is back in command mode) or stored other bytes: put the
            # old pair back while the link is up.
            try:
                r.after = self._rollback(io, rot.id, old_file, old_key if wrote_key else None, wrote_cert,
                                         detail, str(exc))
            except DeviceError as rb:
                self._left_pending(r, rot.id, rb, f"{exc}; rollback failed")
                raise DeviceError(r.message) from rb
            r.state, r.outcome = "rolled_back", FAIL
            r.message = f"{exc}: old pair restored and verified (rotation {rot.id} rolled_back)"
            self._event(slot, "rolled_back")
        except DeviceError as exc:
            # Lost link, timeout (the unit may still wait for payload bytes), ledger trouble: the
            # unit's state is settled on the next contact from the journal, not guessed now.
            self._left_pending(r, rot.id, exc)
            raise

    def _check_holder(self, cert: x509.Certificate | None) -> None:
        """Refuse a unit whose factory certificate names another identity than the ledger's for its
        MAC; register a unit the ledger does not know (unless its certificate is the factory's).

        A certificate counts as the factory's when its issuer is in the recipe's CA chain. It
        matches the ledger when the ledger recorded it for this MAC, or when its subject is the
        recipe's ``[pki.identity]`` subject for the ledger's serial and this MAC.
        """
        recipe = self.plan.recipe
        factory = cert is not None and cert.issuer in self.plan.factory_issuers
        if cert is None or not factory:
            if self.serial is None and self.ledger is not None and not self.opts.dry_run:
                self.serial = self.res.serial = self.ledger.reserve_identity(self.mac, recipe).serial
            return
        holds = cert.subject.rfc4514_string()
        if self.serial is None:
            raise IdentityMismatch(
                f"unit {self.mac} holds a factory certificate ({holds}) but this ledger does not know its MAC: "
                f"it was provisioned against another ledger; not touched (give its ledger with --ledger)")
        assert self.ledger is not None and recipe.pki is not None
        if cert_sha256(cert) in {c.fingerprint for c in self.ledger.certificates_for(self.mac)}:
            return
        values = recipe.identity_values(serial=self.serial, mac=self.mac)
        expected = recipe.pki.identity.subject_name(values)
        if cert.subject != expected:
            raise IdentityMismatch(
                f"unit {self.mac} holds a certificate for {holds}, but this ledger has serial {self.serial} for "
                f"that MAC ({expected.rfc4514_string()}) and never recorded the unit's certificate: not touched "
                f"(rotating against another line's ledger?)")
        want_san = recipe.pki.identity.san(values)
        if want_san is not None:
            try:
                san: object = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                san = None
            if san != want_san:
                shown = ", ".join(str(n.value) for n in san) if isinstance(san, x509.SubjectAlternativeName) else "none"
                raise IdentityMismatch(
                    f"unit {self.mac} holds a certificate whose subject alternative names ({shown}) are not the "
                    f"ones of this MAC ({', '.join(str(n.value) for n in want_san)}), and the ledger never recorded "
                    f"it: not touched (a certificate copied from another unit?)")

    def _left_pending(self, r: SlotResult, rotation_id: int, exc: BaseException, what: str | None = None) -> None:
        r.message = (f"{what or exc} at {r.state}: rotation {rotation_id} left pending, resolved on the next "
                     f"contact")
        self._event(r.slot, "interrupted")

    def _rollback(self, io: SlotStore, rotation_id: int, old_file: bytes, old_key: Secret | None,
                  wrote_cert: bool, detail: JournalDetail, reason: str) -> PairState:
        # certificate first: a cut between the two leaves "new key + old certificate", which the next
        # contact completes from the journal; "old key + new certificate" could only be guessed at
        if wrote_cert:
            io.write_cert(old_file)
        if old_key is not None:
            io.write_key(old_key)
        problems, after = io.check_readback(old_file, old_key)
        if problems:
            raise DeviceError("; ".join(problems))
        self.ledger.update_rotation(rotation_id, "rolled_back",  # type: ignore[union-attr]
                                    detail=detail.dumps(f"rolled back: {reason}"))
        return after


def rotate_fleet(recipe: Recipe, targets: list[RotateTarget], *, ca: CertificateAuthority | None,
                 ledger: Ledger | None, options: RotateOptions | None = None) -> FleetResult:
    """Rotate the recipe's unit identity slots on every target, in parallel (one thread per port).

    ``ca`` (with its key) is required unless ``options.dry_run``; ``ledger`` may be None only
    in a dry run. Unit and link trouble end up in the results; bad input raises InputError.
    """
    options = options or RotateOptions()
    if not targets:
        raise InputError("no modules to rotate: give --port or --inventory", field="--port")
    if ledger is None and not options.dry_run:
        raise InputError("rotation needs the ledger (journal)", field="--ledger")
    plan = plan_rotation(recipe, ca, options)
    if plan.mode == "new-key" and not options.dry_run:
        plan = replace(plan, escrow=open_escrow(recipe, station_id=options.station_id, started=utc_now()))
    workers = max(1, min(options.workers or len(targets), len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atfab-rotate") as pool:
        results = list(pool.map(lambda t: _ModuleRun(plan, t, ledger).run(), targets))
    return FleetResult(recipe.name, plan.mode, options.dry_run, results,
                       escrow=str(plan.escrow.path) if plan.escrow is not None else None)


__all__ = ["ROTATION_SCHEMA", "IdentityMismatch", "RotateOptions", "ModuleResult", "FleetResult", "plan_rotation", "rotate_fleet",
           "RotateTarget", "SlotResult"]
