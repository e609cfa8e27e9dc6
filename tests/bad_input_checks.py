"""Recipes that look fine until a run meets them (issue 12): `atfab check` must say so first.

Each generator writes ``ws/in/recipe.toml`` (the shipped esp32c2-4mb-default recipe, edited) and,
where the case needs one, a CA folder made at test time (no key is ever committed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Callable

from tests.bad_input_generators import GENERATORS, PASSPHRASE, REPO

RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
Edit = Callable[[str, Path], str]


def _register(name: str, edit: Edit) -> None:
    def make(ws: Path) -> dict[str, Path]:
        folder = ws / "in"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "recipe.toml"
        path.write_text(edit(RECIPE.read_text(encoding="utf-8"), folder), encoding="utf-8")
        return {"file": path}
    make.__name__ = name
    assert name not in GENERATORS, name
    GENERATORS[name] = make


def _sub(old: str, new: str) -> Edit:
    def edit(text: str, folder: Path) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


# -- the subject rendered with the longest serial and the real module name --

CN = 'subject = { CN = "{serial}", O = "atfab demo" }'
_register("cn_65_with_longest_serial", _sub(CN, 'subject = { CN = "' + "x" * 55 + '{serial}", O = "atfab demo" }'))
_register("cn_75", _sub(CN, 'subject = { CN = "' + "x" * 65 + '{serial}" }'))
_register("cn_module_name", lambda t, f: _sub(CN, 'subject = { CN = "{module}/{serial}/' + "m" * 21 + '" }')(
    t.replace('module_name = "ESP32C2-4MB"', 'module_name = "ESP32C2-4MB-LONG-PRODUCT-NAME-XY"'), f))   # 32: the most
_register("cn_wide_serial", lambda t, f: t.replace("width = 6", "width = 18").replace(
    CN, 'subject = { CN = "' + "y" * 44 + '{serial}" }'))
_register("cn_mac_scheme", lambda t, f: t.replace('scheme = "counter"', 'scheme = "mac"').replace(
    "width = 6\nstart = 1\n", "").replace(CN, 'subject = { CN = "' + "z" * 50 + '{serial}" }'))
_register("o_too_long", _sub(CN, 'subject = { CN = "{serial}", O = "' + "o" * 65 + '" }'))
_register("ou_too_long_rendered", _sub(CN, 'subject = { CN = "{serial}", OU = "{recipe}-{module}-' + "u" * 40 + '" }'))


# -- values of the declared TOML type, versions that exist --

_register("tx_power_string", _sub("max_tx_power = 78 ", 'max_tx_power = "78" '))
_register("baud_string", _sub("uart_baudrate = 115200", 'uart_baudrate = "115200"'))
_register("channel_float", _sub("start_channel = 1", "start_channel = 1.0"))
_register("pin_bool", _sub("uart_tx_pin = 7", "uart_tx_pin = true"))
_register("synthetic_unknown", _sub('synthetic = "v4.1.0.0"', 'synthetic = "v9.9.9.9"'))
_register("synthetic_not_released", _sub('synthetic = "v4.1.0.0"', 'synthetic = "v4.1.0.1"'))
_register("at_version_integer", lambda t, f: t.replace("[verify]\n", "[verify]\nat_version = 99\n", 1))
_register("top_level_version", lambda t, f: "version = 99\n" + t)


# -- the factory CA: a CA, whose key is encrypted and matches --


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key, password: bytes | None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _ca_cert(key, *, ca: bool = True, key_cert_sign: bool | None = True) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad-inputs factory CA")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
         .not_valid_after(now + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if key_cert_sign is not None:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                                          crl_sign=key_cert_sign, encipher_only=False, decipher_only=False),
                            critical=True)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _ca_case(name: str, make_files: Callable[[], tuple[bytes, bytes]]) -> None:
    def edit(text: str, folder: Path) -> str:
        ca = folder / "ca"
        ca.mkdir()
        cert, key = make_files()
        (ca / "ca.crt").write_bytes(cert)
        (ca / "ca.key").write_bytes(key)
        (ca / "ca.key").chmod(0o600)
        return text.replace('ca = "../certs/demo-ca"', f'ca = "{ca}"').replace("demo_ca = true", "demo_ca = false")
    _register(name, edit)


def _not_a_ca() -> tuple[bytes, bytes]:
    k = _key()
    return _ca_cert(k, ca=False), _pem_key(k, PASSPHRASE)


def _no_cert_sign() -> tuple[bytes, bytes]:
    k = _key()
    return _ca_cert(k, key_cert_sign=False), _pem_key(k, PASSPHRASE)


def _other_key() -> tuple[bytes, bytes]:
    return _ca_cert(_key()), _pem_key(_key(), PASSPHRASE)


def _plain_key() -> tuple[bytes, bytes]:
    k = _key()
    return _ca_cert(k), _pem_key(k, None)


def _good_ca() -> tuple[bytes, bytes]:
    k = _key()
    return _ca_cert(k), _pem_key(k, PASSPHRASE)


_ca_case("ca_not_a_ca", _not_a_ca)
_ca_case("ca_no_key_cert_sign", _no_cert_sign)
_ca_case("ca_key_mismatch", _other_key)
_ca_case("ca_key_unencrypted", _plain_key)
_ca_case("ca_wrong_passphrase", _good_ca)          # run with a passphrase that is not this key's


# -- escrow file and ledger --


def _escrow_dir(text: str, folder: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    pub = folder / "operator.pub.pem"
    pub.write_bytes(_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    (folder / "escrow.d").mkdir()
    return text.replace("demo_ca = true", f'demo_ca = true\nescrow = {{ recipient = "{pub}", file = "{folder / "escrow.d"}" }}')


_register("escrow_file_is_dir", _escrow_dir)


def _corrupt_ledger(text: str, folder: Path) -> str:
    """A ledger whose b-tree pages are damaged: it opens, but PRAGMA integrity_check fails."""
    path = folder / "ledger.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA page_size = 1024")
        db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
        db.execute("CREATE TABLE units (id INTEGER PRIMARY KEY, serial TEXT UNIQUE, mac TEXT UNIQUE)")
        db.executemany("INSERT INTO units (serial, mac) VALUES (?, ?)",
                       [(f"C2D-{i:06d}", f"24:0a:c4:00:{i >> 8:02x}:{i & 255:02x}") for i in range(400)])
        db.commit()
    data = bytearray(path.read_bytes())
    for page in range(3, len(data) // 1024, 2):        # scramble cells of every other page
        start = page * 1024 + 200
        data[start:start + 64] = bytes((i * 37 + page) & 0xFF for i in range(64))
    path.write_bytes(bytes(data))
    return text.replace('path = "ledger.sqlite"', f'path = "{path}"')


_register("ledger_corrupt", _corrupt_ledger)


# -- 300 custom namespaces (the NVS namespace index is one byte) --


def many_namespaces(ws: Path) -> dict[str, Path]:
    path = ws / "in" / "params.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"[custom.ns{i:03d}]\nk = {{ type = \"u8\", value = 1 }}\n" for i in range(300)))
    return {"file": path}


GENERATORS["many_namespaces"] = many_namespaces


# -- factory images whose layout customize cannot prove (nothing may be written) --


def _image_case(name: str, make: Callable[[], bytes]) -> None:
    def gen(ws: Path) -> dict[str, Path]:
        path = ws / "in" / f"{name}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        return {"file": path}
    gen.__name__ = name
    GENERATORS[name] = gen


def _fi(module: str = "esp32c2-4mb") -> bytes:
    from tests.bad_input_generators import _factory_image

    return _factory_image(module)


def _with_tables(primary_csv: str | None = None, secondary_csv: str | None = None) -> bytes:
    """The esp32c2-4mb factory image with a table replaced by one encoded from CSV (valid MD5)."""
    from atfab.image.partition_table import encode, parse_csv

    data = bytearray(_fi())
    if primary_csv is not None:
        table = encode(parse_csv(primary_csv), md5=True)
        data[0x8000:0x8000 + 0xC00] = table.ljust(0xC00, b"\xff")
    if secondary_csv is not None:
        table = encode(parse_csv(secondary_csv, table_offset=0x1E000), md5=True)
        data[0x1E000:0x1E000 + 0xC00] = table.ljust(0xC00, b"\xff")
    return bytes(data)


PRIMARY = (REPO / "partitions" / "esp32c2-4mb" / "partitions_at.csv").read_text()
SECONDARY = (REPO / "partitions" / "esp32c2-4mb" / "at_customize.csv").read_text()

_image_case("cz_one_byte_more", lambda: _fi() + b"\xff")
_image_case("cz_truncated_1mb", lambda: _fi()[:0x100000])
_image_case("cz_truncated_3mb", lambda: _fi()[:0x300000])
_image_case("cz_doubled", lambda: _fi() * 2)
_image_case("cz_primary_garbage", lambda: _fi()[:0x8000] + bytes((i * 131 + 7) & 0xFF for i in range(0xC00))
            + _fi()[0x8C00:])
_image_case("cz_primary_blank", lambda: _fi()[:0x8000] + b"\xff" * 0xC00 + _fi()[0x8C00:])
_image_case("cz_primary_zeros", lambda: _fi()[:0x8000] + b"\x00" * 0xC00 + _fi()[0x8C00:])
_image_case("cz_partition_beyond_flash", lambda: _with_tables(
    primary_csv=PRIMARY.replace("ota_1, app, ota_1, 0x230000, 0x1d0000", "ota_1, app, ota_1, 0x230000, 0x3d0000")))
_image_case("cz_overlapping_partitions", lambda: _with_tables(
    primary_csv=PRIMARY.replace("ota_1, app, ota_1, 0x230000, 0x1d0000", "ota_1, app, ota_1, 0x200000, 0x1d0000")))
_image_case("cz_mfg_outside_at_customize", lambda: _with_tables(
    secondary_csv=SECONDARY.replace("mfg_nvs, data, nvs, 0x1f000, 124K", "mfg_nvs, data, nvs, 0x70000, 124K")))
_image_case("cz_other_module_layout", lambda: _fi("esp32c2-2mb") + b"\xff" * 0x200000)


# -- SANs rendered with the longest serial --

SAN_AT = 'key_type = "ec-p256"'
_register("san_dns_label_64", _sub(SAN_AT, SAN_AT + '\nsan_dns = ["' + "d" * 54 + '{serial}.devices.example.com"]'))
_register("san_dns_253", _sub(SAN_AT, SAN_AT + '\nsan_dns = ["{serial}.' + ("a" * 60 + ".") * 4 + 'example.com"]'))
_register("san_dns_bad_char", _sub(SAN_AT, SAN_AT + '\nsan_dns = ["{serial}.dev ices.example.com"]'))
_register("san_uri_not_uri", _sub(SAN_AT, SAN_AT + '\nsan_ip = ["{serial}"]'))
