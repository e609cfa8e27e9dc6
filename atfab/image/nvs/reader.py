"""Parse any NVS image the way the ESP-IDF firmware loads it (reference §8.6).

Pages are taken in sequence-number order; within a page entries are taken in index order.
Entries with a bad CRC, unfinished spans, orphan blob chunks or incomplete blobs are skipped
and recorded in :attr:`NvsImage.problems`, as the firmware would skip (and erase) them. When a
key is present more than once (a power loss between writing the new copy and erasing the old
one) the newest copy wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...core.errors import InputError
from . import format as f


@dataclass(frozen=True)
class NvsEntry:
    """One live key: ``type`` is "u8".."i64", "string" or "blob"."""

    namespace: str
    key: str
    type: str
    value: int | str | bytes

    def __repr__(self) -> str:   # blob bytes (private keys) never end up in logs
        shown = f"<{len(self.value)} bytes>" if isinstance(self.value, bytes) else repr(self.value)
        return f"NvsEntry({self.namespace!r}, {self.key!r}, {self.type!r}, {shown})"


@dataclass
class NvsImage:
    """The live content of an NVS partition."""

    entries: list[NvsEntry]
    problems: list[str] = field(default_factory=list)
    #: namespace name -> index, for every declared namespace (with or without keys)
    namespace_index: dict[str, int] = field(default_factory=dict)

    def namespaces(self) -> list[str]:
        """Declared namespaces in index order."""
        return sorted(self.namespace_index, key=self.namespace_index.__getitem__)

    def keys(self, namespace: str) -> list[NvsEntry]:
        """Live entries of ``namespace`` in write order."""
        return [e for e in self.entries if e.namespace == namespace]

    def get(self, namespace: str, key: str) -> NvsEntry | None:
        """The live entry ``namespace``/``key``, or None."""
        for e in self.entries:
            if e.namespace == namespace and e.key == key:
                return e
        return None


@dataclass
class PageInfo:
    """One physical page as scanned."""

    pos: int                 # physical page number
    state: int               # header state word
    kind: str                # "blank", "active", "full", "freeing", "corrupt"
    seq: int | None = None
    states: list[int] = field(default_factory=list)   # entry states (valid pages only)
    next_free: int = 0       # first entry after the last used or dirty one
    used: int = 0            # WRITTEN entries


@dataclass
class Item:
    """A valid item (header entry + span) found on a valid page."""

    page: int                # physical page number
    entry: int
    span: int
    ns: int
    code: int
    chunk: int
    key: str
    data: bytes              # the 8 data bytes of the header entry
    payload: bytes | None    # string / blob payload (checked against its CRC)
    rank: int                # position in write order


@dataclass
class Scan:
    """Low-level result of :func:`scan`, used by the reader and the editor."""

    size: int
    pages: list[PageInfo]
    order: list[int]         # physical numbers of valid pages in sequence order
    items: list[Item]
    junk: list[tuple[int, int, int]]   # (page, entry, span) written but invalid: erase on cleanup
    problems: list[str]


def _entry_states(bitmap: bytes) -> list[int]:
    states = []
    for byte in bitmap:
        states.extend((byte & 3, (byte >> 2) & 3, (byte >> 4) & 3, (byte >> 6) & 3))
    return states[:f.ENTRY_COUNT]


def _scan_page(data: bytes, info: PageInfo, items: list[Item], junk: list, problems: list[str]) -> None:
    base = info.pos * f.PAGE_SIZE
    states = _entry_states(data[base + f.BITMAP_OFFSET:base + f.BITMAP_OFFSET + f.BITMAP_SIZE])
    info.states = states
    blank_entry = b"\xff" * f.ENTRY_SIZE
    last = -1
    for i in range(f.ENTRY_COUNT - 1, -1, -1):
        off = base + f.FIRST_ENTRY_OFFSET + i * f.ENTRY_SIZE
        if states[i] != f.ENTRY_EMPTY or data[off:off + f.ENTRY_SIZE] != blank_entry:
            last = i
            break
    info.next_free = last + 1
    info.used = states.count(f.ENTRY_WRITTEN)
    where = f"page {info.pos}"
    bad_run = False
    i = 0
    while i < f.ENTRY_COUNT:
        if states[i] != f.ENTRY_WRITTEN:
            i += 1
            bad_run = False
            continue
        off = base + f.FIRST_ENTRY_OFFSET + i * f.ENTRY_SIZE
        raw = data[off:off + f.ENTRY_SIZE]
        ns, code, span, chunk, crc, key_field, value = f.unpack_entry(raw)
        key = f.decode_text(key_field.split(b"\x00", 1)[0])
        if crc != f.entry_crc(raw):
            if not bad_run:
                problems.append(f"{where} entry {i}: bad entry CRC, skipped")
            bad_run = True
            junk.append((info.pos, i, 1))
            i += 1
            continue
        bad_run = False
        label = f"{where} entry {i} ({key!r})"
        if span < 1 or i + span > f.ENTRY_COUNT:
            problems.append(f"{label}: span {span} out of range, skipped")
            junk.append((info.pos, i, 1))
            i += 1
            continue
        payload = None
        if code in (f.TYPE_STRING, f.TYPE_BLOB, f.TYPE_BLOB_DATA):
            if any(states[j] != f.ENTRY_WRITTEN for j in range(i + 1, i + span)):
                problems.append(f"{label}: data entries not all written (interrupted write), skipped")
                junk.append((info.pos, i, span))
                i += span
                continue
            size = value[0] | value[1] << 8
            data_crc = int.from_bytes(value[4:8], "little")
            if size > (span - 1) * f.ENTRY_SIZE:
                problems.append(f"{label}: size {size} larger than its span, skipped")
                junk.append((info.pos, i, span))
                i += span
                continue
            payload = data[off + f.ENTRY_SIZE:off + f.ENTRY_SIZE + size]
            if f.crc32(payload) != data_crc:
                problems.append(f"{label}: bad data CRC, skipped")
                junk.append((info.pos, i, span))
                i += span
                continue
        elif code not in f.PRIMITIVE_CODES and code != f.TYPE_BLOB_INDEX:
            problems.append(f"{label}: unknown type {code:#04x}, skipped")
            junk.append((info.pos, i, span))
            i += span
            continue
        items.append(Item(info.pos, i, span, ns, code, chunk, key, value, payload, len(items)))
        i += span


def scan(data: bytes, *, source: str = "<nvs>") -> Scan:
    """Classify pages and collect valid items in write order. :class:`InputError` when the
    data is not NVS at all (size not a multiple of 4096, or no valid page and not blank)."""
    size = len(data)
    if size == 0 or size % f.PAGE_SIZE:
        raise InputError(f"not an NVS image: size {size:#x} is not a non-zero multiple of 0x1000", file=source)
    data = bytes(data)
    problems: list[str] = []
    pages: list[PageInfo] = []
    blank_page = b"\xff" * f.PAGE_SIZE
    for pos in range(size // f.PAGE_SIZE):
        base = pos * f.PAGE_SIZE
        header = data[base:base + f.HEADER_SIZE]
        state = int.from_bytes(header[0:4], "little")
        info = PageInfo(pos, state, "corrupt")
        pages.append(info)
        if state == f.PAGE_EMPTY:
            if data[base:base + f.PAGE_SIZE] == blank_page:
                info.kind = "blank"
            else:
                problems.append(f"page {pos}: uninitialised header but page not erased (corrupt)")
            continue
        if state not in (f.PAGE_ACTIVE, f.PAGE_FULL, f.PAGE_FREEING):
            if state in (f.PAGE_CORRUPT, f.PAGE_INVALID):
                problems.append(f"page {pos}: marked {f.PAGE_STATE_NAMES[state]}")
            else:
                problems.append(f"page {pos}: unknown page state {state:#010x}")
            continue
        if int.from_bytes(header[28:32], "little") != f.header_crc(header):
            problems.append(f"page {pos}: bad header CRC (corrupt)")
            continue
        if header[8] not in (f.PAGE_VERSION_1, f.PAGE_VERSION_2):
            problems.append(f"page {pos}: unsupported NVS format version {header[8]:#04x}")
            continue
        info.kind = f.PAGE_STATE_NAMES[state]
        info.seq = int.from_bytes(header[4:8], "little")
    valid = [p for p in pages if p.seq is not None]
    if not valid and any(p.kind != "blank" for p in pages):
        raise InputError("not an NVS image: no page has a valid NVS header", file=source)
    valid.sort(key=lambda p: (p.seq, p.pos))
    for a, b in zip(valid, valid[1:]):
        if a.seq == b.seq:
            problems.append(f"pages {a.pos} and {b.pos}: same sequence number {a.seq}")
    items: list[Item] = []
    junk: list[tuple[int, int, int]] = []
    for info in valid:
        _scan_page(data, info, items, junk, problems)
    return Scan(size, pages, [p.pos for p in valid], items, junk, problems)


@dataclass
class Live:
    """The winning copy of one key and where all its entries are."""

    ns: int
    key: str
    type: str
    value: int | str | bytes
    rank: int
    items: list[Item]        # header item first (blob: index, then chunks)
    chunk_start: int | None = None


def _namespace_table(sc: Scan, problems: list[str]) -> dict[int, str]:
    names: dict[int, str] = {}
    seen: dict[str, int] = {}
    for it in sc.items:
        if it.ns != f.NS_INDEX:
            continue
        where = f"page {it.page} entry {it.entry}"
        if it.code != f.TYPE_U8:
            problems.append(f"{where}: namespace entry {it.key!r} has type {it.code:#04x}, skipped")
            continue
        index = it.data[0]
        if index in (f.NS_INDEX, f.NS_ANY):
            problems.append(f"{where}: namespace {it.key!r} has invalid index {index}, skipped")
        elif it.key in seen and seen[it.key] != index:
            problems.append(f"{where}: namespace {it.key!r} declared again as {index} (kept {seen[it.key]})")
        elif index in names and names[index] != it.key:
            problems.append(f"{where}: namespace index {index} reused by {it.key!r} (kept {names[index]!r})")
        else:
            names[index] = it.key
            seen[it.key] = index
    return names


def resolve(sc: Scan) -> tuple[NvsImage, dict[tuple[int, str], Live], dict[int, str]]:
    """Live keys of a scan: the image, the winners by (ns index, key), the namespace table."""
    problems = list(sc.problems)
    names = _namespace_table(sc, problems)
    live: dict[tuple[int, str], Live] = {}
    chunks: dict[tuple[int, str, int], Item] = {}
    for it in sc.items:
        if it.code == f.TYPE_BLOB_DATA and it.ns != f.NS_INDEX:
            chunks[(it.ns, it.key, it.chunk)] = it    # newest copy of a chunk wins
    for it in sc.items:
        if it.ns == f.NS_INDEX or it.code == f.TYPE_BLOB_DATA:
            continue
        where = f"page {it.page} entry {it.entry} ({it.key!r})"
        if it.ns not in names:
            problems.append(f"{where}: namespace index {it.ns} is not declared, skipped")
            continue
        chunk_start = None
        parts = [it]
        if it.code in f.PRIMITIVE_CODES:
            type_name = f.PRIMITIVE_CODES[it.code]
            value: int | str | bytes = f.unpack_primitive(type_name, it.data)
        elif it.code == f.TYPE_STRING:
            type_name = "string"
            raw = it.payload or b""
            value = f.decode_text(raw[:-1] if raw.endswith(b"\x00") else raw)
        elif it.code == f.TYPE_BLOB:
            type_name, value = "blob", bytes(it.payload or b"")
        else:  # blob index
            type_name = "blob"
            total = int.from_bytes(it.data[0:4], "little")
            count, chunk_start = it.data[4], it.data[5]
            pieces = []
            for n in range(count):
                c = chunks.get((it.ns, it.key, chunk_start + n)) if chunk_start + n < f.CHUNK_ANY else None
                if c is None:
                    break
                pieces.append(c)
            value = b"".join(c.payload or b"" for c in pieces)
            if len(pieces) != count or len(value) != total:
                problems.append(f"{where}: blob incomplete ({len(pieces)}/{count} chunks, "
                                f"{len(value)}/{total} bytes), skipped")
                continue
            parts += pieces
        # items come in write order, so a later copy of the key replaces an earlier one
        live[(it.ns, it.key)] = Live(it.ns, it.key, type_name, value, it.rank, parts, chunk_start)
    used_chunks = {id(p) for entry in live.values() for p in entry.items}
    orphans = sum(1 for c in chunks.values() if id(c) not in used_chunks)
    if orphans:
        problems.append(f"{orphans} blob chunk(s) belong to no complete blob, ignored")
    ordered = sorted(live.values(), key=lambda e: e.rank)
    entries = [NvsEntry(names[e.ns], e.key, e.type, e.value) for e in ordered]
    image = NvsImage(entries, problems, {name: index for index, name in names.items()})
    return image, live, names


def read_nvs(data: bytes, *, source: str = "<nvs>") -> NvsImage:
    """Live content of an NVS image; blank (all 0xFF) gives an empty image.
    :class:`InputError` when ``data`` is not NVS at all."""
    return resolve(scan(data, source=source))[0]


__all__ = ["NvsEntry", "NvsImage", "read_nvs", "scan", "resolve", "Scan", "PageInfo", "Item", "Live"]
