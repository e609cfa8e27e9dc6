"""Provisioning attempts, each owned by a station process with a lease.

:meth:`AttemptLedger.begin_attempt` records the station process that runs the attempt (``owner``,
:func:`process_owner`) and a lease (``lease_until``, the database's clock) that the owner renews
while it runs (:class:`LeaseKeeper`). An open attempt whose lease has passed is *stale* (its
station died); :meth:`AttemptLedger.stale_attempts` lists them, and whoever closes one writes its
report. A live attempt — lease not yet passed — is never closed by another station."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.mac import normalize_mac
from .ledger_db import Cursor
from .ledger_records import OUTCOMES, Attempt, LedgerError, from_row as _row, utc_now, when_text as _when
from .ledger_store import LedgerStore
from .ledger_units import serial_of

#: Seconds an attempt's lease lasts unless renewed (:class:`LeaseKeeper` renews every third of it).
DEFAULT_LEASE_S = 60.0


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


class AttemptLedger(LedgerStore):
    """Attempts: opened, given their unit, ended with an outcome; owners, leases, stale ones."""

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
            if retry_of is not None:
                prev = c.execute("SELECT attempt, ended FROM attempts WHERE id = ?", (retry_of,)).fetchone()
                if prev is None:
                    raise LedgerError(f"retry_of: no attempt {retry_of}")
                if prev["ended"] is None:
                    raise LedgerError(f"retry_of: attempt {retry_of} has not ended")
                number = prev["attempt"] + 1
            unit_serial = serial
            if unit_serial is None and mac_text is not None:
                unit_serial = serial_of(c, mac_text)
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
                      (mac_text, serial, serial_of(c, mac_text), attempt_id))

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


class LeaseKeeper:
    """A thread that renews the leases of ``owner``'s open attempts every ``lease_s / 3`` seconds
    while the block runs (``with LeaseKeeper(ledger, owner): ...``). A renewal that fails (the
    database away for a moment) is tried again at the next tick."""

    def __init__(self, ledger: AttemptLedger, owner: str, lease_s: float = DEFAULT_LEASE_S) -> None:
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
        self._thread.join(timeout=max(5.0, self.ledger.timeout + 1))


__all__ = ["AttemptLedger", "LeaseKeeper", "DEFAULT_LEASE_S", "process_owner", "owner_is_dead_here"]
