"""The unit ledger: SQLite (one file, WAL; the embedded default) or PostgreSQL (a line of stations).

It records which MAC got which serial, every attempt at provisioning a unit, the certificates
issued to units, and the journal of certificate rotations. Every change is one transaction
(:mod:`atfab.station.ledger_db`: ``BEGIN IMMEDIATE`` on SQLite, row locks on PostgreSQL, retried
when the engine says so), so many stations can share one ledger: serial allocation is atomic
and a run interrupted anywhere leaves either the old or the new state.

Attempts are *owned*: :meth:`Ledger.begin_attempt` records the station process that runs it
(``owner``) and a lease (``lease_until``, the database's clock) that the owner renews while it
runs (:class:`LeaseKeeper`). An open attempt whose lease has passed is *stale* (its station
died); :meth:`Ledger.stale_attempts` lists them and whoever closes one (``atfab ledger
close-stale``, the next station that meets the unit) writes its ABORTED report. A live
attempt — lease not yet passed — is never closed by another station.

A certificate serial (per issuer) belongs to one unit; one certificate may be installed in
several slots of that unit. The schema is versioned (:mod:`atfab.station.ledger_schema`): a new
or older SQLite file is migrated when opened; a PostgreSQL ledger is created when empty and
otherwise migrated only by ``atfab ledger migrate`` (stations of a line never change it behind
each other's back).

Times are ISO 8601 UTC strings. Outcomes are the report outcomes ``PASS``/``FAIL``/``ERROR``/
``ABORTED``. Rotation states go ``intent -> key_written -> cert_written -> verified -> done``,
or to ``rolled_back`` from any state before ``done``.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from .ledger_attempts import DEFAULT_LEASE_S, AttemptLedger, LeaseKeeper, owner_is_dead_here, process_owner
from .ledger_batches import BatchLedger
from .ledger_certificates import CertificateLedger
from .ledger_db import is_database_url
from .ledger_records import (
    OUTCOMES, ROTATION_STATES, Attempt, CertificateRecord, LedgerError, Rotation, UnitDetail, UnitIdentity,
    UnitRecord, utc_now,
)
from .ledger_rotations import RotationLedger
from .ledger_schema import SCHEMA_VERSION


def ledger_location(text: str | Path) -> str | Path:
    """A ``--ledger`` value as the ledger takes it: a ``postgresql://`` URL as text, else a path
    (a folder there is refused: :class:`InputError`)."""
    if is_database_url(str(text)):
        return str(text)
    path = Path(text)
    if path.is_dir():
        raise InputError("is a directory, not a ledger file", file=path, field="ledger")
    return path


class Ledger(AttemptLedger, CertificateLedger, RotationLedger, BatchLedger):
    """A handle on one ledger: a SQLite file path or a ``postgresql://`` URL. Thread-safe; share
    one per process or open one per worker.

    ``create=False`` refuses a missing SQLite file (:class:`InputError`) instead of making a new
    ledger. ``timeout`` is how long a transaction keeps trying while the database is busy or
    away (another writer holds the lock, PostgreSQL restarts) before :class:`LedgerError`.

    One idea per part: the connection and schema (:mod:`.ledger_store`), units and serials
    (:mod:`.ledger_units`), attempts with owners and leases (:mod:`.ledger_attempts`),
    certificates (:mod:`.ledger_certificates`), the rotation journal (:mod:`.ledger_rotations`),
    pre-programmed batches (:mod:`.ledger_batches`).
    """

    def __enter__(self) -> "Ledger":
        return self


__all__ = [
    "Ledger", "LedgerError", "LeaseKeeper", "UnitIdentity", "UnitRecord", "UnitDetail", "Attempt",
    "CertificateRecord", "Rotation", "OUTCOMES", "ROTATION_STATES", "SCHEMA_VERSION", "DEFAULT_LEASE_S",
    "process_owner", "owner_is_dead_here", "ledger_location", "utc_now",
]
