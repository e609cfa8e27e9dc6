"""Units and their identities: serials allocated from counters (one at a time or a whole block,
the counter row locked until the transaction ends) or made from the MAC, and the unit views."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..core.errors import InputError
from ..core.mac import normalize_mac
from .ledger_certificates import cert_order
from .ledger_db import Cursor, select_in
from .ledger_records import (
    CERT_SLOTS_SELECT, Attempt, CertificateRecord, HasSerialScheme, LedgerError, Rotation, UnitDetail, UnitIdentity,
    UnitRecord, from_row as _row, utc_now,
)
from .ledger_store import LedgerStore
from .serials import SerialScheme

#: Counter values skipped at most while looking for a free serial (serials taken by hand).
_MAX_SKIPS = 10_000


def serial_of(c: Cursor, mac: str) -> str | None:
    """The serial of the unit with ``mac`` (inside a transaction), or None."""
    row = c.execute("SELECT serial FROM units WHERE mac = ?", (mac,)).fetchone()
    return row["serial"] if row is not None else None


class _Restart(Exception):
    """A transaction found its premise changed under it: run it once more."""


class UnitLedger(LedgerStore):
    """Units: identities (MAC -> serial) and what is known of each unit."""

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
            used = select_in(c, "SELECT serial AS v FROM units WHERE serial IN ({})", block)
            skipped += len(used)
            if skipped > _MAX_SKIPS:
                raise LedgerError(f"no free serial found for counter {scheme.counter_key!r}")
            out.extend(s for s in block if s not in used)
        return out

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
                CERT_SLOTS_SELECT + " WHERE c.mac = ?" + cert_order(self._dialect), (unit.mac,))]
            rots = [_row(Rotation, r) for r in c.execute(
                "SELECT * FROM rotations WHERE mac = ? ORDER BY id", (unit.mac,))]
            return UnitDetail(unit=unit, attempts=attempts, certificates=certs, rotations=rots)

        return self._read(work, snapshot=True)

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
                certs = c.execute(CERT_SLOTS_SELECT + " WHERE c.mac = ?" + cert_order(self._dialect), (u["mac"],)).fetchall()
                latest: dict[str, str] = {r["slot"]: r["fingerprint"] for r in certs}
                rows.append([u["serial"], u["mac"], u["recipe"], u["created"], u["updated"],
                             u["last_outcome"] or "", n,
                             ";".join(f"{s}={fp}" for s, fp in sorted(latest.items()))])
            return rows

        writer.writerows(self._read(work, snapshot=True))
        return out.getvalue()


__all__ = ["UnitLedger", "serial_of"]
