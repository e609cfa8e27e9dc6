"""ESP-AT GATT server table: gatts_data.csv rows ⇄ ``ble_data/cfgN`` strings, checks, discovery.

A row keeps the CSV text of each field (so ``cfg_string()`` reproduces the CSV bytes exactly);
the ``*_int``/``uuid_value`` helpers give numbers. Columns and bit meanings: reference §8.4;
storage as NVS strings ``cfg0``, ``cfg1``…: §8.3; what the firmware prints: §7.
The readable TOML description (services/characteristics/descriptors) lives in
:mod:`atfab.image.gatt_desc`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

from ..core.errors import InputError
from ..core.inputs import CSV_LIMIT, read_text

#: Rows the firmware loads from ``ble_data``. The default table has 31 rows (cfg0..cfg30) and
#: the reference shows 34 being accepted (§8.3); no hard limit is documented, so atfab refuses
#: tables above this sane bound unless the caller passes a larger ``max_rows``.
GATTS_MAX_ROWS = 64
#: Largest attribute value the ESP-AT GATT server accepts (BLE ATT maximum attribute length).
GATTS_MAX_VALUE_LEN = 512
#: Column names of gatts_data.csv (§8.4) and the header line esp-at ships.
COLUMNS = ("index", "uuid_len", "uuid", "perm", "val_max_len", "val_cur_len", "value")
DEFAULT_HEADER = "# index,uuid_len,uuid,perm,max_len,cur_len,value"

PRIMARY_SERVICE = 0x2800
SECONDARY_SERVICE = 0x2801
INCLUDE = 0x2802
CHAR_DECLARATION = 0x2803
USER_DESCRIPTION = 0x2901
CCCD = 0x2902

#: ATT permission bits of the ``perm`` column (§8.4).
PERMISSIONS = {
    "read": 0x0001, "read_encrypted": 0x0002, "read_enc_mitm": 0x0004,
    "write": 0x0010, "write_encrypted": 0x0020, "write_enc_mitm": 0x0040,
    "write_signed": 0x0080, "write_signed_mitm": 0x0100,
    "read_authorization": 0x0200, "write_authorization": 0x0400,
}
READ_PERMS = 0x0001 | 0x0002 | 0x0004
WRITE_PERMS = 0x0010 | 0x0020 | 0x0040 | 0x0080 | 0x0100
SIGNED_WRITE_PERMS = 0x0080 | 0x0100
#: Characteristic property bits (value of a 0x2803 row, §8.4).
PROPERTIES = {
    "broadcast": 0x01, "read": 0x02, "write_no_rsp": 0x04, "write": 0x08,
    "notify": 0x10, "indicate": 0x20, "auth_signed_write": 0x40, "extended": 0x80,
}
_UUID_DIGITS = {16: 4, 32: 8, 128: 32}


@dataclass(frozen=True)
class GattRow:
    """One gatts_data row; every field is the CSV text so cfg strings round-trip byte-exact."""

    index: str
    uuid_len: str
    uuid: str
    perm: str
    val_max_len: str
    val_cur_len: str
    value: str
    #: CSV line the row came from (errors only; not part of equality).
    line: int | None = field(default=None, compare=False)

    def cfg_string(self) -> str:
        """The ``ble_data/cfgN`` string value: the fields joined by commas."""
        return ",".join(self.fields())

    def fields(self) -> tuple[str, ...]:
        return (self.index, self.uuid_len, self.uuid, self.perm, self.val_max_len, self.val_cur_len, self.value)

    # numeric views of the text fields (ValueError on rows that have not passed validate_rows)
    @property
    def uuid_value(self) -> int:
        return int(_strip_hex(self.uuid), 16)

    @property
    def uuid_bits(self) -> int:
        return int(self.uuid_len)

    @property
    def perm_value(self) -> int:
        return int(self.perm, 0)

    @property
    def max_len(self) -> int:
        return int(self.val_max_len)

    @property
    def cur_len(self) -> int:
        return int(self.val_cur_len)

    @property
    def value_bytes(self) -> bytes:
        return bytes.fromhex(self.value)

    def uuid_text(self) -> str:
        """UUID as the firmware prints it: ``0x`` + upper-case hex, 4/8/32 digits by ``uuid_len``."""
        return format_uuid(self.uuid_value, _UUID_DIGITS.get(self.uuid_bits, 4))


def format_uuid(value: int, digits: int = 4) -> str:
    return f"0x{value:0{digits}X}"


def _strip_hex(text: str) -> str:
    t = text.strip()
    return t[2:] if t[:2].lower() == "0x" else t


def parse_cfg_string(text: str, *, source: str = "", line: int | None = None) -> GattRow:
    """Parse ``"0,16,0x2800,0x01,2,2,A002"`` (a cfg value or a CSV line) into a :class:`GattRow`."""
    parts = text.rstrip("\r\n").split(",")
    if len(parts) != len(COLUMNS):
        raise InputError(f"expected {len(COLUMNS)} comma-separated fields ({','.join(COLUMNS)}), got {len(parts)}",
                         file=source or None, line=line, field="row")
    return GattRow(*parts, line=line)


def parse_gatts_csv(text: str, *, source: str = "<gatts_data.csv>") -> list[GattRow]:
    """Rows of a gatts_data.csv text, read by esp-at's rule: every non-empty line whose first field
    does not start with ``#`` is a row (``cfg0``, ``cfg1``…); empty lines and ``#`` comment lines are
    skipped. A line esp-at's build would keep although it is no GATT row (spaces only, an indented
    ``# comment``, the header without its ``#``) is an :class:`InputError`, not silently dropped."""
    rows: list[GattRow] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw or raw.startswith("#"):
            continue
        stripped = raw.strip()
        problem = ("a line of spaces" if not stripped else
                   "an indented comment" if stripped.startswith("#") else
                   "the header line without its #" if stripped.split(",")[0].strip().lower() == "index" else None)
        if problem is not None:
            raise InputError(f"{problem}: esp-at's build would write it as GATT row cfg{len(rows)}; "
                             "delete it or start it with # in the first column", file=source or None,
                             line=lineno, field="row")
        # csv module handles quoted fields should anyone quote them; plain rows stay verbatim
        fields_ = next(csv.reader([raw])) if '"' in raw else raw.split(",")
        rows.append(parse_cfg_string(",".join(fields_), source=source, line=lineno))
    return rows


def load_gatts_csv(path: str | Path) -> list[GattRow]:
    """Read gatts_data.csv at ``path``; InputError names the file when it cannot be read."""
    path = Path(path)
    text = read_text(path, "GATT table", limit=CSV_LIMIT, field="")
    return parse_gatts_csv(text, source=str(path))


def dump_gatts_csv(rows: list[GattRow], *, header: str | None = DEFAULT_HEADER) -> str:
    """gatts_data.csv text: the header comment line, then one line per row, ``\\n`` line ends."""
    lines = [header] if header else []
    lines += [r.cfg_string() for r in rows]
    return "\n".join(lines) + "\n"


def cfg_strings(rows: list[GattRow]) -> list[str]:
    """The ``ble_data`` values in order (cfg0, cfg1, …) for :class:`atfab.image.mfg_nvs.UnitContent`."""
    return [r.cfg_string() for r in rows]


def rows_from_cfg_strings(values: list[str], *, source: str = "<ble_data>") -> list[GattRow]:
    return [parse_cfg_string(v, source=source, line=None) for v in values]


# ---------------------------------------------------------------------------------------------
# validation

class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, row: GattRow | None, pos: int | None, column: str, message: str) -> InputError:
        where = f"cfg{pos}" if pos is not None else "table"
        fld = f"{where}.{column}" if column else where
        return InputError(message, file=self.source or None, field=fld, line=row.line if row else None)

    def number(self, row: GattRow, pos: int, column: str, base: int) -> int:
        text = getattr(row, column)
        try:
            if base == 16:
                return int(_strip_hex(text), 16)
            return int(text, base)
        except ValueError:
            kind = {16: "a hex number", 0: "a number (0x.. hex or decimal)", 10: "a decimal number"}[base]
            raise self.fail(row, pos, column, f"{text!r} is not {kind}") from None


class _CheckedRow(NamedTuple):
    """One row with its fields checked and converted (what the structure check works on)."""

    row: GattRow
    pos: int
    bits: int            # uuid_len
    uuid: int
    perm: int
    value: bytes
    cur_len: int

    @property
    def is_declaration(self) -> bool:
        """A 16-bit service, include or characteristic declaration."""
        return self.bits == 16 and self.uuid in (PRIMARY_SERVICE, SECONDARY_SERVICE, INCLUDE, CHAR_DECLARATION)


def validate_rows(rows: list[GattRow], *, source: str = "", max_rows: int = GATTS_MAX_ROWS) -> None:
    """Check a GATT table the way the firmware will use it; the first problem is an InputError.

    Rules per row (:func:`_check_row`): indexes 0,1,2… in order; uuid_len 16/32/128 agrees with the
    UUID's hex digits; lengths fit (cur ≤ max ≤ 512, hex value == cur bytes when a value is
    given). Rules of the table (:func:`_check_structure`): it starts with a primary service
    (0x2800); each 0x2803 declaration is followed by its value row, and its properties agree with
    the value's permissions (read → a read perm, write/write-no-rsp → a write perm, signed write →
    a signed-write perm); notify/indicate characteristics carry a CCCD (0x2902); descriptors
    follow a characteristic value; at most ``max_rows`` rows.
    """
    ck = _Checker(source)
    if not rows:
        raise ck.fail(None, None, "", "GATT table has no rows")
    if len(rows) > max_rows:
        raise ck.fail(None, None, "", f"{len(rows)} rows exceed the limit of {max_rows} rows the firmware loads "
                                      f"(raise max_rows if your firmware accepts more)")
    _check_structure([_check_row(ck, row, pos) for pos, row in enumerate(rows)], ck)


def _check_row(ck: _Checker, row: GattRow, pos: int) -> _CheckedRow:
    """The fields of the row at position ``pos``, checked on their own and converted."""
    index = ck.number(row, pos, "index", 10)
    if index != pos:
        raise ck.fail(row, pos, "index", f"index {index} out of order: rows must be numbered 0,1,2… (expected {pos})")
    bits = ck.number(row, pos, "uuid_len", 10)
    if bits not in _UUID_DIGITS:
        raise ck.fail(row, pos, "uuid_len", f"uuid_len {bits} must be 16, 32 or 128 (bits)")
    digits = _strip_hex(row.uuid)
    uuid = ck.number(row, pos, "uuid", 16)
    if len(digits) != _UUID_DIGITS[bits]:
        raise ck.fail(row, pos, "uuid", f"UUID {row.uuid!r} has {len(digits)} hex digits but uuid_len {bits} "
                                        f"needs {_UUID_DIGITS[bits]}")
    perm = ck.number(row, pos, "perm", 0)
    if perm < 0 or perm > 0xFFFF:
        raise ck.fail(row, pos, "perm", f"perm {row.perm!r} out of range 0..0xFFFF")
    max_len = ck.number(row, pos, "val_max_len", 10)
    cur_len = ck.number(row, pos, "val_cur_len", 10)
    if not 0 <= max_len <= GATTS_MAX_VALUE_LEN:
        raise ck.fail(row, pos, "val_max_len", f"val_max_len {max_len} out of range 0..{GATTS_MAX_VALUE_LEN}")
    if not 0 <= cur_len <= max_len:
        raise ck.fail(row, pos, "val_cur_len", f"val_cur_len {cur_len} exceeds val_max_len {max_len}")
    value = b""
    if row.value:
        try:
            value = bytes.fromhex(row.value)
        except ValueError:
            raise ck.fail(row, pos, "value", f"value {row.value!r} is not an even-length hex byte string") from None
        if len(value) != cur_len:
            raise ck.fail(row, pos, "value", f"value has {len(value)} bytes but val_cur_len is {cur_len}")
    return _CheckedRow(row, pos, bits, uuid, perm, value, cur_len)


def _check_structure(parsed: list[_CheckedRow], ck: _Checker) -> None:
    """Services, characteristics and descriptors in a shape the firmware accepts (see :func:`validate_rows`)."""
    first = parsed[0]
    if first.uuid != PRIMARY_SERVICE or first.bits != 16:
        raise ck.fail(first.row, 0, "uuid", f"table must start with a primary service (0x2800), not {first.row.uuid}")
    pos = 0
    char: tuple[_CheckedRow, int] | None = None   # (the open characteristic's value row, its property byte)
    has_cccd = False

    def close_char() -> None:
        if char is not None and char[1] & (PROPERTIES["notify"] | PROPERTIES["indicate"]) and not has_cccd:
            vrow = char[0]
            raise ck.fail(vrow.row, vrow.pos, "uuid", f"characteristic {vrow.row.uuid} has notify/indicate but no "
                                                      f"CCCD (0x2902) descriptor")

    while pos < len(parsed):
        r = parsed[pos]
        if r.bits == 16 and r.uuid in (PRIMARY_SERVICE, SECONDARY_SERVICE):
            close_char()
            char, has_cccd = None, False
            if len(r.value) not in (2, 4, 16):
                raise ck.fail(r.row, pos, "value", "service declaration value must be the service UUID "
                                                   "(2, 4 or 16 bytes of hex)")
            if not any(r.value):
                raise ck.fail(r.row, pos, "value", "service UUID 0x0000 is not a UUID (Bluetooth reserves it)")
            pos += 1
        elif r.bits == 16 and r.uuid == INCLUDE:
            raise ck.fail(r.row, pos, "uuid", "include declarations (0x2802) are not supported by ESP-AT tables")
        elif r.bits == 16 and r.uuid == CHAR_DECLARATION:
            close_char()
            if len(r.value) != 1:
                raise ck.fail(r.row, pos, "value", "characteristic declaration value must be the 1-byte property")
            if pos + 1 >= len(parsed):
                raise ck.fail(r.row, pos, "uuid", "characteristic declaration (0x2803) is the last row: its value row is missing")
            v = parsed[pos + 1]
            if v.is_declaration or (v.bits == 16 and _is_descriptor(v.uuid)):
                raise ck.fail(v.row, pos + 1, "uuid", f"characteristic declaration cfg{pos} must be followed by its "
                                                      f"value row, not {v.row.uuid}")
            prop = r.value[0]
            if prop == 0:
                raise ck.fail(r.row, pos, "value", "characteristic properties 0x00: a characteristic nobody can "
                                                   "read, write, notify or indicate (give at least one property)")
            _check_prop_perm(ck, v.row, pos + 1, prop, v.perm)
            char, has_cccd = (v, prop), False
            pos += 2
        elif r.bits == 16 and _is_descriptor(r.uuid):
            if char is None:
                raise ck.fail(r.row, pos, "uuid", f"descriptor {r.row.uuid} does not follow a characteristic value")
            if r.uuid == CCCD:
                has_cccd = True
                if r.cur_len not in (0, 2):
                    raise ck.fail(r.row, pos, "val_cur_len", "CCCD (0x2902) value is 2 bytes")
            pos += 1
        else:
            raise ck.fail(r.row, pos, "uuid", f"{r.row.uuid} is a characteristic value without a 0x2803 declaration "
                                              f"before it")
    close_char()


def _is_descriptor(uuid: int) -> bool:
    return 0x2900 <= uuid <= 0x29FF


def _check_prop_perm(ck: _Checker, vrow: GattRow, pos: int, prop: int, perm: int) -> None:
    if prop & PROPERTIES["read"] and not perm & READ_PERMS:
        raise ck.fail(vrow, pos, "perm", f"characteristic {vrow.uuid} has the read property but perm {vrow.perm} "
                                         f"has no read permission")
    if prop & (PROPERTIES["write"] | PROPERTIES["write_no_rsp"]) and not perm & WRITE_PERMS:
        raise ck.fail(vrow, pos, "perm", f"characteristic {vrow.uuid} has a write property but perm {vrow.perm} "
                                         f"has no write permission")
    if prop & PROPERTIES["auth_signed_write"] and not perm & SIGNED_WRITE_PERMS:
        raise ck.fail(vrow, pos, "perm", f"characteristic {vrow.uuid} has signed writes but perm {vrow.perm} "
                                         f"has no signed-write permission")


# ---------------------------------------------------------------------------------------------
# discovery (§7 derivation rule)

@dataclass(frozen=True)
class DiscoveredChar:
    srv_index: int
    char_index: int
    uuid: str
    prop: int
    descriptors: list[str]


@dataclass(frozen=True)
class DiscoveredService:
    srv_index: int
    uuid: str
    primary: bool
    chars: list[DiscoveredChar]


def discover(rows: list[GattRow]) -> list[DiscoveredService]:
    """Services, characteristics and descriptors a firmware builds from ``rows`` (§7 rule).

    0x2800/0x2801 → a new service whose UUID is the row value read as hex; 0x2803 → the next row
    is a characteristic (property = declaration value, UUID = the next row's uuid); following
    0x29xx rows → its descriptors. Indexes count from 1. Rows must be valid (``validate_rows``).
    """
    services: list[DiscoveredService] = []
    pos = 0
    while pos < len(rows):
        row = rows[pos]
        uuid = row.uuid_value if row.uuid_bits == 16 else -1
        if uuid in (PRIMARY_SERVICE, SECONDARY_SERVICE):
            digits = len(row.value) if len(row.value) in (4, 8, 32) else 4
            services.append(DiscoveredService(len(services) + 1, format_uuid(int(row.value, 16), digits),
                                              uuid == PRIMARY_SERVICE, []))
            pos += 1
        elif uuid == CHAR_DECLARATION and services and pos + 1 < len(rows):
            srv = services[-1]
            vrow = rows[pos + 1]
            descs: list[str] = []
            srv.chars.append(DiscoveredChar(srv.srv_index, len(srv.chars) + 1, vrow.uuid_text(),
                                            int(row.value, 16), descs))
            pos += 2
            while pos < len(rows) and rows[pos].uuid_bits == 16 and _is_descriptor(rows[pos].uuid_value):
                descs.append(rows[pos].uuid_text())
                pos += 1
        else:
            pos += 1
    return services


@dataclass(frozen=True)
class DiscoveryLines:
    """What ``AT+BLEGATTSSRV?`` and ``AT+BLEGATTSCHAR?`` print (info lines, before OK)."""

    services: list[str]
    chars: list[str]


def expected_discovery_lines(rows: list[GattRow], style="c2", *, started: bool = True) -> DiscoveryLines:
    """The exact ``+BLEGATTSSRV:``/``+BLEGATTSCHAR:`` lines for ``rows`` (§7).

    ``style`` is :attr:`atfab.core.firmware.FirmwareProfile.gattschar_style` (or the profile itself):
    "c2" prints char lines without property and no desc lines; "full" prints ``0x<prop>`` and
    one desc line per descriptor. ``started`` is the service line's start field.
    """
    style = getattr(style, "gattschar_style", style)
    if style not in ("c2", "full"):
        raise InputError(f"unknown GATT char style {style!r} (c2 or full)", field="gattschar_style")
    services = discover(rows)
    srv_lines = [f"+BLEGATTSSRV:{s.srv_index},{1 if started else 0},{s.uuid},{1 if s.primary else 0}"
                 for s in services]
    char_lines: list[str] = []
    for s in services:
        for c in s.chars:
            if style == "c2":
                char_lines.append(f'+BLEGATTSCHAR:"char",{s.srv_index},{c.char_index},{c.uuid}')
                continue
            char_lines.append(f'+BLEGATTSCHAR:"char",{s.srv_index},{c.char_index},{c.uuid},0x{c.prop:02X}')
            for d, duuid in enumerate(c.descriptors, start=1):
                char_lines.append(f'+BLEGATTSCHAR:"desc",{s.srv_index},{c.char_index},{d},{duuid}')
    return DiscoveryLines(srv_lines, char_lines)


__all__ = [
    "GATTS_MAX_ROWS", "GATTS_MAX_VALUE_LEN", "COLUMNS", "DEFAULT_HEADER", "PERMISSIONS", "PROPERTIES",
    "GattRow", "parse_cfg_string", "parse_gatts_csv", "load_gatts_csv", "dump_gatts_csv", "cfg_strings",
    "rows_from_cfg_strings", "validate_rows", "DiscoveredChar", "DiscoveredService", "discover",
    "DiscoveryLines", "expected_discovery_lines", "format_uuid",
]
