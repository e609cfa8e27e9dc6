"""ESP-IDF NVS binary format: constants, CRCs, entry/page layouts, value encoding (reference §8.6).

A partition is N pages of 4096 bytes. Each page: a 32-byte header, a 32-byte entry-state bitmap
(2 bits per entry), then 126 entries of 32 bytes. An entry is
``ns(1) type(1) span(1) chunk_index(1) crc32(4) key(16) data(8)``.
"""

from __future__ import annotations

import struct
import zlib

from ...core.errors import InputError

PAGE_SIZE = 4096
HEADER_SIZE = 32
BITMAP_OFFSET = 32
BITMAP_SIZE = 32
FIRST_ENTRY_OFFSET = 64
ENTRY_SIZE = 32
ENTRY_COUNT = 126
#: Payload bytes one page can hold after a variable-length item's own header entry.
CHUNK_MAX_SIZE = ENTRY_SIZE * (ENTRY_COUNT - 1)

# Page states (header word 0). Each transition clears bits, so NOR flash can program it.
PAGE_EMPTY = 0xFFFFFFFF
PAGE_ACTIVE = 0xFFFFFFFE
PAGE_FULL = 0xFFFFFFFC
PAGE_FREEING = 0xFFFFFFF8
PAGE_CORRUPT = 0xFFFFFFF0
PAGE_INVALID = 0x00000000
PAGE_STATE_NAMES = {
    PAGE_EMPTY: "empty", PAGE_ACTIVE: "active", PAGE_FULL: "full",
    PAGE_FREEING: "freeing", PAGE_CORRUPT: "corrupt", PAGE_INVALID: "invalid",
}

#: Page header format version byte: 0xFE = v2 (multi-page blobs), 0xFF = v1.
PAGE_VERSION_2 = 0xFE
PAGE_VERSION_1 = 0xFF

# Entry states in the bitmap (2 bits per entry, entry i at bits 2i..2i+1).
ENTRY_EMPTY = 0b11
ENTRY_WRITTEN = 0b10
ENTRY_ILLEGAL = 0b01   # treated as erased, like the firmware
ENTRY_ERASED = 0b00

NS_INDEX = 0        # namespace-definition entries live in namespace 0
NS_ANY = 0xFF
NS_MAX = 254        # usable namespace indices 1..254
CHUNK_ANY = 0xFF
KEY_MAX = 15        # bytes, without the NUL
STRING_MAX = 4000   # bytes including the NUL
BLOB_VERSION_0 = 0x00   # blob chunk_start of one version, the other is 0x80 (firmware VerOffset)
BLOB_VERSION_1 = 0x80

# Item type codes.
TYPE_U8, TYPE_I8, TYPE_U16, TYPE_I16 = 0x01, 0x11, 0x02, 0x12
TYPE_U32, TYPE_I32, TYPE_U64, TYPE_I64 = 0x04, 0x14, 0x08, 0x18
TYPE_STRING = 0x21
TYPE_BLOB = 0x41        # v1 single-page blob
TYPE_BLOB_DATA = 0x42   # v2 blob chunk
TYPE_BLOB_INDEX = 0x48  # v2 blob index

#: NVS value type name -> type code of the entry that carries it (blob -> its index entry).
TYPE_CODES: dict[str, int] = {
    "u8": TYPE_U8, "i8": TYPE_I8, "u16": TYPE_U16, "i16": TYPE_I16,
    "u32": TYPE_U32, "i32": TYPE_I32, "u64": TYPE_U64, "i64": TYPE_I64,
    "string": TYPE_STRING, "blob": TYPE_BLOB_INDEX,
}
PRIMITIVE_CODES: dict[int, str] = {code: name for name, code in TYPE_CODES.items() if code & 0xF0 in (0x00, 0x10)}
#: struct format and inclusive range of each integer type.
PRIMITIVES: dict[str, tuple[str, int, int]] = {
    "u8": ("<B", 0, 0xFF), "i8": ("<b", -0x80, 0x7F),
    "u16": ("<H", 0, 0xFFFF), "i16": ("<h", -0x8000, 0x7FFF),
    "u32": ("<I", 0, 0xFFFFFFFF), "i32": ("<i", -0x80000000, 0x7FFFFFFF),
    "u64": ("<Q", 0, 0xFFFFFFFFFFFFFFFF), "i64": ("<q", -0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
}
VALUE_TYPES = tuple(TYPE_CODES)

#: ``AT+SYSMFG`` type numbers (§5); 64-bit types have none.
SYSMFG_TYPES: dict[str, int] = {"u8": 1, "i8": 2, "u16": 3, "i16": 4, "u32": 5, "i32": 6, "string": 7, "blob": 8}
SYSMFG_TYPE_NAMES: dict[int, str] = {number: name for name, number in SYSMFG_TYPES.items()}

_ENTRY = struct.Struct("<BBBBI16s8s")
_HEADER = struct.Struct("<IIB19sI")


class NvsFull(InputError):
    """The NVS region has no room left for a write (even after garbage collection)."""


def crc32(data: bytes) -> int:
    """CRC32 as the ESP ROM ``crc32_le(0xFFFFFFFF, ...)`` computes it for NVS."""
    return zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


def entry_crc(entry: bytes) -> int:
    """CRC of an entry: bytes 0..3 and 8..31 (the CRC field itself excluded)."""
    return crc32(entry[0:4] + entry[8:32])


def header_crc(header: bytes) -> int:
    """CRC of a page header: bytes 4..27."""
    return crc32(header[4:28])


def pack_entry(ns: int, code: int, span: int, chunk: int, key: bytes, data: bytes) -> bytes:
    """One 32-byte entry with its CRC; ``key`` without NUL (padded), ``data`` 8 bytes."""
    raw = _ENTRY.pack(ns, code, span, chunk, 0, key, data)
    return raw[0:4] + struct.pack("<I", crc32(raw[0:4] + raw[8:32])) + raw[8:32]


def unpack_entry(entry: bytes) -> tuple[int, int, int, int, int, bytes, bytes]:
    """``(ns, type, span, chunk_index, crc32, key_field, data)`` of a 32-byte entry."""
    return _ENTRY.unpack(entry)


def pack_page_header(state: int, seq: int, version: int = PAGE_VERSION_2) -> bytes:
    """A 32-byte page header with its CRC."""
    raw = _HEADER.pack(state, seq, version, b"\xff" * 19, 0)
    return raw[:28] + struct.pack("<I", header_crc(raw))


def varlen_data(size: int, data_crc: int) -> bytes:
    """The 8 data bytes of a string / blob chunk header: size u16, 0xFFFF, CRC32 of the payload."""
    return struct.pack("<HHI", size, 0xFFFF, data_crc)


def blob_index_data(size: int, chunk_count: int, chunk_start: int) -> bytes:
    """The 8 data bytes of a blob index entry."""
    return struct.pack("<IBBH", size, chunk_count, chunk_start, 0xFFFF)


def pack_primitive(type_name: str, value: int) -> bytes:
    """Little-endian value padded with 0xFF to 8 bytes."""
    fmt, _, _ = PRIMITIVES[type_name]
    raw = struct.pack(fmt, value)
    return raw + b"\xff" * (8 - len(raw))


def unpack_primitive(type_name: str, data: bytes) -> int:
    """Value of a primitive entry's 8 data bytes."""
    fmt, _, _ = PRIMITIVES[type_name]
    return struct.unpack_from(fmt, data)[0]


def decode_text(raw: bytes) -> str:
    """Bytes of a key or string as ``str``; invalid UTF-8 kept losslessly (surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


def encode_text(text: str) -> bytes:
    """Inverse of :func:`decode_text`."""
    return text.encode("utf-8", "surrogateescape")


def encode_name(name: str, *, what: str = "key", file: str | None = None) -> bytes:
    """A key or namespace name as bytes; :class:`InputError` if empty, > 15 bytes or containing NUL."""
    if isinstance(name, str) and name.isascii() and 0 < len(name) <= KEY_MAX and "\x00" not in name:
        return name.encode()   # fast path
    raw = encode_text(name) if isinstance(name, str) else b""
    if not isinstance(name, str) or not raw or b"\x00" in raw or len(raw) > KEY_MAX:
        raise InputError(f"{what} name {name!r} must be 1..{KEY_MAX} bytes without NUL", file=file, field=str(name))
    return raw


def check_value(type_name: str, value: object, *, field: str, file: str | None = None) -> int | bytes:
    """Validate ``value`` for ``type_name``: the int for integer types, the stored bytes
    (with NUL for strings) for string/blob. :class:`InputError` naming ``field`` otherwise."""
    if type_name in PRIMITIVES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{type_name} value must be an integer, got {value!r}", file=file, field=field)
        _, low, high = PRIMITIVES[type_name]
        if not low <= value <= high:
            raise InputError(f"{value} does not fit {type_name} ({low}..{high})", file=file, field=field)
        return value
    if type_name == "string":
        if isinstance(value, str):
            raw = encode_text(value)
        elif isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
        else:
            raise InputError(f"string value must be text, got {type(value).__name__}", file=file, field=field)
        if b"\x00" in raw:
            raise InputError("string value contains a NUL byte", file=file, field=field)
        if len(raw) + 1 > STRING_MAX:
            raise InputError(f"string of {len(raw)} bytes exceeds the NVS limit of {STRING_MAX - 1}",
                             file=file, field=field)
        return raw + b"\x00"
    if type_name == "blob":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InputError(f"blob value must be bytes, got {type(value).__name__}", file=file, field=field)
        return bytes(value)
    raise InputError(f"unknown NVS type {type_name!r} (known: {', '.join(VALUE_TYPES)})", file=file, field=field)


__all__ = [name for name in dir() if name.isupper() and not name.startswith("_")] + [
    "NvsFull", "crc32", "entry_crc", "header_crc", "pack_entry", "unpack_entry", "pack_page_header",
    "varlen_data", "blob_index_data", "pack_primitive", "unpack_primitive", "decode_text", "encode_text",
    "encode_name", "check_value",
]
