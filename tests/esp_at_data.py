"""An esp-at ``raw_data`` folder made at test time: the committed CSVs of ``tests/data/esp-at`` plus
PKI files of the same shape as esp-at's test material (never committed: they include private keys).

esp-at's ``components/customized_partitions/raw_data`` holds RSA-2048 test certificates, all with
basicConstraints CA:TRUE, valid 2019-06-21 .. 2029-06-18, issued like this (checked with openssl on
the esp-at commit named in ``tests/data/NOTICE``):

    server_ca/server_ca.crt        C1 (self-signed)      client_ca/client_ca_0{0,1}.crt  S1 (self-signed)
    server_cert/server_cert.crt    S2, issued by S1      server_key/server.key           its key
    client_cert/client_cert_0N.crt C2, issued by C1      client_key/client_key_0N.key    its key (N = 0, 1)
    mqtt_ca/mqtt_ca.crt            Root CA (self-signed) mqtt_cert/mqtt_client.crt       L1 CA, issued by Root CA
    mqtt_key/mqtt_client.key       its key

:func:`raw_data_dir` builds the same names and relations once per process in a private (0700)
temporary folder, removed when the process exits. Keys are written as esp-at's are
(``-----BEGIN RSA PRIVATE KEY``, traditional OpenSSL PEM).
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import os
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DATA = Path(__file__).resolve().parent / "data"
ESP_AT = DATA / "esp-at"
COMMITTED_RAW_DATA = ESP_AT / "components" / "customized_partitions" / "raw_data"
NOT_BEFORE = dt.datetime(2019, 6, 21, 8, 0, 23, tzinfo=dt.timezone.utc)
NOT_AFTER = dt.datetime(2029, 6, 18, 8, 0, 23, tzinfo=dt.timezone.utc)


def _name(country: str, org: str, cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _esp(tag: str) -> x509.Name:
    return _name(tag, f"ESP {tag}", f"ESP Root CA {tag}")


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject: x509.Name, key: rsa.RSAPrivateKey, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey) -> bytes:
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def write_pki(folder: Path) -> None:
    """Write esp-at-shaped PKI namespaces (``server_*``, ``client_*``, ``mqtt_*``) into ``folder``."""
    c1, s1, root = _key(), _key(), _key()
    files: dict[str, bytes] = {
        "server_ca/server_ca.crt": _cert(_esp("C1"), c1, _esp("C1"), c1),
        "client_ca/client_ca_00.crt": _cert(_esp("S1"), s1, _esp("S1"), s1),
        "client_ca/client_ca_01.crt": _cert(_esp("S1"), s1, _esp("S1"), s1),
        "mqtt_ca/mqtt_ca.crt": _cert(_name("CN", "ESPRESSIF AT", "Root CA"), root,
                                     _name("CN", "ESPRESSIF AT", "Root CA"), root),
    }
    server = _key()
    files["server_cert/server_cert.crt"] = _cert(_esp("S2"), server, _esp("S1"), s1)
    files["server_key/server.key"] = _key_pem(server)
    for n in (0, 1):
        client = _key()
        files[f"client_cert/client_cert_0{n}.crt"] = _cert(_esp("C2"), client, _esp("C1"), c1)
        files[f"client_key/client_key_0{n}.key"] = _key_pem(client)
    mqtt = _key()
    files["mqtt_cert/mqtt_client.crt"] = _cert(_name("CN", "ESPRESSIF AT", "L1 CA"), mqtt,
                                               _name("CN", "ESPRESSIF AT", "Root CA"), root)
    files["mqtt_key/mqtt_client.key"] = _key_pem(mqtt)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if rel.endswith(".key"):
            os.chmod(path, 0o600)


@functools.cache
def raw_data_dir() -> Path:
    """A complete esp-at ``raw_data`` folder (committed CSVs + generated PKI), made once per process."""
    base = Path(tempfile.mkdtemp(prefix="atfab-esp-at-raw-data-"))    # mkdtemp: mode 0700
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    folder = base / "raw_data"
    shutil.copytree(COMMITTED_RAW_DATA, folder)
    write_pki(folder)
    return folder
