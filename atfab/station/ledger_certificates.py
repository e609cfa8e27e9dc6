"""Certificates issued to units: a serial (per issuer) belongs to one unit; one certificate may
be installed in several slots of that unit (``certificate_slots``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..core.mac import normalize_mac
from .ledger_db import Cursor, Dialect
from .ledger_records import (
    CERT_SLOTS_ORDER, CERT_SLOTS_SELECT, CertificateRecord, LedgerError, from_row as _row, utc_now, when_text as _when,
)
from .ledger_store import LedgerStore


def cert_order(dialect: Dialect) -> str:
    """The ``ORDER BY`` of certificate-slot rows: oldest certificate first, slots in the order given."""
    return CERT_SLOTS_ORDER.format(seq=dialect.seq_column)


class CertificateLedger(LedgerStore):
    """Certificates per unit and slot."""

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
            lambda c: c.execute(sql + cert_order(self._dialect), args).fetchall())]


__all__ = ["CertificateLedger", "cert_order"]
