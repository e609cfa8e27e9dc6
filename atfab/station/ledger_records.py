"""Schema and row types of the unit ledger (:mod:`atfab.station.ledger`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Protocol

from ..core.errors import OUTCOMES, DeviceError
from .serials import SerialScheme

ROTATION_CHAIN = ("intent", "key_written", "cert_written", "verified", "done")
ROTATION_STATES = ROTATION_CHAIN + ("rolled_back",)
ROTATION_FINAL = ("done", "rolled_back")

#: One row per (certificate, slot) as a :class:`CertificateRecord`. ``certificates.slot`` (the
#: first slot) stands in for a certificate without slot rows (written by a version-1 atfab).
CERT_SLOTS_SELECT = (
    "SELECT c.id, c.mac, COALESCE(s.slot, c.slot) AS slot, c.issuer, c.cert_serial, c.fingerprint,"
    " c.key_fingerprint, c.not_before, c.not_after, COALESCE(s.attempt_id, c.attempt_id) AS attempt_id,"
    " COALESCE(s.created, c.created) AS created"
    " FROM certificates c LEFT JOIN certificate_slots s ON s.certificate_id = c.id"
)
#: ``{seq}``: the slot rows' insertion order (:attr:`~atfab.station.ledger_db.Dialect.seq_column`).
CERT_SLOTS_ORDER = " ORDER BY c.id, s.{seq}"


class LedgerError(DeviceError):
    """The ledger refused a change (conflict, bad transition) or the database failed (exit 3)."""


class HasSerialScheme(Protocol):
    """What :meth:`Ledger.reserve_identity` needs of a recipe."""

    @property
    def name(self) -> str: ...
    @property
    def serial(self) -> SerialScheme: ...


@dataclass(frozen=True)
class UnitIdentity:
    """A unit's identity; ``new`` is False when the MAC was already in the ledger."""

    serial: str
    mac: str
    new: bool
    recipe: str


@dataclass(frozen=True)
class UnitRecord:
    mac: str
    serial: str
    recipe: str
    created: str
    updated: str
    last_outcome: str | None


@dataclass(frozen=True)
class Attempt:
    """One attempt at provisioning a unit on one port. ``attempt`` counts within a retry chain."""

    id: int
    mac: str | None
    serial: str | None
    attempt: int
    recipe: str
    station: str
    port: str
    operator: str | None
    started: str
    ended: str | None
    outcome: str | None
    report_path: str | None
    retry_of: int | None
    detail: str | None
    owner: str | None = None             # the station process running it (``station/host:pid:token``)
    lease_until: float | None = None     # database clock (s since 1970): past it, the attempt is stale
    report_dir: str | None = None        # where its report goes

    @property
    def open(self) -> bool:
        """True while the attempt has not ended."""
        return self.ended is None


@dataclass(frozen=True)
class CertificateRecord:
    """A certificate issued to a unit, as installed in one ``slot`` (a certificate installed in
    two slots is two records with the same ``id``). ``cert_serial`` (hex) is unique per issuer
    and belongs to one unit only."""

    id: int
    mac: str
    slot: str
    issuer: str
    cert_serial: str
    fingerprint: str
    key_fingerprint: str | None
    not_before: str | None
    not_after: str | None
    attempt_id: int | None
    created: str


@dataclass(frozen=True)
class Rotation:
    """One journalled certificate rotation of one slot of one unit."""

    id: int
    mac: str
    slot: str
    old_cert_fp: str | None
    old_key_fp: str | None
    new_cert_fp: str
    new_key_fp: str | None
    state: str
    created: str
    updated: str
    detail: str | None

    @property
    def pending(self) -> bool:
        """True until the rotation is ``done`` or ``rolled_back``."""
        return self.state not in ROTATION_FINAL


@dataclass(frozen=True)
class UnitDetail:
    """Everything the ledger knows about one unit."""

    unit: UnitRecord
    attempts: list[Attempt]
    certificates: list[CertificateRecord]
    rotations: list[Rotation]


def utc_now() -> str:
    """Current time as the ISO 8601 UTC text the ledger and reports use."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def when_text(value: datetime | str | None) -> str:
    if value is None:
        return utc_now()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return str(value)


def from_row(cls: type, row: Any) -> Any:
    """A record of type ``cls`` from a database row (by column name)."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})


__all__ = [
    "CERT_SLOTS_SELECT", "CERT_SLOTS_ORDER", "OUTCOMES", "ROTATION_CHAIN", "ROTATION_STATES",
    "ROTATION_FINAL",
    "LedgerError", "HasSerialScheme", "UnitIdentity", "UnitRecord", "Attempt", "CertificateRecord",
    "Rotation", "UnitDetail", "utc_now", "when_text", "from_row",
]
