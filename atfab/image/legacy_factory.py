"""The legacy ``factory_param`` partition (4 KB, magic 0xFCFC) of ESP32 AT v1.1.3+ and ESP-AT
v2.x-v3.0.0.0 (reference §10.4; /work/notes/legacy-generations.md §2.3).

esp-at's ``tools/factory_param_generate.py`` fills 4096 bytes with 0xFF and then, for each
column of the module's row of ``factory_param_data.csv`` whose entry in
``factory_param_type.csv`` has a size, zeroes that field and writes the value (integers little
endian, truncated to the field; strings NUL padded, none when they fill the field). A field of
the type table that is not a data column is never touched and stays 0xFF (``reserved2``, bytes
0x16-0x17 of the version-3 block). The tables differ per release: :data:`LAYOUTS` holds them
verbatim (``factory_param_type.csv`` + the data CSV's header at each tag); a release names its
layout (:attr:`~atfab.core.firmware.FirmwareProfile.factory_param_layout`).

Values are given with atfab's factory_param names (``max_tx_power``, ``uart_cts_pin`` …) plus
the legacy-only ``module_id`` (version 1/2: the firmware names the module by this number),
``platform`` and ``tx_control_pin``/``rx_control_pin``; :func:`block_keys` says which a layout
has. One deliberate difference from esp-at's generator: byte 7 is written as the *last*
channel (start_channel + channel_num - 1), which is how every legacy firmware reads it; esp-at
writes channel_num there, the same byte whenever start_channel is 1 (its default).
"""

from __future__ import annotations

import csv
import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import read_bytes
from . import factory_param as fp

MAGIC = 0xFCFC
SIZE = 4096


@dataclass(frozen=True)
class BlockField:
    """One row of a factory_param_type.csv: name, byte offset, "integer"/"String", size."""

    name: str
    offset: int
    type: str
    size: int


@dataclass(frozen=True)
class BlockLayout:
    """The generator tables of one release line."""

    name: str
    version: int
    fields: tuple[BlockField, ...]
    columns: tuple[str, ...]            # factory_param_data.csv header: what the generator writes
    by_platform: bool                   # rows are selected by platform + module_name (v2.0+)

    def field(self, name: str) -> BlockField | None:
        return next((f for f in self.fields if f.name == name and f.size > 0), None)

    @property
    def by_id(self) -> bool:
        """The block names its module by ``module_id`` (versions 1 and 2)."""
        return self.version <= 2


def _fields(*rows: tuple[str, int, str, int]) -> tuple[BlockField, ...]:
    return tuple(BlockField(*r) for r in rows)


_V1_TYPES = (("module_name", -1, "String", 0), ("magic_flag", 0, "integer", 2), ("version", 2, "integer", 1),
             ("module_id", 3, "integer", 1), ("tx_max_power", 4, "integer", 1), ("start_channel", 6, "integer", 1),
             ("channel_num", 7, "integer", 1), ("country_code", 8, "String", 4), ("uart_baudrate", 12, "integer", 4),
             ("uart_tx_pin", 16, "integer", 1), ("uart_rx_pin", 17, "integer", 1), ("uart_ctx_pin", 18, "integer", 1),
             ("uart_rts_pin", 19, "integer", 1))
_CTRL = (("tx_control_pin", 20, "integer", 1), ("rx_control_pin", 21, "integer", 1))

#: factory_param_type.csv / factory_param_data.csv header of each release line (verbatim, the
#: rows of components/customized_partitions/raw_data/factory_param/ at the tags named).
LAYOUTS: dict[str, BlockLayout] = {
    # v1.1.3.0, v1.2.0.0: version 1, power as a level
    "v1.1.3": BlockLayout("v1.1.3", 1, _fields(*_V1_TYPES), (
        "module_name", "magic_flag", "version", "module_id", "tx_max_power", "start_channel", "channel_num",
        "country_code", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_ctx_pin", "uart_rts_pin"), False),
    # v2.0.0.0_esp32: still version 1 (power in 0.25 dBm), + platform and control pins
    "v2.0": BlockLayout("v2.0", 1, _fields(("platform", -1, "String", 0), *_V1_TYPES, *_CTRL), (
        "platform", "module_name", "magic_flag", "version", "module_id", "tx_max_power", "start_channel",
        "channel_num", "country_code", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_ctx_pin", "uart_rts_pin",
        "tx_control_pin", "rx_control_pin"), True),
    # v2.1.0.0: version 2, + uart_port at byte 5
    "v2.1": BlockLayout("v2.1", 2, _fields(("platform", -1, "String", 0), *_V1_TYPES[:5], ("uart_port", 5, "integer", 1),
                                           *_V1_TYPES[5:], *_CTRL), (
        "platform", "module_name", "magic_flag", "version", "module_id", "tx_max_power", "uart_port", "start_channel",
        "channel_num", "country_code", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_ctx_pin", "uart_rts_pin",
        "tx_control_pin", "rx_control_pin"), True),
    # v2.2.0.0 ... v3.0.0.0 (and the tool kept in v3.1): version 3, platform + module_name strings
    "v2.2": BlockLayout("v2.2", 3, _fields(
        ("description", -1, "String", 0), ("module_id", -1, "integer", 0), ("magic_flag", 0, "integer", 2),
        ("version", 2, "integer", 1), ("reserved1", 3, "integer", 1), ("tx_max_power", 4, "integer", 1),
        ("uart_port", 5, "integer", 1), ("start_channel", 6, "integer", 1), ("channel_num", 7, "integer", 1),
        ("country_code", 8, "String", 4), ("uart_baudrate", 12, "integer", 4), ("uart_tx_pin", 16, "integer", 1),
        ("uart_rx_pin", 17, "integer", 1), ("uart_cts_pin", 18, "integer", 1), ("uart_rts_pin", 19, "integer", 1),
        *_CTRL, ("reserved2", 22, "String", 2), ("platform", 24, "String", 32), ("module_name", 56, "String", 32)), (
        "platform", "module_name", "description", "magic_flag", "version", "reserved1", "tx_max_power", "uart_port",
        "start_channel", "channel_num", "country_code", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_cts_pin",
        "uart_rts_pin", "tx_control_pin", "rx_control_pin"), True),
}

#: atfab factory_param key -> the generator column it fills (when the layout has it).
COLUMN_OF = {"max_tx_power": "tx_max_power", "uart_cts_pin": ("uart_ctx_pin", "uart_cts_pin")}
#: Keys a legacy block may carry besides atfab's factory_param keys.
LEGACY_KEYS = ("module_id", "platform", "tx_control_pin", "rx_control_pin")
_FIXED = ("magic_flag", "version", "reserved1", "description")
#: Module ids of the version 1/2 blocks (esp32-at v1.2 docs; ids 0 and 1 both print WROOM-32).
MODULE_IDS = {"WROOM-32": 1, "WROVER-32": 2, "PICO-D4": 3, "SOLO-1": 4}


def layout(name: str) -> BlockLayout:
    if name not in LAYOUTS:
        raise InputError(f"unknown factory_param block layout {name!r} (known: {', '.join(LAYOUTS)})",
                         field="factory_param_layout")
    return LAYOUTS[name]


def _column(lay: BlockLayout, key: str) -> str | None:
    names = COLUMN_OF.get(key, key)
    for name in (names,) if isinstance(names, str) else names:
        if name in lay.columns:
            return name
    return None


def block_keys(lay: BlockLayout) -> tuple[str, ...]:
    """The atfab keys a block of ``lay`` stores (``module_name`` only where it is a written field)."""
    keys = [k for k in (*fp.KEY_TYPES, *LEGACY_KEYS) if _column(lay, k) is not None and lay.field(_column(lay, k) or "")]
    return tuple(keys)


# ------------------------------------------------------------------------------ the generator


def esp_int(text: str) -> int:
    """A data-CSV integer as factory_param_generate.py reads it: ``0x`` hex, a leading ``0`` octal."""
    t = text.strip()
    if t.startswith(("0x", "0X")):
        return int(t, 16)
    if t.startswith("0"):
        return int(t, 8)
    return int(t, 10)


def generate(lay: BlockLayout, row: dict[str, int | str]) -> bytes:
    """factory_param_generate.py for one data row (column -> value): the 4096-byte block."""
    block = bytearray(b"\xff" * SIZE)
    for column in lay.columns:
        f = next((x for x in lay.fields if x.name == column), None)
        if f is None or f.size <= 0:
            continue
        value = row[column]
        block[f.offset:f.offset + f.size] = b"\x00" * f.size
        if f.type == "integer":
            number = esp_int(value) if isinstance(value, str) else int(value)
            block[f.offset:f.offset + f.size] = struct.pack("<i", _c_int(number))[:f.size]
        else:
            raw = str(value).encode("utf-8")
            if len(raw) > f.size:
                raise InputError(f"{raw.decode()!r} is longer than the {f.size}-byte {column} field", field=column)
            block[f.offset:f.offset + len(raw)] = raw
    return bytes(block)


def _c_int(number: int) -> int:
    """ctypes.c_int(number).value: wrap to a signed 32-bit int."""
    number &= 0xFFFFFFFF
    return number - (1 << 32) if number >= 1 << 31 else number


# ------------------------------------------------------------------------------ atfab values


def module_id_for(name: str) -> int | None:
    return MODULE_IDS.get(name)


def check_values(values: dict[str, Any], lay: BlockLayout, *, chip: str | None = None,
                 tx_power: tuple[int, int] = (40, 84), file: str | None = None,
                 field_prefix: str = "") -> dict[str, int | str]:
    """``values`` (atfab keys) checked for a block of ``lay``: a key the block cannot store is an
    error, numbers are ranged (``tx_power``: the release's range, G1 levels 0..11)."""
    out: dict[str, int | str] = {}
    keys = block_keys(lay)
    for key, raw in values.items():
        where = f"{field_prefix}{key}"
        if key == "module_name" and lay.by_id:
            out[key] = fp.validate_value(key, raw, chip=chip, file=file) if isinstance(raw, str) else raw
            continue
        if key not in keys:
            raise InputError(f"the {lay.name} factory_param block (version {lay.version}) has no {key} field "
                             f"(it has: {', '.join(keys)})", file=file, field=where)
        if key == "max_tx_power":
            number = fp.parse_int(raw, field=where, file=file)
            unit = "levels" if tx_power[1] < 40 else "0.25 dBm units"
            if not tx_power[0] <= number <= tx_power[1]:
                raise InputError(f"{number} is out of range {tx_power[0]}..{tx_power[1]} ({unit})", file=file, field=where)
            out[key] = number
        elif key == "module_id":
            number = fp.parse_int(raw, field=where, file=file)
            if not 0 <= number <= 0xFF:
                raise InputError(f"{number} is out of range 0..255", file=file, field=where)
            out[key] = number
        elif key == "platform":
            if not isinstance(raw, str) or not 0 < len(raw) <= 32 or not all(" " <= c <= "~" for c in raw):
                raise InputError(f"{raw!r} must be 1..32 printable ASCII characters", file=file, field=where)
            out[key] = raw
        elif key in ("tx_control_pin", "rx_control_pin"):
            number = fp.parse_int(raw, field=where, file=file)
            top = fp.MAX_GPIO.get((chip or "").lower(), 48)
            if not -1 <= number <= top:
                raise InputError(f"{number} is out of range -1..{top} (GPIO number, -1 = unused)", file=file, field=where)
            out[key] = number
        else:
            try:
                out[key] = fp.validate_value(key, raw, chip=chip, file=file)
            except InputError as exc:
                raise InputError(exc.message, file=file, field=where) from None
    start, num = out.get("start_channel"), out.get("channel_num")
    if isinstance(start, int) and isinstance(num, int) and start + num - 1 > 14:
        raise InputError(f"start_channel {start} + channel_num {num} - 1 = {start + num - 1} is past channel 14",
                         file=file, field=f"{field_prefix}channel_num")
    return out


def block_row(values: dict[str, Any], lay: BlockLayout) -> dict[str, int | str]:
    """The generator's data row (column -> value) for atfab ``values``: every column of the layout
    must be given, except the fixed ones (magic, version, reserved) and ``module_id`` (looked up
    from ``module_name`` on version 1/2 blocks)."""
    row: dict[str, int | str] = {"magic_flag": MAGIC, "version": lay.version, "reserved1": 0, "description": ""}
    given = dict(values)
    if lay.by_id and "module_id" not in given:
        ident = module_id_for(str(given.get("module_name", "")))
        if ident is None:
            raise InputError(f"module {given.get('module_name')!r} has no version-{lay.version} module id "
                             f"(known: {', '.join(f'{k} {v}' for k, v in MODULE_IDS.items())}); give module_id",
                             field="module_id")
        given["module_id"] = ident
    for column in lay.columns:
        if column in row:
            continue
        key = next((k for k in (*fp.KEY_TYPES, *LEGACY_KEYS) if _column(lay, k) == column), column)
        if key not in given:
            raise InputError(f"missing {key} for the {lay.name} factory_param block", field=key)
        row[column] = given[key]
    start, num = row.get("start_channel"), row.get("channel_num")
    if isinstance(start, int) and isinstance(num, int):
        row["channel_num"] = start + num - 1       # byte 7 = the last channel (module docstring)
    return row


def encode_block(values: dict[str, Any], lay: BlockLayout | str) -> bytes:
    """The factory_param partition for atfab ``values`` (already checked) in layout ``lay``."""
    lay = layout(lay) if isinstance(lay, str) else lay
    return generate(lay, block_row(values, lay))


# ------------------------------------------------------------------------------- raw_data rows


def read_data_row(path: str | Path, lay: BlockLayout, *, platform: str, module: str) -> dict[str, str]:
    """The module's row of a factory_param_data.csv (column -> text), selected as the release's
    generator selects it (v2.0+: platform and module_name compared upper-case; v1.x: the
    module_name column, exact)."""
    src = str(path)
    raw = read_bytes(path, "factory_param data", limit=1 << 20, field="factory_param")
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a UTF-8 CSV file: {exc}", file=src, field="factory_param") from None
    if not rows:
        raise InputError("empty file", file=src, field="factory_param")
    header = [h.strip() for h in rows[0]]
    for line, cells in enumerate(rows[1:], start=2):
        if not cells:
            continue
        row = dict(zip(header, cells))
        if lay.by_platform:
            hit = row.get("platform", "").upper() == platform.upper() and row.get("module_name", "").upper() == module
        else:
            hit = row.get("module_name") == module
        if hit:
            missing = [c for c in lay.columns if c not in row]
            if missing:
                raise InputError(f"no {missing[0]} column (the {lay.name} generator reads {','.join(lay.columns)})",
                                 file=src, line=line, field="factory_param")
            return row
    raise InputError(f"no row for {platform + ',' if lay.by_platform else ''}{module}", file=src, field="factory_param")


def values_of_row(row: dict[str, str], lay: BlockLayout, *, file: str | None = None) -> dict[str, int | str]:
    """atfab keys -> values of a data row (integers parsed as esp-at parses them)."""
    out: dict[str, int | str] = {}
    for key in (*fp.KEY_TYPES, *LEGACY_KEYS):
        column = _column(lay, key)
        if column is None or column not in row:
            continue
        f = next((x for x in lay.fields if x.name == column), None)
        text = row[column]
        if f is not None and f.type == "integer":
            try:
                out[key] = esp_int(text)
            except ValueError:
                raise InputError(f"{text!r} is not an integer", file=file, field=f"factory_param.{column}") from None
        else:
            out[key] = text
    return out


# ---------------------------------------------------------------------------------- decoding


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace")


def looks_like_block(data: bytes) -> bool:
    return len(data) >= 3 and data[:2] == b"\xfc\xfc" and data[2] in (1, 2, 3)


def decode_block(data: bytes, *, source: str = "<factory_param>") -> dict[str, Any]:
    """The fields of a block (atfab names; 0xFF-filled fields read as esp-at's C code sees them),
    plus ``firmware``: how the legacy firmware applies them (module by id or name, tx power or
    None, UART port/baud or None when 0xFF, ``channels`` = (first, count) reading byte 7 as the
    last channel, or None with ``channel_error``). ``channel_num`` is the channel count."""
    data = bytes(data)
    if len(data) < 20 or data[:2] != b"\xfc\xfc":
        raise InputError("not a legacy factory_param block (magic FC FC missing or too short)", file=source,
                         field="magic")
    version = data[2]
    if version not in (1, 2, 3):
        raise InputError(f"unsupported legacy factory_param version {version}", file=source, field="version")
    if version == 3 and len(data) < 88:
        raise InputError(f"version 3 block of {len(data)} bytes is too short (88)", file=source, field="size")
    b = data
    out: dict[str, Any] = {"magic": MAGIC, "version": version}
    if version < 3:
        out["module_id"] = b[3]
    out["max_tx_power"] = b[4]
    if version >= 2:
        out["uart_port"] = struct.unpack_from("<b", b, 5)[0]
    out["start_channel"], out["last_channel"] = b[6], b[7]
    out["channel_num"] = b[7] - b[6] + 1 if 1 <= b[6] <= b[7] <= 14 else None
    out["country_code"] = _cstr(b[8:12])
    out["uart_baudrate"] = struct.unpack_from("<i", b, 12)[0]
    out.update(zip(fp.PIN_KEYS, struct.unpack_from("<4b", b, 16)))
    if len(b) >= 22:
        out["tx_control_pin"], out["rx_control_pin"] = struct.unpack_from("<2b", b, 20)
    if version == 3:
        out["platform"] = _cstr(b[24:56])
        out["module_name"] = _cstr(b[56:88])
    fw: dict[str, Any] = {"module": out.get("module_name") if version == 3 else b[3],
                          "max_tx_power": None if b[4] == 0xFF else b[4],
                          "uart_port": None if version < 2 or b[5] == 0xFF else b[5],
                          "uart_baudrate": None if b[12:16] == b"\xff" * 4 else out["uart_baudrate"],
                          "channels": None, "channel_error": None, "country_code": None}
    if 0xFF not in (b[6], b[7], b[8]):
        if out["channel_num"] is None:
            fw["channel_error"] = f"start {b[6]}, last {b[7]}: invalid (the firmware reads byte 7 as the last channel)"
        else:
            fw["channels"] = (b[6], out["channel_num"])
            fw["country_code"] = out["country_code"]
    out["firmware"] = fw
    return out


__all__ = ["MAGIC", "SIZE", "BlockField", "BlockLayout", "LAYOUTS", "MODULE_IDS", "LEGACY_KEYS", "layout",
           "block_keys", "generate", "esp_int", "check_values", "block_row", "encode_block", "read_data_row",
           "values_of_row", "looks_like_block", "decode_block", "module_id_for"]
