"""factory_param: key table, value validation, legacy 0xFCFC block."""

from __future__ import annotations

import pytest

from atfab.image import factory_param as fp
from atfab.core.errors import InputError

DEFAULTS = {"version": 4, "module_name": "WROOM-32", "max_tx_power": 78, "uart_port": 1, "start_channel": 1,
            "channel_num": 13, "country_code": "CN", "uart_baudrate": 115200, "uart_tx_pin": 17,
            "uart_rx_pin": 16, "uart_cts_pin": 15, "uart_rts_pin": 14, "sys_store": 1}


def test_key_table_order_and_types():
    assert [(k.name, k.type) for k in fp.FACTORY_KEYS] == [
        ("version", "i8"), ("module_name", "string"), ("max_tx_power", "i8"), ("country_code", "string"),
        ("start_channel", "u8"), ("channel_num", "u8"), ("uart_port", "i8"), ("uart_baudrate", "i32"),
        ("uart_tx_pin", "i32"), ("uart_rx_pin", "i32"), ("uart_cts_pin", "i32"), ("uart_rts_pin", "i32"),
        ("sys_store", "u8")]
    assert (fp.TYPE_CSV.parent / "NOTICE").read_text().count("Apache License") == 1


def test_validate_normalises_and_orders():
    values = {**DEFAULTS, "uart_baudrate": "921600", "uart_tx_pin": " 0x11 "}
    out = fp.validate(dict(reversed(list(values.items()))), chip="esp32")
    assert list(out) == [k.name for k in fp.FACTORY_KEYS]
    assert out["uart_baudrate"] == 921600 and out["uart_tx_pin"] == 17


@pytest.mark.parametrize("key,value,fragment", [
    ("uart_baudrate", "7a", "'7a' is not an integer"),
    ("uart_baudrate", 79, "out of range 80..5000000"),
    ("uart_baudrate", 5_000_001, "out of range"),
    ("max_tx_power", 39, "40..84"),
    ("max_tx_power", 85, "40..84"),
    ("version", 128, "(i8)"),
    ("start_channel", 0, "1..14"),
    ("channel_num", 15, "1..14"),
    ("country_code", "cn", "country code"),
    ("country_code", "C", "country code"),
    ("country_code", "ABCD", "country code"),
    ("module_name", "x" * 33, "1..32"),
    ("module_name", "", "1..32"),
    ("uart_port", 3, "-1..2"),
    ("uart_port", -2, "-1..2"),
    ("uart_tx_pin", 49, "-1..48"),
    ("uart_rts_pin", -2, "-1..48"),
    ("sys_store", 2, "0..1"),
    ("sys_store", True, "integer"),
])
def test_bad_values_name_the_field(key, value, fragment):
    with pytest.raises(InputError) as exc:
        fp.validate({**DEFAULTS, key: value}, file="params.toml")
    text = str(exc.value)
    assert text.startswith(f"params.toml: {key}: ") and fragment in text and "\n" not in text


def test_chip_specific_limits():
    fp.validate({**DEFAULTS, "uart_tx_pin": 21}, chip="esp32c3")
    with pytest.raises(InputError, match="-1..20"):
        fp.validate({**DEFAULTS, "uart_tx_pin": 21, "uart_rx_pin": 6}, chip="esp32c2")
    with pytest.raises(InputError, match="uart_port"):
        fp.validate({**DEFAULTS, "uart_port": 2, "uart_tx_pin": 7, "uart_rx_pin": 6, "uart_cts_pin": 5,
                     "uart_rts_pin": 4}, chip="esp32c2")
    fp.validate({**DEFAULTS, "uart_port": 2}, chip="esp32")


def test_cross_field_checks():
    with pytest.raises(InputError, match="past channel 14") as exc:
        fp.validate({**DEFAULTS, "start_channel": 5, "channel_num": 11})
    assert exc.value.field == "channel_num"
    fp.validate({**DEFAULTS, "start_channel": 5, "channel_num": 10})
    with pytest.raises(InputError, match="GPIO 16 is also uart_rx_pin"):
        fp.validate({**DEFAULTS, "uart_cts_pin": 16})
    fp.validate({**DEFAULTS, "uart_cts_pin": -1, "uart_rts_pin": -1, "uart_baudrate": -1, "uart_port": -1})


def test_missing_and_unknown_keys():
    with pytest.raises(InputError, match="missing") as exc:
        fp.validate({k: v for k, v in DEFAULTS.items() if k != "country_code"})
    assert exc.value.field == "country_code"
    with pytest.raises(InputError, match="unknown") as exc:
        fp.validate({**DEFAULTS, "uart_baud": 1})
    assert exc.value.field == "uart_baud"
    assert fp.validate({"uart_port": "1"}, require_all=False) == {"uart_port": 1}


def test_legacy_block_v3_layout():
    block = fp.encode_legacy_block(DEFAULTS, platform="PLATFORM_ESP32")
    assert len(block) == 4096
    assert block[:24] == bytes.fromhex("fcfc03004e01010d" "434e0000" "00c20100" "11100f0e" "ffff" "0000")
    assert block[24:56] == b"PLATFORM_ESP32".ljust(32, b"\x00")
    assert block[56:88] == b"WROOM-32".ljust(32, b"\x00")
    assert block[88:] == b"\xff" * (4096 - 88)
    d = fp.decode_legacy_block(block)
    assert {k: d[k] for k in DEFAULTS if k not in ("version", "sys_store")} == {
        k: v for k, v in DEFAULTS.items() if k not in ("version", "sys_store")}
    assert d["version"] == 3 and d["platform"] == "PLATFORM_ESP32"
    assert d["firmware"]["channels"] == (1, 13) and d["firmware"]["max_tx_power"] == 78


def test_legacy_byte7_is_last_channel():
    values = {**DEFAULTS, "start_channel": 3, "channel_num": 5}
    block = fp.encode_legacy_block(values)                  # default: what the firmware needs
    assert block[6:8] == bytes([3, 7])
    d = fp.decode_legacy_block(block)
    assert d["channel_num"] == 7 and d["firmware"]["channels"] == (3, 5)
    at_py = fp.encode_legacy_block(values, channel_byte="count")   # esp-at at.py writes the count
    d = fp.decode_legacy_block(at_py)
    assert d["channel_num"] == 5 and d["firmware"]["channels"] == (3, 3)
    bad = bytearray(block)
    bad[6], bad[7] = 9, 4
    d = fp.decode_legacy_block(bytes(bad))
    assert d["firmware"]["channels"] is None and "invalid" in d["firmware"]["channel_error"]


def test_legacy_versions_1_and_2():
    v1 = fp.encode_legacy_block({**DEFAULTS, "power_level": 3}, version=1)
    assert v1[:8] == bytes([0xFC, 0xFC, 1, 1, 3, 0xFF, 1, 13]) and v1[20:] == b"\xff" * (4096 - 20)
    d = fp.decode_legacy_block(v1)
    assert d["module_id"] == 1 and d["power_level"] == 3 and d["firmware"]["max_tx_power"] is None
    assert d["firmware"]["uart_port"] is None and d["uart_tx_pin"] == 17
    v2 = fp.encode_legacy_block({**DEFAULTS, "module_name": "PICO-D4"}, version=2)
    assert v2[2:4] == bytes([2, 3]) and fp.decode_legacy_block(v2)["firmware"]["module"] == 3
    with pytest.raises(InputError, match="module id"):
        fp.encode_legacy_block({**DEFAULTS, "module_name": "ESP32C2-4MB"}, version=1)


def test_legacy_decode_errors_and_unset_fields():
    with pytest.raises(InputError, match="magic"):
        fp.decode_legacy_block(b"\xff" * 4096, source="fp.bin")
    with pytest.raises(InputError):
        fp.decode_legacy_block(b"\xfc\xfc\x03")
    with pytest.raises(InputError, match="version"):
        fp.decode_legacy_block(b"\xfc\xfc\x07" + b"\x00" * 100)
    block = bytearray(fp.encode_legacy_block(DEFAULTS))
    block[4] = block[5] = 0xFF
    block[12:16] = b"\xff" * 4
    block[8] = 0xFF
    fw = fp.decode_legacy_block(bytes(block))["firmware"]
    assert fw["max_tx_power"] is None and fw["uart_port"] is None and fw["uart_baudrate"] is None
    assert fw["country_code"] is None and fw["channels"] is None
