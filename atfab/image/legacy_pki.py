"""The PKI partition image of ESP32 AT v1.x / ESP-AT v2.x-v3.0.0.0 (G1/G2, reference §10.2).

esp-at's ``tools/AtPKI.py generate_bin`` (identical bytes at v1.0.0.0 … v3.0.0.0) writes, little
endian::

    u16 magic 0xF1F1 | u16 item count | u32 total length of the items (file size - 8)
    item: u8 type (1 CA, 2 certificate, 3 key) | u8 id | u16 content length | content | 0xFF to 4 bytes

The id counts the items of one type from 0, in the order given; one esp-at partition holds the
files of one folder, all of one type (``client_cert``: certificates, ``client_key``: keys,
``client_ca``: CAs). No checksum; nothing after the items (the partition tail keeps what the
flash held, 0xFF after an erase). esp-at's own parser (``parse_bin``) never worked, so
:func:`decode_pki` is written from the layout and refuses what the generator cannot have made.

Which type a build writes is a release fact (:attr:`~atfab.core.firmware.FirmwareProfile.pki_item_types`):
"by_partition" (the folder's type), or "cert" - the CMake wrappers of v2.2.0.0 … v2.4.0.0 passed
``cert`` for every PKI partition, so their key and CA partitions hold type-2 items (fixed in
v2.4.1.0; the firmware of those releases shipped that way).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..core.errors import InputError

MAGIC = 0xF1F1
HEADER = struct.Struct("<HHI")
ITEM_HEADER = struct.Struct("<BBH")
TYPE_CA, TYPE_CERT, TYPE_KEY = 0x01, 0x02, 0x03
TYPE_NAMES = {TYPE_CA: "ca", TYPE_CERT: "cert", TYPE_KEY: "key"}
TYPES = {v: k for k, v in TYPE_NAMES.items()}
#: Largest content of one item (u16 length field).
ITEM_MAX = 0xFFFF
#: How a release types the items of a partition (see the module docstring).
ITEM_TYPE_RULES = ("by_partition", "cert")


@dataclass(frozen=True)
class PkiItem:
    """One item of a PKI partition: its type number, id and content (file bytes)."""

    type: int
    id: int
    data: bytes = field(repr=False)

    @property
    def kind(self) -> str:
        """``ca``, ``cert`` or ``key`` (``0x..`` for a type the generator never writes)."""
        return TYPE_NAMES.get(self.type, f"0x{self.type:02x}")


def partition_kind(name: str) -> str:
    """The item kind of an esp-at PKI partition by its name: ``*_key`` key, ``*_ca`` CA, else cert."""
    if name.endswith("_key"):
        return "key"
    if name.endswith("_ca"):
        return "ca"
    return "cert"


def item_type(partition: str, rule: str = "by_partition") -> int:
    """The type number a build with item-type ``rule`` writes into partition ``partition``."""
    if rule not in ITEM_TYPE_RULES:
        raise InputError(f"unknown PKI item type rule {rule!r} (known: {', '.join(ITEM_TYPE_RULES)})",
                         field="pki_item_types")
    return TYPE_CERT if rule == "cert" else TYPES[partition_kind(partition)]


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def encode_items(items: list[tuple[int, bytes]]) -> bytes:
    """The image of ``items`` ((type, content)) as AtPKI writes it: grouped by type in the order the
    types first appear (Python 3 dict order), ids counted from 0 within each type."""
    if not items:
        raise InputError("a PKI partition image needs at least one item", field="pki")
    groups: dict[int, list[bytes]] = {}
    for type_, data in items:
        if len(data) > ITEM_MAX:
            raise InputError(f"{len(data)} bytes is more than a PKI item holds ({ITEM_MAX})", field="pki")
        groups.setdefault(type_, []).append(data)
    body = bytearray()
    for type_, datas in groups.items():
        if len(datas) > 0x100:
            raise InputError("more than 256 items of one type", field="pki")
        for ident, data in enumerate(datas):
            body += ITEM_HEADER.pack(type_, ident, len(data)) + data + b"\xff" * _pad(len(data))
    return HEADER.pack(MAGIC, len(items), len(body)) + bytes(body)


def encode_partition(partition: str, files: list[bytes], rule: str = "by_partition") -> bytes:
    """The image esp-at's build writes for ``files`` (in order) of PKI partition ``partition``."""
    type_ = item_type(partition, rule)
    return encode_items([(type_, data) for data in files])


def looks_like_pki(data: bytes) -> bool:
    """True when ``data`` starts with the 0xF1F1 magic."""
    return len(data) >= 2 and data[:2] == b"\xf1\xf1"


def decode_pki(data: bytes, *, source: str = "<pki>") -> list[PkiItem]:
    """The items of a PKI partition (trailing bytes after the items, e.g. 0xFF, are allowed).

    :class:`InputError` when the magic is missing, the header's count or length disagree with
    the items, an item runs past the end, or its padding is not 0xFF.
    """
    data = bytes(data)
    if len(data) < HEADER.size or not looks_like_pki(data):
        raise InputError("not a PKI partition image (magic F1 F1 missing)", file=source, field="magic")
    _magic, count, total = HEADER.unpack_from(data)
    if HEADER.size + total > len(data):
        raise InputError(f"header says {total} bytes of items, only {len(data) - HEADER.size} follow",
                         file=source, field="length")
    items: list[PkiItem] = []
    pos, end = HEADER.size, HEADER.size + total
    while pos < end:
        if pos + ITEM_HEADER.size > end:
            raise InputError(f"item {len(items)} header runs past the items' length", file=source, field="length")
        type_, ident, length = ITEM_HEADER.unpack_from(data, pos)
        start = pos + ITEM_HEADER.size
        stop = start + length + _pad(length)
        if stop > end:
            raise InputError(f"item {len(items)} ({length} bytes) runs past the items' length",
                             file=source, field="length")
        if data[start + length:stop] != b"\xff" * _pad(length):
            raise InputError(f"item {len(items)} padding is not 0xFF", file=source, field="padding")
        items.append(PkiItem(type_, ident, data[start:start + length]))
        pos = stop
    if len(items) != count:
        raise InputError(f"header says {count} items, the data holds {len(items)}", file=source, field="count")
    return items


def image_length(data: bytes) -> int:
    """Bytes the image at the start of ``data`` occupies (header + items), from its header."""
    if not looks_like_pki(data) or len(data) < HEADER.size:
        raise InputError("not a PKI partition image (magic F1 F1 missing)", field="magic")
    return HEADER.size + HEADER.unpack_from(data)[2]


def replace_item(data: bytes, index: int, content: bytes, *, type_: int | None = None,
                 source: str = "<pki>") -> bytes:
    """The image with the ``index``-th item's content replaced (the others, their order and types
    kept); ``index == len(items)`` appends an item of ``type_`` (default: the first item's)."""
    items = decode_pki(data, source=source) if looks_like_pki(data) else []
    if not 0 <= index <= len(items):
        raise InputError(f"{source} holds {len(items)} item(s): no item {index} to replace", file=source,
                         field="item")
    pairs = [(it.type, it.data) for it in items]
    if index == len(items):
        if type_ is None and not items:
            raise InputError("an empty partition needs the item type", file=source, field="item")
        pairs.append((type_ if type_ is not None else items[0].type, content))
    else:
        pairs[index] = (pairs[index][0] if type_ is None else type_, content)
    return encode_items(pairs)


__all__ = ["MAGIC", "PkiItem", "TYPE_CA", "TYPE_CERT", "TYPE_KEY", "TYPE_NAMES", "ITEM_TYPE_RULES",
           "partition_kind", "item_type", "encode_items", "encode_partition", "decode_pki", "looks_like_pki",
           "image_length", "replace_item"]
