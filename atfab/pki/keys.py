"""Key types atfab generates and accepts, and small helpers around them.

What ESP-AT's TLS stack (mbedTLS as configured in ESP-IDF) can use is broader than this list;
atfab is deliberately conservative and documents one rule everywhere:

* RSA with a modulus of 1024…4096 bits (atfab generates 2048/3072/4096 only; 1024 is accepted
  in existing material because older esp-at test certs use it, never generated);
* EC on secp256r1 (P-256) or secp384r1 (P-384);
* everything else (Ed25519, Ed448, X25519/X448, DSA, other curves) is rejected.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes

from ..core.errors import InputError

#: Key types atfab can generate: name → description.
KEY_TYPES = {
    "ec-p256": "EC P-256 (secp256r1)",
    "ec-p384": "EC P-384 (secp384r1)",
    "rsa-2048": "RSA 2048",
    "rsa-3072": "RSA 3072",
    "rsa-4096": "RSA 4096",
}
DEFAULT_KEY_TYPE = "ec-p256"
RSA_MIN_BITS = 1024
RSA_MAX_BITS = 4096
SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
SUPPORTED_TEXT = "RSA 1024-4096 or EC P-256/P-384"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_key(key_type: str = DEFAULT_KEY_TYPE, *, source: str | None = None,
                 field: str = "key_type") -> PrivateKey:
    """A new private key of ``key_type`` (one of :data:`KEY_TYPES`)."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type.startswith("rsa-") and key_type in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise InputError(f"unknown key type {key_type!r} (choose {', '.join(KEY_TYPES)})", file=source, field=field)


def describe_key(key: PublicKeyTypes | CertificateIssuerPrivateKeyTypes) -> str:
    """``"EC P-256"``, ``"RSA-2048"``, ``"Ed25519"``… for messages and reports."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"EC {SUPPORTED_CURVES.get(key.curve.name, key.curve.name)}"
    name = type(key).__name__
    for suffix in ("PrivateKey", "PublicKey"):
        name = name.removesuffix(suffix)
    return name.lstrip("_")


def key_supported(key) -> bool:
    """True when ESP-AT's TLS stack can use ``key`` (see module docstring)."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return key.curve.name in SUPPORTED_CURVES
    return False


def signing_hash(key) -> hashes.HashAlgorithm:
    """Hash to sign with ``key``: SHA-384 for P-384, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def spki_der(obj) -> bytes:
    """DER SubjectPublicKeyInfo of a private key, public key, certificate or CSR."""
    if isinstance(obj, (x509.Certificate, x509.CertificateSigningRequest)):
        obj = obj.public_key()
    elif hasattr(obj, "private_bytes"):
        obj = obj.public_key()
    return obj.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(obj) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo (identifies a key pair without revealing it)."""
    return hashlib.sha256(spki_der(obj)).hexdigest()


def cert_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 fingerprint of the DER certificate."""
    return cert.fingerprint(hashes.SHA256()).hex()


__all__ = ["KEY_TYPES", "DEFAULT_KEY_TYPE", "SUPPORTED_TEXT", "PrivateKey", "generate_key", "describe_key",
           "key_supported", "signing_hash", "spki_der", "spki_sha256", "cert_sha256"]
