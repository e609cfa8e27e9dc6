"""atfab customize --image: factory images, bare mfg_nvs and legacy factory_param blocks, offline."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atfab.image import factory_param as fp
from atfab.image.appimage import make_app_image
from atfab.image.build import build
from atfab.cli import main
from atfab.customize.image import customize_file, customize_image
from atfab.customize.plan import make_request
from atfab.core.errors import InputError
from atfab.image.locate import locate
from atfab.image.mfg_nvs import build_nvs_from_entries
from atfab.image.nvs.reader import NvsEntry, read_nvs
from atfab.image.partition_table import encode, parse_csv
from atfab.image.unit_content import Params
from tests.paths import RAW_DATA

RAW = RAW_DATA
GATT = RAW / "ble_data" / "gatts_data.csv"
MFG = (0x1F000, 0x1F000)   # esp32c2-4mb mfg_nvs offset, size


def _factory(folder: Path) -> bytes:
    return next(folder.glob("factory_*.bin")).read_bytes()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Factory images: 'full' (esp-at PKI + GATT + a custom namespace), 'plain' (factory_param only)."""
    base = tmp_path_factory.mktemp("customize")
    params = Params(custom={"my_app": {"timeout": ("i32", 5000), "token": ("blob", b"\x01\x02\x03")}})
    build("esp32c2-4mb", base / "full", synthetic_firmware="v3.3.0.0", pki_dir=RAW, gatt=GATT, params=params,
          unread="write")   # c2-4mb has no BLE: the GATT table is written on purpose, to be edited
    build("esp32c2-4mb", base / "plain", synthetic_firmware="v3.3.0.0")
    return {"full": next((base / "full").glob("factory_*.bin")), "plain": next((base / "plain").glob("factory_*.bin")),
            "full_mfg": base / "full" / "mfg_nvs.bin"}


def _identity(folder: Path, name: str = "unit-1") -> tuple[Path, Path]:
    """A fresh EC P-256 key + self-signed certificate (generated at run time, in tmp_path only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _nvs(image: bytes, offset: int = MFG[0], size: int = MFG[1]):
    return read_nvs(image[offset:offset + size])


def _assert_only(before: bytes, after: bytes, keys: set[tuple[str, str]], offset: int = MFG[0],
                 size: int = MFG[1], *, order: bool = True) -> None:
    """Outside mfg_nvs the bytes are equal; inside, the reader diff holds exactly ``keys``, and
    every other key keeps its value, type and its order within its namespace (and, with ``order``,
    the namespaces keep theirs, new ones after them)."""
    assert len(after) == len(before)
    assert before[:offset] == after[:offset] and before[offset + size:] == after[offset + size:]
    old, new = _nvs(before, offset, size), _nvs(after, offset, size)
    assert not new.problems
    old_map = {(e.namespace, e.key): e for e in old.entries}
    new_map = {(e.namespace, e.key): e for e in new.entries}
    differ = {k for k in old_map.keys() | new_map.keys() if old_map.get(k) != new_map.get(k)}
    assert differ == keys
    for ns in old.namespaces():   # key order within each namespace is kept (NVS has no order across them)
        assert ([e.key for e in old.keys(ns) if (ns, e.key) not in keys]
                == [e.key for e in new.keys(ns) if (ns, e.key) not in keys])
    kept = [ns for ns in new.namespaces() if ns in old.namespaces()]
    assert kept == old.namespaces()
    if order:
        assert new.namespaces()[:len(old.namespaces())] == old.namespaces()


# --------------------------------------------------------------------------------- factory images


def test_factory_image_changes_exactly_the_requested_keys(images):
    data = images["full"].read_bytes()
    req = make_request({"max_tx_power": 60, "country_code": "US", "channel_num": 11, "module_name": "ACME-7",
                        "uart_baudrate": 921600, "uart_cts_pin": -1, "uart_rts_pin": -1})
    new, result = customize_image(data, req, source="factory.bin")
    changed = {("factory_param", k) for k in ("max_tx_power", "country_code", "channel_num", "module_name",
                                              "uart_baudrate", "uart_cts_pin", "uart_rts_pin")}
    _assert_only(data, new, changed)
    after = _nvs(new)
    assert after.get("factory_param", "module_name").value == "ACME-7"
    assert after.get("factory_param", "uart_cts_pin").value == -1
    assert {(c.namespace, c.key) for c in result.changes} == changed
    assert result.chip == "esp32c2" and result.located.offset == MFG[0] and result.located.size == MFG[1]
    # PKI blobs, custom namespace and GATT rows survive untouched (checked above); spot-check
    assert after.get("my_app", "token").value == b"\x01\x02\x03"
    assert after.get("client_key", "client_key.0").value == _nvs(data).get("client_key", "client_key.0").value
    assert len(after.keys("ble_data")) == 31


def test_same_value_is_no_change_and_a_rebuild_is_byte_identical(images):
    data = images["full"].read_bytes()
    new, result = customize_image(data, make_request({"max_tx_power": 78}), source="factory.bin")
    assert result.changes == [] and new == data


def test_replace_client_identity_keeps_everything_else(images, tmp_path):
    cert, key = _identity(tmp_path)
    out = tmp_path / "new.bin"
    req = make_request(pki_files={("client", "cert", 0): cert, ("client", "key", 0): key})
    result = customize_file(images["full"], req, output=out)
    new = out.read_bytes()
    _assert_only(images["full"].read_bytes(), new, {("client_cert", "client_cert.0"), ("client_key", "client_key.0")})
    assert _nvs(new).get("client_cert", "client_cert.0").value == cert.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o600          # holds private keys
    assert all("PRIVATE" not in str(c.to_dict()) for c in result.changes)
    assert "redacted" in str(next(c for c in result.changes if c.namespace == "client_key").new)


def test_certificate_must_match_the_key_the_image_keeps(images, tmp_path):
    cert, _key = _identity(tmp_path)
    with pytest.raises(InputError) as info:
        customize_image(images["full"].read_bytes(), make_request(pki_files={("client", "cert", 0): cert}),
                        source="factory.bin")
    assert "--client-cert0" in info.value.field and "does not match" in info.value.message


def test_option_without_key_is_refused_naming_option_and_image(images, tmp_path):
    cert, key = _identity(tmp_path)
    req = make_request(pki_files={("client", "cert", 0): cert, ("client", "key", 0): key})
    with pytest.raises(InputError) as info:
        customize_image(images["plain"].read_bytes(), req, source=str(images["plain"]))
    assert info.value.exit_code == 2 and info.value.field == "--client-cert0"
    assert info.value.file == str(images["plain"]) and "client_cert namespace" in str(info.value)
    with pytest.raises(InputError, match="ble_data"):
        customize_image(images["plain"].read_bytes(), make_request(gatt=GATT), source="plain.bin")
    # --add-missing creates them explicitly, where esp-at's build puts them, with esp-at key naming
    req.add_missing = True
    data = images["plain"].read_bytes()
    new, _ = customize_image(data, req, source="plain.bin")
    _assert_only(data, new, {("client_cert", "client_cert"), ("client_key", "client_key")}, order=False)
    assert _nvs(new).namespaces() == ["client_cert", "client_key", "factory_param"]


def test_missing_factory_key_refused_then_added(tmp_path):
    entries = [NvsEntry("factory_param", k.name, k.type, v) for k, v in
               zip(fp.FACTORY_KEYS, (4, "X", 78, "CN", 1, 13, 1, 115200, 7, 6, 5, 4, 1)) if k.name != "module_name"]
    bare = tmp_path / "mfg_nvs.bin"
    bare.write_bytes(build_nvs_from_entries(entries, 0x6000).image)
    with pytest.raises(InputError) as info:
        customize_file(bare, make_request({"module_name": "ACME"}), output=tmp_path / "o.bin")
    assert info.value.field == "--module-name" and "factory_param/module_name" in info.value.message
    assert not (tmp_path / "o.bin").exists()
    result = customize_file(bare, make_request({"module_name": "ACME"}, add_missing=True), output=tmp_path / "o.bin")
    assert [c.action for c in result.changes] == ["added"]
    assert read_nvs((tmp_path / "o.bin").read_bytes()).entries[-1] == NvsEntry("factory_param", "module_name",
                                                                              "string", "ACME")


def test_gatt_table_replaced_extra_rows_removed(images, tmp_path):
    rows = GATT.read_text().splitlines()
    short = tmp_path / "gatt.csv"
    short.write_text("\n".join(rows[:1] + [r for r in rows[1:] if r and not r.startswith("#")][:3]) + "\n")
    data = images["full"].read_bytes()
    new, result = customize_image(data, make_request(gatt=short), source="factory.bin")
    removed = {("ble_data", f"cfg{i}") for i in range(3, 31)}
    _assert_only(data, new, removed)
    assert {c.action for c in result.changes} == {"removed"}


def test_values_are_validated_for_the_image_chip(images):
    data = images["plain"].read_bytes()
    with pytest.raises(InputError, match="esp32c2") as info:
        customize_image(data, make_request({"uart_tx_pin": 21}), source="plain.bin")
    assert info.value.field == "--tx-pin"
    with pytest.raises(InputError) as info:
        customize_image(data, make_request({"uart_tx_pin": 6}), source="plain.bin")   # rx pin is 6
    assert info.value.field == "--tx-pin" and "uart_rx_pin" in info.value.message
    with pytest.raises(InputError, match="past channel 14"):
        customize_image(data, make_request({"start_channel": 5}), source="plain.bin")
    with pytest.raises(InputError) as info:
        make_request({"max_tx_power": 90})
    assert info.value.field == "--tx-power"
    with pytest.raises(InputError, match="esp32c3"):
        customize_image(data, make_request({"max_tx_power": 60}), module="esp32c3-mini-1", source="plain.bin")


def test_bare_mfg_nvs_image(images, tmp_path):
    data = images["full_mfg"].read_bytes()
    new, result = customize_image(data, make_request({"max_tx_power": 66}), module="esp32c2-4mb", source="mfg.bin")
    assert result.located.kind == "mfg_nvs" and result.chip == "esp32c2"
    _assert_only(data, new, {("factory_param", "max_tx_power")}, 0, len(data))


def test_mfg_nvs_found_through_tables_not_by_pattern(tmp_path):
    """C2-2MB layout (at_customize 0x1A000, mfg_nvs 0x1B000) with a decoy NVS at the 4MB offset."""
    build("esp32c2-2mb", tmp_path / "u", synthetic_firmware="v3.3.0.0")
    data = bytearray(_factory(tmp_path / "u"))
    decoy = bytes(data[0x1B000:0x1B000 + 0xF000])
    data[0x100000:0x100000 + len(decoy)] = decoy          # unused space: a copy that must stay as it is
    loc = locate(bytes(data))
    assert (loc.offset, loc.size, loc.at_customize.offset, loc.table_offset) == (0x1B000, 0xF000, 0x1A000, 0x8000)
    new, _ = customize_image(bytes(data), make_request({"max_tx_power": 60}), source="2mb.bin")
    assert new[0x100000:0x100000 + len(decoy)] == decoy
    _assert_only(bytes(data), new, {("factory_param", "max_tx_power")}, 0x1B000, 0xF000)


def test_table_at_0xc000(tmp_path):
    build("esp32c5-4mb", tmp_path / "c5", synthetic_firmware="v4.0.0.0")
    data = _factory(tmp_path / "c5")
    new, result = customize_image(data, make_request({"module_name": "C5-X"}), source="c5.bin")
    assert result.located.table_offset == 0xC000 and result.chip == "esp32c5"
    off = result.located.offset
    _assert_only(data, new, {("factory_param", "module_name")}, off, result.located.size)


def test_not_an_esp_at_image(tmp_path):
    with pytest.raises(InputError, match="not a flash image"):
        customize_image(b"\x00" * 0x10000, make_request({"max_tx_power": 60}), source="zero.bin")
    table = encode(parse_csv("nvs, data, nvs, 0x9000, 0x6000\nfactory, app, factory, 0x10000, 0x100000\n"))
    img = b"\xff" * 0x8000 + table + b"\xff" * (0x20000 - 0x8000 - len(table))
    with pytest.raises(InputError, match="at_customize"):
        customize_image(img, make_request({"max_tx_power": 60}), source="idf.bin")


# --------------------------------------------------------------------------------- legacy block

G2_PRIMARY = """phy_init, data, phy, 0xf000, 0x1000
otadata, data, ota, 0x10000, 0x2000
nvs, data, nvs, 0x12000, 0xE000
at_customize, 0x40, 0, 0x20000, 0xE0000
ota_0, app, ota_0, 0x100000, 0x180000
ota_1, app, ota_1, 0x280000, 0x180000
"""
G2_SECONDARY = """ble_data, 0x40, 1, 0x21000, 0x3000
server_cert, 0x40, 2, 0x24000, 0x2000
factory_param, 0x40, 8, 0x30000, 0x1000
"""
WROOM = dict(module_name="WROOM-32", max_tx_power=78, uart_port=1, start_channel=1, channel_num=13,
             country_code="CN", uart_baudrate=115200, uart_tx_pin=17, uart_rx_pin=16, uart_cts_pin=15,
             uart_rts_pin=14)


def _g2_image(block: bytes) -> bytes:
    img = bytearray(b"\xff" * 0x400000)
    img[0x8000:0x8C00] = encode(parse_csv(G2_PRIMARY), md5=False)
    img[0x20000:0x20C00] = encode(parse_csv(G2_SECONDARY, table_offset=0x20000))
    app = make_app_image(chip="esp32", version="v2.2.0.0", at_core="2.2.0", idf_ver="v4.2")
    img[0x100000:0x100000 + len(app)] = app
    img[0x30000:0x31000] = block
    return bytes(img)


def test_legacy_flash_image_changes_only_requested_fields():
    block = bytearray(fp.encode_legacy_block(WROOM, 3))
    block[20:24] = b"\x05\x06\x07\x08"          # control pins / reserved bytes other tools set: kept
    data = _g2_image(bytes(block))
    req = make_request({"max_tx_power": 60, "uart_baudrate": 921600, "start_channel": 3, "channel_num": 9})
    new, result = customize_image(data, req, source="g2.bin")
    assert result.located.param == "legacy" and result.chip == "esp32"
    assert new[:0x30000] == data[:0x30000] and new[0x31000:] == data[0x31000:]
    nb = new[0x30000:0x31000]
    assert [i for i in range(4096) if nb[i] != block[i]] == [4, 6, 7, 13, 14]
    dec = fp.decode_legacy_block(nb)
    assert dec["firmware"]["channels"] == (3, 9) and dec["max_tx_power"] == 60 and dec["uart_baudrate"] == 921600
    assert {c.key for c in result.changes} == {"max_tx_power", "uart_baudrate", "start_channel", "channel_num"}
    with pytest.raises(InputError, match="--tx-pin"):
        customize_image(data, make_request({"uart_tx_pin": 40}), source="g2.bin")


def test_legacy_refuses_what_the_block_has_no_field_for(tmp_path):
    cert, key = _identity(tmp_path)
    data = _g2_image(fp.encode_legacy_block(WROOM, 3))
    with pytest.raises(InputError) as info:
        customize_image(data, make_request(pki_files={("client", "cert", 0): cert, ("client", "key", 0): key},
                                           add_missing=True), source="g2.bin")
    # a legacy image takes certificates and keys as items of its PKI partitions (customize/legacy_items.py):
    # this one's table has no client_cert partition
    assert info.value.field == "--client-cert0" and "has no client_cert partition" in info.value.message
    v2 = fp.encode_legacy_block(WROOM, 2)
    with pytest.raises(InputError) as info:
        customize_image(_g2_image(v2), make_request({"module_name": "X"}), source="g2v2.bin")
    assert info.value.field == "--module-name" and "version 2" in info.value.message


def test_bare_legacy_block_file(tmp_path):
    src = tmp_path / "factory_param.bin"
    src.write_bytes(fp.encode_legacy_block(WROOM, 3))
    result = customize_file(src, make_request({"module_name": "WROOM-X", "country_code": "US"}), in_place=True)
    assert result.located.kind == "legacy_block"
    dec = fp.decode_legacy_block(src.read_bytes())
    assert (dec["module_name"], dec["country_code"], dec["platform"]) == ("WROOM-X", "US", "PLATFORM_ESP32")
    assert len(src.read_bytes()) == 4096


# --------------------------------------------------------------------------------- files and CLI


def test_output_rules(images, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(images["plain"].read_bytes())
    with pytest.raises(InputError, match="--in-place"):
        customize_file(src, make_request({"max_tx_power": 60}), output=src)
    with pytest.raises(InputError, match="-o"):
        customize_file(src, make_request({"max_tx_power": 60}))
    with pytest.raises(InputError, match="nothing to change"):
        customize_file(src, make_request({}), output=tmp_path / "o.bin")
    customize_file(src, make_request({"max_tx_power": 60}), in_place=True)
    assert _nvs(src.read_bytes()).get("factory_param", "max_tx_power").value == 60
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]      # no temp files left behind


def test_cli_image(images, tmp_path):
    out = tmp_path / "new.bin"
    runner = CliRunner()
    res = runner.invoke(main, ["customize", "--image", str(images["plain"]), "-o", str(out), "--tx-power", "60",
                               "--cts-pin", "-1", "--json"])
    assert res.exit_code == 0, res.output
    assert '"max_tx_power"' in res.output and out.exists()
    cert, key = _identity(tmp_path)
    res = runner.invoke(main, ["customize", "--image", str(images["plain"]), "-o", str(tmp_path / "x.bin"),
                               "--client-cert0", str(cert), "--client-key0", str(key)])
    assert res.exit_code == 2
    assert "--client-cert0" in res.output and str(images["plain"]) in res.output
    assert not (tmp_path / "x.bin").exists()
    res = runner.invoke(main, ["customize", "--image", str(images["plain"]), "--port", "socket://x:1",
                               "--tx-power", "60"])
    assert res.exit_code == 2
    key.unlink()


def test_firmware_edited_mfg_nvs(images):
    """An mfg_nvs the firmware edited (AT+SYSMFG: new copy appended, old one erased) rebuilds fine."""
    from atfab.image.nvs.editor import NvsEditor
    from atfab.sim.flash import NorFlash

    size = 0x1F000
    flash = NorFlash(size)
    flash.program(0, images["full_mfg"].read_bytes())
    editor = NvsEditor(flash.read, flash.program, lambda a: flash.erase(a, 0x1000), size)
    editor.set("factory_param", "max_tx_power", "i8", 70)
    editor.set("my_app", "timeout", "i32", 9)
    edited = flash.read(0, size)
    new, result = customize_image(edited, make_request({"module_name": "EDITED"}), source="dump.bin")
    _assert_only(edited, new, {("factory_param", "module_name")}, 0, size)
    after = read_nvs(new)
    assert after.get("factory_param", "max_tx_power").value == 70 and after.get("my_app", "timeout").value == 9
