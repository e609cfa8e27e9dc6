"""Generators of the bad-input corpus: inputs made at test time (binaries, big files, and
everything key-shaped, so that no private key is ever committed). ``GENERATORS`` maps a
``gen = "<name>"`` of ``tests/bad_inputs/cases.toml`` to a function of the workspace."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).parent
CORPUS = HERE / "bad_inputs"
REPO = HERE.parent
PASSPHRASE = b"bad-inputs-key-passphrase"


# ------------------------------------------------------------------------- shared material


@functools.cache
def _profile(name: str):
    from atfab.image.profiles import load_profile

    return load_profile(name)


@functools.cache
def _ca_material() -> tuple[bytes, bytes]:
    """(CA certificate PEM, its unencrypted key PEM): generated, kept in memory and tmp_path only."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(key, "bad-inputs CA", ca=True)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _key_pem(key, password: bytes | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _cert(key, cn: str, *, ca: bool, days: int = 365, past: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=400), now - dt.timedelta(days=30)) if past else (
        now - dt.timedelta(minutes=5), now + dt.timedelta(days=days))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


@functools.cache
def _synthetic_files(module: str) -> dict[str, tuple[int, bytes]]:
    from atfab.image.build import synthetic_firmware_files

    return synthetic_firmware_files(_profile(module), version="v4.1.0.0")


@functools.cache
def _factory_image(module: str) -> bytes:
    from atfab.image.build import build_unit_images, merge_factory_image
    from atfab.image.unit_content import unit_content

    profile = _profile(module)
    images = build_unit_images(profile, unit_content(profile))
    parts = [v for v in _synthetic_files(module).values()]
    parts += [(profile.at_customize_offset, images.at_customize), (profile.mfg_nvs.offset, images.mfg_nvs.image)]
    return merge_factory_image(profile, parts)


@functools.cache
def _mfg_nvs_image(module: str = "esp32c2-4mb") -> bytes:
    from atfab.image.build import build_unit_images
    from atfab.image.unit_content import unit_content

    profile = _profile(module)
    return build_unit_images(profile, unit_content(profile)).mfg_nvs.image


GARBAGE = bytes((i * 131 + 7) % 256 for i in range(5000))


# ------------------------------------------------------------------------------ generators
# Each takes the workspace and returns placeholders ({"file": ...} at least, unless the case
# has a committed file). Inputs are written under ws/"in".

Generator = Callable[[Path], dict[str, Path]]
GENERATORS: dict[str, Generator] = {}


def gen(fn: Generator) -> Generator:
    GENERATORS[fn.__name__] = fn
    return fn


def _write(ws: Path, name: str, data: bytes | str) -> Path:
    path = ws / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _ca_cert_file(ws: Path) -> Path:
    return _write(ws, "ca_import.crt", _ca_material()[0])


# -- keys (never committed) --


@gen
def pki_key(ws: Path) -> dict[str, Path]:
    """Only the key of a ca import case whose certificate file is the committed input."""
    return {"key": _write(ws, "ca_import.key", _ca_material()[1])}


def _key_case(name: str, data: Callable[[], bytes]) -> None:
    def make(ws: Path) -> dict[str, Path]:
        path = _write(ws, f"{name}.key", data())
        return {"file": _ca_cert_file(ws), "key": path, "pki_file": path}
    make.__name__ = name
    gen(make)


def _garbled_key() -> bytes:
    body = __import__("base64").encodebytes(bytes(range(48)) * 3).decode()   # not DER of any key
    return f"-----BEGIN PRIVATE KEY" f"-----\n{body}-----END PRIVATE KEY" f"-----\n".encode()


def _truncated_key() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    lines = _key_pem(ec.generate_private_key(ec.SECP256R1())).splitlines(keepends=True)
    return b"".join(lines[:2]) + lines[-1]          # header, one body line, footer


def _encrypted_key() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    return _key_pem(ec.generate_private_key(ec.SECP256R1()), PASSPHRASE)


def _other_key() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


_key_case("key_armor_only", lambda: b"-----BEGIN PRIVATE KEY" b"-----\n-----END PRIVATE KEY" b"-----\n")
_key_case("key_garbled_body", _garbled_key)
_key_case("key_truncated", _truncated_key)
_key_case("key_encrypted", _encrypted_key)
_key_case("key_is_a_cert", lambda: _ca_material()[0])
_key_case("key_mismatch", _other_key)
_key_case("key_binary_garbage", lambda: GARBAGE[:700])
_key_case("key_empty", lambda: b"")


# -- certificates --


def _cert_case(name: str, make_cert: Callable[[Any], bytes]) -> None:
    def make(ws: Path) -> dict[str, Path]:
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        cert = _write(ws, f"{name}.crt", make_cert(key))
        return {"file": cert, "key": _write(ws, f"{name}.key", _key_pem(key)), "pki_file": cert}
    make.__name__ = name
    gen(make)


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)


def _truncated_cert(key) -> bytes:
    lines = _pem(_cert(key, "truncated", ca=True)).splitlines(keepends=True)
    return b"".join(lines[:len(lines) // 2]) + lines[-1]


_cert_case("cert_not_ca", lambda key: _pem(_cert(key, "leaf", ca=False)))
_cert_case("cert_expired", lambda key: _pem(_cert(key, "expired CA", ca=True, past=True)))
_cert_case("cert_der", lambda key: _der(_cert(key, "DER CA", ca=True)))
_cert_case("cert_truncated", _truncated_cert)


@gen
def pki_unknown_namespace(ws: Path) -> dict[str, Path]:
    path = ws / "pki" / "client_certs"
    path.mkdir(parents=True)
    (path / "client.crt").write_bytes(_ca_material()[0])
    return {"pki": ws / "pki"}


@gen
def pki_overflow(ws: Path) -> dict[str, Path]:
    path = ws / "pki" / "client_ca"
    path.mkdir(parents=True)
    bundle = _ca_material()[0]
    (path / "bundle.crt").write_bytes(bundle * (200_000 // len(bundle)))   # ~200 KB of valid PEM
    return {"pki": ws / "pki"}


# -- partition table binaries, app images, NVS images (atfab inspect) --


def _table(module: str = "esp32c2-4mb", *, md5: bool = True) -> bytes:
    from atfab.image.partition_table import encode

    return encode(_profile(module).at_customize, md5=md5)


def _simple(name: str, make: Callable[[], bytes], ext: str = "bin") -> None:
    def fn(ws: Path) -> dict[str, Path]:
        return {"file": _write(ws, f"{name}.{ext}", make())}
    fn.__name__ = name
    gen(fn)


def _flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 0x55
    return bytes(out)


def _bad_name_table() -> bytes:
    t = bytearray(_table(md5=False))
    t[12:16] = b"\xff\xfe\xc3\x28"
    return bytes(t)


def _no_end_table() -> bytes:
    entry = _table(md5=False)[:32]
    return entry * (0xC00 // 32)


def _nvs_pages(fix_crc: bool, change: Callable[[bytearray], None]) -> bytes:
    from atfab.image.nvs import format as nf

    data = bytearray(_mfg_nvs_image())
    for base in range(0, len(data), nf.PAGE_SIZE):
        if data[base:base + 4] == b"\xff\xff\xff\xff":
            continue
        header = bytearray(data[base:base + nf.HEADER_SIZE])
        change(header)
        if fix_crc:
            header[28:32] = nf.header_crc(bytes(header)).to_bytes(4, "little")
        data[base:base + nf.HEADER_SIZE] = header
    return bytes(data)


def _app(chip: str = "esp32c2") -> bytes:
    from atfab.image.appimage import default_at_core, make_app_image

    return make_app_image(chip=chip, version="v4.1.0.0", at_core=default_at_core("v4.1.0.0", chip),
                          idf_ver="v5.0.6")


def _unknown_chip_app() -> bytes:
    data = bytearray(_app())
    data[12:14] = (0x7777).to_bytes(2, "little")
    return bytes(data)


_simple("ptbin_bad_md5", lambda: _flip(_table(), 3 * 32 - 1))
_simple("ptbin_truncated", lambda: _table(md5=False)[:64])
_simple("ptbin_name_not_utf8", _bad_name_table)
_simple("ptbin_no_end", _no_end_table)
_simple("ptbin_bad_magic_second", lambda: _flip(_table(md5=False), 32))
_simple("app_truncated", lambda: _app()[:300])
_simple("app_unknown_chip", _unknown_chip_app)
_simple("app_header_only", lambda: _app()[:24])
_simple("app_cut_at_checksum", lambda: _app()[:424])     # esptool raised TypeError here (found by test_fuzz)
_simple("nvs_truncated", lambda: _mfg_nvs_image()[:2 * 4096 + 100])
_simple("nvs_bad_headers", lambda: _nvs_pages(False, lambda h: h.__setitem__(slice(28, 32), b"\0\0\0\0")))
_simple("nvs_bad_version", lambda: _nvs_pages(True, lambda h: h.__setitem__(8, 0x07)))
_simple("empty_file", lambda: b"")
_simple("binary_garbage", lambda: GARBAGE)
_simple("text_file", lambda: "hello, I am not a flash image\n" * 100, "txt")


# -- esp-at build folders (atfab build --firmware) --


def _fw_case(name: str, change: Callable[[Path], None]) -> None:
    def make(ws: Path) -> dict[str, Path]:
        from atfab.image.build import BUILD_PATHS

        folder = ws / "fw"
        files = _synthetic_files("esp32c2-4mb")
        lines = [" ".join(_profile("esp32c2-4mb").flash_settings())]
        for role, (offset, data) in sorted(files.items(), key=lambda kv: kv[1][0]):
            _put(folder / BUILD_PATHS[role], data)
            lines.append(f"0x{offset:x} {BUILD_PATHS[role]}")
        (folder / "download.config").write_text("\n".join(lines) + "\n")
        change(folder)
        return {"fw": folder}
    make.__name__ = name
    gen(make)


def _put(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _edit(rel: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        path = folder / rel
        path.write_bytes(fn(path.read_bytes()))
    return change


def _config(old: str, new: str) -> Callable[[Path], None]:
    def fn(data: bytes) -> bytes:
        assert old.encode() in data
        return data.replace(old.encode(), new.encode())
    return _edit("download.config", fn)


def _flasher_args(data: bytes) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        (folder / "download.config").unlink()
        (folder / "flasher_args.json").write_bytes(data)
    return change


APP_REL, BOOT_REL, TABLE_REL = "esp-at.bin", "bootloader/bootloader.bin", "partition_table/partition-table.bin"
_fw_case("fw_app_truncated", _edit(APP_REL, lambda d: d[:len(d) // 2]))
_fw_case("fw_app_wrong_chip", _edit(APP_REL, lambda d: _app("esp32c3")))
_fw_case("fw_app_bad_checksum", _edit(APP_REL, lambda d: _flip(d, len(d) // 2)))
_fw_case("fw_app_missing", lambda folder: (folder / APP_REL).unlink())
_fw_case("fw_app_garbage", _edit(APP_REL, lambda d: GARBAGE))
_fw_case("fw_bootloader_garbage", _edit(BOOT_REL, lambda d: GARBAGE[:2000]))
_fw_case("fw_bootloader_wrong_chip", _edit(BOOT_REL, lambda d: _synthetic_files("esp32c3-mini-1")["bootloader"][1]))
_fw_case("fw_table_other_module", _edit(TABLE_REL, lambda d: _synthetic_files("esp32c2-2mb")["partition_table"][1]))
_fw_case("fw_table_bad_md5", _edit(TABLE_REL, lambda d: _flip(_table(), 3 * 32 - 1)))
_fw_case("fw_table_garbage", _edit(TABLE_REL, lambda d: GARBAGE[:0xC00]))
_fw_case("fw_config_bad_offset", _config("0x60000 esp-at.bin", "0x6zz00 esp-at.bin"))
_fw_case("fw_config_wrong_offset", _config("0x60000 esp-at.bin", "0x70000 esp-at.bin"))
_fw_case("fw_config_dangling", _edit("download.config", lambda d: d + b"0x3f0000\n"))
_fw_case("fw_flasher_args_garbage", _flasher_args(b'{"flash_files": {"0x0": '))
_fw_case("fw_flasher_args_not_utf8", _flasher_args(b'{"flash_files": {"0x0": "boot\xff.bin"}}'))
_fw_case("fw_otadata_too_big", _edit("ota_data_initial.bin", lambda d: b"\xff" * 0x3000))


# -- merged factory images named by a recipe (atfab check) --

FACTORY_RECIPE = 'module = "{module}"\n\n[firmware]\nfactory_image = "factory.bin"\n'


def _fi_case(name: str, make: Callable[[], bytes], module: str = "esp32c2-4mb") -> None:
    def fn(ws: Path) -> dict[str, Path]:
        _write(ws, "factory.bin", make())
        return {"file": _write(ws, f"{name}.toml", FACTORY_RECIPE.format(module=module))}
    fn.__name__ = name
    gen(fn)


_fi_case("fi_truncated", lambda: _factory_image("esp32c2-4mb")[:0x60000 + 0xC8])
_fi_case("fi_too_large", lambda: _factory_image("esp32c2-4mb") + b"\xff" * 0x1000)
_fi_case("fi_wrong_chip", lambda: _factory_image("esp32c3-mini-1"))
_fi_case("fi_other_layout", lambda: _factory_image("esp32c2-2mb"))
_fi_case("fi_zeros", lambda: bytes(0x10000))
_fi_case("fi_empty", lambda: b"")


# -- reports --


@gen
def reports_dir_broken(ws: Path) -> dict[str, Path]:
    folder = ws / "in" / "reports"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_bytes(b'{"schema": "atfab.unit-report/1", ')
    return {"file": folder}


# -- ledgers --

_simple("ledger_empty", lambda: b"", "sqlite")


@gen
def ledger_foreign_db(ws: Path) -> dict[str, Path]:
    """A valid SQLite database of some other program: a read-only command must not touch it."""
    import sqlite3

    path = ws / "in" / "other.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE stock (item TEXT, count INTEGER)")
        db.commit()
    return {"file": path}


# -- images given to atfab customize --image --


def _legacy(**changes: int) -> bytes:
    from atfab.image.factory_param import encode_legacy_block

    block = bytearray(encode_legacy_block(dict(_profile("esp32c2-4mb").factory_param), version=3))
    for pos, value in changes.items():
        block[int(pos[1:])] = value
    return bytes(block)


def _factory_part(start: int, end: int, data: bytes) -> bytes:
    fi = _factory_image("esp32c2-4mb")
    return fi[:start] + data + fi[end:]


_simple("cz_empty", lambda: b"")
_simple("cz_garbage", lambda: GARBAGE)
_simple("cz_zeros", lambda: bytes(0x10000))
_simple("cz_all_ff", lambda: b"\xff" * 0x10000)
_simple("cz_factory_truncated", lambda: _factory_image("esp32c2-4mb")[:0x1f000 + 0x3000])
_simple("cz_factory_bad_md5", lambda: _flip(_factory_image("esp32c2-4mb"), 0x1e000 + 95))
_simple("cz_factory_blank_at_customize", lambda: _factory_part(0x1e000, 0x1f000, b"\xff" * 0x1000))
_simple("cz_factory_mfg_garbage", lambda: _factory_part(0x1f000, 0x3e000, (GARBAGE * 30)[:0x1f000]))
_simple("cz_factory_wrong_table", lambda: _factory_part(0x8000, 0x8C00, _table(md5=True)))
_simple("cz_mfg_truncated", lambda: _mfg_nvs_image()[:0x2064])
_simple("cz_mfg_bad_headers", lambda: _nvs_pages(False, lambda h: h.__setitem__(slice(28, 32), b"\0\0\0\0")))
_simple("cz_legacy_bad_version", lambda: _legacy(b2=9))
_simple("cz_legacy_short", lambda: _legacy()[:12])
_simple("cz_legacy_v3_short", lambda: _legacy()[:40])
_simple("cz_legacy_bad_channels", lambda: _legacy(b6=10, b7=5))


@gen
def cz_huge(ws: Path) -> dict[str, Path]:
    """A 64 MB file (sparse, all zero bytes): bigger than any module's flash."""
    path = ws / "in" / "huge.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(64 << 20)
    return {"file": path}


@gen
def cz_mfg_image(ws: Path) -> dict[str, Path]:
    """A good mfg_nvs.bin (the bad input is the PKI/GATT file given with it)."""
    return {"image": _write(ws, "mfg_nvs.bin", _mfg_nvs_image())}


@gen
def cz_ble_mfg_image(ws: Path) -> dict[str, Path]:
    return {"image": _write(ws, "mfg_nvs.bin", _mfg_nvs_image("esp32c2-2mb-ble"))}


@gen
def cz_wrong_module(ws: Path) -> dict[str, Path]:
    return {"file": _write(ws, "factory.bin", _factory_image("esp32c2-4mb"))}


# -- atfab build output folders given to atfab flash / atfab verify --


@functools.cache
def _build_files() -> dict[str, bytes]:
    import tempfile

    from atfab.image.build import build

    with tempfile.TemporaryDirectory() as tmp:
        build("esp32c2-4mb", Path(tmp) / "out")
        return {p.name: p.read_bytes() for p in (Path(tmp) / "out").iterdir()}


def _out_case(name: str, change: Callable[[Path], None]) -> None:
    def make(ws: Path) -> dict[str, Path]:
        folder = ws / "in" / "OUT"
        folder.mkdir(parents=True)
        for file, data in _build_files().items():
            (folder / file).write_bytes(data)
        change(folder)
        return {"fw": folder}
    make.__name__ = name
    gen(make)


def _replace(file: str, data: bytes | str) -> Callable[[Path], None]:
    return lambda folder: _put(folder / file, data)


_out_case("out_flash_args_bad_offset", _replace("flash_args", "--flash_mode dio\n0xZZ mfg_nvs.bin\n"))
_out_case("out_flash_args_missing_file", _replace("flash_args", "0x1f000 no_such.bin\n"))
_out_case("out_flash_args_dangling", _replace("flash_args", "0x1f000 mfg_nvs.bin 0x1e000\n"))
_out_case("out_flash_args_not_utf8", _replace("flash_args", GARBAGE[:300]))
_out_case("out_flash_args_missing", lambda folder: (folder / "flash_args").unlink())
_out_case("out_manifest_garbage", _replace("manifest.json", b'{"schema": "atfab.build/1", '))
_out_case("out_manifest_list", _replace("manifest.json", "[1, 2, 3]\n"))
_out_case("out_manifest_unknown_module", _edit("manifest.json", lambda d: d.replace(b'"module": "esp32c2-4mb"',
                                                                                    b'"module": "esp32c2-16mb"')))
_out_case("out_manifest_missing", lambda folder: (folder / "manifest.json").unlink())
_out_case("out_mfg_nvs_garbage", _replace("mfg_nvs.bin", GARBAGE[:4096]))
_out_case("out_mfg_nvs_missing", lambda folder: (folder / "mfg_nvs.bin").unlink())
_out_case("out_at_customize_garbage", _replace("at_customize.bin", GARBAGE[:0xC00]))


# -- atfab rotate --


@gen
def shipped_recipe(ws: Path) -> dict[str, Path]:
    return {"recipe": REPO / "recipes" / "esp32c2-4mb-default.toml"}
