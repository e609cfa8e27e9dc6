"""Checks on certificates and keys before they go into a unit; each failure is a one-line InputError.

* PEM well formed: certificate files hold one or more ``CERTIFICATE`` blocks and nothing else;
  key files hold exactly one unencrypted private key block (the firmware has no passphrase).
* Key type and size usable by ESP-AT's TLS stack: RSA 1024-4096 or EC P-256/P-384
  (:mod:`atfab.pki.keys`); Ed25519 and everything else are rejected.
* Key and certificate belong together (same public key).
* The certificate chains to the given CA (signatures and names, via
  ``Certificate.verify_directly_issued_by``).
* Valid at the time of provisioning (not expired, not yet valid).
* The whole set fits the mfg_nvs partition (:func:`estimate_mfg_nvs_pages`; the final proof is
  :func:`atfab.image.mfg_nvs.build_mfg_nvs` raising).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..core.errors import InputError
from .keys import SUPPORTED_TEXT, describe_key, key_supported, spki_der

_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_END = re.compile(rb"-----END ([A-Z0-9 ]+)-----")


def _pem_labels(data: bytes, *, file, field) -> list[str]:
    if not isinstance(data, (bytes, bytearray)):
        raise InputError("expected bytes", file=file, field=field)
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        raise InputError("not a PEM file (binary/DER data; ESP-AT files here must be PEM)",
                         file=file, field=field) from None
    begins = [m.group(1).decode() for m in _BEGIN.finditer(data)]
    ends = [m.group(1).decode() for m in _END.finditer(data)]
    if not begins:
        raise InputError("not a PEM file (no -----BEGIN ...----- line)", file=file, field=field)
    if begins != ends:
        raise InputError("malformed PEM: BEGIN/END lines do not pair up", file=file, field=field)
    return begins


def parse_pem_certs(data: bytes, *, file=None, field: str | None = None) -> list[x509.Certificate]:
    """All certificates of a PEM file (at least one; only CERTIFICATE blocks allowed)."""
    labels = _pem_labels(data, file=file, field=field)
    wrong = [label for label in labels if label != "CERTIFICATE"]
    if wrong:
        raise InputError(f"certificate file holds a {wrong[0]} block (only CERTIFICATE blocks allowed)",
                         file=file, field=field)
    try:
        certs = x509.load_pem_x509_certificates(bytes(data))
    except ValueError as exc:
        raise InputError(f"malformed PEM certificate: {exc}", file=file, field=field) from None
    return certs


def parse_private_key(data: bytes, *, file=None, field: str | None = None, password: bytes | None = None,
                      device: bool = True):
    """The private key of a PEM file holding exactly one key block.

    Without ``password`` the key must be unencrypted; ``device`` words that error for a key
    meant for a unit (the firmware has no passphrase) rather than for an import.
    """
    labels = _pem_labels(data, file=file, field=field)
    keys = [label for label in labels if label.endswith("PRIVATE KEY")]
    if len(labels) != 1 or len(keys) != 1:
        raise InputError(f"key file must hold exactly one private key block, found {', '.join(labels)}",
                         file=file, field=field)
    if password is None and (keys[0] == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in data):
        raise InputError("private key is encrypted; ESP-AT needs an unencrypted key in mfg_nvs" if device else
                         "private key is encrypted and no passphrase was given", file=file, field=field)
    try:
        return serialization.load_pem_private_key(bytes(data), password=password)
    except TypeError:
        raise InputError("private key is encrypted and no passphrase was given", file=file, field=field) from None
    except ValueError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "bad key data"
        raise InputError(f"malformed PEM private key or wrong passphrase: {msg}", file=file, field=field) from None
    except UnsupportedAlgorithm as exc:
        raise InputError(f"unsupported private key: {exc}", file=file, field=field) from None


def check_key_supported(key, *, file=None, field: str | None = None) -> None:
    """Reject key types/sizes ESP-AT's TLS stack cannot use (see :mod:`atfab.pki.keys`)."""
    if key_supported(key):
        return
    desc = describe_key(key)
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        desc = f"EC curve {key.curve.name}"
    raise InputError(f"{desc} key is not supported by ESP-AT TLS (use {SUPPORTED_TEXT})", file=file, field=field)


def check_pair(cert: x509.Certificate, key, *, file=None, field: str | None = None) -> None:
    """The private ``key`` belongs to ``cert``."""
    if spki_der(cert) != spki_der(key):
        raise InputError(f"private key does not match the certificate {cert.subject.rfc4514_string()!r}",
                         file=file, field=field)


def check_validity(cert: x509.Certificate, at: dt.datetime, *, file=None, field: str | None = None) -> None:
    """``cert`` is valid at ``at`` (timezone-aware)."""
    subject = cert.subject.rfc4514_string()
    if at < cert.not_valid_before_utc:
        raise InputError(f"certificate {subject!r} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                         file=file, field=field)
    if at > cert.not_valid_after_utc:
        raise InputError(f"certificate {subject!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                         file=file, field=field)


def check_chain(cert: x509.Certificate, anchors: Iterable[x509.Certificate],
                intermediates: Iterable[x509.Certificate] = (), *, at: dt.datetime | None = None,
                file=None, field: str | None = None, max_depth: int = 8) -> list[x509.Certificate]:
    """Walk from ``cert`` through ``intermediates`` to one of ``anchors``; return the path.

    Each step is ``verify_directly_issued_by`` (issuer name + signature); issuers must be CA
    certificates; with ``at`` every certificate on the path must be valid then.
    """
    anchors, pool = list(anchors), list(intermediates)
    if not anchors:
        raise InputError("no CA certificate to check the chain against", file=file, field=field)
    path = [cert]
    current = cert
    for _ in range(max_depth):
        if at is not None:
            check_validity(current, at, file=file, field=field)
        for candidate in anchors + pool:
            if candidate.subject != current.issuer or candidate in path:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
                continue
            if not _is_ca(candidate):
                continue
            path.append(candidate)
            if candidate in anchors:
                if at is not None:
                    check_validity(candidate, at, file=file, field=field)
                return path
            current = candidate
            break
        else:
            raise InputError(f"certificate {current.subject.rfc4514_string()!r} is not signed by the given CA "
                             f"({', '.join(a.subject.rfc4514_string() for a in anchors)})", file=file, field=field)
    raise InputError("certificate chain too long", file=file, field=field)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return cert.version == x509.Version.v1  # old self-made v1 roots carry no extensions


def check_cert_file(data: bytes, *, at: dt.datetime, file=None, field: str | None = None) -> list[x509.Certificate]:
    """A certificate/CA file: PEM well formed, supported keys, every certificate valid at ``at``."""
    certs = parse_pem_certs(data, file=file, field=field)
    for cert in certs:
        check_key_supported(cert.public_key(), file=file, field=field)
        check_validity(cert, at, file=file, field=field)
    return certs


def check_key_file(data: bytes, *, file=None, field: str | None = None):
    """A device key file: one unencrypted PEM private key of a supported type."""
    key = parse_private_key(data, file=file, field=field)
    check_key_supported(key, file=file, field=field)
    return key


def check_pki_content(pki: Mapping[str, list], *, at: dt.datetime,
                      issuers: Mapping[tuple[str, int], list[x509.Certificate]] | None = None,
                      origins: Mapping[tuple[str, int], str] | None = None) -> None:
    """Check a ``{namespace: [PkiFile]}`` set as it will go into mfg_nvs.

    Every ``*_cert``/``*_ca`` file is checked with :func:`check_cert_file`, every ``*_key`` with
    :func:`check_key_file`; ``<family>_cert[i]`` and ``<family>_key[i]`` must pair up; when
    ``issuers[(cert namespace, i)]`` is given the certificate must chain to it. ``origins`` maps
    ``(namespace, i)`` to the file name used in messages (default: the PkiFile name).
    """
    origins = origins or {}
    parsed_certs: dict[tuple[str, int], list[x509.Certificate]] = {}
    parsed_keys: dict[tuple[str, int], object] = {}
    for ns, files in pki.items():
        kind = ns.rsplit("_", 1)[-1]
        for i, item in enumerate(files):
            where = (ns, i)
            file, field = origins.get(where, item.name), f"{ns}[{i}]"
            if kind in ("cert", "ca"):
                parsed_certs[where] = check_cert_file(item.data, at=at, file=file, field=field)
            elif kind == "key":
                parsed_keys[where] = check_key_file(item.data, file=file, field=field)
            else:
                raise InputError("not a PKI namespace (*_cert, *_key, *_ca)", file=file, field=ns)
    for ns, files in pki.items():
        if not ns.endswith("_cert"):
            continue
        key_ns = ns[: -len("_cert")] + "_key"
        keys = pki.get(key_ns, [])
        if keys and len(keys) != len(files):
            raise InputError(f"{ns} has {len(files)} files but {key_ns} has {len(keys)}: sets must pair up",
                             file=origins.get((key_ns, 0), keys[0].name), field=key_ns)
        for i in range(len(files)):
            cert = parsed_certs[(ns, i)][0]
            if (key_ns, i) in parsed_keys:
                check_pair(cert, parsed_keys[(key_ns, i)], file=origins.get((key_ns, i), keys[i].name),
                           field=f"{key_ns}[{i}]")
            if issuers and (ns, i) in issuers:
                check_chain(cert, issuers[(ns, i)], parsed_certs[(ns, i)][1:], at=at,
                            file=origins.get((ns, i), files[i].name), field=f"{ns}[{i}]")


# ---------------------------------------------------------------------------------------------
# mfg_nvs size estimate (replays esp-idf-nvs-partition-gen's page packing, §8.6)

_ENTRIES_PER_PAGE = 126
_PAGE = 4096
_MIN_PAGES = 3          # a read/write NVS partition is at least 0x3000 bytes
_PRIMITIVES = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"}


class _Packer:
    def __init__(self) -> None:
        self.pages = 1
        self.used = 0

    def new_page(self) -> None:
        self.pages += 1
        self.used = 0

    def primitive(self) -> None:
        if self.used >= _ENTRIES_PER_PAGE:
            self.new_page()
        self.used += 1

    def string(self, nbytes: int) -> None:   # nbytes includes the NUL
        total = 1 + math.ceil(nbytes / 32)
        if self.used + total >= _ENTRIES_PER_PAGE:
            self.new_page()
        self.used += total

    def blob(self, nbytes: int) -> None:     # multi-page blob (format version 2)
        if self.used >= _ENTRIES_PER_PAGE:
            self.new_page()
        remaining = nbytes
        while True:
            tailroom = (_ENTRIES_PER_PAGE - self.used - 1) * 32
            chunk = min(tailroom, remaining)
            remaining -= chunk
            self.used += 1 + math.ceil(chunk / 32)
            if remaining or tailroom - chunk < 32:
                self.new_page()
            if not remaining:
                self.used += 1      # blob index entry
                return


def estimate_mfg_nvs_pages(content) -> int:
    """Pages (4 KiB) the content of an :class:`atfab.image.mfg_nvs.UnitContent` needs, reserved page included.

    Replays the generator's packing (entries per page, strings never split, blobs split into
    chunks at page ends) in the order of §8.5; the partition must be at least this many pages.
    """
    p = _Packer()
    for files in content.pki.values():
        if files:
            p.primitive()
            for item in files:
                p.blob(len(item.data))
    p.primitive()  # factory_param namespace
    for value in content.factory_param.values():
        if isinstance(value, str):
            p.string(len(value.encode("utf-8")) + 1)
        else:
            p.primitive()
    if content.ble_rows:
        p.primitive()
        for row in content.ble_rows:
            p.string(len(row.encode("utf-8")) + 1)
    for keys in content.custom.values():
        p.primitive()
        for type_name, value in keys.values():
            if type_name in _PRIMITIVES:
                p.primitive()
            elif type_name == "string":
                p.string(len(str(value).encode("utf-8")) + 1)
            else:
                p.blob(len(value))
    return max(p.pages + 1, _MIN_PAGES)


def check_fits(content, size: int, *, source: str | None = None) -> int:
    """InputError when the content clearly needs more than ``size`` bytes; returns the bytes estimated."""
    need = estimate_mfg_nvs_pages(content) * _PAGE
    if need > size:
        raise InputError(f"content needs about {need:#x} bytes but the mfg_nvs partition is {size:#x} "
                         f"(drop PKI files or use a larger partition)", file=source, field="mfg_nvs")
    return need


__all__ = ["parse_pem_certs", "parse_private_key", "check_key_supported", "check_pair", "check_validity",
           "check_chain", "check_cert_file", "check_key_file", "check_pki_content", "estimate_mfg_nvs_pages",
           "check_fits"]
