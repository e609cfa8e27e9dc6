"""Per-unit identities: key generated on the host, certificate signed by the factory CA.

The subject and SANs come from a template in the recipe::

    [pki.identity]
    subject = { CN = "{serial}", O = "Acme", OU = "{module}" }
    san_dns = ["{serial}.devices.acme.example"]
    san_uri = ["urn:acme:mac:{mac_hex}"]
    days = 825
    key_type = "ec-p256"

Placeholders are the names of the ``values`` mapping the station passes (see
:func:`identity_values`); an unknown placeholder is an InputError naming the template field.
A :class:`UnitIdentity` keeps its private key in memory; the PEM of the key is only returned
by :meth:`UnitIdentity.private_key_pem_for_mfg`, which the slot builder calls to hand the key to
the mfg_nvs builder. External-CA mode (:mod:`atfab.pki.csr`) reuses the same template.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.errors import InputError
from ..core.tomlfile import check_fields
from .ca import CertificateAuthority, utcnow
from .keys import KEY_TYPES, DEFAULT_KEY_TYPE, PrivateKey, cert_sha256, generate_key, signing_hash, spki_sha256

#: Subject attribute names a template may use.
NAME_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER, "emailAddress": NameOID.EMAIL_ADDRESS, "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
}
#: Longest value of each subject attribute (RFC 5280 upper bounds, ub-*): a longer one is refused
#: by TLS stacks and by cryptography itself.
NAME_MAX = {"CN": 64, "O": 64, "OU": 64, "C": 2, "ST": 128, "L": 128, "serialNumber": 64, "emailAddress": 255,
            "DC": 63, "UID": 256}
#: Extended key usages by name (per slot: client_* → clientAuth, server_* → serverAuth).
USAGES = {"clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH, "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH}
_SAN_KINDS = ("san_dns", "san_uri", "san_email", "san_ip")
#: not_valid_before is set this far in the past to absorb clock skew between host and peers.
BACKDATE = dt.timedelta(hours=1)


def identity_values(*, serial: str, mac: bytes | str | None = None, module: str | None = None,
                    **extra: str) -> dict[str, str]:
    """Standard placeholder values: serial, mac (``aa:bb:…``), mac_hex (``AABB…``), module, + extra."""
    values = {"serial": str(serial)}
    if mac is not None:
        raw = bytes(mac) if isinstance(mac, (bytes, bytearray)) else bytes.fromhex(mac.replace(":", "").replace("-", ""))
        values["mac"] = ":".join(f"{b:02x}" for b in raw)
        values["mac_hex"] = raw.hex().upper()
    if module is not None:
        values["module"] = module
    values.update({k: str(v) for k, v in extra.items()})
    return values


def _check_dns_name(text: str, *, source: str | None, field: str) -> None:
    """A DNS name a TLS peer accepts: at most 253 characters, labels of 1..63 letters, digits, '-'
    (and '_', which serials may hold)."""
    name = text[2:] if text.startswith("*.") else text
    if len(text) > 253:
        raise InputError(f"renders to {len(text)} characters, a DNS name holds at most 253", file=source, field=field)
    for label in name.rstrip(".").split("."):
        if not 1 <= len(label) <= 63:
            raise InputError(f"label {label[:24]!r}{'...' if len(label) > 24 else ''} has {len(label)} characters "
                             "(a DNS label holds 1..63)", file=source, field=field)
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            raise InputError(f"label {label!r} is not a DNS label (letters, digits, '-')", file=source, field=field)


def render(template: str, values: Mapping[str, str], *, source: str | None = None, field: str = "template") -> str:
    """Fill ``{name}`` placeholders (format specs allowed); unknown names are an InputError."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"bad template {template!r}: {exc}", file=source, field=field) from None
    for _literal, name, _spec, _conv in parts:
        if name is None:
            continue
        if not name.isidentifier():
            raise InputError(f"placeholder {{{name}}} must be a plain name", file=source, field=field)
        if name not in values:
            raise InputError(f"unknown placeholder {{{name}}} (known: {', '.join(sorted(values))})",
                             file=source, field=field)
    try:
        return template.format_map(values)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad template {template!r}: {exc}", file=source, field=field) from None


@dataclass(frozen=True)
class IdentityTemplate:
    """Subject/SAN templates, validity and key type of unit certificates."""

    subject: tuple[tuple[str, str], ...] = (("CN", "{serial}"),)
    san_dns: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    days: int = 3650
    key_type: str = DEFAULT_KEY_TYPE
    source: str | None = None
    field: str = "pki.identity"

    @classmethod
    def from_table(cls, table: Mapping, *, source: str | None = None, field: str = "pki.identity") -> "IdentityTemplate":
        """Build from a recipe table; unknown keys, attributes or types are InputErrors."""
        known = {"subject", "days", "key_type", *_SAN_KINDS}
        check_fields(table, sorted(known), file=source, where=field)
        subject = table.get("subject", {"CN": "{serial}"})
        if not isinstance(subject, Mapping) or not subject:
            raise InputError("subject must be a table such as { CN = \"{serial}\" }", file=source,
                             field=f"{field}.subject")
        for name, value in subject.items():
            if name not in NAME_ATTRIBUTES:
                raise InputError(f"unknown subject attribute (known: {', '.join(NAME_ATTRIBUTES)})",
                                 file=source, field=f"{field}.subject.{name}")
            if not isinstance(value, str):
                raise InputError("must be a string", file=source, field=f"{field}.subject.{name}")
        sans = {}
        for kind in _SAN_KINDS:
            items = table.get(kind, [])
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise InputError("must be a list of strings", file=source, field=f"{field}.{kind}")
            sans[kind] = tuple(items)
        days = table.get("days", 3650)
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise InputError("must be a positive number of days", file=source, field=f"{field}.days")
        key_type = table.get("key_type", DEFAULT_KEY_TYPE)
        if not isinstance(key_type, str) or key_type not in KEY_TYPES:
            raise InputError(f"unknown key type {key_type!r} (choose {', '.join(KEY_TYPES)})", file=source,
                             field=f"{field}.key_type")
        return cls(tuple(subject.items()), days=days, key_type=key_type, source=source, field=field, **sans)

    def subject_name(self, values: Mapping[str, str]) -> x509.Name:
        attrs = []
        for name, tmpl in self.subject:
            text = render(tmpl, values, source=self.source, field=f"{self.field}.subject.{name}")
            if not text:
                raise InputError("renders to an empty string", file=self.source, field=f"{self.field}.subject.{name}")
            if name == "C" and len(text) != 2:
                raise InputError(f"country {text!r} must be 2 letters", file=self.source, field=f"{self.field}.subject.C")
            limit = NAME_MAX.get(name, 64)
            if len(text) > limit:
                raise InputError(f"renders to {len(text)} characters ({text[:24]!r}...), at most {limit} fit "
                                 f"a certificate's {name}", file=self.source, field=f"{self.field}.subject.{name}")
            try:
                attrs.append(x509.NameAttribute(NAME_ATTRIBUTES[name], text))
            except ValueError as exc:
                raise InputError(f"{text!r}: {exc}", file=self.source, field=f"{self.field}.subject.{name}") from None
        return x509.Name(attrs)

    def san(self, values: Mapping[str, str]) -> x509.SubjectAlternativeName | None:
        names: list[x509.GeneralName] = []
        for kind in _SAN_KINDS:
            for i, tmpl in enumerate(getattr(self, kind)):
                fld = f"{self.field}.{kind}[{i}]"
                text = render(tmpl, values, source=self.source, field=fld)
                try:
                    if kind == "san_dns":
                        _check_dns_name(text, source=self.source, field=fld)
                        names.append(x509.DNSName(text))
                    elif kind == "san_uri":
                        names.append(x509.UniformResourceIdentifier(text))
                    elif kind == "san_email":
                        names.append(x509.RFC822Name(text))
                    else:
                        names.append(x509.IPAddress(ipaddress.ip_address(text)))
                except ValueError as exc:
                    raise InputError(f"{text!r}: {exc}", file=self.source, field=fld) from None
        return x509.SubjectAlternativeName(names) if names else None


class UnitIdentity:
    """One unit's certificate and (in memory only) private key.

    ``repr``/``str`` never show the key; :meth:`private_key_pem_for_mfg` is the one way to get
    its bytes, for the mfg_nvs builder (and the escrow writer, which encrypts them).
    """

    __slots__ = ("cert", "cert_pem", "chain_pem", "_key")

    def __init__(self, cert: x509.Certificate, key: PrivateKey, chain_pem: bytes = b"") -> None:
        self.cert = cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.chain_pem = chain_pem
        self._key = key

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def fingerprint_sha256(self) -> str:
        return cert_sha256(self.cert)

    @property
    def public_key(self):
        return self._key.public_key()

    def private_key_pem_for_mfg(self) -> bytes:
        """Unencrypted PKCS#8 PEM of the key: for the mfg_nvs image (or escrow encryption) only."""
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def private_key_object_for_escrow(self) -> PrivateKey:
        return self._key

    def cert_file_pem(self, *, with_chain: bool = True) -> bytes:
        """The certificate file a device presents: leaf, then intermediates (if any)."""
        return self.cert_pem + (self.chain_pem if with_chain else b"")

    def public_info(self) -> dict:
        """Facts safe for reports and the ledger (no key material)."""
        try:
            san = [str(n.value) for n in self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]
        except x509.ExtensionNotFound:
            san = []
        return {
            "subject": self.cert.subject.rfc4514_string(),
            "issuer": self.cert.issuer.rfc4514_string(),
            "serial": f"{self.serial:x}",
            "sha256": self.fingerprint_sha256,
            "spki_sha256": spki_sha256(self.cert),
            "not_before": self.cert.not_valid_before_utc.isoformat(),
            "not_after": self.cert.not_valid_after_utc.isoformat(),
            "san": san,
        }

    def __repr__(self) -> str:
        return f"UnitIdentity(subject={self.cert.subject.rfc4514_string()!r}, serial={self.serial:x})"

    __str__ = __repr__


def key_usage_for(key) -> x509.KeyUsage:
    """digitalSignature (+ keyEncipherment for RSA) — what TLS client/server certificates need."""
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)),
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _usages(usages: Iterable[str], *, source, field) -> list:
    out = []
    for u in usages:
        if u not in USAGES:
            raise InputError(f"unknown extended key usage {u!r} (known: {', '.join(USAGES)})", file=source, field=field)
        out.append(USAGES[u])
    if not out:
        raise InputError("at least one extended key usage is needed", file=source, field=field)
    return out


def sign_unit_certificate(ca: CertificateAuthority, public_key, subject: x509.Name,
                          san: x509.SubjectAlternativeName | None, *, days: int,
                          usages: Iterable[str] = ("clientAuth",), now: dt.datetime | None = None,
                          source: str | None = None) -> x509.Certificate:
    """An end-entity certificate for ``public_key`` signed by ``ca`` (serial from the CSPRNG)."""
    now = now or utcnow()
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())   # 159 bits from os.urandom
        .not_valid_before(max(now - BACKDATE, ca.cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage_for(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_usages(usages, source=source, field="usage")), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca.key, signing_hash(ca.key))


def issue_unit(ca: CertificateAuthority, template: IdentityTemplate, values: Mapping[str, str], *,
               usages: Iterable[str] = ("clientAuth",), now: dt.datetime | None = None) -> UnitIdentity:
    """Generate a key of ``template.key_type`` on the host and certify it with ``ca``."""
    subject = template.subject_name(values)
    san = template.san(values)
    key = generate_key(template.key_type, source=template.source, field=f"{template.field}.key_type")
    cert = sign_unit_certificate(ca, key.public_key(), subject, san, days=template.days, usages=usages, now=now,
                                 source=template.source)
    return UnitIdentity(cert, key, ca.intermediates_pem())


__all__ = ["NAME_ATTRIBUTES", "USAGES", "identity_values", "render", "IdentityTemplate", "UnitIdentity",
           "key_usage_for", "sign_unit_certificate", "issue_unit"]
