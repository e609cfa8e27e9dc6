"""Fault campaign support (bench/fault_campaign.py, tests/test_fault_campaign.py).

Three ideas, none of them part of the atfab library:

* **Fault scheduling** on virtual modules: :class:`CampaignFaults` (a :class:`FaultPlan` that
  counts the bytes of every closed connection) and :func:`instrumented_firmware` (the simulator's
  AT firmware, seeing every command line first) let a fault be armed at a random *point*: a byte
  offset of the link traffic, the K-th AT command, or the N-th write command. :func:`choose_fault`
  picks a kind and a point from the traffic a fault-free run of the same operation produced.
* **Ground truth** (:func:`read_device`): what the module's NOR flash really holds, decoded here
  from a flash snapshot with the format readers (partition table, NVS, app image) and
  ``cryptography``, never through atfab's own verification or rotation code.
* **Invariants** (:func:`content_problems`, :func:`ledger_claims_good`, :func:`check_reports`,
  :func:`check_duplicates`): what must hold after every step of the campaign.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from atfab.image import partition_table
from atfab.image.appimage import read_app_info
from atfab.core.errors import OUTCOMES, InputError
from atfab.image.nvs.reader import read_nvs
from atfab.sim.faults import FaultPlan

# ------------------------------------------------------------------------------ fault scheduling

#: Fault kinds per operation. "none" is the control group.
PROVISION_FAULTS = ("none", "flash_drop_rx", "flash_drop_tx", "flash_stall", "flash_corrupt", "at_drop_rx",
                    "at_drop_tx", "at_stall", "at_corrupt", "busy", "garbage", "urc", "stall_reply",
                    "corrupt_read", "power_cut", "abort")
ROTATE_FAULTS = ("none", "at_drop_rx", "at_drop_tx", "at_stall", "at_corrupt", "busy", "garbage", "urc",
                 "stall_reply", "corrupt_read", "error_write", "power_loss_writes", "drop_between_writes",
                 "power_cut")
#: AT-level faults, armed just before the n-th command (corrupt_read: raw read; error_write,
#: power_loss_writes: write command) of the operation.
AT_LEVEL = ("busy", "garbage", "urc", "stall_reply", "corrupt_read", "error_write", "power_loss_writes")
URCS = ("WIFI CONNECTED", "WIFI GOT IP", "WIFI DISCONNECT", "+TIME_UPDATED", '+BLECONN:0,"24:0a:c4:00:00:01"',
        "+CWJAP:1")
GARBAGE = (b"\x00\xff\xfe", b"\r\n\r\n", b"+IPD,3:abc", b"\xffready\r\n", b"\r\n+\r\n")


#: Command lines that write (AT+SYSMFG=2 / AT+SYSFLASH=1) and read raw values (=1 / =2).
WRITES = (b"AT+SYSMFG=2,", b"AT+SYSFLASH=1,")
READS = (b"AT+SYSMFG=1,", b"AT+SYSFLASH=2,")
_NAMES = {(): "AT command", READS: "raw read", WRITES: "write"}


@dataclass
class Trigger:
    """Arm ``arm(plan, link)`` just before the ``nth`` command line starting with one of ``match``
    (any command when ``match`` is empty) runs."""

    arm: Callable[[FaultPlan, Any], None]
    nth: int = 0
    match: tuple[bytes, ...] = ()
    fired: bool = False
    seen: int = 0


class Instrument:
    """What one module's traffic looked like, and the pending command trigger (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commands = 0                        # AT command lines since reset()
        self.writes = 0                          # write command lines (WRITES) since reset()
        self.reads = 0                           # raw read command lines (READS) since reset()
        self.connections: list[tuple[str, int, int]] = []   # closed connections: (side, tx, rx)
        self.trigger: Trigger | None = None
        self.firmwares: list[Any] = []           # firmware objects booted since reset() (their .errors)

    def reset(self) -> None:
        with self.lock:
            self.commands = self.writes = self.reads = 0
            self.connections = []
            self.trigger = None
            self.firmwares = []

    def on_command(self, plan: FaultPlan, link: Any, line: bytes) -> None:
        with self.lock:
            self.commands += 1
            self.writes += line.startswith(WRITES)
            self.reads += line.startswith(READS)
            t = self.trigger
            if t is None or t.fired or (t.match and not line.startswith(t.match)):
                return
            t.seen += 1
            if t.seen > t.nth:
                t.fired = True
                t.arm(plan, link)

    def closed(self, side: str, tx: int, rx: int) -> None:
        with self.lock:
            self.connections.append((side, tx, rx))

    def sim_errors(self) -> list[BaseException]:
        """Exceptions the simulated AT firmware caught in its handlers (simulator bugs)."""
        with self.lock:
            return [e for fw in self.firmwares for e in getattr(fw, "errors", [])]


@dataclass
class CampaignFaults(FaultPlan):
    """A :class:`FaultPlan` that also feeds an :class:`Instrument` (connection byte counts)."""

    def __post_init__(self) -> None:
        self.instrument = Instrument()

    def consume_fired(self, side: str, link: Any) -> None:
        self.instrument.closed(side, link.tx_count, link.rx_count)
        super().consume_fired(side, link)


def instrumented_firmware(host: Any) -> Any:
    """The simulator's AT firmware, reporting every command line to ``host.faults.instrument``."""
    from atfab.sim.at_firmware import AtFirmware

    fw = AtFirmware(host)
    inst = getattr(host.faults, "instrument", None)
    if inst is None:
        return fw
    with inst.lock:
        inst.firmwares.append(fw)
    run_line = fw._run_line

    def hooked(ctx: Any, line: bytes) -> Any:
        inst.on_command(host.faults, ctx.link, line)
        return run_line(ctx, line)

    fw._run_line = hooked  # type: ignore[method-assign]
    return fw


@dataclass
class Traffic:
    """A fault-free run of one operation: connections per side, AT commands, writes, seconds."""

    flash: list[tuple[int, int]] = field(default_factory=list)
    at: list[tuple[int, int]] = field(default_factory=list)
    commands: int = 0
    writes: int = 0
    reads: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, inst: Instrument, seconds: float) -> "Traffic":
        with inst.lock:
            conns = list(inst.connections)
            return cls([(tx, rx) for s, tx, rx in conns if s == "flash"], [(tx, rx) for s, tx, rx in conns if s == "at"],
                       inst.commands, inst.writes, inst.reads, seconds)


@dataclass
class Fault:
    """One planned fault: its kind, where it strikes (human readable) and how it is armed."""

    kind: str
    point: str
    setup: Callable[[FaultPlan], None] | None = None       # before the operation starts
    trigger: Trigger | None = None                          # armed at an AT command
    timer: float | None = None                              # seconds after the start (power_cut, abort)


def _offset(rng: random.Random, conns: list[tuple[int, int]], direction: int) -> int:
    """A byte offset inside one of the observed connections (direction 0 = tx, 1 = rx)."""
    sizes = [c[direction] for c in conns if c[direction] > 1] or [64]
    return rng.randint(1, rng.choice(sizes) - 1) if max(sizes) > 1 else 1


def choose_fault(rng: random.Random, op: str, traffic: Traffic) -> Fault:
    """A random fault for ``op`` ("provision"/"rotate") at a random point of ``traffic``."""
    kinds = PROVISION_FAULTS if op == "provision" else ROTATE_FAULTS
    kind = rng.choice(kinds)
    if kind == "none":
        return Fault(kind, "-")
    side, _, what = kind.partition("_")
    if side in ("flash", "at") and what in ("drop_rx", "drop_tx", "stall", "corrupt"):
        conns = traffic.flash if side == "flash" else traffic.at
        direction = 1 if what == "drop_rx" else 0
        n = _offset(rng, conns, direction)
        stall = round(rng.uniform(0.3, 6.0), 2)

        def setup(plan: FaultPlan, side: str = side, what: str = what, n: int = n, stall: float = stall) -> None:
            lf = getattr(plan, side)
            if what == "drop_rx":
                lf.drop_after_rx = n
            elif what == "drop_tx":
                lf.drop_after_tx = n
            elif what == "stall":
                lf.stall_after_tx, lf.stall_seconds = n, stall
            else:
                lf.corrupt_tx_at = n
        point = f"{side} {'rx' if direction else 'tx'} byte {n}" + (f", {stall} s" if what == "stall" else "")
        return Fault(kind, point, setup=setup)
    if kind in AT_LEVEL:
        busy, garbage, urc = rng.randint(1, 4), rng.choice(GARBAGE), rng.choice(URCS)
        stall = round(rng.uniform(0.3, 7.0), 2)
        if kind == "corrupt_read":          # the n-th raw read of the operation
            trig, count = READS, traffic.reads
        elif kind in ("error_write", "power_loss_writes"):   # the n-th write (power: right after it)
            trig, count = WRITES, traffic.writes
        else:
            trig, count = (), traffic.commands
        n = rng.randrange(max(1, count))

        def arm(plan: FaultPlan, link: Any, kind: str = kind) -> None:
            if kind == "busy":
                plan.busy_next = busy
            elif kind == "garbage":
                plan.garbage_between_lines = garbage
            elif kind == "urc":
                plan.urc_between_lines = urc
            elif kind == "stall_reply":
                plan.stall_reply_seconds = stall
            elif kind == "corrupt_read":
                plan.corrupt_next_read = True
            elif kind == "error_write":
                plan.error_next_write = True
            else:
                plan.power_loss_after_writes = 1
        extra = {"busy": f" x{busy}", "garbage": f" {garbage!r}", "urc": f" {urc!r}",
                 "stall_reply": f" {stall} s", "power_loss_writes": " (power lost once it is committed)"}.get(kind, "")
        return Fault(kind, f"{_NAMES[trig]} {n}{extra}", trigger=Trigger(arm, nth=n, match=trig))
    if kind == "drop_between_writes":
        rx = rng.random() < 0.5
        nth = 1 if traffic.writes >= 2 else 0

        def arm_drop(plan: FaultPlan, link: Any) -> None:
            if rx:
                plan.at.drop_after_rx = link.rx_count + 1
            else:
                plan.at.drop_after_tx = link.tx_count + 1
        return Fault(kind, f"link drop at write {nth} ({'before its payload' if rx else 'before it runs'})",
                     trigger=Trigger(arm_drop, nth=nth, match=WRITES))
    delay = round(rng.uniform(0.0, max(0.01, traffic.seconds)), 4)   # power_cut / abort
    return Fault(kind, f"{delay} s after start", timer=delay)


# ----------------------------------------------------------------------------------- ground truth

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cert_fp(cert: x509.Certificate) -> str:
    return _sha(cert.public_bytes(serialization.Encoding.DER))


def spki_fp(public_key: Any) -> str:
    return _sha(public_key.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo))


@dataclass
class DeviceView:
    """What the module's flash holds, decoded independently of atfab's verify/rotate code."""

    problems: list[str] = field(default_factory=list)      # structure that is not what the profile says
    factory_param: dict[str, Any] = field(default_factory=dict)
    cert_fp: str | None = None
    cert_spki: str | None = None
    cert_serial: str | None = None
    key_spki: str | None = None
    ca_fps: list[str] = field(default_factory=list)
    app_version: str | None = None

    @property
    def pair_matched(self) -> bool:
        return self.cert_spki is not None and self.cert_spki == self.key_spki


def _table_rows(table: Any) -> list[tuple]:
    return [(p.name, p.type, p.subtype, p.offset, p.size) for p in table.entries]


def _slot_blob(image: Any, ns: str, index: int) -> bytes | None:
    names = [f"{ns}.{index}"] + ([ns] if index == 0 else [])
    for key in names:
        e = image.get(ns, key)
        if e is not None and isinstance(e.value, bytes):
            return e.value
    return None


def read_device(snapshot: bytes, profile: Any, firmware_regions: tuple = (), *, slot: tuple[str, int] = ("client", 0)
                ) -> DeviceView:
    """Decode the module's flash: partition tables, mfg_nvs factory_param and one TLS slot, app image."""
    v = DeviceView()
    for region in firmware_regions:
        if snapshot[region.offset:region.offset + len(region.data)] != region.data:
            v.problems.append(f"firmware region {region.name} differs from the recipe's")
    try:
        primary = partition_table.decode(snapshot[profile.partition_table_offset:profile.partition_table_offset + 0xC00])
    except InputError as exc:
        v.problems.append(f"partition table unreadable: {exc}")
        return v
    if _table_rows(primary) != _table_rows(profile.primary):
        v.problems.append("partition table differs from the module profile's")
    try:
        v.app_version = read_app_info(snapshot[profile.app_offset:profile.app_offset + 0x10000]).version
    except InputError as exc:
        v.problems.append(f"no app image: {exc}")
    atc = profile.at_customize_offset
    try:
        custom = partition_table.decode(snapshot[atc:atc + 0xC00])
    except InputError as exc:
        v.problems.append(f"at_customize table unreadable: {exc}")
        return v
    if _table_rows(custom) != _table_rows(profile.at_customize):
        v.problems.append("at_customize table differs from the module profile's")
    mfg = custom.find("mfg_nvs")
    if mfg is None:
        v.problems.append("no mfg_nvs partition")
        return v
    try:
        image = read_nvs(snapshot[mfg.offset:mfg.offset + mfg.size])
    except InputError as exc:
        v.problems.append(f"mfg_nvs unreadable: {exc}")
        return v
    v.factory_param = {e.key: e.value for e in image.keys("factory_param")}
    family, index = slot
    cert_blob = _slot_blob(image, f"{family}_cert", index)
    key_blob = _slot_blob(image, f"{family}_key", index)
    ca_blob = _slot_blob(image, f"{family}_ca", index)
    if cert_blob is not None:
        try:
            certs = x509.load_pem_x509_certificates(cert_blob)
            v.cert_fp, v.cert_spki = cert_fp(certs[0]), spki_fp(certs[0].public_key())
            v.cert_serial = f"{certs[0].serial_number:x}"
        except ValueError:
            v.problems.append("certificate item does not hold a PEM certificate")
    if key_blob is not None:
        try:
            v.key_spki = spki_fp(serialization.load_pem_private_key(key_blob, None).public_key())
        except (ValueError, TypeError):
            v.problems.append("key item does not hold a PEM private key")
    if ca_blob is not None:
        try:
            v.ca_fps = [cert_fp(c) for c in x509.load_pem_x509_certificates(ca_blob)]
        except ValueError:
            v.problems.append("CA item does not hold PEM certificates")
    return v


@dataclass(frozen=True)
class Expected:
    """What every unit of the recipe must hold (the certificate itself is per unit)."""

    factory_param: dict[str, Any]
    ca_fps: tuple[str, ...]
    app_version: str | None


def content_problems(v: DeviceView, expected: Expected, cert: str | None) -> list[str]:
    """How the device differs from the recipe with certificate fingerprint ``cert`` (empty: equal)."""
    out = list(v.problems)
    for key, value in expected.factory_param.items():
        if v.factory_param.get(key) != value:
            out.append(f"factory_param.{key} = {v.factory_param.get(key)!r}, recipe {value!r}")
    if expected.app_version is not None and v.app_version != expected.app_version:
        out.append(f"app version {v.app_version}, recipe {expected.app_version}")
    if tuple(v.ca_fps) != expected.ca_fps:
        out.append("CA item differs from the factory CA chain")
    if v.cert_fp is None:
        out.append("no unit certificate")
    elif cert is not None and v.cert_fp != cert:
        out.append(f"certificate {v.cert_fp[:12]} is not the expected {cert[:12]}")
    if not v.pair_matched:
        out.append("key does not match the certificate")
    return out


# ------------------------------------------------------------------------------------- invariants

def ledger_claims_good(ledger: Any, mac: str, slot: str = "client.0") -> tuple[bool, str | None]:
    """(the ledger says the unit is good, its current certificate fingerprint for ``slot``).

    Good: the last provisioning attempt PASSed and no rotation is pending. The current
    certificate is the newest one recorded for the slot.
    """
    unit = ledger.unit(mac)
    if unit is None:
        return False, None
    certs = ledger.certificates_for(mac, slot)
    current = certs[-1].fingerprint if certs else None
    return unit.last_outcome == "PASS" and not ledger.pending_rotations(mac), current


UNIT_REPORT_KEYS = {"schema", "outcome", "error", "attempt_id", "attempt", "retry_of", "started", "ended",
                    "duration_s", "recipe", "station", "unit", "firmware", "images", "certificates", "tools",
                    "steps", "measurements", "transcript"}


def report_problem(path: str | Path | None, *, schema: str, outcome: str | None = None,
                   attempt_id: int | None = None) -> str | None:
    """Why the report at ``path`` is missing/truncated/wrong (None when it is a complete report)."""
    from atfab.station.report import SCHEMA, read_report

    if path is None:
        return "no report path"
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{p.name}: missing"
    except (OSError, ValueError) as exc:
        return f"{p.name}: unreadable ({exc})"
    if not isinstance(data, dict) or data.get("schema") != schema:
        return f"{p.name}: schema {data.get('schema') if isinstance(data, dict) else None!r}"
    missing = UNIT_REPORT_KEYS - set(data) | ({"rotations"} - set(data) if schema != SCHEMA else set())
    if missing:
        return f"{p.name}: missing {sorted(missing)}"
    if data["outcome"] not in OUTCOMES or not data.get("ended"):
        return f"{p.name}: not sealed (outcome {data['outcome']!r})"
    if outcome is not None and data["outcome"] != outcome:
        return f"{p.name}: outcome {data['outcome']}, ledger {outcome}"
    if attempt_id is not None and data["attempt_id"] != attempt_id:
        return f"{p.name}: attempt_id {data['attempt_id']}, ledger {attempt_id}"
    if schema == SCHEMA:
        try:
            read_report(p)
        except InputError as exc:
            return f"{p.name}: {exc}"
    return None


def check_attempt_reports(ledger: Any) -> list[str]:
    """Every attempt row is ended and has a complete report that agrees with it."""
    from atfab.station.report import SCHEMA

    out = []
    for a in ledger.attempts():
        if a.ended is None:
            out.append(f"attempt {a.id}: still open")
            continue
        problem = report_problem(a.report_path, schema=SCHEMA, outcome=a.outcome, attempt_id=a.id)
        if problem:
            out.append(f"attempt {a.id} ({a.outcome}): {problem}")
    return out


def check_duplicates(ledger_path: Path, report_dirs: list[Path]) -> list[str]:
    """Serials owned by two MACs, certificate serials (per issuer) naming two certificates: in the
    ledger and across every report file."""
    import sqlite3

    serial_macs: dict[str, set[str]] = defaultdict(set)
    cert_fps: dict[tuple[str, str], set[str]] = defaultdict(set)
    con = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        for mac, serial in con.execute("SELECT mac, serial FROM units"):
            serial_macs[serial].add(mac)
        for issuer, serial, fp in con.execute("SELECT issuer, cert_serial, fingerprint FROM certificates"):
            cert_fps[(issuer, serial.lower())].add(fp)
    finally:
        con.close()
    for d in report_dirs:
        for p in sorted(d.rglob("*.json")) if d.is_dir() else []:
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue                      # counted by the report checks
            unit = data.get("unit") or {}
            if unit.get("serial") and unit.get("mac"):
                serial_macs[unit["serial"]].add(unit["mac"])
            certs = list(data.get("certificates") or [])
            certs += [r["certificate"] for r in data.get("rotations") or [] if r.get("certificate")]
            for c in certs:
                cert_fps[(c["issuer"], str(c["serial"]).lower())].add(c["fingerprint_sha256"])
    out = [f"serial {s} used by {sorted(m)}" for s, m in serial_macs.items() if len(m) > 1]
    out += [f"certificate serial {s} of {i} names {len(f)} certificates" for (i, s), f in cert_fps.items() if len(f) > 1]
    return out


__all__ = ["PROVISION_FAULTS", "ROTATE_FAULTS", "Trigger", "Instrument", "CampaignFaults", "instrumented_firmware",
           "Traffic", "Fault", "choose_fault", "DeviceView", "read_device", "Expected", "content_problems",
           "ledger_claims_good", "report_problem", "check_attempt_reports", "check_duplicates", "cert_fp", "spki_fp"]
