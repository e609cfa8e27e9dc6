"""Key escrow: unit private keys encrypted to an operator's public key (never stored in plaintext).

File format ``atfab.key-escrow/1`` (UTF-8 JSON Lines, mode 0600; one file per batch or per unit):

line 1, header::

    {"format": "atfab.key-escrow/1", "scheme": "<scheme>", "recipient_spki_sha256": "<hex>",
     "created": "<ISO 8601 UTC>"}

every further line, one unit::

    {"unit": "<unit id>", "cert_sha256": "<hex>", "spki_sha256": "<hex of the unit public key>",
     "ek": "<base64>", "nonce": "<base64, 12 bytes>", "ct": "<base64 AES-256-GCM ciphertext+tag>",
     "info": {"serial": "...", "mac": "...", "slots": "client.0,mqtt.0", ...}}     (optional)

``info`` (text values only: what the station knew, e.g. serial, MAC, slots, attempt) is
optional; when present it is part of the associated data too. Records are appended whole
(one ``write`` + ``fsync``); a writer that finds a torn last line (a run killed mid-append)
cuts it off before appending, so the file always parses.

The plaintext is the unit key as unencrypted PKCS#8 DER. AES-GCM's associated data is the
UTF-8 JSON (sorted keys, no spaces) of ``{"format", "recipient_spki_sha256", "unit",
"cert_sha256", "spki_sha256"}`` (plus ``"info"`` when the record has one), so a record cannot be moved to another unit or file unnoticed.
The 32-byte AES key per record comes from the scheme:

* ``ecies-hkdf-sha256-aes256gcm`` (operator key EC P-256 or P-384): a fresh ephemeral key on the
  operator's curve; ``ek`` = its public point (X9.62 uncompressed); AES key =
  HKDF-SHA256(ECDH(ephemeral, operator), salt = empty, info = ``b"atfab key escrow v1" + ek``).
* ``rsa-oaep-sha256-aes256gcm`` (operator key RSA ≥ 2048): a random AES key; ``ek`` = that key
  encrypted with RSA-OAEP (MGF1-SHA256, SHA-256, no label).

:func:`decrypt_escrow` is the operator's side.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.exceptions import InvalidTag

from ..core.errors import InputError
from ..core.inputs import ESCROW_LIMIT, PEM_LIMIT, read_bytes, read_text
from ..core.fsutil import atomic_write
from .ca import utcnow
from .issue import UnitIdentity
from .keys import PrivateKey, cert_sha256, describe_key, spki_sha256

FORMAT = "atfab.key-escrow/1"
ECIES = "ecies-hkdf-sha256-aes256gcm"
RSA_OAEP = "rsa-oaep-sha256-aes256gcm"
_INFO = b"atfab key escrow v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, *, file, field) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise InputError("not base64", file=file, field=field) from None


def scheme_for(public_key) -> str:
    """The escrow scheme for an operator public key; InputError for unsupported keys."""
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return RSA_OAEP
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in ("secp256r1", "secp384r1"):
        return ECIES
    raise InputError(f"operator key {describe_key(public_key)} cannot receive escrow (use RSA >= 2048 or EC P-256/P-384)",
                     field="escrow.recipient")


def load_recipient(path: str | Path):
    """The operator's public key from a PEM public key or certificate file."""
    path = Path(path)
    data = read_bytes(path, "operator public key", limit=PEM_LIMIT, field="escrow.recipient")
    if b"PRIVATE KEY" in data:
        raise InputError("this is a private key; give the operator's PUBLIC key", file=path, field="escrow.recipient")
    try:
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise InputError(f"not a PEM public key or certificate: {exc}", file=path, field="escrow.recipient") from None
    scheme_for(key)
    return key


def _aad(recipient: str, unit: str, cert_fp: str, spki_fp: str, info: Mapping[str, str] | None = None) -> bytes:
    bound = {"format": FORMAT, "recipient_spki_sha256": recipient, "unit": unit, "cert_sha256": cert_fp,
             "spki_sha256": spki_fp}
    if info is not None:
        bound["info"] = dict(info)
    return json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()


def _hkdf(shared: bytes, ek: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + ek).derive(shared)


_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _header(recipient) -> dict:
    return {"format": FORMAT, "scheme": scheme_for(recipient), "recipient_spki_sha256": spki_sha256(recipient),
            "created": utcnow().isoformat()}


def _record(recipient, unit_id: str, identity: UnitIdentity, info: Mapping[str, str] | None = None) -> dict:
    key = identity.private_key_object_for_escrow()
    plaintext = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    rfp, cfp, kfp = spki_sha256(recipient), cert_sha256(identity.cert), spki_sha256(identity.cert)
    if isinstance(recipient, rsa.RSAPublicKey):
        aes_key = AESGCM.generate_key(bit_length=256)
        ek = recipient.encrypt(aes_key, _OAEP)
    else:
        eph = ec.generate_private_key(recipient.curve)
        ek = eph.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        aes_key = _hkdf(eph.exchange(ec.ECDH(), recipient), ek)
    nonce = os.urandom(12)
    if info is not None:
        info = {str(k): str(v) for k, v in info.items()}
    ct = AESGCM(aes_key).encrypt(nonce, plaintext, _aad(rfp, unit_id, cfp, kfp, info))
    rec = {"unit": unit_id, "cert_sha256": cfp, "spki_sha256": kfp, "ek": _b64(ek), "nonce": _b64(nonce),
           "ct": _b64(ct)}
    if info is not None:
        rec["info"] = info
    return rec


def _line(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


def write_escrow(path: str | Path, recipient, identities: Mapping[str, UnitIdentity]) -> Path:
    """Write one escrow file (atomically, mode 0600) holding every identity's key."""
    scheme_for(recipient)
    text = _line(_header(recipient)) + "".join(_line(_record(recipient, uid, ident))
                                               for uid, ident in identities.items())
    return atomic_write(path, text, mode=0o600)


class EscrowWriter:
    """Appends one record per unit to a batch escrow file (created with its header on first use).

    Creating the file is atomic and never replaces a file another writer made meanwhile; a torn
    last line left by a writer killed mid-append is cut off (that record's unit never got its key:
    the station escrows before it flashes).
    """

    def __init__(self, path: str | Path, recipient) -> None:
        self.path = Path(path)
        self.recipient = recipient
        scheme_for(recipient)
        if not self.path.exists():
            _create(self.path, _line(_header(recipient)))
        _cut_torn_tail(self.path)
        header = _read_header(self.path)
        if header["recipient_spki_sha256"] != spki_sha256(recipient):
            raise InputError("escrow file is encrypted to another operator key", file=self.path,
                             field="recipient_spki_sha256")

    def add(self, unit_id: str, identity: UnitIdentity, *, info: Mapping[str, str] | None = None) -> None:
        """Append the unit's record (one write + fsync); ``info``: text facts kept with it (serial, MAC…)."""
        self.append([self.record(unit_id, identity, info=info)])

    def record(self, unit_id: str, identity: UnitIdentity, *, info: Mapping[str, str] | None = None) -> bytes:
        """The unit's record as one encrypted line, not written yet (:meth:`append` writes many
        at once; a batch encrypts on its worker processes)."""
        return _line(_record(self.recipient, unit_id, identity, info)).encode()

    def append(self, lines: Sequence[bytes]) -> None:
        """Append whole record lines (from :meth:`record`) with one write and one fsync."""
        data = b"".join(lines)
        if any(not line.endswith(b"\n") or line.count(b"\n") != 1 for line in lines):
            raise ValueError("escrow records are single lines")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)      # writers of other processes and _cut_torn_tail wait
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(f"short write to {self.path}")
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)


def _create(path: Path, text: str) -> None:
    """Make ``path`` holding ``text`` (mode 0600) unless it exists; never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)          # fails if another writer created it first: keep theirs
        except FileExistsError:
            pass
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _cut_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a write the kernel did not finish) off the file."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)          # no append of another writer is half-way now
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep, pos = 0, size
        while pos > 0 and not keep:
            start = max(0, pos - 65536)
            chunk = os.pread(fd, pos - start, start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
            pos = start
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> list[str]:
    return read_text(path, "escrow file", limit=ESCROW_LIMIT, field="").splitlines()


def _parse(line: str, path: Path, n: int) -> dict:
    try:
        obj = json.loads(line)
    except ValueError:
        raise InputError("not a JSON line (truncated write?)", file=path, field=f"line {n}") from None
    if not isinstance(obj, dict):
        raise InputError("not a JSON object", file=path, field=f"line {n}")
    return obj


def _read_header(path: Path) -> dict:
    lines = _read_lines(path)
    header = _parse(lines[0], path, 1) if lines else {}
    if header.get("format") != FORMAT or header.get("scheme") not in (ECIES, RSA_OAEP):
        raise InputError(f"not an {FORMAT} file", file=path, field="format")
    return header


def list_escrow(path: str | Path) -> list[dict]:
    """The public part of each record (unit, fingerprints, info) without decrypting."""
    path = Path(path)
    _read_header(path)
    return [{k: rec.get(k) for k in ("unit", "cert_sha256", "spki_sha256", "info")}
            for n, line in enumerate(_read_lines(path)[1:], start=2) if line for rec in [_parse(line, path, n)]]


@dataclass(frozen=True)
class EscrowRecord:
    """One decrypted record: the unit id, the facts kept with it, fingerprints and the key."""

    unit: str
    info: dict[str, str]
    cert_sha256: str
    spki_sha256: str
    key: PrivateKey

    def __repr__(self) -> str:             # never the key
        return f"EscrowRecord(unit={self.unit!r}, info={self.info!r}, cert_sha256={self.cert_sha256[:16]}…)"


def decrypt_records(path: str | Path, operator_key: PrivateKey) -> list[EscrowRecord]:
    """Decrypt every record with the operator's private key, in file order (a unit may appear
    several times: one record per issued key)."""
    path = Path(path)
    header = _read_header(path)
    rfp = spki_sha256(operator_key)
    if header.get("recipient_spki_sha256") != rfp:
        raise InputError("escrow file is encrypted to another operator key", file=path, field="recipient_spki_sha256")
    out: list[EscrowRecord] = []
    for n, line in enumerate(_read_lines(path)[1:], start=2):
        if not line:
            continue
        rec = _parse(line, path, n)
        where = f"line {n}"
        try:
            unit, cfp, kfp = rec["unit"], rec["cert_sha256"], rec["spki_sha256"]
            ek = _unb64(rec["ek"], file=path, field=where)
            nonce = _unb64(rec["nonce"], file=path, field=where)
            ct = _unb64(rec["ct"], file=path, field=where)
        except KeyError as exc:
            raise InputError(f"record lacks {exc.args[0]!r}", file=path, field=where) from None
        info = rec.get("info")
        if info is not None and not (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
            raise InputError("record info must be an object of texts", file=path, field=where)
        try:
            if header["scheme"] == RSA_OAEP:
                aes_key = operator_key.decrypt(ek, _OAEP)
            else:
                eph = ec.EllipticCurvePublicKey.from_encoded_point(operator_key.curve, ek)
                aes_key = _hkdf(operator_key.exchange(ec.ECDH(), eph), ek)
            der = AESGCM(aes_key).decrypt(nonce, ct, _aad(rfp, unit, cfp, kfp, info))
        except (InvalidTag, ValueError, TypeError, AttributeError):
            raise InputError(f"record of unit {unit!r} does not decrypt (damaged or altered)", file=path,
                             field=where) from None
        key = serialization.load_der_private_key(der, password=None)
        if spki_sha256(key) != kfp:
            raise InputError(f"record of unit {unit!r} holds a different key than recorded", file=path, field=where)
        out.append(EscrowRecord(unit, dict(info or {}), cfp, kfp, key))
    return out


def decrypt_escrow(path: str | Path, operator_key: PrivateKey) -> dict[str, PrivateKey]:
    """Decrypt every record with the operator's private key → ``{unit id: private key}`` (the
    last record of a unit id wins; :func:`decrypt_records` gives them all)."""
    return {r.unit: r.key for r in decrypt_records(path, operator_key)}


def load_operator_key(path: str | Path, passphrase: Callable[[], bytes] | None = None) -> PrivateKey:
    """The operator's private key (PEM, encrypted or not); ``passphrase()`` is asked only when
    the key is encrypted. InputError (one line) when it cannot be read or is no RSA/EC key."""
    path = Path(path)
    data = read_bytes(path, "operator key", limit=PEM_LIMIT, field="key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:                       # encrypted
        if passphrase is None:
            raise InputError("the operator key is encrypted: give its passphrase", file=path, field="key") from None
        try:
            key = serialization.load_pem_private_key(data, password=passphrase())
        except (ValueError, TypeError):
            raise InputError("cannot decrypt the operator key: wrong passphrase", file=path,
                             field="passphrase") from None
    except ValueError:
        raise InputError("not a PEM private key", file=path, field="key") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError(f"operator key {describe_key(key)} is not an RSA or EC key", file=path, field="key")
    return key


def pem_bundle(records: list[EscrowRecord]) -> bytes:
    """Unencrypted PKCS#8 PEMs of ``records``, each after a ``#`` line naming unit, facts and
    certificate fingerprint (text before a PEM block is ignored by PEM readers)."""
    out = []
    for r in records:
        facts = " ".join(f"{k}={v}" for k, v in sorted(r.info.items()) if k != "serial")
        out.append(f"# unit {r.unit} {facts} cert_sha256={r.cert_sha256}\n".replace("  ", " ").encode())
        out.append(r.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return b"".join(out)


__all__ = ["FORMAT", "ECIES", "RSA_OAEP", "scheme_for", "load_recipient", "write_escrow", "EscrowWriter",
           "EscrowRecord", "list_escrow", "decrypt_escrow", "decrypt_records", "load_operator_key", "pem_bundle"]
