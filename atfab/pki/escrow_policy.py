"""What atfab keeps in a recipe's key escrow (``[pki] escrow``), shared by the station and ``atfab rotate``.

Every private key atfab generates for a unit (provisioning: :mod:`atfab.station.runner`; rotation in
``new-key`` mode: :mod:`atfab.station.fleet`; offline pre-programming: :mod:`atfab.station.batch`) is appended to the recipe's escrow file right after the
certificate is issued and before the key goes anywhere else (the unit's flash, an AT write): one
encrypted record (:class:`atfab.pki.escrow.EscrowWriter`) whose clear ``info`` says which unit,
which slots, which certificate and why (``context``: ``provision`` or ``rotation``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .escrow import EscrowWriter, load_recipient

#: ``info["context"]`` of the records: why the key was generated (``batch``: ``atfab batch``, offline
#: pre-programming; ``mac`` is then the unit's placeholder MAC, ``batch`` the batch id).
PROVISION, ROTATION, BATCH = "provision", "rotation", "batch"


def open_escrow(recipe: Any, *, station_id: str, started: str) -> EscrowWriter | None:
    """The escrow file of one run of ``recipe`` (``[pki] escrow``), created with its header if
    new; None when the recipe keeps no keys. ``started``: ISO 8601 UTC start of the run (its date
    fills ``{date}``). InputError when the recipient key cannot be used."""
    spec = recipe.pki.escrow if recipe.pki is not None else None
    if spec is None:
        return None
    path = spec.path(station=station_id, date=started[:10].replace("-", ""))
    return EscrowWriter(path, load_recipient(spec.recipient))


def escrow_identity(writer: EscrowWriter, identity: Any, *, serial: str, mac: str, slots: Iterable[str],
                    context: str, **facts: Any) -> None:
    """Append ``identity``'s private key (an :class:`atfab.pki.issue.UnitIdentity`) to the escrow,
    under unit id ``serial``; the clear facts are serial, MAC, slots, certificate serial, context
    and ``facts`` (None values left out). One whole record, fsynced, before returning."""
    writer.append([escrow_record(writer, identity, serial=serial, mac=mac, slots=slots, context=context, **facts)])


def escrow_record(writer: EscrowWriter, identity: Any, *, serial: str, mac: str, slots: Iterable[str],
                  context: str, **facts: Any) -> bytes:
    """The record :func:`escrow_identity` appends, encrypted but not written (``writer.append``
    writes a batch's records at once)."""
    info = {"serial": serial, "mac": mac, "slots": ",".join(slots), "cert_serial": identity.public_info()["serial"],
            "context": context}
    info.update({k: str(v) for k, v in facts.items() if v is not None})
    return writer.record(serial, identity, info=info)


__all__ = ["PROVISION", "ROTATION", "BATCH", "open_escrow", "escrow_identity", "escrow_record"]
