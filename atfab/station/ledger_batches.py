"""Pre-programmed batches (``atfab batch``; docs/recipes.md "Offline pre-programming").

A batch unit has no MAC yet: its identity is reserved under a placeholder MAC (multicast bit set,
so never a real unit's base MAC) and moved to the unit's MAC on first contact. A batch of any
size is a few statements: serials as one block of the counter, rows pipelined
(:meth:`~atfab.station.ledger_db.Cursor.executemany`), lookups by ``IN`` lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.mac import normalize_mac
from .ledger_db import Cursor, in_chunks, select_in
from .ledger_records import HasSerialScheme, LedgerError, UnitIdentity, utc_now, when_text as _when
from .ledger_units import UnitLedger


class BatchLedger(UnitLedger):
    """Identities reserved before their units exist, and bound to them on first contact."""

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
            taken = select_in(c, "SELECT mac AS v FROM units WHERE mac IN ({})", macs)
            if taken:
                raise LedgerError(f"placeholder {min(taken)} is already reserved")
            serials = self._next_counter_serials(c, scheme, len(macs))
            c.executemany("INSERT INTO units (mac, serial, recipe, created, updated) VALUES (?, ?, ?, ?, ?)",
                          [(m, s, recipe.name, now, now) for m, s in zip(macs, serials)])
            return [UnitIdentity(serial=s, mac=m, new=True, recipe=recipe.name) for m, s in zip(macs, serials)]

        return self._write(work)

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
                known = select_in(c, "SELECT cert_serial AS v FROM certificates WHERE issuer = ? AND cert_serial IN ({})",
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
            for part in in_chunks(macs):
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


__all__ = ["BatchLedger"]
