"""External-CA mode: one CSR per unit for a batch, then ingest the signed certificates.

Batch folder written by :func:`write_csr_batch`::

    csr/<unit>.csr        PEM certificate signing request per unit (send these to the CA)
    pending-keys.json     {"format": "atfab.pending-keys/1",
                           "units": {"<unit>": "<PKCS#8 PEM, ENCRYPTED PRIVATE KEY>"}}
                          mode 0600, each key encrypted with the batch passphrase

Signed certificates come back as files in any order and under any name; :func:`ingest_signed`
matches each to its unit by public key (the first certificate of a file is the leaf, further
certificates are its intermediates).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..core.errors import InputError
from ..core import inputs
from ..core.fsutil import atomic_write
from .ca import utcnow
from .checks import check_chain, check_key_supported, check_validity, parse_pem_certs
from .issue import IdentityTemplate, UnitIdentity, _usages, key_usage_for
from .keys import PrivateKey, generate_key, signing_hash, spki_der

PENDING_FORMAT = "atfab.pending-keys/1"
PENDING_FILE = "pending-keys.json"
CSR_DIR = "csr"
_UNIT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CERT_SUFFIXES = (".crt", ".pem", ".cer")


@dataclass
class PendingUnit:
    unit_id: str
    csr: x509.CertificateSigningRequest
    key: PrivateKey = field(repr=False)


@dataclass
class CsrBatch:
    units: dict[str, PendingUnit]

    def csr_pem(self, unit_id: str) -> bytes:
        return self.units[unit_id].csr.public_bytes(serialization.Encoding.PEM)


def make_csr(key: PrivateKey, template: IdentityTemplate, values: Mapping[str, str], *,
             usages: Iterable[str] = ("clientAuth",)) -> x509.CertificateSigningRequest:
    """A CSR for ``key`` with the rendered subject, the SANs and the wanted key usages requested."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(template.subject_name(values))
    san = template.san(values)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    builder = builder.add_extension(key_usage_for(key), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage(_usages(usages, source=template.source, field="usage")),
                                    critical=False)
    return builder.sign(key, signing_hash(key))


def emit_csr_batch(units: Mapping[str, Mapping[str, str]], template: IdentityTemplate, *,
                   usages: Iterable[str] = ("clientAuth",)) -> CsrBatch:
    """Generate a key and a CSR per unit; ``units`` maps unit id → placeholder values."""
    usages = tuple(usages)
    out: dict[str, PendingUnit] = {}
    for unit_id, values in units.items():
        if not _UNIT_ID.match(unit_id):
            raise InputError("unit id must be 1-64 characters of A-Z a-z 0-9 . _ -", field=f"unit {unit_id!r}")
        key = generate_key(template.key_type, source=template.source, field=f"{template.field}.key_type")
        out[unit_id] = PendingUnit(unit_id, make_csr(key, template, values, usages=usages), key)
    return CsrBatch(out)


def write_csr_batch(batch: CsrBatch, directory: str | Path, passphrase: bytes) -> list[Path]:
    """Write the CSRs and the encrypted pending keys; returns the CSR paths."""
    directory = Path(directory)
    enc = serialization.BestAvailableEncryption(passphrase)
    keys = {uid: u.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc).decode()
            for uid, u in batch.units.items()}
    atomic_write(directory / PENDING_FILE, json.dumps({"format": PENDING_FORMAT, "units": keys}, indent=1) + "\n",
                 mode=0o600)
    paths = []
    for uid in batch.units:
        paths.append(atomic_write(directory / CSR_DIR / f"{uid}.csr", batch.csr_pem(uid), mode=0o644))
    return paths


def load_csr_batch(directory: str | Path, passphrase: bytes) -> CsrBatch:
    """Read a batch folder back (keys decrypted into memory)."""
    directory = Path(directory)
    path = directory / PENDING_FILE
    data = inputs.load_json(path, "pending keys", field="")
    if not isinstance(data, dict) or data.get("format") != PENDING_FORMAT or not isinstance(data.get("units"), dict):
        raise InputError(f"not an {PENDING_FORMAT} file", file=path, field="format")
    units: dict[str, PendingUnit] = {}
    for uid, pem in data["units"].items():
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=passphrase)
        except (ValueError, TypeError):
            raise InputError("cannot decrypt pending key: wrong passphrase or damaged file", file=path,
                             field=f"units.{uid}") from None
        csr_path = directory / CSR_DIR / f"{uid}.csr"
        try:
            csr = x509.load_pem_x509_csr(inputs.read_bytes(csr_path, "CSR", limit=inputs.PEM_LIMIT, field=""))
        except ValueError as exc:
            raise InputError(f"cannot read CSR: {exc}", file=csr_path) from None
        if spki_der(csr) != spki_der(key):
            raise InputError("CSR does not belong to the pending key of this unit", file=csr_path)
        units[uid] = PendingUnit(uid, csr, key)
    return CsrBatch(units)


@dataclass
class IngestResult:
    identities: dict[str, UnitIdentity]
    missing: list[str]          # units of the batch with no signed certificate yet


def ingest_signed(batch: CsrBatch, files: Mapping[str, bytes], *,
                  anchors: Iterable[x509.Certificate] | None = None, at: dt.datetime | None = None) -> IngestResult:
    """Match signed certificates (file name → PEM bytes) to the batch's units by public key.

    Each certificate must match a pending key, be valid at ``at`` (default now), carry a key
    type ESP-AT supports, and, when ``anchors`` are given, chain to one of them (intermediates
    taken from the same file).
    """
    at = at or utcnow()
    anchors = list(anchors) if anchors is not None else None
    by_key = {spki_der(u.key): u for u in batch.units.values()}
    identities: dict[str, UnitIdentity] = {}
    for name, data in files.items():
        certs = parse_pem_certs(data, file=name, field="certificate")
        leaf, extra = certs[0], certs[1:]
        unit = by_key.get(spki_der(leaf))
        if unit is None:
            raise InputError(f"certificate {leaf.subject.rfc4514_string()!r} matches no key of this batch",
                             file=name, field="certificate")
        if unit.unit_id in identities:
            raise InputError(f"second certificate for unit {unit.unit_id}", file=name, field="certificate")
        check_key_supported(leaf.public_key(), file=name, field="certificate")
        check_validity(leaf, at, file=name, field="certificate")
        if anchors is not None:
            check_chain(leaf, anchors, extra, at=at, file=name, field="certificate")
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in extra if c.subject != c.issuer)
        identities[unit.unit_id] = UnitIdentity(leaf, unit.key, chain)
    missing = [uid for uid in batch.units if uid not in identities]
    return IngestResult(identities, missing)


def read_cert_dir(directory: str | Path) -> dict[str, bytes]:
    """``{path: bytes}`` of the certificate files (``*.crt``, ``*.pem``, ``*.cer``) in a folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("folder of signed certificates not found", file=directory)
    return {str(p): inputs.read_bytes(p, "certificate", limit=inputs.PEM_LIMIT) for p in sorted(directory.iterdir())
            if p.is_file() and p.suffix.lower() in CERT_SUFFIXES}


__all__ = ["PendingUnit", "CsrBatch", "make_csr", "emit_csr_batch", "write_csr_batch", "load_csr_batch",
           "IngestResult", "ingest_signed", "read_cert_dir"]
