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

import csv
import io
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.mac import normalize_mac
from .ledger_db import Cursor, Database, DatabaseError, is_database_url, open_database, redact_url
from .ledger_records import (
    CERT_SLOTS_ORDER, CERT_SLOTS_SELECT, OUTCOMES, ROTATION_CHAIN, ROTATION_FINAL, ROTATION_STATES, Attempt,
    CertificateRecord, HasSerialScheme, LedgerError, Rotation, UnitDetail, UnitIdentity, UnitRecord,
    from_row as _row, utc_now, when_text as _when,
)
from .ledger_schema import SCHEMA_VERSION, migrate, schema_version
from .serials import SerialScheme

#: Counter values skipped at most while looking for a free serial (serials taken by hand).
_MAX_SKIPS = 10_000
#: Seconds an attempt's lease lasts unless renewed (:class:`LeaseKeeper` renews every third of it).
DEFAULT_LEASE_S = 60.0


def ledger_location(text: str | Path) -> str | Path:
    """A ``--ledger`` value as the ledger takes it: a ``postgresql://`` URL as text, else a path
    (a folder there is refused: :class:`InputError`)."""
    if is_database_url(str(text)):
        return str(text)
    path = Path(text)
    if path.is_dir():
        raise InputError("is a directory, not a ledger file", file=path, field="ledger")
    return path


def process_owner(station: str) -> str:
    """An owner name unique to this process: ``<station>/<host>:<pid>:<random>``."""
    return f"{station}/{socket.gethostname().split('.')[0]}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_is_dead_here(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer runs (killed)."""
    if not owner or "/" not in owner:
        return False
    host_pid = owner.rsplit("/", 1)[1].split(":")
    if len(host_pid) < 2 or host_pid[0] != socket.gethostname().split(".")[0] or not host_pid[1].isdigit():
        return False
    pid = int(host_pid[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Ledger:
    """A handle on one ledger: a SQLite file path or a ``postgresql://`` URL. Thread-safe; share
    one per process or open one per worker.

    ``create=False`` refuses a missing SQLite file (:class:`InputError`) instead of making a new
    ledger. ``timeout`` is how long a transaction keeps trying while the database is busy or
    away (another writer holds the lock, PostgreSQL restarts) before :class:`LedgerError`.
    """

    def __init__(self, location: str | Path, *, create: bool = True, timeout: float = 30.0) -> None:
        self.url = str(location) if is_database_url(location) else None
        self.path = None if self.url else Path(location)
        self.location = redact_url(self.url) if self.url else str(self.path)
        self._db: Database = open_database(location, create=create, timeout=timeout)
        self._dialect = self._db.dialect
        try:
            version = schema_version(self._db)
            if not create and version == 0 and self.path is not None:
                raise InputError("not an atfab ledger (no ledger tables in it)", file=self.path)
            if version > SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.location} has schema {version}; this atfab knows up to {SCHEMA_VERSION}")
            if version < SCHEMA_VERSION:
                if self.url is not None and version > 0:
                    raise LedgerError(f"ledger {self.location} has schema {version}; this atfab needs "
                                      f"{SCHEMA_VERSION}: run `atfab ledger --ledger URL migrate` first")
                migrate(self._db)
        except DatabaseError as exc:
            self._db.close()
            if self.path is not None and "not a database" in str(exc):
                raise InputError(f"not a ledger: {exc.__cause__}", file=self.path) from None
            raise
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def migrate(cls, location: str | Path, *, timeout: float = 30.0) -> tuple[int, int]:
        """Bring the ledger at ``location`` to this atfab's schema; (version before, after)."""
        db = open_database(location, create=True, timeout=timeout)
        try:
            return migrate(db)
        finally:
            db.close()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect.name

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, work: Any, *, timeout: float | None = None) -> Any:
        return self._db.write(work, timeout=timeout)

    def _read(self, work: Any, *, snapshot: bool = False) -> Any:
        return self._db.read(work, snapshot=snapshot)

    # -- units ----------------------------------------------------------------------------------

    def reserve_identity(self, mac: str | bytes, recipe: HasSerialScheme) -> UnitIdentity:
        """The unit's identity: its existing one if the MAC is known, else a newly allocated serial.

        Allocation and insertion are one transaction: the counter row is locked (``FOR UPDATE``
        on PostgreSQL, the file's write lock on SQLite), so concurrent stations never hand out
        the same serial, and a counter value is consumed only when the unit row is written.
        """
        mac = normalize_mac(mac)
        scheme = recipe.serial

        def work(c: Cursor) -> UnitIdentity:
            row = c.execute("SELECT serial, recipe FROM units WHERE mac = ?", (mac,)).fetchone()
            if row is not None:
                return UnitIdentity(serial=row["serial"], mac=mac, new=False, recipe=row["recipe"])
            if scheme.scheme == "mac":
                serial = scheme.render(mac=mac)
                owner = c.execute("SELECT mac FROM units WHERE serial = ?", (serial,)).fetchone()
                if owner is not None:
                    raise LedgerError(f"serial {serial} for {mac} already belongs to {owner['mac']}")
            else:
                serial = self._next_counter_serial(c, scheme)
                # the counter lock is held now: another station may have added this MAC meanwhile
                row = c.execute("SELECT serial, recipe FROM units WHERE mac = ?", (mac,)).fetchone()
                if row is not None:
                    raise _Restart()
            now = utc_now()
            c.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, ?, ?, ?, ?)",
                      (mac, serial, recipe.name, now, now))
            return UnitIdentity(serial=serial, mac=mac, new=True, recipe=recipe.name)

        try:
            return self._write(work)
        except _Restart:
            return self._write(work)

    def _next_counter_serial(self, c: Cursor, scheme: SerialScheme) -> str:
        """Take the next counter value: one ``UPDATE … RETURNING`` that locks the counter row
        until the transaction ends (PostgreSQL; SQLite holds the file's write lock anyway)."""
        greatest = self._dialect.greatest
        take = (f"UPDATE counters SET next = {greatest}(next, ?) + 1 WHERE name = ? RETURNING next - 1 AS value")
        for _ in range(_MAX_SKIPS):
            row = c.execute(take, (scheme.start, scheme.counter_key)).fetchone()
            if row is None:                   # the counter's first use
                c.execute("INSERT INTO counters (name, next) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                          (scheme.counter_key, scheme.start))
                continue
            value = int(row["value"])
            if value > scheme.max_counter:
                raise LedgerError(
                    f"serial counter {scheme.counter_key!r} is exhausted ({scheme.width} digits)"
                )
            serial = scheme.render(counter=value)
            if c.execute("SELECT 1 FROM units WHERE serial = ?", (serial,)).fetchone() is None:
                return serial                 # else: taken by hand; the counter moves past it
        raise LedgerError(f"no free serial found for counter {scheme.counter_key!r}")

    def unit(self, key: str) -> UnitRecord | None:
        """The unit with this MAC (any notation) or serial, or None."""
        try:
            mac: str | None = normalize_mac(key)
        except InputError:
            mac = None

        def work(c: Cursor) -> Any:
            row = c.execute("SELECT * FROM units WHERE serial = ?", (key,)).fetchone()
            if row is None and mac is not None:
                row = c.execute("SELECT * FROM units WHERE mac = ?", (mac,)).fetchone()
            return row

        row = self._read(work, snapshot=True)
        return _row(UnitRecord, row) if row is not None else None

    def units(self, *, recipe: str | None = None, outcome: str | None = None,
              limit: int | None = None) -> list[UnitRecord]:
        """Units in the order they were first seen, optionally filtered."""
        sql, args = "SELECT * FROM units WHERE 1 = 1", []
        if recipe is not None:
            sql += " AND recipe = ?"
            args.append(recipe)
        if outcome is not None:
            sql += " AND last_outcome = ?"
            args.append(outcome)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_row(UnitRecord, r) for r in self._read(lambda c: c.execute(sql, args).fetchall())]

    def unit_detail(self, key: str) -> UnitDetail | None:
        """A unit with its attempts, certificates and rotations (by MAC or serial)."""
        unit = self.unit(key)
        if unit is None:
            return None

        def work(c: Cursor) -> UnitDetail:
            attempts = [_row(Attempt, r) for r in c.execute(
                "SELECT * FROM attempts WHERE mac = ? ORDER BY id", (unit.mac,))]
            certs = [_row(CertificateRecord, r) for r in c.execute(
                CERT_SLOTS_SELECT + " WHERE c.mac = ?" + self._cert_order, (unit.mac,))]
            rots = [_row(Rotation, r) for r in c.execute(
                "SELECT * FROM rotations WHERE mac = ? ORDER BY id", (unit.mac,))]
            return UnitDetail(unit=unit, attempts=attempts, certificates=certs, rotations=rots)

        return self._read(work, snapshot=True)

    @property
    def _cert_order(self) -> str:
        return CERT_SLOTS_ORDER.format(seq=self._dialect.seq_column)

    def export_units_csv(self) -> str:
        """CSV of all units with attempt counts and current certificate fingerprints."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["serial", "mac", "recipe", "created", "updated", "last_outcome",
                         "attempts", "certificates"])

        def work(c: Cursor) -> list[list[Any]]:
            rows = []
            for u in c.execute("SELECT * FROM units ORDER BY id").fetchall():
                n = c.execute("SELECT COUNT(*) AS n FROM attempts WHERE mac = ?", (u["mac"],)).fetchone()["n"]
                certs = c.execute(CERT_SLOTS_SELECT + " WHERE c.mac = ?" + self._cert_order, (u["mac"],)).fetchall()
                latest: dict[str, str] = {r["slot"]: r["fingerprint"] for r in certs}
                rows.append([u["serial"], u["mac"], u["recipe"], u["created"], u["updated"],
                             u["last_outcome"] or "", n,
                             ";".join(f"{s}={fp}" for s, fp in sorted(latest.items()))])
            return rows

        writer.writerows(self._read(work, snapshot=True))
        return out.getvalue()

    # -- attempts -------------------------------------------------------------------------------

    def begin_attempt(self, *, recipe: str, station: str, port: str, mac: str | bytes | None = None,
                      serial: str | None = None, operator: str | None = None,
                      retry_of: int | None = None, started: datetime | str | None = None,
                      owner: str | None = None, lease_s: float = DEFAULT_LEASE_S,
                      report_dir: str | Path | None = None) -> Attempt:
        """Open an attempt row owned by ``owner`` (default: ``station``) with a lease of
        ``lease_s`` seconds. ``attempt`` is 1, or the retried attempt's number + 1."""
        mac_text = normalize_mac(mac) if mac is not None else None
        when = _when(started)
        rdir = str(report_dir) if report_dir is not None else None
        now = self._dialect.now_epoch

        def work(c: Cursor) -> int:
            number = 1
            nonlocal serial
            if retry_of is not None:
                prev = c.execute("SELECT attempt, ended FROM attempts WHERE id = ?", (retry_of,)).fetchone()
                if prev is None:
                    raise LedgerError(f"retry_of: no attempt {retry_of}")
                if prev["ended"] is None:
                    raise LedgerError(f"retry_of: attempt {retry_of} has not ended")
                number = prev["attempt"] + 1
            unit_serial = serial
            if unit_serial is None and mac_text is not None:
                unit_serial = self._serial_of(c, mac_text)
            row = c.execute(
                "INSERT INTO attempts (mac, serial, attempt, recipe, station, port, operator, started,"
                f" retry_of, owner, lease_until, report_dir) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {now} + ?, ?)"
                " RETURNING id",
                (mac_text, unit_serial, number, recipe, station, port, operator, when, retry_of,
                 owner or station, float(lease_s), rdir),
            ).fetchone()
            return int(row["id"])

        return self.attempt(self._write(work))  # type: ignore[return-value]

    def set_attempt_unit(self, attempt_id: int, mac: str | bytes, serial: str | None = None) -> Attempt:
        """Attach the unit (known once the chip answered) to an open attempt."""
        mac_text = normalize_mac(mac)

        def work(c: Cursor) -> None:
            row = self._get_attempt(c, attempt_id)
            if row["ended"] is not None:
                raise LedgerError(f"attempt {attempt_id} has already ended")
            c.execute("UPDATE attempts SET mac = ?, serial = COALESCE(?, ?, serial) WHERE id = ?",
                      (mac_text, serial, self._serial_of(c, mac_text), attempt_id))

        self._write(work)
        return self.attempt(attempt_id)  # type: ignore[return-value]

    def end_attempt(self, attempt_id: int, outcome: str, *, report_path: str | Path | None = None,
                    detail: str | None = None, ended: datetime | str | None = None,
                    timeout: float | None = None) -> Attempt:
        """Close an attempt with its outcome; also sets the unit's ``last_outcome``.

        Ending an already ended attempt again with the same outcome is a no-op (resume).
        ``timeout`` overrides the ledger's for this one transaction (a station waits long to
        close what it has sealed a report for).
        """
        if outcome not in OUTCOMES:
            raise LedgerError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        report = str(report_path) if report_path is not None else None
        when = _when(ended)

        def work(c: Cursor) -> None:
            row = self._get_attempt(c, attempt_id, lock=True)
            if row["ended"] is not None:
                if row["outcome"] == outcome:
                    return
                raise LedgerError(f"attempt {attempt_id} already ended with {row['outcome']}")
            c.execute("UPDATE attempts SET ended = ?, outcome = ?, report_path = ?, detail = ?, lease_until = NULL"
                      " WHERE id = ?", (when, outcome, report, detail, attempt_id))
            if row["mac"] is not None:
                c.execute("UPDATE units SET last_outcome = ?, updated = ? WHERE mac = ?", (outcome, when, row["mac"]))

        self._write(work, timeout=timeout)
        return self.attempt(attempt_id)  # type: ignore[return-value]

    def renew_leases(self, owner: str, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Extend the lease of every open attempt of ``owner`` to now + ``lease_s``; how many."""
        now = self._dialect.now_epoch
        return self._write(lambda c: c.execute(
            f"UPDATE attempts SET lease_until = {now} + ? WHERE owner = ? AND ended IS NULL",
            (float(lease_s), owner)).rowcount)

    def stale_attempts(self, *, station: str | None = None, exclude_owner: str | None = None) -> list[Attempt]:
        """Open attempts whose lease has passed (their station stopped renewing it: it died),
        and open attempts of a process on this host that no longer runs. Oldest first."""
        now = self._dialect.now_epoch
        sql = (f"SELECT * FROM attempts WHERE ended IS NULL AND (lease_until IS NULL OR lease_until < {now}"
               " OR owner IS NULL)")
        args: list[Any] = []
        if station is not None:
            sql += " AND station = ?"
            args.append(station)
        rows = [_row(Attempt, r) for r in self._read(lambda c: c.execute(sql + " ORDER BY id", args).fetchall())]
        found = {a.id for a in rows}
        for a in self.attempts(open_only=True, station=station):   # kill -9 on this host: known at once
            if a.id not in found and owner_is_dead_here(a.owner):
                rows.append(a)
        rows = [a for a in rows if exclude_owner is None or a.owner != exclude_owner]
        return sorted(rows, key=lambda a: a.id)

    def is_live(self, attempt_id: int) -> bool:
        """True while the attempt is open and its lease has not passed."""
        now = self._dialect.now_epoch
        row = self._read(lambda c: c.execute(
            f"SELECT ended, owner, CASE WHEN lease_until IS NOT NULL AND lease_until >= {now} THEN 1 ELSE 0 END"
            " AS live FROM attempts WHERE id = ?", (attempt_id,)).fetchone())
        return row is not None and row["ended"] is None and bool(row["live"]) and not owner_is_dead_here(row["owner"])

    def close_interrupted(self, *, station: str | None = None, outcome: str = "ABORTED",
                          detail: str = "interrupted: the station stopped before the attempt ended") -> list[Attempt]:
        """End every attempt left open by a crashed or killed run (of ``station``, or all),
        without writing reports (see :func:`atfab.station.recorder.close_stale_attempt` for that)."""
        when = utc_now()

        def work(c: Cursor) -> list[int]:
            sql, args = "SELECT id, mac FROM attempts WHERE ended IS NULL", []
            if station is not None:
                sql += " AND station = ?"
                args.append(station)
            rows = c.execute(sql, args).fetchall()
            for r in rows:
                c.execute("UPDATE attempts SET ended = ?, outcome = ?, detail = ?, lease_until = NULL WHERE id = ?",
                          (when, outcome, detail, r["id"]))
                if r["mac"] is not None:
                    c.execute("UPDATE units SET last_outcome = ?, updated = ? WHERE mac = ?",
                              (outcome, when, r["mac"]))
            return [int(r["id"]) for r in rows]

        return [self.attempt(i) for i in self._write(work)]  # type: ignore[misc]

    @staticmethod
    def _serial_of(c: Cursor, mac: str) -> str | None:
        row = c.execute("SELECT serial FROM units WHERE mac = ?", (mac,)).fetchone()
        return row["serial"] if row is not None else None

    def _get_attempt(self, c: Cursor, attempt_id: int, *, lock: bool = False) -> Any:
        row = c.execute("SELECT * FROM attempts WHERE id = ?" + (self._dialect.for_update if lock else ""),
                        (attempt_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no attempt {attempt_id}")
        return row

    def attempt(self, attempt_id: int) -> Attempt | None:
        """One attempt by id."""
        row = self._read(lambda c: c.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone())
        return _row(Attempt, row) if row is not None else None

    def attempts_for(self, mac: str | bytes) -> list[Attempt]:
        """Every attempt on this MAC, oldest first."""
        mac = normalize_mac(mac)
        return [_row(Attempt, r) for r in self._read(lambda c: c.execute(
            "SELECT * FROM attempts WHERE mac = ? ORDER BY id", (mac,)).fetchall())]

    def attempts(self, *, open_only: bool = False, station: str | None = None) -> list[Attempt]:
        """All attempts, oldest first (optionally only open ones, or one station's)."""
        sql, args = "SELECT * FROM attempts WHERE 1 = 1", []
        if open_only:
            sql += " AND ended IS NULL"
        if station is not None:
            sql += " AND station = ?"
            args.append(station)
        return [_row(Attempt, r) for r in self._read(lambda c: c.execute(sql + " ORDER BY id", args).fetchall())]

    # -- certificates ---------------------------------------------------------------------------

    def record_certificate(self, mac: str | bytes, slot: str | Sequence[str], *, issuer: str,
                           cert_serial: str | int, fingerprint: str, key_fingerprint: str | None = None,
                           not_before: datetime | str | None = None, not_after: datetime | str | None = None,
                           attempt_id: int | None = None) -> CertificateRecord:
        """Record a certificate issued to a unit and installed in ``slot`` (one name or several).

        ``cert_serial`` is unique per ``issuer`` and belongs to one unit: recording the same
        certificate (issuer, serial, fingerprint, unit) again adds the slots it lacks and returns
        the record of the first slot given; the same serial with another unit or fingerprint is
        a :class:`LedgerError`. One transaction for all slots.
        """
        mac = normalize_mac(mac)
        slots = [slot] if isinstance(slot, str) else list(dict.fromkeys(slot))
        if not slots:
            raise LedgerError("record_certificate: no slot given")
        serial_text = format(cert_serial, "x") if isinstance(cert_serial, int) else str(cert_serial).lower()
        fp = fingerprint.lower().replace(":", "")
        nb = _when(not_before) if not_before is not None else None
        na = _when(not_after) if not_after is not None else None
        now = utc_now()

        def work(c: Cursor) -> Any:
            if c.execute("SELECT 1 FROM units WHERE mac = ?", (mac,)).fetchone() is None:
                raise LedgerError(f"certificate for unknown unit {mac} (reserve its identity first)")
            row = c.execute("SELECT * FROM certificates WHERE issuer = ? AND cert_serial = ?",
                            (issuer, serial_text)).fetchone()
            if row is not None:
                if row["fingerprint"] != fp or row["mac"] != mac:
                    raise LedgerError(
                        f"certificate serial {serial_text} of issuer {issuer!r} is already recorded "
                        f"for {row['mac']} slot {row['slot']}"
                    )
                cert_id = row["id"]
            else:
                cert_id = c.execute(
                    "INSERT INTO certificates (mac, slot, issuer, cert_serial, fingerprint, key_fingerprint,"
                    " not_before, not_after, attempt_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (mac, slots[0], issuer, serial_text, fp, key_fingerprint, nb, na, attempt_id, now),
                ).fetchone()["id"]
            for name in slots:
                c.execute("INSERT INTO certificate_slots (certificate_id, slot, attempt_id, created)"
                          " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (cert_id, name, attempt_id, now))
            return c.execute(CERT_SLOTS_SELECT + " WHERE c.id = ? AND COALESCE(s.slot, c.slot) = ?",
                             (cert_id, slots[0])).fetchone()

        return _row(CertificateRecord, self._write(work))

    def certificates_for(self, mac: str | bytes, slot: str | None = None) -> list[CertificateRecord]:
        """Certificates recorded for a unit, one record per slot it is installed in (all slots or
        one), oldest certificate first."""
        mac = normalize_mac(mac)
        sql, args = CERT_SLOTS_SELECT + " WHERE c.mac = ?", [mac]
        if slot is not None:
            sql += " AND COALESCE(s.slot, c.slot) = ?"
            args.append(slot)
        return [_row(CertificateRecord, r) for r in self._read(
            lambda c: c.execute(sql + self._cert_order, args).fetchall())]

    # -- rotation journal -----------------------------------------------------------------------

    def journal_rotation(self, mac: str | bytes, slot: str, *, new_cert_fp: str,
                         new_key_fp: str | None = None, old_cert_fp: str | None = None,
                         old_key_fp: str | None = None, detail: str | None = None) -> Rotation:
        """Write the intent of a rotation before the first byte goes to the unit.

        Refused (:class:`LedgerError`) while another rotation of the same slot is pending:
        finish or roll that one back first.
        """
        mac = normalize_mac(mac)
        now = utc_now()

        def work(c: Cursor) -> int:
            pending = c.execute(
                "SELECT id, state FROM rotations WHERE mac = ? AND slot = ? AND state NOT IN ('done', 'rolled_back')",
                (mac, slot),
            ).fetchone()
            if pending is not None:
                raise LedgerError(
                    f"rotation {pending['id']} of {mac} slot {slot} is still pending ({pending['state']})"
                )
            return int(c.execute(
                "INSERT INTO rotations (mac, slot, old_cert_fp, old_key_fp, new_cert_fp, new_key_fp, state,"
                " created, updated, detail) VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?) RETURNING id",
                (mac, slot, old_cert_fp, old_key_fp, new_cert_fp, new_key_fp, now, now, detail),
            ).fetchone()["id"])

        return self.rotation(self._write(work))  # type: ignore[return-value]

    def update_rotation(self, rotation_id: int, state: str, *, detail: str | None = None) -> Rotation:
        """Move a rotation forward along the chain, or to ``rolled_back``.

        Moving to the state it is already in is a no-op; going backwards, or leaving ``done``/
        ``rolled_back``, is a :class:`LedgerError`.
        """
        if state not in ROTATION_STATES:
            raise LedgerError(f"rotation state must be one of {', '.join(ROTATION_STATES)}, not {state!r}")

        def work(c: Cursor) -> None:
            row = c.execute("SELECT * FROM rotations WHERE id = ?" + self._dialect.for_update,
                            (rotation_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no rotation {rotation_id}")
            current = row["state"]
            if current == state:
                return
            if current in ROTATION_FINAL:
                raise LedgerError(f"rotation {rotation_id} is already {current}")
            if state != "rolled_back" and ROTATION_CHAIN.index(state) < ROTATION_CHAIN.index(current):
                raise LedgerError(f"rotation {rotation_id} cannot go back from {current} to {state}")
            c.execute("UPDATE rotations SET state = ?, updated = ?, detail = COALESCE(?, detail) WHERE id = ?",
                      (state, utc_now(), detail, rotation_id))

        self._write(work)
        return self.rotation(rotation_id)  # type: ignore[return-value]

    def rotation(self, rotation_id: int) -> Rotation | None:
        """One rotation by id."""
        row = self._read(lambda c: c.execute("SELECT * FROM rotations WHERE id = ?", (rotation_id,)).fetchone())
        return _row(Rotation, row) if row is not None else None

    def pending_rotations(self, mac: str | bytes | None = None) -> list[Rotation]:
        """Rotations not yet ``done`` or ``rolled_back`` (of one MAC, or all), oldest first."""
        sql, args = "SELECT * FROM rotations WHERE state NOT IN ('done', 'rolled_back')", []
        if mac is not None:
            sql += " AND mac = ?"
            args.append(normalize_mac(mac))
        return [_row(Rotation, r) for r in self._read(lambda c: c.execute(sql + " ORDER BY id", args).fetchall())]

    def rotations_for(self, mac: str | bytes) -> list[Rotation]:
        """Every rotation of a unit, oldest first."""
        m = normalize_mac(mac)
        return [_row(Rotation, r) for r in self._read(lambda c: c.execute(
            "SELECT * FROM rotations WHERE mac = ? ORDER BY id", (m,)).fetchall())]


    # -- pre-programmed batches (atfab batch; docs/recipes.md "Offline pre-programming") ---------
    # A batch unit has no MAC yet: its identity is reserved under a placeholder MAC (multicast
    # bit set, so never a real unit's base MAC) and moved to the unit's MAC on first contact.

    def reserve_batch(self, placeholders: Sequence[str | bytes], recipe: HasSerialScheme) -> list[UnitIdentity]:
        """Reserve one counter serial per placeholder MAC, all in one transaction (all or none).

        The counter moves past the whole block in one ``UPDATE`` that locks its row until the
        transaction commits, so a station allocating at the same time waits and then takes the
        serial after the block; the unit rows go in with one pipelined statement.
        """
        scheme = recipe.serial
        if scheme.scheme == "mac":
            raise LedgerError("a batch needs counter serials: serials made from the MAC cannot be reserved "
                              "before the unit is known")
        macs = [normalize_mac(p) for p in placeholders]
        if len(set(macs)) != len(macs):
            raise LedgerError("a batch names a placeholder twice")
        now = utc_now()

        def work(c: Cursor) -> list[UnitIdentity]:
            taken = _existing(c, "SELECT mac AS v FROM units WHERE mac IN ({})", macs)
            if taken:
                raise LedgerError(f"placeholder {min(taken)} is already reserved")
            serials = self._next_counter_serials(c, scheme, len(macs))
            c.executemany("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, ?, ?, ?, ?)",
                          [(m, s, recipe.name, now, now) for m, s in zip(macs, serials)])
            return [UnitIdentity(serial=s, mac=m, new=True, recipe=recipe.name) for m, s in zip(macs, serials)]

        return self._write(work)

    def _next_counter_serials(self, c: Cursor, scheme: SerialScheme, count: int) -> list[str]:
        """Take ``count`` consecutive counter values at once (the counter row stays locked until
        the transaction ends) and skip the serials already taken by hand, taking more for them."""
        greatest = self._dialect.greatest
        take = (f"UPDATE counters SET next = {greatest}(next, ?) + ? WHERE name = ? RETURNING next - ? AS value")
        out: list[str] = []
        skipped = 0
        while len(out) < count:
            need = count - len(out)
            row = c.execute(take, (scheme.start, need, scheme.counter_key, need)).fetchone()
            if row is None:                   # the counter's first use
                c.execute("INSERT INTO counters (name, next) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                          (scheme.counter_key, scheme.start))
                continue
            first = int(row["value"])
            if first + need - 1 > scheme.max_counter:
                raise LedgerError(f"serial counter {scheme.counter_key!r} is exhausted ({scheme.width} digits): "
                                  f"{need} serial(s) from {first} do not fit")
            block = [scheme.render(counter=v) for v in range(first, first + need)]
            used = _existing(c, "SELECT serial AS v FROM units WHERE serial IN ({})", block)
            skipped += len(used)
            if skipped > _MAX_SKIPS:
                raise LedgerError(f"no free serial found for counter {scheme.counter_key!r}")
            out.extend(s for s in block if s not in used)
        return out

    def record_batch_certificates(self, records: Sequence[dict[str, Any]]) -> None:
        """Record the certificates of a batch in one transaction. Each record has the keyword
        arguments of :meth:`record_certificate` plus ``mac`` and ``slots``; every certificate is new."""
        now = utc_now()
        certs, slots = [], []
        for r in records:
            serial_text = (format(r["cert_serial"], "x") if isinstance(r["cert_serial"], int)
                           else str(r["cert_serial"]).lower())
            nb, na = r.get("not_before"), r.get("not_after")
            certs.append((normalize_mac(r["mac"]), r["slots"][0], r["issuer"], serial_text,
                          r["fingerprint"].lower().replace(":", ""), r.get("key_fingerprint"),
                          _when(nb) if nb is not None else None, _when(na) if na is not None else None, now))
            slots.extend((name, now, r["issuer"], serial_text) for name in dict.fromkeys(r["slots"]))
        by_issuer: dict[str, list[str]] = {}
        for cert in certs:
            by_issuer.setdefault(cert[2], []).append(cert[3])
        for issuer, serials in by_issuer.items():
            if len(set(serials)) != len(serials):
                raise LedgerError(f"certificate serials of {issuer!r} repeat within the batch")

        def work(c: Cursor) -> None:
            for issuer, serials in by_issuer.items():
                known = _existing(c, "SELECT cert_serial AS v FROM certificates WHERE issuer = ? AND cert_serial IN ({})",
                                  serials, (issuer,))
                if known:
                    raise LedgerError(f"certificate serial {min(known)} of {issuer!r}: already recorded")
            c.executemany("INSERT INTO certificates (mac, slot, issuer, cert_serial, fingerprint, key_fingerprint,"
                          " not_before, not_after, attempt_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)", certs)
            c.executemany("INSERT INTO certificate_slots (certificate_id, slot, attempt_id, created)"
                          " SELECT id, ?, NULL, ? FROM certificates WHERE issuer = ? AND cert_serial = ?", slots)

        self._write(work)

    def release_batch(self, placeholders: Sequence[str | bytes]) -> int:
        """Roll back the reservations of a batch that was not written: the placeholder units (still
        unbound) and their certificates go; their serials are not handed out again. Count removed."""
        macs = [normalize_mac(p) for p in placeholders]

        def work(c: Cursor) -> int:
            removed = 0
            for part in _chunks(macs):
                marks = ", ".join("?" * len(part))
                c.execute(f"DELETE FROM certificate_slots WHERE certificate_id IN "
                          f"(SELECT id FROM certificates WHERE mac IN ({marks}))", part)
                c.execute(f"DELETE FROM certificates WHERE mac IN ({marks})", part)
                removed += c.execute(f"DELETE FROM units WHERE mac IN ({marks}) AND NOT EXISTS "
                                     "(SELECT 1 FROM attempts WHERE attempts.mac = units.mac)", part).rowcount
            return removed

        return self._write(work)

    def bind_unit(self, placeholder: str | bytes, mac: str | bytes) -> UnitIdentity:
        """Give the identity reserved under ``placeholder`` (serial, certificates) to the unit with
        ``mac``, on its first contact. Refused when ``mac`` already has another identity.

        Portable across engines (no deferred foreign keys): the unit row is written under the new
        MAC with a provisional serial, the certificates move to it, the placeholder row goes and
        the serial is set — all in one transaction."""
        placeholder, mac = normalize_mac(placeholder), normalize_mac(mac)

        def work(c: Cursor) -> UnitIdentity:
            row = c.execute("SELECT serial, recipe, created FROM units WHERE mac = ?" + self._dialect.for_update,
                            (placeholder,)).fetchone()
            if row is None:
                raise LedgerError(f"no reserved identity under {placeholder} (already bound, or released)")
            owner = c.execute("SELECT serial FROM units WHERE mac = ?", (mac,)).fetchone()
            if owner is not None:
                raise LedgerError(f"unit {mac} already has serial {owner['serial']}; it cannot take the "
                                  f"pre-programmed identity {row['serial']}")
            serial, now = row["serial"], utc_now()
            c.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, ?, ?, ?, ?)",
                      (mac, f"{serial}~binding:{mac}", row["recipe"], row["created"], now))
            c.execute("UPDATE certificates SET mac = ? WHERE mac = ?", (mac, placeholder))
            c.execute("DELETE FROM units WHERE mac = ?", (placeholder,))
            c.execute("UPDATE units SET serial = ? WHERE mac = ?", (serial, mac))
            return UnitIdentity(serial=serial, mac=mac, new=True, recipe=row["recipe"])

        return self._write(work)


#: Values per ``IN (...)`` list (SQLite allows 999 parameters per statement on old builds).
_IN_CHUNK = 900


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[i:i + _IN_CHUNK] for i in range(0, len(values), _IN_CHUNK)]


def _existing(c: Cursor, sql: str, values: Sequence[str], before: Sequence[Any] = ()) -> set[str]:
    """The ``values`` a query ``... IN ({})`` (column ``v``) finds, asked in chunks."""
    found: set[str] = set()
    for part in _chunks(values):
        found.update(r["v"] for r in c.execute(sql.format(", ".join("?" * len(part))), (*before, *part)))
    return found


class _Restart(Exception):
    """A transaction found its premise changed under it: run it once more."""


class LeaseKeeper:
    """A thread that renews the leases of ``owner``'s open attempts every ``lease_s / 3`` seconds
    while the block runs (``with LeaseKeeper(ledger, owner): ...``). A renewal that fails (the
    database away for a moment) is tried again at the next tick."""

    def __init__(self, ledger: Ledger, owner: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.ledger, self.owner, self.lease_s = ledger, owner, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"atfab-lease-{owner}", daemon=True)
        self.renewals = 0
        self.failures = 0

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.ledger.renew_leases(self.owner, self.lease_s)
                self.renewals += 1
            except (LedgerError, OSError):
                self.failures += 1

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.ledger._db.timeout + 1))


__all__ = [
    "Ledger", "LedgerError", "LeaseKeeper", "UnitIdentity", "UnitRecord", "UnitDetail", "Attempt",
    "CertificateRecord", "Rotation", "OUTCOMES", "ROTATION_STATES", "SCHEMA_VERSION", "DEFAULT_LEASE_S",
    "process_owner", "owner_is_dead_here", "ledger_location", "utc_now",
]
