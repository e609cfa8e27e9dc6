"""Edit an NVS region in place like the ESP-IDF firmware does (reference §8.6).

Every operation re-reads the region, tidies it as the firmware does at init (entries that are
superseded, orphaned or broken are marked erased), then appends: a new value is written into
the active page's next free entries (a new page with the next sequence number is opened when
it is full; when only the reserved page is left, the page with the most reclaimable entries is
garbage-collected into it), and only then are the old value's entries marked erased. A power
loss between the two leaves both copies, and readers take the newer one.

NOR flash rules hold throughout: programming only clears bits (page state words, bitmap
bits); sectors are erased only when a garbage-collected page is recycled or a corrupt page is
reused.
"""

from __future__ import annotations

from collections.abc import Callable

from ...core.errors import DeviceError, InputError
from . import format as f
from .reader import Live, NvsImage, PageInfo, resolve, scan

_GC_MIN_TAILROOM = f.CHUNK_MAX_SIZE // 10   # firmware: don't start a blob in < ~400 bytes of room


class NvsWriteError(DeviceError):
    """The flash did not take a write (bits that should have been cleared stayed set)."""


class NvsEditor:
    """Firmware-like edits of the NVS region ``[0, size)`` reached through ``read(addr, n)``,
    ``program(addr, data)`` (NOR: clears bits; may return False when bits did not take) and
    ``erase_sector(addr)`` (4 KB sector at ``addr``), all relative to the region start."""

    def __init__(self, read: Callable[[int, int], bytes], program: Callable[[int, bytes], object],
                 erase_sector: Callable[[int], None], size: int) -> None:
        if size <= 0 or size % f.PAGE_SIZE:
            raise InputError(f"NVS region size {size:#x} is not a multiple of 0x1000", field="size")
        self._read, self._program_fn, self._erase_fn = read, program, erase_sector
        self.size = size

    # ---- public operations -----------------------------------------------------------------

    def image(self) -> NvsImage:
        """The live content of the region (read only)."""
        return resolve(scan(self._read(0, self.size), source="nvs region"))[0]

    def set(self, namespace: str, key: str, type: str, value: int | str | bytes) -> None:
        """Write ``namespace``/``key`` (creating the namespace); the old value, of any type,
        is marked erased after the new one is complete. :class:`NvsFull` when there is no room."""
        f.encode_name(namespace, what="namespace")
        key_raw = f.encode_name(key)
        stored = f.check_value(type, value, field=f"{namespace}/{key}")
        self._load()
        ns = self._names.get(namespace)
        old = self._live.get((ns, key)) if ns is not None else None
        if old is not None and old.type == type and self._same(old, type, stored):
            return                                          # firmware skips identical writes
        if ns is None:
            ns = self._create_namespace(namespace)
        if type in f.PRIMITIVES:
            self._write_item(ns, f.TYPE_CODES[type], f.CHUNK_ANY, key_raw, f.pack_primitive(type, stored), b"")
        elif type == "string":
            payload = stored
            assert isinstance(payload, bytes)
            self._write_item(ns, f.TYPE_STRING, f.CHUNK_ANY, key_raw,
                             f.varlen_data(len(payload), f.crc32(payload)), payload)
        else:
            assert isinstance(stored, bytes)
            start = f.BLOB_VERSION_1 if old is not None and old.chunk_start == f.BLOB_VERSION_0 else f.BLOB_VERSION_0
            self._write_blob(ns, key_raw, stored, start)
        if old is not None:
            self._erase_live(old)

    def erase_key(self, namespace: str, key: str) -> bool:
        """Mark ``namespace``/``key`` erased; False when it did not exist."""
        self._load()
        ns = self._names.get(namespace)
        old = self._live.get((ns, key)) if ns is not None else None
        if old is None:
            return False
        self._erase_live(old)
        return True

    def erase_namespace(self, namespace: str) -> int:
        """Mark every key of ``namespace`` erased (the namespace itself stays declared, as with
        ``nvs_erase_all``); returns the number of keys erased."""
        self._load()
        ns = self._names.get(namespace)
        doomed = [e for (n, _), e in self._live.items() if n == ns] if ns is not None else []
        for entry in doomed:
            self._erase_live(entry)
        return len(doomed)

    # ---- loading and tidying ---------------------------------------------------------------

    def _load(self) -> None:
        self._buf = bytearray(self._read(0, self.size))
        sc = scan(bytes(self._buf), source="nvs region")
        _, self._live, names = resolve(sc)
        self._names = {name: index for index, name in names.items()}
        self._pages: list[PageInfo] = sc.pages
        self._order: list[int] = list(sc.order)
        self._moved: dict[tuple[int, int], tuple[int, int]] = {}
        self._seq = max((self._pages[p].seq or 0 for p in self._order), default=-1) + 1
        self._free = [p.pos for p in self._pages if p.pos not in self._order]
        last = self._pages[self._order[-1]] if self._order else None
        self._active = last.pos if last is not None and last.state == f.PAGE_ACTIVE else None
        # like the firmware at init: erase broken entries, stale copies and orphan chunks
        keep = {(it.page, it.entry) for e in self._live.values() for it in e.items}
        for page, entry, span in sc.junk:
            self._mark(page, entry, span, f.ENTRY_ERASED)
        for it in sc.items:
            if it.ns != f.NS_INDEX and (it.page, it.entry) not in keep:
                self._mark(it.page, it.entry, it.span, f.ENTRY_ERASED)

    @staticmethod
    def _same(old: Live, type_name: str, stored: int | bytes) -> bool:
        if type_name == "string":
            return isinstance(old.value, str) and f.encode_text(old.value) + b"\x00" == stored
        return old.value == stored

    # ---- flash primitives ------------------------------------------------------------------

    def _program(self, addr: int, data: bytes) -> None:
        cur = self._buf[addr:addr + len(data)]
        new = bytes(a & b for a, b in zip(cur, data))
        if self._program_fn(addr, new) is False:
            raise NvsWriteError(f"flash did not take the write at {addr:#x} in the NVS region")
        self._buf[addr:addr + len(data)] = new

    def _erase_page(self, pos: int) -> None:
        self._erase_fn(pos * f.PAGE_SIZE)
        self._buf[pos * f.PAGE_SIZE:(pos + 1) * f.PAGE_SIZE] = b"\xff" * f.PAGE_SIZE

    def _mark(self, page: int, entry: int, count: int, state: int) -> None:
        """Set entries ``entry..entry+count-1`` of ``page`` to WRITTEN or ERASED in the bitmap."""
        base = page * f.PAGE_SIZE + f.BITMAP_OFFSET
        first, last = entry // 4, (entry + count - 1) // 4
        new = bytearray(self._buf[base + first:base + last + 1])
        info = self._pages[page]
        for i in range(entry, entry + count):
            shift = (i % 4) * 2
            byte = new[i // 4 - first]
            before = (byte >> shift) & 3
            new[i // 4 - first] = byte & ~((3 & ~state) << shift) & 0xFF
            if before == f.ENTRY_WRITTEN and state == f.ENTRY_ERASED:
                info.used -= 1
            elif before == f.ENTRY_EMPTY and state == f.ENTRY_WRITTEN:
                info.used += 1
        self._program(base + first, bytes(new))

    def _set_state(self, pos: int, state: int) -> None:
        self._program(pos * f.PAGE_SIZE, state.to_bytes(4, "little"))
        self._pages[pos].state = state

    # ---- pages -----------------------------------------------------------------------------

    def _activate(self) -> int:
        pos = self._free.pop(0)
        if self._buf[pos * f.PAGE_SIZE:(pos + 1) * f.PAGE_SIZE] != b"\xff" * f.PAGE_SIZE:
            self._erase_page(pos)                           # a corrupt page is recycled
        self._program(pos * f.PAGE_SIZE, f.pack_page_header(f.PAGE_ACTIVE, self._seq))
        self._pages[pos] = PageInfo(pos, f.PAGE_ACTIVE, "active", self._seq, [f.ENTRY_EMPTY] * f.ENTRY_COUNT)
        self._seq += 1
        self._order.append(pos)
        self._active = pos
        return pos

    def _close_active(self) -> None:
        if self._active is not None and self._pages[self._active].state == f.PAGE_ACTIVE:
            self._set_state(self._active, f.PAGE_FULL)
        self._active = None

    def _new_page(self) -> None:
        """Close the active page and open another; garbage-collect when only the reserve is left."""
        self._close_active()
        if len(self._free) >= 2:
            self._activate()
            return
        if not self._free:
            raise NvsFull("NVS region has no free page left")
        victim = max(self._order, key=lambda p: f.ENTRY_COUNT - self._pages[p].used, default=None)
        if victim is None or self._pages[victim].used >= f.ENTRY_COUNT:
            raise NvsFull("NVS region is full (nothing left to reclaim)")
        new = self._activate()
        self._set_state(victim, f.PAGE_FREEING)
        src = victim * f.PAGE_SIZE + f.FIRST_ENTRY_OFFSET
        i = 0
        while i < f.ENTRY_COUNT:
            if self._entry_state(victim, i) != f.ENTRY_WRITTEN:
                i += 1
                continue
            span = max(1, min(self._buf[src + i * f.ENTRY_SIZE + 2], f.ENTRY_COUNT - i))
            raw = bytes(self._buf[src + i * f.ENTRY_SIZE:src + (i + span) * f.ENTRY_SIZE])
            at = self._append(new, raw)
            self._moved[(victim, i)] = (new, at)
            i += span
        self._erase_page(victim)
        self._order.remove(victim)
        self._pages[victim] = PageInfo(victim, f.PAGE_EMPTY, "blank")
        self._free.append(victim)

    def _entry_state(self, page: int, i: int) -> int:
        byte = self._buf[page * f.PAGE_SIZE + f.BITMAP_OFFSET + i // 4]
        return (byte >> ((i % 4) * 2)) & 3

    def _append(self, page: int, raw: bytes) -> int:
        """Program whole entries at the page's next free slot, then mark them written."""
        info = self._pages[page]
        at, count = info.next_free, len(raw) // f.ENTRY_SIZE
        self._program(page * f.PAGE_SIZE + f.FIRST_ENTRY_OFFSET + at * f.ENTRY_SIZE, raw)
        self._mark(page, at, count, f.ENTRY_WRITTEN)
        info.next_free = at + count
        return at

    def _room(self) -> int:
        """Free entries in the active page (0 when there is none)."""
        return f.ENTRY_COUNT - self._pages[self._active].next_free if self._active is not None else 0

    # ---- items -----------------------------------------------------------------------------

    def _write_item(self, ns: int, code: int, chunk: int, key: bytes, data: bytes, payload: bytes) -> None:
        count = 1 + (len(payload) + f.ENTRY_SIZE - 1) // f.ENTRY_SIZE
        raw = f.pack_entry(ns, code, count, chunk, key, data) + payload.ljust((count - 1) * f.ENTRY_SIZE, b"\xff")
        for _ in range(len(self._pages) + 1):
            if self._room() >= count:
                self._append(self._active, raw)  # type: ignore[arg-type]
                return
            self._new_page()
        raise NvsFull(f"no page has room for {count} entries")

    def _write_blob(self, ns: int, key: bytes, data: bytes, start: int) -> None:
        offset, chunks, tries = 0, 0, 0
        while True:
            tailroom = max(self._room() - 1, 0) * f.ENTRY_SIZE
            remaining = len(data) - offset
            if chunks == 0 and (tailroom < remaining or tailroom == 0) and tailroom < _GC_MIN_TAILROOM:
                tries += 1
                if tries > len(self._pages) + 1:
                    raise NvsFull("no page has room to start the blob")
                self._new_page()
                continue
            if tailroom == 0:
                raise NvsFull(f"blob of {len(data)} bytes does not fit")
            if start + chunks >= f.CHUNK_ANY:
                raise NvsFull(f"blob of {len(data)} bytes needs too many chunks")
            size = min(remaining, tailroom)
            piece = data[offset:offset + size]
            self._write_item(ns, f.TYPE_BLOB_DATA, start + chunks, key, f.varlen_data(size, f.crc32(piece)), piece)
            chunks += 1
            offset += size
            if offset < len(data) or tailroom - size < f.ENTRY_SIZE:
                self._new_page()
            if offset >= len(data):
                self._write_item(ns, f.TYPE_BLOB_INDEX, f.CHUNK_ANY, key,
                                 f.blob_index_data(len(data), chunks, start), b"")
                return

    def _create_namespace(self, name: str) -> int:
        used = set(self._names.values())
        index = next((i for i in range(1, f.NS_MAX + 1) if i not in used), None)
        if index is None:
            raise NvsFull(f"no namespace index left for {name!r}")
        self._write_item(f.NS_INDEX, f.TYPE_U8, f.CHUNK_ANY, f.encode_name(name, what="namespace"),
                         f.pack_primitive("u8", index), b"")
        self._names[name] = index
        return index

    def _erase_live(self, entry: Live) -> None:
        for it in entry.items:
            page, at = it.page, it.entry
            while (page, at) in self._moved:     # garbage collection moved it (maybe twice)
                page, at = self._moved[(page, at)]
            self._mark(page, at, it.span, f.ENTRY_ERASED)
        self._live.pop((entry.ns, entry.key), None)


NvsFull = f.NvsFull

__all__ = ["NvsEditor", "NvsFull", "NvsWriteError"]
