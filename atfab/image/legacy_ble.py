"""The ``ble_data`` partition image of ESP32 AT v1.x / ESP-AT v2.x-v3.0.0.0 (G1/G2, reference §10.3).

esp-at's ``tools/BLEService.py`` (with ``tools/Configs/ATBleService.yml``) turns the GATT CSV into::

    u16 JSON length (LE) | 0x27 0x95 | json.dumps({"Service": [row, ...]})

one JSON object per CSV row up to the first all-empty row: ``index``/``uuid_len`` ints, ``uuid``
upper-case hex without ``0x`` padded to an even number of digits, ``perm`` a JSON int (its CSV
text is hex), ``val_max_len`` int (512 when the cell is empty), ``val_cur_len`` int (0), ``value``
upper-case hex pairs (an odd last digit becomes its own byte: ``ABC`` -> ``AB0C``; ``""`` when
empty). The firmware parses the JSON, so the key order is not a property of the data, but it is
of the bytes: releases built under Python 3 (v2.2.0.0+) emit the CSV column order, the v1.x-v2.1
builds ran the tool under Python 2, whose dicts iterate these seven keys as :data:`PY2_ORDER`
(CPython 2.7, 64-bit string hashes; the v2.0/v2.1 tool even breaks under Python 3, writing 0x95
as UTF-8). Which order a release uses is :attr:`~atfab.core.firmware.FirmwareProfile.ble_data_json_order`.

Rows are :class:`atfab.image.gatt.GattRow` (text fields), read from a G3 ``gatts_data.csv`` or
from the legacy ``example.csv`` (header row of the seven names, no ``#``): :func:`parse_legacy_csv`.
"""

from __future__ import annotations

import csv
import io
import json
import struct

from ..core.errors import InputError
from .gatt import COLUMNS, GattRow, parse_gatts_csv

MAGIC = b"\x27\x95"
#: JSON key order of each tool run: CSV column order (Python 3) or CPython 2.7's dict order.
CSV_ORDER = COLUMNS
PY2_ORDER = ("index", "uuid", "uuid_len", "val_max_len", "value", "perm", "val_cur_len")
ORDERS = {"csv": CSV_ORDER, "py2": PY2_ORDER}
#: ATBleService.yml defaults of the optional columns.
DEFAULTS = {"val_max_len": "512", "val_cur_len": "0", "value": ""}
LENGTH_MAX = 0xFFFF


def _int(text: str, column: str, row: int) -> int:
    t = text.strip()
    try:
        if t[:2].lower() == "0x":
            return int(t, 16)
        if t[:2].lower() == "0b":
            return int(t[2:], 2)
        return int(t, 10)
    except ValueError:
        raise InputError(f"{t!r} is not a number", field=f"cfg{row}.{column}") from None


def _hex(text: str, column: str, row: int) -> int:
    try:
        return int(text.strip(), 16)
    except ValueError:
        raise InputError(f"{text.strip()!r} is not hex", field=f"cfg{row}.{column}") from None


def _hex_string(text: str, row: int) -> str:
    t = text.strip()
    if t[:2] == "0x":
        t = t[2:]
    try:
        return "".join(f"{int(t[i:i + 2], 16):02X}" for i in range(0, len(t), 2))
    except ValueError:
        raise InputError(f"{text.strip()!r} is not hex", field=f"cfg{row}.value") from None


def row_object(row: GattRow, pos: int) -> dict[str, int | str]:
    """The JSON object BLEService writes for ``row`` (keys in CSV order)."""
    f = dict(zip(COLUMNS, row.fields()))
    for key, default in DEFAULTS.items():
        if not f[key].strip():
            f[key] = default
    uuid = f"{_hex(f['uuid'], 'uuid', pos):X}"
    return {"index": _int(f["index"], "index", pos), "uuid_len": _int(f["uuid_len"], "uuid_len", pos),
            "uuid": ("0" + uuid) if len(uuid) % 2 else uuid, "perm": _hex(f["perm"], "perm", pos),
            "val_max_len": _int(f["val_max_len"], "val_max_len", pos),
            "val_cur_len": _int(f["val_cur_len"], "val_cur_len", pos), "value": _hex_string(f["value"], pos)}


def encode_ble_data(rows: list[GattRow], order: str = "csv") -> bytes:
    """The ble_data image of ``rows`` with the JSON keys in ``order`` ("csv" or "py2")."""
    if order not in ORDERS:
        raise InputError(f"unknown JSON key order {order!r} (known: {', '.join(ORDERS)})", field="ble_data_json_order")
    keys = ORDERS[order]
    objects = []
    for pos, row in enumerate(rows):
        obj = row_object(row, pos)
        objects.append({k: obj[k] for k in keys})
    body = json.dumps({"Service": objects}).encode("ascii")
    if len(body) > LENGTH_MAX:
        raise InputError(f"the GATT table's JSON is {len(body)} bytes; ble_data's length field holds {LENGTH_MAX}",
                         field="gatt")
    return struct.pack("<H", len(body)) + MAGIC + body


def looks_like_ble_data(data: bytes) -> bool:
    """True when ``data`` has the 0x27 0x95 magic at offset 2."""
    return len(data) >= 4 and data[2:4] == MAGIC


def image_length(data: bytes) -> int:
    """Bytes the image at the start of ``data`` occupies (4 + its JSON length)."""
    return 4 + struct.unpack_from("<H", data)[0]


def decode_ble_data(data: bytes, *, source: str = "<ble_data>") -> list[GattRow]:
    """The rows of a ble_data image (any key order), as GATT rows (``0x`` hex uuid and perm)."""
    data = bytes(data)
    if not looks_like_ble_data(data):
        raise InputError("not a ble_data image (magic 27 95 at offset 2 missing)", file=source, field="magic")
    length = struct.unpack_from("<H", data)[0]
    if 4 + length > len(data):
        raise InputError(f"header says {length} bytes of JSON, {len(data) - 4} follow", file=source, field="length")
    try:
        doc = json.loads(data[4:4 + length].decode("utf-8"))
        objects = doc["Service"]
        rows = []
        for pos, o in enumerate(objects):
            if set(o) != set(COLUMNS):
                raise KeyError(f"row {pos} has keys {sorted(o)}")
            rows.append(GattRow(str(int(o["index"])), str(int(o["uuid_len"])), f"0x{o['uuid']}",
                                f"0x{int(o['perm']):02X}", str(int(o["val_max_len"])), str(int(o["val_cur_len"])),
                                str(o["value"])))
        return rows
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"ble_data JSON is not a GATT table: {exc}", file=source, field="json") from None


def parse_legacy_csv(text: str, *, source: str = "<gatt csv>") -> list[GattRow]:
    """Rows of a GATT CSV for a legacy build: esp-at's legacy ``example.csv`` (a header row of the
    seven column names in any order, rows up to the first all-empty row, empty optional cells
    filled with ATBleService.yml's defaults) or a G3 ``gatts_data.csv`` (``#`` header)."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("#") or not first.split(",")[0].strip().lower() == "index":
        return parse_gatts_csv(text, source=source)
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader)]
    if sorted(header) != sorted(COLUMNS):
        raise InputError(f"header must name the columns {','.join(COLUMNS)} (BLEService.py's keys)",
                         file=source, line=1, field="header")
    rows: list[GattRow] = []
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            break
        if len(cells) != len(header):
            raise InputError(f"expected {len(header)} fields, got {len(cells)}", file=source, line=line, field="row")
        f = dict(zip(header, (c.strip() for c in cells)))
        for key, default in DEFAULTS.items():
            if not f[key]:
                f[key] = default
        rows.append(GattRow(*(f[c] for c in COLUMNS), line=line))
    return rows


__all__ = ["MAGIC", "PY2_ORDER", "CSV_ORDER", "ORDERS", "encode_ble_data", "decode_ble_data", "parse_legacy_csv",
           "looks_like_ble_data", "image_length", "row_object"]
