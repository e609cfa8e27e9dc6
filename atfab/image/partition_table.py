"""ESP-IDF partition tables: CSV ⇄ model ⇄ binary (reference §11.1), and their validation.

The binary form is a run of 32-byte entries ``<2sBBLL16sL`` (magic ``AA 50``), an optional MD5
entry (``EB EB`` + 14 × ``FF`` + MD5 of the preceding bytes), an all-``FF`` end entry, padded with
``FF`` to 0xC00 bytes. esp-at builds ``partition-table.bin`` without the MD5 entry and
``at_customize.bin`` with it. The CSV grammar follows ESP-IDF's ``gen_esp32part.py``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..core.inputs import CSV_LIMIT, read_text

ENTRY_SIZE = 32
TABLE_SIZE = 0xC00  #: bytes of a table binary (the rest of its 4 KB sector stays 0xFF)
SECTOR = 0x1000
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
_ENTRY = struct.Struct("<2sBBLL16sL")

APP, DATA = 0x00, 0x01
AT_CUSTOMIZE_TYPE = 0x40  #: type of the ``at_customize`` partition in esp-at primary tables
NVS_SUBTYPE = 0x02

TYPES: dict[str, int] = {"app": APP, "data": DATA, "bootloader": 0x02, "partition_table": 0x03}
SUBTYPES: dict[int, dict[str, int]] = {
    APP: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    DATA: {
        "ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
        "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83,
    },
    0x02: {"primary": 0x00, "ota": 0x01, "recovery": 0x02},
    0x03: {"primary": 0x00, "ota": 0x01},
}
FLAGS: dict[str, int] = {"encrypted": 0x01, "readonly": 0x02}
#: Offset alignment per type (gen_esp32part: app 64 KB, everything else 4 KB).
ALIGNMENT: dict[int, int] = {APP: 0x10000}
DEFAULT_ALIGNMENT = 0x1000
NAME_MAX = 16


@dataclass(frozen=True)
class Partition:
    """One partition table entry; ``line`` is the CSV line it came from (for error messages)."""

    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0
    line: int | None = field(default=None, compare=False)

    @property
    def end(self) -> int:
        """First byte after the partition."""
        return self.offset + self.size

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def subtype_name(self) -> str:
        return subtype_name(self.type, self.subtype)

    def contains(self, other: "Partition") -> bool:
        return self.offset <= other.offset and other.end <= self.end


@dataclass
class PartitionTable:
    """Entries in table order. ``has_md5`` records whether a decoded binary carried an MD5 entry."""

    entries: list[Partition]
    has_md5: bool = field(default=False, compare=False)

    def find(self, name: str) -> Partition | None:
        """The entry named ``name``, or None."""
        return next((p for p in self.entries if p.name == name), None)

    def find_type(self, type: int, subtype: int | None = None) -> list[Partition]:
        """Entries of a type (and subtype), in table order."""
        return [p for p in self.entries if p.type == type and (subtype is None or p.subtype == subtype)]

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def type_name(value: int) -> str:
    """CSV spelling of a type number (``app``, ``data`` or hex)."""
    return next((k for k, v in TYPES.items() if v == value), f"0x{value:02x}")


def subtype_name(type: int, value: int) -> str:
    """CSV spelling of a subtype number for its type (``nvs``, ``ota_0`` or hex)."""
    return next((k for k, v in SUBTYPES.get(type, {}).items() if v == value), f"0x{value:02x}")


# ---------------------------------------------------------------------------------------- CSV


def parse_int(text: str, *, what: str = "value", source: str = "<csv>", line: int | None = None,
              field_name: str | None = None) -> int:
    """Parse ``0x1000``, ``4096``, ``4K`` or ``1M`` (gen_esp32part number syntax)."""
    t = text.strip()
    mult = 1
    if t[-1:] in ("k", "K"):
        mult, t = 1024, t[:-1]
    elif t[-1:] in ("m", "M"):
        mult, t = 1024 * 1024, t[:-1]
    try:
        value = int(t, 0)
    except ValueError:
        try:
            value = int(t, 10)  # leading zeros, e.g. "010"
        except ValueError:
            raise InputError(f"{what} {text.strip()!r} is not a number", file=source, line=line,
                             field=field_name or what) from None
    if value < 0:
        raise InputError(f"{what} {text.strip()!r} is negative", file=source, line=line,
                         field=field_name or what)
    return value * mult


def _parse_type(text: str, source: str, line: int) -> int:
    t = text.strip()
    if t in TYPES:
        return TYPES[t]
    if not t:
        raise InputError("partition type is empty", file=source, line=line, field="type")
    value = parse_int(t, what="type", source=source, line=line)
    if value > 0xFE:
        raise InputError(f"type {t!r} is out of range 0..0xfe", file=source, line=line, field="type")
    return value


def _parse_subtype(text: str, type: int, source: str, line: int) -> int:
    t = text.strip()
    names = SUBTYPES.get(type, {})
    if t in names:
        return names[t]
    if not t:
        if type == APP:
            raise InputError("app partition needs a subtype", file=source, line=line, field="subtype")
        return SUBTYPES[DATA]["undefined"] if type == DATA else 0
    try:
        value = parse_int(t, what="subtype", source=source, line=line)
    except InputError:
        known = ", ".join(names) or "a number"
        raise InputError(f"unknown subtype {t!r} for type {type_name(type)} (known: {known})",
                         file=source, line=line, field="subtype") from None
    if value > 0xFF:
        raise InputError(f"subtype {t!r} is out of range 0..0xff", file=source, line=line, field="subtype")
    return value


def _parse_flags(text: str, source: str, line: int) -> int:
    flags = 0
    for word in (w.strip() for w in text.split(":")):
        if not word:
            continue
        if word not in FLAGS:
            raise InputError(f"unknown flag {word!r} (known: {', '.join(FLAGS)})",
                             file=source, line=line, field="flags")
        flags |= FLAGS[word]
    return flags


def parse_csv(text: str, *, source: str = "<csv>", table_offset: int = 0x8000) -> PartitionTable:
    """Parse a partition CSV (``Name, Type, SubType, Offset, Size[, Flags]``).

    Comments (``#``) and blank lines are skipped; an empty offset means "next free offset, aligned
    for the type", counting from the sector after the table at ``table_offset``. Only syntax is
    checked here; call :func:`validate` for layout rules. Errors name ``source:line`` and the field.
    """
    entries: list[Partition] = []
    next_free = table_offset + SECTOR
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields_ = [f.strip() for f in stripped.split(",")]
        if len(fields_) < 5:
            raise InputError(f"expected at least 5 fields (Name, Type, SubType, Offset, Size), got {len(fields_)}",
                             file=source, line=lineno, field="line")
        if len(fields_) > 6 and any(fields_[6:]):
            raise InputError("too many fields (at most Name, Type, SubType, Offset, Size, Flags)",
                             file=source, line=lineno, field="line")
        name, type_s, subtype_s, offset_s, size_s = fields_[:5]
        flags_s = fields_[5] if len(fields_) > 5 else ""
        if not name:
            raise InputError("partition name is empty", file=source, line=lineno, field="name")
        ptype = _parse_type(type_s, source, lineno)
        subtype = _parse_subtype(subtype_s, ptype, source, lineno)
        align = ALIGNMENT.get(ptype, DEFAULT_ALIGNMENT)
        if offset_s:
            offset = parse_int(offset_s, what="offset", source=source, line=lineno)
        else:
            offset = (next_free + align - 1) // align * align
        if not size_s:
            raise InputError("partition size is empty", file=source, line=lineno, field="size")
        size = parse_int(size_s, what="size", source=source, line=lineno)
        if size == 0:
            raise InputError("partition size is 0", file=source, line=lineno, field="size")
        flags = _parse_flags(flags_s, source, lineno)
        entries.append(Partition(name, ptype, subtype, offset, size, flags, line=lineno))
        next_free = offset + size
    return PartitionTable(entries)


def load_csv(path: str | Path, *, table_offset: int = 0x8000) -> PartitionTable:
    """Read and parse a partition CSV file (errors name the path)."""
    path = Path(path)
    text = read_text(path, "partition table", limit=CSV_LIMIT)
    return parse_csv(text, source=str(path), table_offset=table_offset)


def to_csv(table: PartitionTable) -> str:
    """CSV text that :func:`parse_csv` turns back into the same table."""
    lines = ["# Name, Type, SubType, Offset, Size, Flags"]
    for p in table.entries:
        flags = ":".join(k for k, v in FLAGS.items() if p.flags & v)
        row = [p.name, p.type_name, p.subtype_name, f"0x{p.offset:x}", f"0x{p.size:x}"] + ([flags] if flags else [])
        lines.append(", ".join(row))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- validation


def _err(message: str, p: Partition, field_name: str, source: str) -> InputError:
    return InputError(f"partition {p.name!r}: {message}", file=source or None, line=p.line, field=field_name)


def validate(table: PartitionTable, *, flash_size: int | None = None, within: Partition | None = None,
             source: str = "", table_offset: int | None = None) -> None:
    """Check layout rules; raise :class:`InputError` naming ``source:line`` and the field.

    Rules: names 1..16 bytes and unique, offsets aligned (app 64 KB, others 4 KB), no overlaps,
    entries inside ``flash_size``; with ``table_offset`` nothing before the end of the table's
    sector; with ``within`` (the primary table's at_customize entry) every entry inside it and
    after its first sector (where at_customize.bin lives).
    """
    seen: dict[str, Partition] = {}
    for p in table.entries:
        encoded = p.name.encode("utf-8")
        if not encoded:
            raise _err("name is empty", p, "name", source)
        if len(encoded) > NAME_MAX:
            raise _err(f"name is {len(encoded)} bytes long (at most {NAME_MAX})", p, "name", source)
        if p.name in seen:
            other = seen[p.name]
            where = f" (line {other.line})" if other.line else ""
            raise _err(f"duplicate name, first defined{where}", p, "name", source)
        seen[p.name] = p
        if not 0 <= p.type <= 0xFE:
            raise _err(f"type {p.type} out of range", p, "type", source)
        if not 0 <= p.subtype <= 0xFF:
            raise _err(f"subtype {p.subtype} out of range", p, "subtype", source)
        if p.size <= 0:
            raise _err("size must be positive", p, "size", source)
        align = ALIGNMENT.get(p.type, DEFAULT_ALIGNMENT)
        if p.offset % align:
            raise _err(f"offset 0x{p.offset:x} is not aligned to 0x{align:x}", p, "offset", source)
        if flash_size is not None and p.end > flash_size:
            raise _err(f"ends at 0x{p.end:x}, beyond the flash size 0x{flash_size:x}", p, "size", source)
        if table_offset is not None and p.offset < table_offset + SECTOR:
            raise _err(f"offset 0x{p.offset:x} is below the end of the partition table sector "
                       f"(0x{table_offset + SECTOR:x})", p, "offset", source)
        if within is not None:
            lo, hi = within.offset + SECTOR, within.end
            if not (lo <= p.offset and p.end <= hi):
                raise _err(f"0x{p.offset:x}..0x{p.end:x} is outside the {within.name} region "
                           f"0x{lo:x}..0x{hi:x}", p, "offset", source)
    ordered = sorted(table.entries, key=lambda e: (e.offset, e.line or 0))
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.offset < prev.end:
            later = cur if (cur.line or 0) >= (prev.line or 0) else prev
            other = prev if later is cur else cur
            raise _err(f"0x{later.offset:x}..0x{later.end:x} overlaps {other.name!r} "
                       f"0x{other.offset:x}..0x{other.end:x}", later, "offset", source)
    if len(table.entries) * ENTRY_SIZE + ENTRY_SIZE >= TABLE_SIZE:
        raise InputError(f"{len(table.entries)} partitions do not fit in a table", file=source or None,
                         field="entries")


# ------------------------------------------------------------------------------------- binary


def encode(table: PartitionTable, *, md5: bool = True) -> bytes:
    """The table binary: entries, optional MD5 entry, 0xFF padding to exactly 0xC00 bytes."""
    out = bytearray()
    for p in table.entries:
        name = p.name.encode("utf-8")
        if len(name) > NAME_MAX:
            raise _err(f"name is {len(name)} bytes long (at most {NAME_MAX})", p, "name", "")
        out += _ENTRY.pack(MAGIC, p.type, p.subtype, p.offset, p.size, name, p.flags)
    if md5:
        out += MD5_MAGIC + hashlib.md5(out).digest()
    if len(out) >= TABLE_SIZE:
        raise InputError(f"{len(table.entries)} partitions do not fit in a table", field="entries")
    return bytes(out) + b"\xff" * (TABLE_SIZE - len(out))


def decode(data: bytes, *, source: str = "<bin>") -> PartitionTable:
    """Parse a table binary up to its all-0xFF end entry, checking an MD5 entry when present.

    Accepts trailing bytes (a whole sector or flash tail). Raises :class:`InputError` on a wrong
    magic, short data, a missing end entry or an MD5 mismatch.
    """
    data = bytes(data)
    if len(data) < ENTRY_SIZE:
        raise InputError(f"partition table is {len(data)} bytes, shorter than one entry",
                         file=source, field="size")
    entries: list[Partition] = []
    has_md5 = False
    limit = min(len(data), TABLE_SIZE)
    for pos in range(0, limit - ENTRY_SIZE + 1, ENTRY_SIZE):
        raw = data[pos:pos + ENTRY_SIZE]
        if raw == b"\xff" * ENTRY_SIZE:
            return PartitionTable(entries, has_md5=has_md5)
        if raw[:16] == MD5_MAGIC:
            if hashlib.md5(data[:pos]).digest() != raw[16:]:
                raise InputError(f"MD5 entry at 0x{pos:x} does not match the table", file=source, field="md5")
            has_md5 = True
            continue
        magic, ptype, subtype, offset, size, name_b, flags = _ENTRY.unpack(raw)
        if magic != MAGIC:
            raise InputError(f"entry at 0x{pos:x} has magic {magic.hex()} (expected aa50): not a partition table",
                             file=source, field="magic")
        try:
            name = name_b.rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"entry at 0x{pos:x} has a name that is not UTF-8", file=source, field="name") from None
        entries.append(Partition(name, ptype, subtype, offset, size, flags))
    if len(data) < TABLE_SIZE:
        raise InputError(f"partition table ends after {len(data)} bytes without an end entry",
                         file=source, field="size")
    raise InputError("partition table has no end entry within 0xC00 bytes", file=source, field="end")


def looks_like_table(data: bytes) -> bool:
    """Cheap check: the data starts with a partition entry magic."""
    return len(data) >= ENTRY_SIZE and data[:2] == MAGIC


__all__ = [
    "Partition", "PartitionTable", "parse_csv", "load_csv", "to_csv", "validate", "encode", "decode",
    "parse_int", "type_name", "subtype_name", "looks_like_table", "TYPES", "SUBTYPES", "FLAGS",
    "APP", "DATA", "AT_CUSTOMIZE_TYPE", "NVS_SUBTYPE", "TABLE_SIZE", "SECTOR",
]
