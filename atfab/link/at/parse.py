"""Pure parsers of AT information lines into typed data, and AT string quoting (no I/O).

Every parser takes the text of an information line (or lines) and returns data or raises
:class:`~atfab.link.at.errors.AtResponseError`; nothing else escapes (fuzzed in tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ...core.errors import InputError
from .errors import AtResponseError

#: AT+SYSMFG value type numbers (§5) and their names (same names as atfab.image.nvs).
SYSMFG_TYPES: dict[str, int] = {"u8": 1, "i8": 2, "u16": 3, "i16": 4, "u32": 5, "i32": 6, "string": 7, "blob": 8}
SYSMFG_TYPE_NAMES: dict[int, str] = {v: k for k, v in SYSMFG_TYPES.items()}
#: Byte sizes of the numeric SYSMFG types (length field when firmware.sysmfg_numeric_length is "type_size").
SYSMFG_SIZES: dict[int, int] = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4}
#: Value ranges of the numeric SYSMFG types.
SYSMFG_RANGES: dict[int, tuple[int, int]] = {
    1: (0, 0xFF), 2: (-0x80, 0x7F), 3: (0, 0xFFFF), 4: (-0x8000, 0x7FFF),
    5: (0, 0xFFFFFFFF), 6: (-0x80000000, 0x7FFFFFFF),
}


# -- command text ------------------------------------------------------------------------------
def quote(value: str, *, field_name: str = "string") -> str:
    """``value`` as a quoted AT string parameter, escaping ``\\``, ``"`` and ``,`` (§1.1)."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise InputError("CR, LF and NUL cannot be sent inside an AT string", field=field_name)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace(",", "\\,")
    return f'"{escaped}"'


def build_command(name: str, *params: int | str | None) -> str:
    """``AT+NAME=p1,p2`` with ints in decimal, strs quoted, None as an empty field."""
    parts = []
    for p in params:
        if p is None:
            parts.append("")
        elif isinstance(p, bool):
            parts.append(str(int(p)))
        elif isinstance(p, int):
            parts.append(str(p))
        else:
            parts.append(quote(p))
    while parts and parts[-1] == "":
        parts.pop()
    return f"{name}={','.join(parts)}" if parts else name


# -- fields --------------------------------------------------------------------------------------
class Field(NamedTuple):
    text: str
    quoted: bool


def split_fields(text: str, *, command: str = "") -> list[Field]:
    """Split ``a,"b\\"c",3`` into fields; quoted fields are unescaped. Unterminated quote → error."""
    out: list[Field] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise AtResponseError(command, f"unterminated string in {text!r}")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                chars.append(c)
                i += 1
            out.append(Field("".join(chars), True))
            if i < n and text[i] != ",":
                raise AtResponseError(command, f"text after a closing quote in {text!r}")
        else:
            j = text.find(",", i)
            j = n if j < 0 else j
            out.append(Field(text[i:j].strip(), False))
            i = j
        if i >= n:
            return out
        i += 1  # skip the comma


def payload(line: str, prefix: str, *, command: str = "") -> str:
    """The text after ``prefix`` (e.g. ``+UART_CUR:``) of an information line."""
    if not line.startswith(prefix):
        raise AtResponseError(command, f"expected a {prefix} line, got {line[:60]!r}")
    return line[len(prefix):].strip()


def to_int(f: Field | str, *, command: str = "", what: str = "number") -> int:
    """A decimal (or ``0x`` hex) integer field."""
    text = f.text if isinstance(f, Field) else f
    text = text.strip()
    try:
        if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]{1,16}", text):
            return int(text, 16)
        if re.fullmatch(r"[+-]?\d{1,20}", text):
            return int(text, 10)
    except ValueError:  # pragma: no cover - regex guarantees the format
        pass
    raise AtResponseError(command, f"{what} is not an integer: {text[:40]!r}")


def _fields(line: str, prefix: str, count: int | tuple[int, ...], command: str) -> list[Field]:
    fs = split_fields(payload(line, prefix, command=command), command=command)
    counts = (count,) if isinstance(count, int) else count
    if len(fs) not in counts:
        raise AtResponseError(command, f"{prefix} line has {len(fs)} fields, expected {count}: {line[:80]!r}")
    return fs


# -- AT+GMR ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gmr:
    """``AT+GMR`` (§2.4). ``at_version`` "3.3.0.0", ``compile_time`` "May  8 2024 08:50:59",
    ``bin_version`` "v3.3.0.0", ``module_name`` "ESP32C2-4MB"; missing parts are None."""

    at_version: str | None
    sdk_version: str | None
    compile_time: str | None
    bin_version: str | None
    module_name: str | None
    lines: list[str] = field(default_factory=list)
    at_core_hash: str | None = None
    chip: str | None = None
    at_build_time: str | None = None
    compile_commit: str | None = None


def _split_paren(text: str) -> tuple[str, str | None]:
    """``v3.3.0.0(ESP32C2-4MB)`` → ("v3.3.0.0", "ESP32C2-4MB"); no parentheses → (text, None)."""
    text = text.strip()
    if text.endswith(")") and "(" in text:
        i = text.index("(")
        return text[:i].strip(), text[i + 1:-1].strip()
    return text, None


#: A C ``__DATE__ __TIME__`` stamp (``Jan 24 2022 08:56:02``, ``May  8 2024 …``).
_BUILD_STAMP = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d{4} \d\d:\d\d:\d\d$")


def parse_gmr(lines: list[str], *, command: str = "AT+GMR") -> Gmr:
    """Parse the lines of ``AT+GMR`` of any generation (G1 three lines, G2/G3 four)."""
    at_version = sdk = compile_time = bin_version = module = None
    core_hash = chip = build_time = commit = None
    for line in lines:
        s = line.strip()
        if s.startswith("AT version:"):
            at_version, detail = _split_paren(s[len("AT version:"):])
            if detail is not None and _BUILD_STAMP.match(detail):
                build_time = detail          # NONOS AT 1.x: "1.7.6.0(Jan 24 2022 08:56:02)", no hash
            elif detail is not None:
                parts = [p.strip() for p in detail.split(" - ")]
                core_hash = parts[0] or None
                if len(parts) >= 3:
                    chip, build_time = parts[1], " - ".join(parts[2:])
                elif len(parts) == 2:
                    build_time = parts[1]
        elif s.startswith("SDK version:"):
            sdk = s[len("SDK version:"):].strip()
        elif s.startswith("compile time"):
            m = re.match(r"compile time(?:\(([^)]*)\))?:(.*)$", s)
            if not m:
                raise AtResponseError(command, f"bad compile time line {s[:60]!r}", lines)
            commit, compile_time = m.group(1), m.group(2).strip()
        elif s.startswith("Bin version:"):
            bin_version, module = _split_paren(s[len("Bin version:"):])
        elif s.startswith("Bin version("):      # NONOS AT 1.x ESP_AT_FW_VERSION: "Bin version(Wroom 02):1.7.6"
            m = re.match(r"Bin version\(([^)]*)\):(.*)$", s)
            if m:
                module, bin_version = m.group(1).strip(), m.group(2).strip()
    if at_version is None:
        raise AtResponseError(command, "no 'AT version:' line", lines)
    return Gmr(at_version, sdk, compile_time, bin_version, module, list(lines), core_hash, chip,
               build_time, commit)


# -- AT+CMD? --------------------------------------------------------------------------------------
class CmdInfo(NamedTuple):
    index: int
    name: str
    test: bool
    query: bool
    set: bool
    execute: bool


def parse_cmd_line(line: str, *, command: str = "AT+CMD?") -> CmdInfo:
    """``+CMD:5,"AT+CMD",0,1,0,0`` (name quoted or not, §2.5)."""
    fs = _fields(line, "+CMD:", 6, command)
    flags = [to_int(f, command=command, what="flag") for f in fs[2:]]
    if any(v not in (0, 1) for v in flags):
        raise AtResponseError(command, f"+CMD flags must be 0/1: {line[:80]!r}")
    return CmdInfo(to_int(fs[0], command=command), fs[1].text, *(bool(v) for v in flags))


# -- UART -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UartConfig:
    """``<baud>,<databits>,<stopbits>,<parity>,<flow>`` (§3.1)."""

    baud: int
    databits: int = 8
    stopbits: int = 1
    parity: int = 0
    flow: int = 0


def parse_uart(line: str, prefix: str = "+UART_CUR:", *, command: str = "") -> UartConfig:
    """``+UART_CUR:115273,8,1,0,1`` (or ``+UART_DEF:`` / ``+UART:``)."""
    fs = _fields(line, prefix, 5, command or "AT" + prefix[:-1] + "?")
    return UartConfig(*(to_int(f, command=command, what="UART field") for f in fs))


# -- RF -----------------------------------------------------------------------------------------------
def parse_rfpower(line: str, *, fields: int | None = None, command: str = "AT+RFPOWER?") -> list[int]:
    """``+RFPOWER:78`` or ``+RFPOWER:78,9,9,9`` → list of ints (§6.1).

    ``fields``: the count this firmware prints (``firmware.rfpower_fields``: 4 where a BLE or BluFi
    set registers the BLE power getter, from v4.1.0.0 on; else 1); another count is an error."""
    fs = _fields(line, "+RFPOWER:", (1, 2, 3, 4) if fields is None else (fields,), command)
    return [to_int(f, command=command, what="RF power") for f in fs]


@dataclass(frozen=True)
class Country:
    """``+CWCOUNTRY:<policy>,"<cc>",<start>,<count>`` (§6.2); C5 adds a 5 GHz bitmap."""

    policy: int
    code: str
    start_channel: int
    channel_count: int
    extra: tuple[int, ...] = ()


def parse_country(line: str, *, command: str = "AT+CWCOUNTRY?") -> Country:
    fs = _fields(line, "+CWCOUNTRY:", (4, 5), command)
    nums = [to_int(f, command=command) for i, f in enumerate(fs) if i != 1]
    return Country(nums[0], fs[1].text, nums[1], nums[2], tuple(nums[3:]))


def parse_mac_text(text: str, *, command: str = "") -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (quoted or not) → 6 bytes."""
    t = text.strip().strip('"').strip()
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", t):
        raise AtResponseError(command, f"not a MAC address: {text[:40]!r}")
    return bytes(int(p, 16) for p in t.split(":"))


def parse_mac(line: str, prefix: str, *, command: str = "") -> bytes:
    """``+CIPSTAMAC:"5c:cf:7f:a5:60:19"`` / ``+BLEADDR:…`` → 6 bytes."""
    return parse_mac_text(payload(line, prefix, command=command), command=command)



# -- SYSFLASH -------------------------------------------------------------------------------------------
class SysflashEntry(NamedTuple):
    name: str
    type: int
    subtype: int
    offset: int
    size: int


def parse_sysflash_entry(line: str, *, command: str = "AT+SYSFLASH?") -> SysflashEntry:
    """``+SYSFLASH:"mfg_nvs",1,2,0x1f000,0x1f000`` (§4.1)."""
    fs = _fields(line, "+SYSFLASH:", 5, command)
    return SysflashEntry(fs[0].text, *(to_int(f, command=command) for f in fs[1:]))


# -- SYSMFG -----------------------------------------------------------------------------------------------
def type_number(type_: str | int, *, field_name: str = "type") -> int:
    """``"blob"``/``8`` → 8; unknown → :class:`InputError`."""
    if isinstance(type_, int) and not isinstance(type_, bool):
        if type_ in SYSMFG_TYPE_NAMES:
            return type_
    elif isinstance(type_, str):
        key = type_.strip().lower()
        if key in SYSMFG_TYPES:
            return SYSMFG_TYPES[key]
        if key.isdigit() and int(key) in SYSMFG_TYPE_NAMES:
            return int(key)
    raise InputError(f"unknown SYSMFG value type {type_!r} (use {', '.join(SYSMFG_TYPES)})", field=field_name)


def type_name(number: int) -> str:
    """8 → ``"blob"``; an unknown number → its decimal text."""
    return SYSMFG_TYPE_NAMES.get(number, str(number))


class SysmfgKey(NamedTuple):
    key: str
    type: str


def parse_sysmfg_namespace(line: str, *, command: str = "AT+SYSMFG?") -> str:
    """``+SYSMFG:"factory_param"`` → namespace."""
    fs = _fields(line, "+SYSMFG:", (1,), command)
    return fs[0].text


def parse_sysmfg_key(line: str, *, command: str = "") -> tuple[str, SysmfgKey]:
    """``+SYSMFG:"ns","key",<type>`` → (ns, SysmfgKey(key, type name))."""
    fs = _fields(line, "+SYSMFG:", 3, command)
    return fs[0].text, SysmfgKey(fs[1].text, type_name(to_int(fs[2], command=command, what="type")))


def parse_sysmfg_numeric(line: str, *, numeric_length: str = "decimal_text", command: str = "") -> tuple[str, str, int, int]:
    """``+SYSMFG:"ns","key",<type 1..6>,<len>,<value>`` → (ns, key, type, value), range-checked."""
    fs = _fields(line, "+SYSMFG:", 5, command)
    t = to_int(fs[2], command=command, what="type")
    if t not in SYSMFG_RANGES:
        raise AtResponseError(command, f"type {t} is not numeric: {line[:80]!r}")
    length = to_int(fs[3], command=command, what="length")
    value = to_int(fs[4], command=command, what="value")
    if numeric_length == "decimal_text" and length != len(fs[4].text):
        raise AtResponseError(command, f"length {length} does not match value {fs[4].text!r}")
    if numeric_length == "type_size" and length != SYSMFG_SIZES[t]:
        raise AtResponseError(command, f"length {length} is not the size of {type_name(t)}")
    lo, hi = SYSMFG_RANGES[t]
    if not lo <= value <= hi:
        raise AtResponseError(command, f"value {value} out of range for {type_name(t)}")
    return fs[0].text, fs[1].text, t, value


# -- BLE ------------------------------------------------------------------------------------------------------
class GattsService(NamedTuple):
    srv_index: int
    start: int
    uuid: str
    primary: bool


def parse_gatts_service(line: str, *, command: str = "AT+BLEGATTSSRV?") -> GattsService:
    """``+BLEGATTSSRV:1,1,0xA002,1`` (§7)."""
    fs = _fields(line, "+BLEGATTSSRV:", 4, command)
    return GattsService(to_int(fs[0], command=command), to_int(fs[1], command=command), fs[2].text,
                        to_int(fs[3], command=command) == 1)


@dataclass(frozen=True)
class GattsChar:
    """One ``+BLEGATTSCHAR:`` line: kind "char" (uuid, prop or None on C2) or "desc"."""

    kind: str
    srv_index: int
    char_index: int
    uuid: str | None
    prop: int | None = None
    desc_index: int | None = None


def parse_gatts_char(line: str, *, command: str = "AT+BLEGATTSCHAR?") -> GattsChar:
    """Both styles of §7: ``"char",1,1,0xC300[,0x02]`` and ``"desc",1,1,1[,0x2901]``."""
    fs = _fields(line, "+BLEGATTSCHAR:", (3, 4, 5), command)
    kind = fs[0].text
    srv, ch = to_int(fs[1], command=command), to_int(fs[2], command=command)
    if kind == "char":
        if len(fs) < 4:
            raise AtResponseError(command, f"char line without UUID: {line[:80]!r}")
        prop = to_int(fs[4], command=command, what="property") if len(fs) == 5 else None
        return GattsChar("char", srv, ch, fs[3].text, prop)
    if kind == "desc":
        if len(fs) < 4:
            raise AtResponseError(command, f"desc line without index: {line[:80]!r}")
        uuid = fs[4].text if len(fs) == 5 else None
        return GattsChar("desc", srv, ch, uuid, None, to_int(fs[3], command=command))
    raise AtResponseError(command, f"unknown BLEGATTSCHAR kind {kind!r}")


def parse_single_int(line: str, prefix: str, *, command: str = "") -> int:
    """``+SYSLOG:1`` style lines."""
    fs = _fields(line, prefix, 1, command)
    return to_int(fs[0], command=command)


__all__ = [
    "SYSMFG_TYPES", "SYSMFG_TYPE_NAMES", "SYSMFG_RANGES", "quote", "build_command", "Field", "split_fields",
    "payload", "to_int", "Gmr", "parse_gmr", "CmdInfo", "parse_cmd_line", "UartConfig", "parse_uart",
    "parse_rfpower", "Country", "parse_country", "parse_mac_text", "parse_mac",
    "SysflashEntry", "parse_sysflash_entry", "type_number", "type_name", "SysmfgKey",
    "parse_sysmfg_namespace", "parse_sysmfg_key", "parse_sysmfg_numeric", "GattsService",
    "parse_gatts_service", "GattsChar", "parse_gatts_char", "parse_single_int",
]
