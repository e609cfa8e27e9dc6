"""Scan a folder tree for private key material (reused by any test that writes files).

Policy (the issue wants no plaintext private key anywhere a test writes):

* A plaintext PEM private key block (``PRIVATE KEY``, ``RSA PRIVATE KEY``, ``EC PRIVATE KEY``,
  ``OPENSSH PRIVATE KEY``…) is a finding in every file, except device images the caller names
  in ``allow_images`` (an mfg_nvs.bin holds the unit key by design).
* An ``ENCRYPTED PRIVATE KEY`` block is allowed only in files whose name is in
  ``allow_encrypted`` (default: the factory CA key ``ca.key`` and the external-CA pending keys
  ``pending-keys.json``), and only if it really is encrypted (loading it without a passphrase fails).
* ``secrets``: extra byte strings that must not appear anywhere outside ``allow_images`` (e.g.
  :func:`key_markers` of the keys a test generated: DER, a PEM body line, the raw private value).

Escrow files hold only base64 ciphertext, so they need no exception.

Armor literals in tracked files are written split (``"…PRIVATE KEY" "-----"``) so that the
repository's own check for committed private-key blocks only ever finds real ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PLAINTEXT_BLOCK = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )?PRIVATE KEY)-----")
ENCRYPTED_BLOCK = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY" rb"-----.*?-----END ENCRYPTED PRIVATE KEY" rb"-----",
                             re.S)
DEFAULT_ALLOW_ENCRYPTED = ("ca.key", "pending-keys.json")


@dataclass(frozen=True)
class Finding:
    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def key_markers(key) -> list[bytes]:
    """Byte strings that would reveal ``key`` if found in a file."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = pem.splitlines()[2]          # a full 64-character base64 line from the middle
    markers = [der[-48:], body]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        raw = key.private_numbers().private_value.to_bytes(size, "big")
        markers += [raw, raw.hex().encode(), raw.hex().upper().encode()]
    elif isinstance(key, rsa.RSAPrivateKey):
        d = key.private_numbers().d
        raw = d.to_bytes((d.bit_length() + 7) // 8, "big")
        markers += [raw[:32], raw[:32].hex().encode()]
    return markers


def _really_encrypted(block: bytes) -> bool:
    """False when the block loads without a passphrase, under its own label or as plain PKCS#8."""
    for candidate in (block, block.replace(b"ENCRYPTED PRIVATE KEY", b"PRIVATE KEY")):
        try:
            serialization.load_pem_private_key(candidate, password=None)
        except (TypeError, ValueError):
            continue
        return False
    return True


def _texts(data: bytes, path: Path) -> list[bytes]:
    """The file bytes plus, for JSON files, every string value (catches escaped newlines)."""
    out = [data]
    if path.suffix in (".json", ".jsonl", ".escrow"):
        for line in data.splitlines() if path.suffix != ".json" else [data]:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            stack = [obj]
            while stack:
                item = stack.pop()
                if isinstance(item, str):
                    out.append(item.encode())
                elif isinstance(item, dict):
                    stack.extend(item.values())
                elif isinstance(item, list):
                    stack.extend(item)
    return out


def scan_tree(root: str | Path, *, allow_encrypted: Iterable[str] = DEFAULT_ALLOW_ENCRYPTED,
              allow_images: Iterable[str] = (), secrets: Iterable[bytes] = ()) -> list[Finding]:
    """Every file under ``root`` (hidden ones included); returns the findings (empty = clean)."""
    root = Path(root)
    allow_encrypted, allow_images = set(allow_encrypted), set(allow_images)
    secrets = [s for s in secrets if s]
    findings: list[Finding] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name in allow_images:
            continue
        data = path.read_bytes()
        for text in _texts(data, path):
            for m in PLAINTEXT_BLOCK.finditer(text):
                if m.group(1) != b"ENCRYPTED PRIVATE KEY":
                    findings.append(Finding(path, f"plaintext {m.group(1).decode()} block"))
            for m in ENCRYPTED_BLOCK.finditer(text):
                if path.name not in allow_encrypted:
                    findings.append(Finding(path, "ENCRYPTED PRIVATE KEY block outside an allowed key file"))
                elif not _really_encrypted(m.group(0)):
                    findings.append(Finding(path, "block labelled ENCRYPTED loads without a passphrase"))
        for secret in secrets:
            if secret in data:
                findings.append(Finding(path, f"contains known key material ({len(secret)} bytes)"))
    return sorted(set(findings), key=str)


def assert_no_private_keys(root: str | Path, **kwargs) -> None:
    findings = scan_tree(root, **kwargs)
    assert not findings, "private key material found:\n" + "\n".join(map(str, findings))
