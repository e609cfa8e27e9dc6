"""factory_param: the key table of the mfg_nvs namespace, value validation, legacy 0xFCFC block.

The key table (name, NVS type, order) is esp-at's ``factory_param_type.csv`` (copy in
``atfab/data/``); its order is the NVS key order (§8.1, §5.3). The legacy 4 KB block is the
G2 ``factory_param`` partition (magic 0xFCFC, §10.4).
"""

from __future__ import annotations

import csv
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError

TYPE_CSV = Path(__file__).parents[1] / "data" / "factory_param_type.csv"


@dataclass(frozen=True)
class FactoryKey:
    """One factory_param key: its name and NVS type ("i8", "u8", "i32", "string")."""

    name: str
    type: str


def load_key_table(path: str | Path = TYPE_CSV) -> tuple[FactoryKey, ...]:
    """Keys of a factory_param_type.csv (``name,data,type`` rows; ``#`` comments), in order."""
    keys: list[FactoryKey] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.reader(fh), 1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 3 or row[1].strip() != "data":
                raise InputError("expected name,data,<type>", file=str(path), line=line_no)
            keys.append(FactoryKey(row[0].strip(), row[2].strip()))
    return tuple(keys)


#: The factory_param keys in NVS order (immutable).
FACTORY_KEYS: tuple[FactoryKey, ...] = load_key_table()
KEY_TYPES: dict[str, str] = {k.name: k.type for k in FACTORY_KEYS}

PIN_KEYS = ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin")
#: Highest GPIO number per chip (datasheets); unknown chips get 48.
MAX_GPIO: dict[str, int] = {
    "esp32": 39, "esp32s2": 46, "esp32s3": 48, "esp32c2": 20, "esp32c3": 21,
    "esp32c5": 28, "esp32c6": 30,
}
#: Number of UART controllers per chip (AT may use any of them); unknown chips get 3.
UART_COUNT: dict[str, int] = {"esp32": 3, "esp32s2": 2, "esp32s3": 3, "esp32c2": 2, "esp32c3": 2}
MODULE_NAME_MAX = 32
TX_POWER_MIN, TX_POWER_MAX = 40, 84        # 0.25 dBm units, the firmware's settable range (§6.1)
BAUD_MIN, BAUD_MAX = 80, 5_000_000
_INT_TYPES = {"i8": (-0x80, 0x7F), "u8": (0, 0xFF), "i16": (-0x8000, 0x7FFF), "u16": (0, 0xFFFF),
              "i32": (-0x80000000, 0x7FFFFFFF), "u32": (0, 0xFFFFFFFF)}
_INT_RE = re.compile(r"[+-]?\d+\Z")
_HEX_RE = re.compile(r"[+-]?0[xX][0-9a-fA-F]+\Z")


def parse_int(value: Any, *, field: str, file: str | None = None) -> int:
    """An integer from an int or decimal/0x text; :class:`InputError` naming ``field`` otherwise."""
    if isinstance(value, bool):
        raise InputError(f"expected an integer, got {value!r}", file=file, field=field)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if _INT_RE.match(text):
        return int(text, 10)
    if _HEX_RE.match(text):
        return int(text, 16)
    raise InputError(f"{str(value)!r} is not an integer", file=file, field=field)


def _check_range(value: int, low: int, high: int, *, field: str, file: str | None, what: str = "") -> None:
    if not low <= value <= high:
        raise InputError(f"{value} is out of range {low}..{high}{what}", file=file, field=field)


def validate_value(name: str, value: Any, *, chip: str | None = None, file: str | None = None) -> int | str:
    """One factory_param value, parsed and range-checked for ``name`` (and ``chip`` if known)."""
    type_name = KEY_TYPES.get(name)
    if type_name is None:
        raise InputError(f"unknown factory_param key (known: {', '.join(KEY_TYPES)})", file=file, field=name)
    if type_name == "string":
        if not isinstance(value, str):
            raise InputError(f"expected text, got {value!r}", file=file, field=name)
        if name == "country_code":
            if not (re.fullmatch(r"[A-Z]{2,3}", value) or value == "01"):
                raise InputError(f"{value!r} is not a country code (2 or 3 upper-case letters, e.g. CN, "
                                 "or 01 for world safe mode)", file=file, field=name)
        elif name == "module_name":
            if not value or len(value) > MODULE_NAME_MAX or not all(" " <= c <= "~" for c in value):
                raise InputError(f"{value!r} must be 1..{MODULE_NAME_MAX} printable ASCII characters",
                                 file=file, field=name)
        elif len(value.encode()) > 3999:
            raise InputError("string longer than the NVS limit of 3999 bytes", file=file, field=name)
        return value
    number = parse_int(value, field=name, file=file)
    low, high = _INT_TYPES.get(type_name, (-(2 ** 63), 2 ** 64 - 1))
    _check_range(number, low, high, field=name, file=file, what=f" ({type_name})")
    chip = (chip or "").lower()
    if name == "max_tx_power":
        _check_range(number, TX_POWER_MIN, TX_POWER_MAX, field=name, file=file, what=" (0.25 dBm units)")
    elif name in ("start_channel", "channel_num"):
        _check_range(number, 1, 14, field=name, file=file)
    elif name == "uart_port":
        _check_range(number, -1, UART_COUNT.get(chip, 3) - 1, field=name, file=file,
                     what=f" (UART number, -1 = none{', ' + chip if chip else ''})")
    elif name == "uart_baudrate":
        if number != -1:
            _check_range(number, BAUD_MIN, BAUD_MAX, field=name, file=file, what=" (or -1 = none)")
    elif name in PIN_KEYS:
        _check_range(number, -1, MAX_GPIO.get(chip, 48), field=name, file=file,
                     what=f" (GPIO number, -1 = unused{', ' + chip if chip else ''})")
    elif name == "sys_store":
        _check_range(number, 0, 1, field=name, file=file)
    return number


def validate(values: dict[str, Any], *, chip: str | None = None, file: str | None = None,
             require_all: bool = True) -> dict[str, int | str]:
    """Validated values in key-table order. Every key is required unless ``require_all`` is
    False; unknown keys, bad values, a channel range past 14 and shared pins are errors."""
    unknown = [k for k in values if k not in KEY_TYPES]
    if unknown:
        raise InputError(f"unknown factory_param key (known: {', '.join(KEY_TYPES)})", file=file, field=unknown[0])
    out: dict[str, int | str] = {}
    for key in FACTORY_KEYS:
        if key.name not in values:
            if require_all:
                raise InputError("missing factory_param value (the firmware needs every key)",
                                 file=file, field=key.name)
            continue
        out[key.name] = validate_value(key.name, values[key.name], chip=chip, file=file)
    start, num = out.get("start_channel"), out.get("channel_num")
    if isinstance(start, int) and isinstance(num, int) and start + num - 1 > 14:
        raise InputError(f"start_channel {start} + channel_num {num} - 1 = {start + num - 1} is past channel 14",
                         file=file, field="channel_num")
    seen: dict[int, str] = {}
    for pin in PIN_KEYS:
        number = out.get(pin)
        if isinstance(number, int) and number >= 0:
            if number in seen:
                raise InputError(f"GPIO {number} is also {seen[number]}", file=file, field=pin)
            seen[number] = pin
    return out


# ---- legacy factory_param block (G2, §10.4) -------------------------------------------------

LEGACY_MAGIC = 0xFCFC
LEGACY_SIZE = 4096
_LEGACY = struct.Struct("<HBBBbBB4si6bH32s32s")   # 88 bytes
#: esp32-at v1.2 module ids (version 1/2 blocks select the module by this number).
LEGACY_MODULE_IDS = {"WROOM-32": 1, "WROVER-32": 2, "PICO-D4": 3, "SOLO-1": 4}


def _u8(value: int) -> int:
    return value & 0xFF


def encode_legacy_block(values: dict[str, Any], version: int = 3, *, platform: str = "PLATFORM_ESP32",
                        module_id: int | None = None, channel_byte: str = "last") -> bytes:
    """The 4096-byte legacy factory_param partition (magic 0xFCFC).

    ``values`` uses the factory_param key names. Version 1 writes bytes 0..19 only (byte 4 is
    the esp32-at v1.x power *level*, taken from ``values["power_level"]``, default 1); versions
    1/2 store ``module_id`` at byte 3 (default: looked up from module_name). Byte 7: the firmware
    reads it as the *last* channel (§10.4, §14 item 18); ``channel_byte="last"`` writes
    start_channel + channel_num - 1 so the module uses the intended channels, ``"count"``
    writes channel_num as esp-at's at.py does (identical when start_channel is 1).
    """
    if version not in (1, 2, 3):
        raise InputError(f"legacy factory_param version must be 1, 2 or 3, got {version}", field="version")
    if channel_byte not in ("last", "count"):
        raise InputError("channel_byte must be 'last' or 'count'", field="channel_byte")
    given = {k: v for k, v in values.items() if k in KEY_TYPES}
    v = validate(given, require_all=False)
    v.setdefault("max_tx_power", 78)
    missing = [k for k in ("start_channel", "channel_num", "country_code", "uart_baudrate") + PIN_KEYS
               if k not in v]
    if missing:
        raise InputError("missing value for the legacy factory_param block", field=missing[0])
    name = str(v.get("module_name", ""))
    if version < 3:
        if module_id is None:
            module_id = LEGACY_MODULE_IDS.get(name)
        if module_id is None:
            raise InputError(f"module {name!r} has no legacy module id (give module_id=1..4)", field="module_id")
    start, num = int(v["start_channel"]), int(v["channel_num"])
    byte7 = start + num - 1 if channel_byte == "last" else num
    country = str(v["country_code"]).encode("ascii")
    pins = [int(v[k]) for k in PIN_KEYS]
    block = bytearray(b"\xff" * LEGACY_SIZE)
    if version == 1:
        level = parse_int(values.get("power_level", 1), field="power_level")
        _check_range(level, 0, 11, field="power_level", file=None)
        struct.pack_into("<HBBBBBB4si4b", block, 0, LEGACY_MAGIC, 1, module_id, level, 0xFF, start, byte7,
                         country.ljust(4, b"\x00"), int(v["uart_baudrate"]), *pins)
        return bytes(block)
    if len(platform.encode()) > 32:
        raise InputError("platform name longer than 32 bytes", field="platform")
    port = int(v.get("uart_port", 1))
    _LEGACY.pack_into(block, 0, LEGACY_MAGIC, version, module_id if version == 2 else 0,
                      _u8(int(v["max_tx_power"])), port, start, byte7, country.ljust(4, b"\x00"),
                      int(v["uart_baudrate"]), *pins, -1, -1, 0, platform.encode(), name.encode())
    return bytes(block)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace")


def decode_legacy_block(data: bytes, *, source: str = "<factory_param>") -> dict[str, Any]:
    """Fields of a legacy factory_param block, plus ``firmware``: how the G2 firmware applies
    them (module selection, tx power or None when not applied, UART port/baud or None,
    ``channels`` = (first, count) reading byte 7 as the *last* channel, or None with
    ``channel_error``). ``channel_num`` is the raw byte 7 (named as at.py names it)."""
    if len(data) < 20 or data[0:2] != b"\xfc\xfc":
        raise InputError("not a legacy factory_param block (magic FC FC missing or too short)", file=source)
    version = data[2]
    if version not in (1, 2, 3):
        raise InputError(f"unsupported legacy factory_param version {version}", file=source, field="version")
    if version > 1 and len(data) < _LEGACY.size:
        raise InputError(f"legacy factory_param block of {len(data)} bytes is too short", file=source)
    b = data
    out: dict[str, Any] = {
        "magic": LEGACY_MAGIC, "version": version,
        "module_id": b[3] if version < 3 else None,
        "uart_port": struct.unpack_from("<b", b, 5)[0],
        "start_channel": b[6], "channel_num": b[7],
        "country_code": _cstr(b[8:12]),
        "uart_baudrate": struct.unpack_from("<i", b, 12)[0],
    }
    out.update(zip(PIN_KEYS, struct.unpack_from("<4b", b, 16)))
    if version == 1:
        out["power_level"] = b[4]
    else:
        out["max_tx_power"] = b[4]
        out["tx_control_pin"], out["rx_control_pin"] = struct.unpack_from("<2b", b, 20)
        out["platform"] = _cstr(b[24:56])
        out["module_name"] = _cstr(b[56:88])
    fw: dict[str, Any] = {}
    fw["module"] = out.get("module_name") if version >= 3 else b[3]
    fw["max_tx_power"] = None if b[4] == 0xFF or (version == 1 and b[4] < 10) else b[4]
    fw["uart_port"] = None if b[5] == 0xFF else b[5]
    fw["uart_baudrate"] = None if b[12:16] == b"\xff" * 4 else out["uart_baudrate"]
    fw["uart_pins"] = {k: (None if out[k] == -1 and k in ("uart_cts_pin", "uart_rts_pin") else out[k])
                       for k in PIN_KEYS}
    fw["channels"] = None
    fw["channel_error"] = None
    fw["country_code"] = None
    if 0xFF not in (b[6], b[7], b[8]):
        first, last = b[6], b[7]
        if first < 1 or last > 14 or last < first:
            fw["channel_error"] = f"start {first}, last {last}: invalid (firmware reads byte 7 as last channel)"
        else:
            fw["channels"] = (first, last - first + 1)
            fw["country_code"] = out["country_code"]
    out["firmware"] = fw
    return out


__all__ = [
    "FactoryKey", "FACTORY_KEYS", "KEY_TYPES", "load_key_table", "parse_int", "validate_value", "validate",
    "encode_legacy_block", "decode_legacy_block", "LEGACY_MAGIC", "LEGACY_MODULE_IDS", "MAX_GPIO", "UART_COUNT",
]
