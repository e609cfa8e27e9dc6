"""What a stored blob is (certificate, private key, other), without ever exposing key material.

Used by ``atfab inspect`` for NVS blobs and for the items of legacy PKI partitions.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def describe_blob(namespace: str, key: str, data: bytes) -> dict[str, Any]:
    """What a blob is, without ever exposing private key material."""
    secret = "_key" in namespace or "_key" in key or b"PRIVATE KEY" in data
    if secret:
        return {"kind": "private_key", "size": len(data), **_key_info(data)}
    if b"-----BEGIN CERTIFICATE-----" in data:
        certs = _certs(data)
        if certs is not None:
            return {"kind": "certificates", "size": len(data), "certificates": certs}
    return {"kind": "blob", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _key_info(data: bytes) -> dict[str, Any]:
    try:
        key = load_pem_private_key(data, password=None)
    except Exception:  # noqa: BLE001 - encrypted, DER, garbage: say so, show nothing
        return {"key_type": "unparsed"}
    if isinstance(key, rsa.RSAPrivateKey):
        return {"key_type": "RSA", "key_bits": key.key_size}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"key_type": f"EC {key.curve.name}", "key_bits": key.key_size}
    if isinstance(key, dsa.DSAPrivateKey):
        return {"key_type": "DSA", "key_bits": key.key_size}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"key_type": "Ed25519", "key_bits": 256}
    if isinstance(key, ed448.Ed448PrivateKey):
        return {"key_type": "Ed448", "key_bits": 456}
    return {"key_type": type(key).__name__}


def _certs(data: bytes) -> list[dict[str, Any]] | None:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return None
    return [{"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
             "not_after": c.not_valid_after_utc.strftime("%Y-%m-%d"),
             "sha256": c.fingerprint(hashes.SHA256()).hex()} for c in certs]


__all__ = ["describe_blob"]
