"""Legacy (G1/G2) per-item partitions: the PKI, ble_data and factory_param images and the partition
tables, against expected bytes written here from the documented rules (reference §10, §11.1;
/work/notes/legacy-generations.md §1-§2), never against atfab's own encoders."""

from __future__ import annotations

import hashlib
import struct

import pytest

from atfab.core.errors import InputError
from atfab.core.firmware import firmware_profile
from atfab.image import legacy_factory as lf
from atfab.image.gatt import parse_cfg_string
from atfab.image.legacy_ble import PY2_ORDER, decode_ble_data, encode_ble_data, parse_legacy_csv
from atfab.image.legacy_pki import decode_pki, encode_items, encode_partition, replace_item
from atfab.image.partition_table import encode
from atfab.image.profiles import load_profile
from tests.legacy_support import GATT_CSV, GATT_OBJECTS, expected_ble, expected_pki

CSV_KEYS = ("index", "uuid_len", "uuid", "perm", "val_max_len", "val_cur_len", "value")


# ------------------------------------------------------------------------------------ PKI (0xF1F1)

def test_pki_header_of_the_documented_example():
    # §10.2: two 1164-byte client certificates -> F1 F1 02 00 20 09 00 00, items 02 00 8C 04 / 02 01 8C 04
    image = encode_partition("client_cert", [b"\x30" * 1164, b"\x31" * 1164])
    assert image[:12] == bytes.fromhex("f1f10200" "20090000" "02008c04")
    assert image[8 + 4 + 1164:8 + 4 + 1164 + 4] == bytes.fromhex("02018c04") and len(image) == 2344   # the write length


@pytest.mark.parametrize("partition,type_", [("client_cert", 2), ("client_key", 3), ("mqtt_ca", 1), ("wpa2_cert", 2)])
def test_pki_image_by_partition_and_padding(partition, type_):
    files = [b"A" * 5, b"B" * 8, b"C" * 7]          # 3, 0 and 1 padding bytes
    assert encode_partition(partition, files) == expected_pki(files, type_)


def test_pki_all_cert_quirk_of_v2_2_to_v2_4_0():
    files = [b"key one", b"key two"]
    assert encode_partition("client_key", files, "cert") == expected_pki(files, 2)
    for release, rule in (("v2.2.0.0", "cert"), ("v2.4.0.0", "cert"), ("v3.0.0.0", "by_partition"),
                          ("v2.1.0.0", "by_partition"), ("v1.2.0.0", "by_partition")):
        assert firmware_profile(release, "esp32").pki_item_types == rule


def test_pki_decode_and_replace():
    image = encode_partition("client_cert", [b"first", b"second!"]) + b"\xff" * 100
    items = decode_pki(image)
    assert [(i.type, i.id, i.data) for i in items] == [(2, 0, b"first"), (2, 1, b"second!")]
    new = replace_item(image, 1, b"other")
    assert new == expected_pki([b"first", b"other"], 2)
    assert replace_item(new, 2, b"third") == expected_pki([b"first", b"other", b"third"], 2)
    mixed = encode_items([(3, b"k"), (2, b"c"), (3, b"k2")])       # AtPKI groups by first-seen type
    assert [(i.type, i.id) for i in decode_pki(mixed)] == [(3, 0), (3, 1), (2, 0)]


@pytest.mark.parametrize("damage,match", [
    (lambda b: b"\x00\x00" + b[2:], "magic"),
    (lambda b: b[:2] + b"\x05\x00" + b[4:], "items"),
    (lambda b: b[:4] + struct.pack("<I", 4000) + b[8:], "header says"),
    (lambda b: b[:8 + 4 + 5] + b"\x00" + b[8 + 4 + 6:], "padding"),
])
def test_pki_decode_refuses_damage(damage, match):
    image = encode_partition("client_cert", [b"A" * 5, b"B" * 4])
    with pytest.raises(InputError, match=match):
        decode_pki(damage(image), source="x.bin")


# ----------------------------------------------------------------------------------- ble_data (0x2795)

def test_ble_data_python3_and_python2_key_orders():
    rows = parse_legacy_csv(GATT_CSV)
    assert len(rows) == 3                                  # stops at the all-empty row
    assert encode_ble_data(rows, "csv") == expected_ble(GATT_OBJECTS, CSV_KEYS)
    assert PY2_ORDER == ("index", "uuid", "uuid_len", "val_max_len", "value", "perm", "val_cur_len")
    assert encode_ble_data(rows, "py2") == expected_ble(GATT_OBJECTS, PY2_ORDER)
    assert firmware_profile("v2.1.0.0", "esp32").ble_data_json_order == "py2"
    assert firmware_profile("v2.2.0.0", "esp32").ble_data_json_order == "csv"


def test_ble_data_from_a_g3_table_and_decoding():
    g3 = [parse_cfg_string("0,16,0x2800,0x01,2,2,A002"), parse_cfg_string("1,128,0x1234,0x11,16,1,0F")]
    image = encode_ble_data(g3)
    assert image[2:4] == b"\x27\x95" and struct.unpack_from("<H", image)[0] == len(image) - 4
    assert b'"uuid": "1234"' in image and b'"perm": 17' in image
    back = decode_ble_data(image + b"\xff" * 50)
    assert encode_ble_data(back, "py2") == encode_ble_data(g3, "py2")
    with pytest.raises(InputError, match="magic"):
        decode_ble_data(b"\x10\x00\x00\x00{}")


# ------------------------------------------------------------------------------ factory_param (0xFCFC)

WROOM = {"platform": "PLATFORM_ESP32", "module_name": "WROOM-32", "module_id": 1, "max_tx_power": 78, "uart_port": 1,
         "start_channel": 1, "channel_num": 13, "country_code": "CN", "uart_baudrate": 115200, "uart_tx_pin": 17,
         "uart_rx_pin": 16, "uart_cts_pin": 15, "uart_rts_pin": 14, "tx_control_pin": -1, "rx_control_pin": -1}


def test_factory_param_v1_vector_of_the_notes():
    block = lf.encode_block({**WROOM, "max_tx_power": 1}, "v1.1.3")       # esp32-at v1.2 WROOM-32 row
    assert block == bytes.fromhex("fcfc010101ff010d434e000000c20100" "11100f0e") + b"\xff" * 4076


def test_factory_param_v3_keeps_reserved2_ff():
    block = lf.encode_block(WROOM, "v2.2")
    head = bytes.fromhex("fcfc03004e01010d434e000000c20100" "11100f0e" "ffff" "ffff")   # 0x14-0x17 FF
    assert block[:24] == head
    assert block[24:56] == b"PLATFORM_ESP32".ljust(32, b"\0") and block[56:88] == b"WROOM-32".ljust(32, b"\0")
    assert block[88:] == b"\xff" * (4096 - 88)


def test_factory_param_v2_0_and_v2_1_layouts():
    v20 = lf.encode_block(WROOM, "v2.0")           # version 1 with power 78, control pins, no uart_port
    assert v20[:8] == bytes([0xFC, 0xFC, 1, 1, 78, 0xFF, 1, 13]) and v20[20:22] == b"\xff\xff"
    assert v20[22:] == b"\xff" * (4096 - 22)
    v21 = lf.encode_block({**WROOM, "uart_port": 0}, "v2.1")
    assert v21[:8] == bytes([0xFC, 0xFC, 2, 1, 78, 0, 1, 13]) and v21[22:] == b"\xff" * (4096 - 22)


def test_factory_param_generator_rules():
    lay = lf.layout("v2.2")
    row = dict(zip(lay.columns, "PLATFORM_ESP32C3,ABCDEFGHIJKLMNOPQRSTUVWXYZ012345,,0xfcfc,3,0,010,1,1,13,CNX1,"
                                "0x1C200,7,6,-1,-1,5,-1".split(",")))
    block = lf.generate(lay, row)
    assert block[4] == 8                                     # a leading 0 is octal in esp-at's parser
    assert block[8:12] == b"CNX1" and block[12:16] == struct.pack("<i", 115200)
    assert block[56:88] == b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"   # exactly 32: no NUL
    assert block[18:22] == b"\xff\xff\x05\xff"
    with pytest.raises(InputError, match="longer"):
        lf.generate(lay, {**row, "module_name": "X" * 33})


def test_factory_param_byte7_is_the_last_channel_and_decode():
    block = lf.encode_block({**WROOM, "start_channel": 3, "channel_num": 5}, "v2.2")
    assert block[6:8] == bytes([3, 7])
    d = lf.decode_block(block)
    assert d["firmware"]["channels"] == (3, 5) and d["module_name"] == "WROOM-32" and d["platform"] == "PLATFORM_ESP32"


def test_factory_param_values_per_layout():
    with pytest.raises(InputError, match="no uart_port field"):
        lf.check_values({"uart_port": 1}, lf.layout("v2.0"))
    with pytest.raises(InputError, match="0..11"):
        lf.check_values({"max_tx_power": 78}, lf.layout("v1.1.3"), tx_power=(0, 11))
    assert lf.check_values({"max_tx_power": 5}, lf.layout("v1.1.3"), tx_power=(0, 11)) == {"max_tx_power": 5}
    no_id = {k: v for k, v in WROOM.items() if k != "module_id"}
    assert lf.block_row(no_id, lf.layout("v2.1"))["module_id"] == 1        # looked up from module_name
    with pytest.raises(InputError, match="module id"):
        lf.block_row({**no_id, "module_name": "ACME"}, lf.layout("v2.1"))


# ------------------------------------------------------------------------------------ tables

def _expected_table(profile_name: str, table: str, md5: bool) -> bytes:
    prof = load_profile(profile_name)
    entries = prof.primary if table == "primary" else prof.at_customize
    raw = b"".join(struct.pack("<2sBBLL16sL", b"\xaa\x50", p.type, p.subtype, p.offset, p.size, p.name.encode(), 0)
                   for p in entries)
    if md5:
        raw += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(raw).digest()
    return raw + b"\xff" * (0xC00 - len(raw))


@pytest.mark.parametrize("profile_name,release,primary_md5,custom_md5", [
    ("esp32-at-v1.1", "v1.0.0.0", False, False), ("esp32-at-v1.1", "v1.1.0.0", False, False),
    ("esp32-at-v1.2", "v1.1.3.0", False, False), ("esp32-at-v1.2", "v1.2.0.0", True, True),
    ("esp32-at-v2", "v2.0.0.0", False, True), ("esp32-at-v2", "v3.0.0.0", False, True),
    ("esp32c3-at-v2", "v2.2.0.0", False, True), ("esp32c2-2mb-at-v3.0", "v3.0.0.0", False, True)])
def test_partition_tables_md5_per_release(profile_name, release, primary_md5, custom_md5):
    fw = load_profile(profile_name).for_release(release).firmware
    assert (fw.partition_table_md5, fw.at_customize_md5) == (primary_md5, custom_md5)
    prof = load_profile(profile_name)
    assert encode(prof.primary, md5=fw.partition_table_md5) == _expected_table(profile_name, "primary", primary_md5)
    assert encode(prof.at_customize, md5=fw.at_customize_md5) == _expected_table(profile_name, "custom", custom_md5)


def test_legacy_profiles():
    p = load_profile("esp32c2-2mb-at-v3.0")
    assert p.legacy and p.mfg_nvs is None and p.at_customize_offset == 0x1A000
    assert [(x.name, x.offset, x.size) for x in p.at_customize.entries][:2] == [("factory_param", 0x1B000, 0x1000),
                                                                                ("server_cert", 0x1C000, 0x1000)]
    assert not load_profile("esp32-wroom-32").legacy
    with pytest.raises(InputError, match="built by esp-at"):
        p.for_release("v2.2.0.0")
    v12 = load_profile("esp32-at-v1.2")
    assert v12.firmware.rfpower_levels[:3] == (78, 76, 74) and v12.firmware.err_code_always
    assert not v12.firmware.has_command("AT+SYSMFG") and v12.firmware.has_command("AT+SYSFLASH", "set")
