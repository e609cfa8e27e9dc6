"""The rotation journal: a certificate rotation's intent written before the first byte goes to
the unit, then moved along ``intent -> key_written -> cert_written -> verified -> done``, or to
``rolled_back`` from any state before ``done``; one pending rotation per unit slot."""

from __future__ import annotations

from ..core.mac import normalize_mac
from .ledger_db import Cursor
from .ledger_records import (
    ROTATION_CHAIN, ROTATION_FINAL, ROTATION_STATES, LedgerError, Rotation, from_row as _row, utc_now,
)
from .ledger_store import LedgerStore


class RotationLedger(LedgerStore):
    """Rotations of unit certificates, journalled."""

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


__all__ = ["RotationLedger"]
