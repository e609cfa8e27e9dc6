"""The rotation journal policy: what a pending rotation means for a unit, and how it is resolved.

Every rotation is journalled in the ledger (:meth:`atfab.station.ledger.Ledger.journal_rotation`;
this module sees it through the :class:`RotationJournal` protocol) with
the old and new fingerprints *before* the first write; the journal ``detail`` (JSON) also holds
the new certificate's PEM (public) and where the slot's items live. The new private key is
never stored anywhere: it exists in the memory of the rotating process and on the unit.

Write order is **key first, then certificate**. After any interruption the unit therefore
holds one of three recognisable states, and the journal says which is which:

=========================  ============================================================
unit holds                 resolution on next contact (:func:`resume`)
=========================  ============================================================
new cert + new key         the rotation finished on the unit: record it, mark ``done``
old cert + old key         nothing (or everything) was undone: mark ``rolled_back``
old cert + new key         the key landed, the certificate did not: write the journalled
                           certificate (public, from the journal), verify, ``done``
the ledger's current pair  the unit was given another identity since (re-provisioned): the
                           rotation is superseded, marked ``rolled_back``; the slot is then
                           rotated like any other
anything else              ERROR (exit 3): left pending, reported, never guessed
=========================  ============================================================

Certificate-first would leave "new cert + old key" after an interruption, which nobody can
complete (the new key is gone with the process) - only undo, re-issuing later. Key-first can
always be completed because the missing half is public.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..link.at.errors import AtBusy, AtError, AtResponseError, LinkLost
from ..pki.keys import cert_sha256, spki_sha256
from .device import PairState, SlotStore, leaf_certificate
from .results import ERROR, PASS, SlotResult


class Rotation(Protocol):
    """One journalled rotation as the journal keeps it (``atfab.station.ledger_records.Rotation``)."""

    @property
    def id(self) -> int: ...
    @property
    def mac(self) -> str: ...
    @property
    def slot(self) -> str: ...
    @property
    def old_cert_fp(self) -> str | None: ...
    @property
    def old_key_fp(self) -> str | None: ...
    @property
    def new_cert_fp(self) -> str: ...
    @property
    def new_key_fp(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def detail(self) -> str | None: ...


class CurrentCertificate(Protocol):
    """The ledger's latest certificate of a unit's slot (``atfab.station.ledger_records.CertificateRecord``)."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def key_fingerprint(self) -> str | None: ...


class RotationJournal(Protocol):
    """Where rotations are journalled and certificates recorded (``atfab.station.ledger.Ledger``)."""

    def certificates_for(self, mac: str | bytes, slot: str | None = None) -> Sequence[CurrentCertificate]: ...

    def update_rotation(self, rotation_id: int, state: str, *, detail: str | None = None) -> Rotation: ...

    def record_certificate(self, mac: str | bytes, slot: str | Sequence[str], *, issuer: str,
                           cert_serial: str | int, fingerprint: str, key_fingerprint: str | None = None,
                           not_before: datetime | str | None = None, not_after: datetime | str | None = None,
                           attempt_id: int | None = None) -> object: ...

@dataclass
class JournalDetail:
    """The JSON kept in a rotation's ``detail``: mode, item names, new certificate PEM, a note."""

    mode: str
    cert_item: str
    key_item: str
    new_cert_pem: str | None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def dumps(self, note: str | None = None) -> str:
        if note is not None:
            self.note = note
        return json.dumps({"mode": self.mode, "cert_item": self.cert_item, "key_item": self.key_item,
                           "new_cert_pem": self.new_cert_pem, "note": self.note, **self.extra})

    @classmethod
    def loads(cls, text: str | None) -> "JournalDetail | None":
        try:
            d = json.loads(text or "")
            return cls(str(d["mode"]), str(d["cert_item"]), str(d["key_item"]), d.get("new_cert_pem"),
                       d.get("note"), {k: v for k, v in d.items()
                                       if k not in ("mode", "cert_item", "key_item", "new_cert_pem", "note")})
        except (ValueError, KeyError, TypeError):
            return None


def certificate_facts(cert: x509.Certificate) -> dict[str, Any]:
    """Public facts of a certificate for reports (no key material)."""
    return {"serial": f"{cert.serial_number:x}", "issuer": cert.issuer.rfc4514_string(),
            "subject": cert.subject.rfc4514_string(), "fingerprint_sha256": cert_sha256(cert),
            "key_fingerprint_sha256": spki_sha256(cert), "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat()}


def record_done(ledger: RotationJournal, rot: Rotation, cert: x509.Certificate, note: str,
                detail: JournalDetail | None) -> Rotation:
    """Record the new certificate for the unit and close the rotation as ``done``."""
    ledger.update_rotation(rot.id, "verified")
    ledger.record_certificate(rot.mac, rot.slot, issuer=cert.issuer.rfc4514_string(),
                              cert_serial=cert.serial_number, fingerprint=cert_sha256(cert),
                              key_fingerprint=spki_sha256(cert), not_before=cert.not_valid_before_utc,
                              not_after=cert.not_valid_after_utc)
    return ledger.update_rotation(rot.id, "done", detail=detail.dumps(note) if detail else None)


def classify(rot: Rotation, state: PairState, current: CurrentCertificate | None = None) -> str:
    """``new_pair``, ``old_pair``, ``new_key_old_cert``, ``ledger_pair`` or ``unknown`` (see the
    module docstring). ``current``: the ledger's latest certificate of the slot."""
    if state.cert_fp is None or state.key_fp is None or not state.key_read:
        return "unknown"
    new_key = rot.new_key_fp or rot.old_key_fp
    if state.cert_fp == rot.new_cert_fp and state.key_fp == new_key and state.matched:
        return "new_pair"
    if state.cert_fp == rot.old_cert_fp and state.key_fp == rot.old_key_fp and state.matched:
        return "old_pair"
    if (state.cert_fp == rot.old_cert_fp and rot.new_key_fp and rot.new_key_fp != rot.old_key_fp
            and state.key_fp == rot.new_key_fp):
        return "new_key_old_cert"
    if (current is not None and state.matched and state.cert_fp == current.fingerprint
            and current.key_fingerprint in (None, state.key_fp)):
        return "ledger_pair"
    return "unknown"


def current_certificate(ledger: RotationJournal, mac: str, slot: str) -> CurrentCertificate | None:
    """The certificate the ledger recorded last for ``mac``'s ``slot`` (None: none recorded)."""
    records = ledger.certificates_for(mac, slot)
    return records[-1] if records else None


def _short(fp: str | None) -> str:
    return fp[:16] + "…" if fp else "none"


def resume(rot: Rotation, io: SlotStore, ledger: RotationJournal, *, dry_run: bool = False,
           progress: Callable[[str], None] | None = None) -> SlotResult:
    """Resolve a pending rotation from what the unit holds now (see the module docstring).

    Never raises for a unit state it does not understand: that is an ERROR result, and the
    rotation stays pending. Link trouble (DeviceError) propagates, the journal untouched.
    """
    note = progress or (lambda event: None)
    detail = JournalDetail.loads(rot.detail)
    result = SlotResult(rot.slot, "resume", ERROR, rot.state, rot.id, detail.mode if detail else None,
                        new_cert_fp=rot.new_cert_fp, new_key_fp=rot.new_key_fp)

    def done(cert: x509.Certificate, why: str, after: PairState, message: str) -> SlotResult:
        """Record ``cert``, close the rotation as done and say so in the result."""
        record_done(ledger, rot, cert, why, detail)
        result.state, result.outcome, result.after = "done", PASS, after
        result.certificate = certificate_facts(cert)
        result.message = message
        note("done")
        return result

    # a store whose writes are not atomic (AT+SYSFLASH erase, then write) first puts back what a cut
    # left unreadable, from what the unit and the journal hold; then the policy below decides
    repaired = io.repair(rot, detail.extra if detail else {}, dry_run=dry_run)
    if repaired:
        note("repaired")
    state, _cert, key = io.read_pair(with_key=True)
    del key                                   # only its fingerprint is needed
    result.before = state
    verdict = result.unit_holds = classify(rot, state, current_certificate(ledger, rot.mac, rot.slot))
    seen = f"unit holds cert {_short(state.cert_fp)} / key {_short(state.key_fp)}"
    result.repaired = repaired
    if verdict == "unknown":
        result.message = (f"rotation {rot.id} ({rot.state}): {seen}, which is neither the old pair "
                          f"({_short(rot.old_cert_fp)}) nor the new one ({_short(rot.new_cert_fp)}); "
                          f"left pending - inspect the unit"
                          + (f" ({state.problem})" if state.problem else ""))
        return result
    if dry_run:
        result.outcome = PASS
        result.message = {"new_pair": "would mark done (unit holds the new pair)",
                          "old_pair": "would mark rolled_back (unit holds the old pair)",
                          "new_key_old_cert": "would write the journalled certificate and mark done",
                          "ledger_pair": "would mark rolled_back (superseded: the unit holds the ledger's "
                                         "current pair)"}[verdict]
        if repaired:
            result.message = f"{'; '.join(repaired)}, then {result.message}"
        return result
    if verdict == "ledger_pair":
        why = ("superseded: the unit holds the ledger's current pair (cert "
               f"{_short(state.cert_fp)}), recorded since rotation {rot.id} was journalled")
        ledger.update_rotation(rot.id, "rolled_back", detail=detail.dumps(why) if detail else None)
        result.state, result.outcome, result.after = "rolled_back", PASS, state
        result.message = f"rotation {rot.id} {why}: marked rolled_back"
        note("rolled_back")
        return result
    if verdict == "old_pair":
        ledger.update_rotation(rot.id, "rolled_back",
                               detail=detail.dumps("resolved: unit holds the old pair") if detail else None)
        result.state, result.outcome, result.after = "rolled_back", PASS, state
        result.message = f"rotation {rot.id} was interrupted before the unit changed: marked rolled_back"
        note("rolled_back")
        return result
    if verdict == "new_pair":
        cert = _journal_cert(detail, rot) or leaf_certificate(_cert or b"")
        if cert is None or cert_sha256(cert) != rot.new_cert_fp:
            result.message = f"rotation {rot.id}: unit holds the new pair but its certificate is unreadable"
            return result
        return done(cert, "resolved: unit holds the new pair", state,
                    f"rotation {rot.id} had finished on the unit: recorded, marked done")
    # new key, old certificate: complete with the journalled (public) certificate.
    cert = _journal_cert(detail, rot)
    if cert is None or spki_sha256(cert) != state.key_fp:
        result.message = (f"rotation {rot.id}: unit holds the new key but the journal has no matching "
                          f"certificate to complete it; left pending")
        return result
    assert detail is not None and detail.new_cert_pem is not None
    pem = detail.new_cert_pem.encode()
    if rot.state == "intent":
        ledger.update_rotation(rot.id, "key_written")      # what the unit shows
    try:
        io.write_cert(pem)
        ledger.update_rotation(rot.id, "cert_written")
        problems, after = io.check_readback(pem)
    except (AtBusy, AtResponseError, LinkLost):
        raise
    except AtError as exc:
        result.message = f"rotation {rot.id}: completing failed ({exc}); left pending"
        return result
    if problems:
        result.message = f"rotation {rot.id}: completing failed ({'; '.join(problems)}); left pending"
        return result
    return done(cert, "resolved: wrote the journalled certificate", after,
                f"rotation {rot.id} completed: wrote the journalled certificate, verified, done")


def _journal_cert(detail: JournalDetail | None, rot: Rotation) -> x509.Certificate | None:
    if detail is None or not detail.new_cert_pem:
        return None
    cert = leaf_certificate(detail.new_cert_pem.encode())
    return cert if cert is not None and cert_sha256(cert) == rot.new_cert_fp else None


def pem_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


__all__ = ["Rotation", "RotationJournal", "CurrentCertificate", "current_certificate", "JournalDetail", "certificate_facts", "record_done", "classify", "resume", "pem_of"]
