"""The unit ledger: one SQLite file (WAL) per line or station.

It records which MAC got which serial, every attempt at provisioning a unit, the certificates
issued to units, and the journal of certificate rotations. Every change is one ``BEGIN
IMMEDIATE`` transaction, so several processes (stations on one line) can share the file: serial
allocation is atomic and a run interrupted anywhere leaves either the old or the new state.

A certificate serial (per issuer) belongs to one unit; one certificate may be installed in
several slots of that unit. The schema version is kept in ``meta``; older files are migrated
when opened (:data:`atfab.station.ledger_records.MIGRATIONS`).

Times are ISO 8601 UTC strings. Outcomes are the report outcomes ``PASS``/``FAIL``/``ERROR``/
``ABORTED``. Rotation states go ``intent -> key_written -> cert_written -> verified -> done``,
or to ``rolled_back`` from any state before ``done``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.inputs import check_regular_file
from ..core.errors import InputError
from ..core.mac import normalize_mac
from .ledger_records import (
    CERT_SLOTS_ORDER, CERT_SLOTS_SELECT, MIGRATIONS, OUTCOMES, ROTATION_CHAIN, ROTATION_FINAL, ROTATION_STATES,
    SCHEMA, SCHEMA_VERSION, Attempt,
    CertificateRecord, HasSerialScheme, LedgerError, Rotation, UnitDetail, UnitIdentity, UnitRecord,
    from_row as _row, utc_now, when_text as _when,
)
from .serials import SerialScheme

#: Counter values skipped at most while looking for a free serial (serials taken by hand).
_MAX_SKIPS = 10_000


class Ledger:
    """A handle on one ledger file. Thread-safe; share one per process or open one per worker.

    ``create=False`` refuses a missing file (:class:`InputError`) instead of making a new ledger.
    ``timeout`` is the SQLite busy timeout in seconds (how long to wait for another writer).
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = 30.0) -> None:
        self.path = Path(path)
        if self.path.exists() or self.path.is_symlink():
            check_regular_file(self.path, "ledger")      # a FIFO or a device would block SQLite
        if not create and not self.path.is_file():
            raise InputError("no ledger file here", file=self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._timeout = timeout
        try:
            if not create and self._conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
                raise InputError("not an atfab ledger (no ledger tables in it)", file=self.path)
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
            raise InputError(f"not a ledger: {exc}", file=self.path) from None
        except BaseException:
            self._conn.close()
            raise

    # -- plumbing -------------------------------------------------------------------------------

    def _setup(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        deadline = time.monotonic() + self._timeout
        while True:  # switching to WAL needs a moment alone with the file
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise LedgerError(f"ledger {self.path}: cannot use WAL journal (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._write() as c:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            row = c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.path} has schema {row[0]}; this atfab knows up to {SCHEMA_VERSION}"
                )
            elif int(row[0]) < SCHEMA_VERSION:     # an older ledger: migrate it in this transaction
                for version in range(int(row[0]) + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS.get(version, ()):
                        c.execute(statement)
                c.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before any read (``BEGIN IMMEDIATE``)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise LedgerError(f"ledger {self.path} is busy: {exc}") from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise LedgerError(f"ledger {self.path}: commit failed: {exc}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- units ----------------------------------------------------------------------------------

    def reserve_identity(self, mac: str | bytes, recipe: HasSerialScheme) -> UnitIdentity:
        """The unit's identity: its existing one if the MAC is known, else a newly allocated serial.

        Allocation and insertion are one transaction: concurrent processes never hand out the
        same serial, and a counter value is consumed only when the unit row is written.
        """
        mac = normalize_mac(mac)
        scheme = recipe.serial
        with self._write() as c:
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
            now = utc_now()
            c.execute(
                "INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, ?, ?, ?, ?)",
                (mac, serial, recipe.name, now, now),
            )
        return UnitIdentity(serial=serial, mac=mac, new=True, recipe=recipe.name)

    @staticmethod
    def _next_counter_serial(c: sqlite3.Connection, scheme: SerialScheme) -> str:
        row = c.execute("SELECT next FROM counters WHERE name = ?", (scheme.counter_key,)).fetchone()
        value = max(scheme.start, row["next"] if row is not None else scheme.start)
        for _ in range(_MAX_SKIPS):
            if value > scheme.max_counter:
                raise LedgerError(
                    f"serial counter {scheme.counter_key!r} is exhausted ({scheme.width} digits)"
                )
            serial = scheme.render(counter=value)
            value += 1
            if c.execute("SELECT 1 FROM units WHERE serial = ?", (serial,)).fetchone() is None:
                c.execute(
                    "INSERT INTO counters (name, next) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET next = excluded.next",
                    (scheme.counter_key, value),
                )
                return serial
        raise LedgerError(f"no free serial found for counter {scheme.counter_key!r}")

    def unit(self, key: str) -> UnitRecord | None:
        """The unit with this MAC (any notation) or serial, or None."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM units WHERE serial = ?", (key,)).fetchone()
            if row is None:
                try:
                    mac = normalize_mac(key)
                except InputError:
                    return None
                row = self._conn.execute("SELECT * FROM units WHERE mac = ?", (mac,)).fetchone()
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
        with self._lock:
            return [_row(UnitRecord, r) for r in self._conn.execute(sql, args)]

    def unit_detail(self, key: str) -> UnitDetail | None:
        """A unit with its attempts, certificates and rotations (by MAC or serial)."""
        unit = self.unit(key)
        if unit is None:
            return None
        with self._read() as c:
            attempts = [_row(Attempt, r) for r in c.execute(
                "SELECT * FROM attempts WHERE mac = ? ORDER BY id", (unit.mac,))]
            certs = [_row(CertificateRecord, r) for r in c.execute(
                CERT_SLOTS_SELECT + " WHERE c.mac = ?" + CERT_SLOTS_ORDER, (unit.mac,))]
            rots = [_row(Rotation, r) for r in c.execute(
                "SELECT * FROM rotations WHERE mac = ? ORDER BY id", (unit.mac,))]
        return UnitDetail(unit=unit, attempts=attempts, certificates=certs, rotations=rots)

    def export_units_csv(self) -> str:
        """CSV of all units with attempt counts and current certificate fingerprints."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["serial", "mac", "recipe", "created", "updated", "last_outcome",
                         "attempts", "certificates"])
        with self._read() as c:
            units = c.execute("SELECT * FROM units ORDER BY id").fetchall()
            for u in units:
                n = c.execute("SELECT COUNT(*) FROM attempts WHERE mac = ?", (u["mac"],)).fetchone()[0]
                certs = c.execute(CERT_SLOTS_SELECT + " WHERE c.mac = ?" + CERT_SLOTS_ORDER, (u["mac"],)).fetchall()
                latest: dict[str, str] = {r["slot"]: r["fingerprint"] for r in certs}
                writer.writerow([u["serial"], u["mac"], u["recipe"], u["created"], u["updated"],
                                 u["last_outcome"] or "", n,
                                 ";".join(f"{s}={fp}" for s, fp in sorted(latest.items()))])
        return out.getvalue()

    # -- attempts -------------------------------------------------------------------------------

    def begin_attempt(self, *, recipe: str, station: str, port: str, mac: str | bytes | None = None,
                      serial: str | None = None, operator: str | None = None,
                      retry_of: int | None = None, started: datetime | str | None = None) -> Attempt:
        """Open an attempt row. ``attempt`` is 1, or the retried attempt's number + 1."""
        mac_text = normalize_mac(mac) if mac is not None else None
        with self._write() as c:
            number = 1
            if retry_of is not None:
                prev = c.execute("SELECT attempt, ended FROM attempts WHERE id = ?", (retry_of,)).fetchone()
                if prev is None:
                    raise LedgerError(f"retry_of: no attempt {retry_of}")
                if prev["ended"] is None:
                    raise LedgerError(f"retry_of: attempt {retry_of} has not ended")
                number = prev["attempt"] + 1
            if serial is None and mac_text is not None:
                serial = self._serial_of(c, mac_text)
            cur = c.execute(
                "INSERT INTO attempts (mac, serial, attempt, recipe, station, port, operator, started,"
                " retry_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mac_text, serial, number, recipe, station, port, operator, _when(started), retry_of),
            )
            attempt_id = cur.lastrowid
        return self.attempt(attempt_id)  # type: ignore[arg-type, return-value]

    def set_attempt_unit(self, attempt_id: int, mac: str | bytes, serial: str | None = None) -> Attempt:
        """Attach the unit (known once the chip answered) to an open attempt."""
        mac_text = normalize_mac(mac)
        with self._write() as c:
            row = self._get_attempt(c, attempt_id)
            if row["ended"] is not None:
                raise LedgerError(f"attempt {attempt_id} has already ended")
            c.execute("UPDATE attempts SET mac = ?, serial = COALESCE(?, ?, serial) WHERE id = ?",
                      (mac_text, serial, self._serial_of(c, mac_text), attempt_id))
        return self.attempt(attempt_id)  # type: ignore[return-value]

    def end_attempt(self, attempt_id: int, outcome: str, *, report_path: str | Path | None = None,
                    detail: str | None = None, ended: datetime | str | None = None) -> Attempt:
        """Close an attempt with its outcome; also sets the unit's ``last_outcome``.

        Ending an already ended attempt again with the same outcome is a no-op (resume).
        """
        if outcome not in OUTCOMES:
            raise LedgerError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        report = str(report_path) if report_path is not None else None
        with self._write() as c:
            row = self._get_attempt(c, attempt_id)
            if row["ended"] is not None:
                if row["outcome"] == outcome:
                    return _row(Attempt, row)
                raise LedgerError(f"attempt {attempt_id} already ended with {row['outcome']}")
            when = _when(ended)
            c.execute("UPDATE attempts SET ended = ?, outcome = ?, report_path = ?, detail = ? WHERE id = ?",
                      (when, outcome, report, detail, attempt_id))
            if row["mac"] is not None:
                c.execute("UPDATE units SET last_outcome = ?, updated = ? WHERE mac = ?",
                          (outcome, when, row["mac"]))
        return self.attempt(attempt_id)  # type: ignore[return-value]

    def close_interrupted(self, *, station: str | None = None, outcome: str = "ABORTED",
                          detail: str = "interrupted: the station stopped before the attempt ended") -> list[Attempt]:
        """End every attempt left open by a crashed or killed run (of ``station``, or all)."""
        when = utc_now()
        with self._write() as c:
            sql, args = "SELECT id, mac FROM attempts WHERE ended IS NULL", []
            if station is not None:
                sql += " AND station = ?"
                args.append(station)
            rows = c.execute(sql, args).fetchall()
            for r in rows:
                c.execute("UPDATE attempts SET ended = ?, outcome = ?, detail = ? WHERE id = ?",
                          (when, outcome, detail, r["id"]))
                if r["mac"] is not None:
                    c.execute("UPDATE units SET last_outcome = ?, updated = ? WHERE mac = ?",
                              (outcome, when, r["mac"]))
        return [self.attempt(r["id"]) for r in rows]  # type: ignore[misc]

    @staticmethod
    def _serial_of(c: sqlite3.Connection, mac: str) -> str | None:
        row = c.execute("SELECT serial FROM units WHERE mac = ?", (mac,)).fetchone()
        return row["serial"] if row is not None else None

    @staticmethod
    def _get_attempt(c: sqlite3.Connection, attempt_id: int) -> sqlite3.Row:
        row = c.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no attempt {attempt_id}")
        return row

    def attempt(self, attempt_id: int) -> Attempt | None:
        """One attempt by id."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        return _row(Attempt, row) if row is not None else None

    def attempts_for(self, mac: str | bytes) -> list[Attempt]:
        """Every attempt on this MAC, oldest first."""
        mac = normalize_mac(mac)
        with self._lock:
            return [_row(Attempt, r) for r in self._conn.execute(
                "SELECT * FROM attempts WHERE mac = ? ORDER BY id", (mac,))]

    def attempts(self, *, open_only: bool = False, station: str | None = None) -> list[Attempt]:
        """All attempts, oldest first (optionally only open ones, or one station's)."""
        sql, args = "SELECT * FROM attempts WHERE 1 = 1", []
        if open_only:
            sql += " AND ended IS NULL"
        if station is not None:
            sql += " AND station = ?"
            args.append(station)
        with self._lock:
            return [_row(Attempt, r) for r in self._conn.execute(sql + " ORDER BY id", args)]

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
        with self._write() as c:
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
                    " not_before, not_after, attempt_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (mac, slots[0], issuer, serial_text, fp, key_fingerprint, nb, na, attempt_id, now),
                ).lastrowid
            for name in slots:
                c.execute("INSERT OR IGNORE INTO certificate_slots (certificate_id, slot, attempt_id, created)"
                          " VALUES (?, ?, ?, ?)", (cert_id, name, attempt_id, now))
            row = c.execute(CERT_SLOTS_SELECT + " WHERE c.id = ? AND COALESCE(s.slot, c.slot) = ?",
                            (cert_id, slots[0])).fetchone()
        return _row(CertificateRecord, row)

    def certificates_for(self, mac: str | bytes, slot: str | None = None) -> list[CertificateRecord]:
        """Certificates recorded for a unit, one record per slot it is installed in (all slots or
        one), oldest certificate first."""
        mac = normalize_mac(mac)
        sql, args = CERT_SLOTS_SELECT + " WHERE c.mac = ?", [mac]
        if slot is not None:
            sql += " AND COALESCE(s.slot, c.slot) = ?"
            args.append(slot)
        with self._lock:
            return [_row(CertificateRecord, r) for r in self._conn.execute(sql + CERT_SLOTS_ORDER, args)]

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
        with self._write() as c:
            pending = c.execute(
                "SELECT id, state FROM rotations WHERE mac = ? AND slot = ? AND state NOT IN ('done', 'rolled_back')",
                (mac, slot),
            ).fetchone()
            if pending is not None:
                raise LedgerError(
                    f"rotation {pending['id']} of {mac} slot {slot} is still pending ({pending['state']})"
                )
            cur = c.execute(
                "INSERT INTO rotations (mac, slot, old_cert_fp, old_key_fp, new_cert_fp, new_key_fp, state,"
                " created, updated, detail) VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?, ?)",
                (mac, slot, old_cert_fp, old_key_fp, new_cert_fp, new_key_fp, now, now, detail),
            )
            rotation_id = cur.lastrowid
        return self.rotation(rotation_id)  # type: ignore[arg-type, return-value]

    def update_rotation(self, rotation_id: int, state: str, *, detail: str | None = None) -> Rotation:
        """Move a rotation forward along the chain, or to ``rolled_back``.

        Moving to the state it is already in is a no-op; going backwards, or leaving ``done``/
        ``rolled_back``, is a :class:`LedgerError`.
        """
        if state not in ROTATION_STATES:
            raise LedgerError(f"rotation state must be one of {', '.join(ROTATION_STATES)}, not {state!r}")
        with self._write() as c:
            row = c.execute("SELECT * FROM rotations WHERE id = ?", (rotation_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no rotation {rotation_id}")
            current = row["state"]
            if current == state:
                return _row(Rotation, row)
            if current in ROTATION_FINAL:
                raise LedgerError(f"rotation {rotation_id} is already {current}")
            if state != "rolled_back" and ROTATION_CHAIN.index(state) < ROTATION_CHAIN.index(current):
                raise LedgerError(f"rotation {rotation_id} cannot go back from {current} to {state}")
            c.execute("UPDATE rotations SET state = ?, updated = ?, detail = COALESCE(?, detail) WHERE id = ?",
                      (state, utc_now(), detail, rotation_id))
        return self.rotation(rotation_id)  # type: ignore[return-value]

    def rotation(self, rotation_id: int) -> Rotation | None:
        """One rotation by id."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM rotations WHERE id = ?", (rotation_id,)).fetchone()
        return _row(Rotation, row) if row is not None else None

    def pending_rotations(self, mac: str | bytes | None = None) -> list[Rotation]:
        """Rotations not yet ``done`` or ``rolled_back`` (of one MAC, or all), oldest first."""
        sql, args = "SELECT * FROM rotations WHERE state NOT IN ('done', 'rolled_back')", []
        if mac is not None:
            sql += " AND mac = ?"
            args.append(normalize_mac(mac))
        with self._lock:
            return [_row(Rotation, r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    def rotations_for(self, mac: str | bytes) -> list[Rotation]:
        """Every rotation of a unit, oldest first."""
        with self._lock:
            return [_row(Rotation, r) for r in self._conn.execute(
                "SELECT * FROM rotations WHERE mac = ? ORDER BY id", (normalize_mac(mac),))]


    # -- pre-programmed batches (atfab batch; docs/recipes.md "Offline pre-programming") ---------
    # A batch unit has no MAC yet: its identity is reserved under a placeholder MAC (multicast
    # bit set, so never a real unit's base MAC) and moved to the unit's MAC on first contact.

    def reserve_batch(self, placeholders: Sequence[str | bytes], recipe: HasSerialScheme) -> list[UnitIdentity]:
        """Reserve one counter serial per placeholder MAC, all in one transaction (all or none)."""
        scheme = recipe.serial
        if scheme.scheme == "mac":
            raise LedgerError("a batch needs counter serials: serials made from the MAC cannot be reserved "
                              "before the unit is known")
        out = []
        now = utc_now()
        with self._write() as c:
            for placeholder in placeholders:
                mac = normalize_mac(placeholder)
                if c.execute("SELECT 1 FROM units WHERE mac = ?", (mac,)).fetchone() is not None:
                    raise LedgerError(f"placeholder {mac} is already reserved")
                serial = self._next_counter_serial(c, scheme)
                c.execute("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, ?, ?, ?, ?)",
                          (mac, serial, recipe.name, now, now))
                out.append(UnitIdentity(serial=serial, mac=mac, new=True, recipe=recipe.name))
        return out

    def record_batch_certificates(self, records: Sequence[dict[str, Any]]) -> None:
        """Record the certificates of a batch in one transaction. Each record has the keyword
        arguments of :meth:`record_certificate` plus ``mac`` and ``slots``; every certificate is new."""
        now = utc_now()
        with self._write() as c:
            for r in records:
                serial_text = (format(r["cert_serial"], "x") if isinstance(r["cert_serial"], int)
                               else str(r["cert_serial"]).lower())
                nb, na = r.get("not_before"), r.get("not_after")
                try:
                    cert_id = c.execute(
                        "INSERT INTO certificates (mac, slot, issuer, cert_serial, fingerprint, key_fingerprint,"
                        " not_before, not_after, attempt_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                        (normalize_mac(r["mac"]), r["slots"][0], r["issuer"], serial_text,
                         r["fingerprint"].lower().replace(":", ""), r.get("key_fingerprint"),
                         _when(nb) if nb is not None else None, _when(na) if na is not None else None, now),
                    ).lastrowid
                except sqlite3.IntegrityError as exc:
                    raise LedgerError(f"certificate serial {serial_text} of {r['issuer']!r}: {exc}") from None
                c.executemany("INSERT INTO certificate_slots (certificate_id, slot, attempt_id, created)"
                              " VALUES (?, ?, NULL, ?)", [(cert_id, name, now) for name in r["slots"]])

    def release_batch(self, placeholders: Sequence[str | bytes]) -> int:
        """Roll back the reservations of a batch that was not written: the placeholder units (still
        unbound) and their certificates go; their serials are not handed out again. Count removed."""
        macs = [normalize_mac(p) for p in placeholders]
        with self._write() as c:
            removed = 0
            for mac in macs:
                ids = [r["id"] for r in c.execute("SELECT id FROM certificates WHERE mac = ?", (mac,))]
                c.executemany("DELETE FROM certificate_slots WHERE certificate_id = ?", [(i,) for i in ids])
                c.execute("DELETE FROM certificates WHERE mac = ?", (mac,))
                removed += c.execute("DELETE FROM units WHERE mac = ? AND NOT EXISTS "
                                     "(SELECT 1 FROM attempts WHERE attempts.mac = units.mac)", (mac,)).rowcount
        return removed

    def bind_unit(self, placeholder: str | bytes, mac: str | bytes) -> UnitIdentity:
        """Give the identity reserved under ``placeholder`` (serial, certificates) to the unit with
        ``mac``, on its first contact. Refused when ``mac`` already has another identity."""
        placeholder, mac = normalize_mac(placeholder), normalize_mac(mac)
        with self._write() as c:
            row = c.execute("SELECT serial, recipe FROM units WHERE mac = ?", (placeholder,)).fetchone()
            if row is None:
                raise LedgerError(f"no reserved identity under {placeholder} (already bound, or released)")
            owner = c.execute("SELECT serial FROM units WHERE mac = ?", (mac,)).fetchone()
            if owner is not None:
                raise LedgerError(f"unit {mac} already has serial {owner['serial']}; it cannot take the "
                                  f"pre-programmed identity {row['serial']}")
            c.execute("PRAGMA defer_foreign_keys = ON")
            c.execute("UPDATE units SET mac = ?, updated = ? WHERE mac = ?", (mac, utc_now(), placeholder))
            c.execute("UPDATE certificates SET mac = ? WHERE mac = ?", (mac, placeholder))
        return UnitIdentity(serial=row["serial"], mac=mac, new=True, recipe=row["recipe"])

__all__ = [
    "Ledger", "LedgerError", "UnitIdentity", "UnitRecord", "UnitDetail", "Attempt",
    "CertificateRecord", "Rotation", "OUTCOMES", "ROTATION_STATES", "SCHEMA_VERSION", "utc_now",
]
