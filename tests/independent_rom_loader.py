"""A second, independently written ESP32-C2 serial download loader, for tests only.

Written from Espressif's published serial protocol description and from what esptool 5.6 sends
and expects (its ``loader.py``, ``cmds.py``, ``targets/esp32c2.py``), *without* looking at
atfab's own simulator (``atfab/sim``). Its job is to catch a flasher that only works because of
a quirk of that simulator, so it is deliberately strict and records every protocol violation in
:attr:`IndependentRomLoader.violations` (each one also gets the error status the chip would send).

What it models
* One TCP connection = one power-on into ROM download mode (DTR/RTS do not travel over a
  socket). Flash contents survive connections; RAM, the stub, SPI attach and baud do not.
* ROM loader: SYNC (8 replies, non-zero value), READ_REG/WRITE_REG (eFuse MAC and revision,
  UART clock divider, SPI1 user-command registers with RDID and SFDP), GET_SECURITY_INFO (chip
  id 12), SPI_ATTACH (8-byte ROM form), SPI_SET_PARAMS, CHANGE_BAUDRATE (the ROM assumes a
  40 MHz crystal), FLASH_BEGIN/DATA/END (erase up front, read-back check -> error 0x08),
  FLASH_DEFL_*, SPI_FLASH_MD5 (32 hex characters), READ_FLASH_SLOW, MEM_BEGIN/DATA/END. ROM status
  is 4 bytes ``[failed, error, 0, 0]``; unknown commands get error 0x05.
* MEM_END that jumps to exactly esptool's ESP32-C2 flasher stub (the bytes of one of its stub
  JSON files at their load addresses, and its entry point) "runs" it: the loader sends the
  ``OHAI`` frame and from then on answers like the stub: 2-byte status ``[code, 0]`` with stub
  error codes (0xC1 checksum, 0xC6 not in flash mode, 0xC8 not enough data ...), MD5 as 16 raw
  bytes, just-in-time erase, READ_FLASH (acknowledged packets + raw MD5), ERASE_FLASH/REGION.
  A jump to anything else leaves the chip silent.
* NOR flash: programming can only clear bits (new = old AND data); erase sets 0xFF per 4 KB sector.
* FLASH_END(1) on the ROM runs the user code (the loader goes silent until the next connection);
  FLASH_END(0) reboots into the ROM loader.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import struct
import threading
import zlib
from base64 import b64decode
from dataclasses import dataclass, field

SECTOR = 0x1000
MB = 1024 * 1024
CHIP_ID_ESP32C2 = 12
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
ROM_SYNC_VALUE = 0x20120707            # any non-zero value means "ROM loader" to esptool
OHAI = b"OHAI"

# registers (esptool targets/esp32c2.py, esp32c3.py)
EFUSE_BLOCK2 = 0x60008840              # words 0, 1 and 7 are read by esptool
EFUSE_RD_REPEAT0 = 0x60008830          # secure boot / flash encryption bits: all zero here
UART_CLKDIV = 0x60000014
UART_DATE = 0x6000007C
CHIP_DETECT_MAGIC = 0x40001000         # read only by esptools that lack GET_SECURITY_INFO
SPI1 = 0x60002000
SPI_CMD, SPI_ADDR, SPI_USR, SPI_USR1, SPI_USR2, SPI_MOSI_DLEN, SPI_MISO_DLEN, SPI_W0 = (
    SPI1 + 0x00, SPI1 + 0x04, SPI1 + 0x18, SPI1 + 0x1C, SPI1 + 0x20, SPI1 + 0x24, SPI1 + 0x28, SPI1 + 0x58)
SPI_CMD_USR = 1 << 18
SPI_USR_MISO = 1 << 28
SPI_USR_ADDR = 1 << 30
ROM_BLOCK, STUB_BLOCK = 0x400, 0x4000    # flash data block sizes esptool uses with each
RAM_REGIONS = ((0x4037C000, 0x403C0000), (0x3FCA0000, 0x3FCE0000))    # IRAM, DRAM

OPS = {0x02: "FLASH_BEGIN", 0x03: "FLASH_DATA", 0x04: "FLASH_END", 0x05: "MEM_BEGIN", 0x06: "MEM_END",
       0x07: "MEM_DATA", 0x08: "SYNC", 0x09: "WRITE_REG", 0x0A: "READ_REG", 0x0B: "SPI_SET_PARAMS",
       0x0D: "SPI_ATTACH", 0x0E: "READ_FLASH_SLOW", 0x0F: "CHANGE_BAUDRATE", 0x10: "FLASH_DEFL_BEGIN",
       0x11: "FLASH_DEFL_DATA", 0x12: "FLASH_DEFL_END", 0x13: "SPI_FLASH_MD5", 0x14: "GET_SECURITY_INFO",
       0xD0: "ERASE_FLASH", 0xD1: "ERASE_REGION", 0xD2: "READ_FLASH"}
ROM_ONLY = {0x0E}
STUB_ONLY = {0xD0, 0xD1, 0xD2}

# error codes: ROM (second status byte after 1) / stub (first status byte)
ROM_INVALID, ROM_FAILED, ROM_CHECKSUM, ROM_FLASH_WRITE, ROM_READ_LENGTH, ROM_DEFLATE = 5, 6, 7, 8, 0x0A, 0x0B
STUB_BAD_LEN, STUB_CHECKSUM, STUB_INVALID_CMD, STUB_NOT_FLASHING = 0xC0, 0xC1, 0xC3, 0xC6
STUB_INFLATE, STUB_NOT_ENOUGH, STUB_TOO_MUCH = 0xC7, 0xC8, 0xC9


class _Fail(Exception):
    """Answer the command with an error status (and record why)."""

    def __init__(self, reason: str, rom: int = ROM_INVALID, stub: int = STUB_BAD_LEN) -> None:
        super().__init__(reason)
        self.rom, self.stub = rom, stub


class _Closed(Exception):
    """The host closed the connection (or the loader is stopping)."""


def _esptool_stubs() -> list[dict]:
    """The ESP32-C2 flasher stubs shipped with esptool (what the real chip would be sent)."""
    import esptool.loader

    stubs = []
    for path in sorted(glob.glob(os.path.join(esptool.loader.StubFlasher.STUB_DIR, "*", "esp32c2.json"))):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        stubs.append({"entry": d["entry"], "segments": [(d["text_start"], b64decode(d["text"]))]
                      + ([(d["data_start"], b64decode(d["data"]))] if d.get("data") else [])})
    return stubs


def _unslip(raw: bytes) -> bytes | None:
    """Undo SLIP escaping (0xDB 0xDC -> 0xC0, 0xDB 0xDD -> 0xDB); None for a broken escape."""
    parts = raw.split(b"\xdb")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if not part or part[0] not in (0xDC, 0xDD):
            return None
        out.append(0xC0 if part[0] == 0xDC else 0xDB)
        out += part[1:]
    return bytes(out)


def _xor_checksum(data: bytes) -> int:
    state = 0xEF
    for b in data:
        state ^= b
    return state


# A short SFDP table of a GigaDevice-like part: signature, 2 parameter headers, start of the JEDEC table.
_SFDP = bytearray(b"\xff" * 0x40)
_SFDP[0:8] = b"SFDP\x06\x01\x01\xff"
_SFDP[8:16] = bytes([0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF])
_SFDP[16:24] = bytes([0xC8, 0x00, 0x01, 0x03, 0x60, 0x00, 0x00, 0xFF])
_SFDP[0x30:0x38] = bytes([0xE5, 0x20, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])


@dataclass
class _Write:
    """An open FLASH_BEGIN / FLASH_DEFL_BEGIN."""

    offset: int
    total: int              # bytes the device will write (stub: exact; ROM: the erase size)
    blocks: int
    block_size: int
    compressed: bool
    next_seq: int = 0
    written: int = 0
    erased_to: int = 0      # stub: just-in-time erase frontier
    inflate: "zlib._Decompress | None" = field(default=None, repr=False)


class IndependentRomLoader:
    """A virtual ESP32-C2 in download mode on ``socket://127.0.0.1:<port>`` (one client at a time)."""

    def __init__(self, *, mac: bytes = bytes.fromhex("e4b063a1c217"), flash_size: int = 4 * MB,
                 revision: tuple[int, int] = (1, 0), xtal_mhz: int = 26, flash_id: int = 0x1640C8) -> None:
        if len(mac) != 6:
            raise ValueError("mac must be 6 bytes")
        self.mac = mac
        self.revision = revision
        self.xtal_hz = xtal_mhz * 1_000_000
        self.flash_id = flash_id
        self.flash = bytearray(b"\xff" * flash_size)
        self.sessions = 0                    # connections served (power-ons)
        self.ops: list[tuple[str, str]] = []  # (mode, command name) in order
        self.violations: list[str] = []      # every error answered, and why
        self.baud_requests: list[tuple[str, int, int]] = []   # (mode, new, old) of CHANGE_BAUDRATE
        self.stub_runs = 0
        self._stubs = _esptool_stubs()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lsock: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._lsock is not None, "start() first"
        return f"socket://127.0.0.1:{self._lsock.getsockname()[1]}"

    def start(self) -> "IndependentRomLoader":
        self._lsock = socket.socket()
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(1)
        self._lsock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="independent-rom-loader")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
        if self._lsock is not None:
            self._lsock.close()

    def __enter__(self) -> "IndependentRomLoader":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            return bytes(self.flash[offset:offset + size])

    def ops_named(self, name: str, mode: str | None = None) -> int:
        return sum(1 for m, n in self.ops if n == name and (mode is None or m == mode))

    def _serve(self) -> None:
        assert self._lsock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._lsock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            conn.settimeout(0.1)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
            self.sessions += 1
            try:
                _Session(self, conn).run()
            except _Closed:
                pass
            finally:
                self._conn = None
                conn.close()


class _Session:
    """One power-on: ROM download mode, maybe the stub, maybe the user code."""

    def __init__(self, loader: IndependentRomLoader, conn: socket.socket) -> None:
        self.ld = loader
        self.conn = conn
        self._rx = bytearray()
        self._power_on()
        self._flash_commands = {
            0x02: lambda op, p, c: self._begin(op, p, compressed=False),
            0x10: lambda op, p, c: self._begin(op, p, compressed=True),
            0x03: lambda op, p, c: self._data(op, p, c, compressed=False),
            0x11: lambda op, p, c: self._data(op, p, c, compressed=True),
            0x04: lambda op, p, c: self._end(op, p),
            0x12: lambda op, p, c: self._end(op, p),
        }

    def _power_on(self) -> None:
        self.mode = "rom"                   # "rom" | "stub" | "app"
        self.baud = 115200
        self.attached = False
        self.spi_params: tuple[int, ...] | None = None
        self.regs: dict[int, int] = {}
        self.ram = {start: bytearray(end - start) for start, end in RAM_REGIONS}
        self.mem: tuple[int, int, int, int] | None = None    # size, blocks, block size, addr
        self.mem_seq = 0
        self.write: _Write | None = None

    # ------------------------------------------------------------------ framing

    def _recv(self) -> None:
        while True:
            if self.ld._stop.is_set():
                raise _Closed
            try:
                chunk = self.conn.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                raise _Closed from None
            if not chunk:
                raise _Closed
            self._rx += chunk
            return

    def read_frame(self) -> bytes:
        """The next SLIP frame; bytes outside frames are line noise and ignored."""
        while True:
            start = self._rx.find(0xC0)
            if start < 0:
                self._rx.clear()
            else:
                del self._rx[:start]
                end = self._rx.find(0xC0, 1)
                if end > 0:
                    raw = bytes(self._rx[1:end])
                    del self._rx[:end]          # the closing 0xC0 may also open the next frame
                    if not raw:
                        continue
                    frame = _unslip(raw)
                    if frame is None:
                        self.ld.violations.append(f"{self.mode}: bad SLIP escape in {raw[:16].hex()}")
                        continue
                    return frame
            self._recv()

    def send_frame(self, payload: bytes) -> None:
        data = b"\xc0" + payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"
        try:
            self.conn.sendall(data)
        except OSError:
            raise _Closed from None

    def reply(self, op: int, value: int = 0, data: bytes = b"", error: int = 0) -> None:
        if self.mode == "stub":
            status = bytes([error, 0])
        else:
            status = bytes([1 if error else 0, error, 0, 0])
        body = data + status
        self.send_frame(struct.pack("<BBHI", 1, op, len(body), value) + body)

    # ------------------------------------------------------------------ command loop

    def run(self) -> None:
        while True:
            frame = self.read_frame()
            if self.mode == "app":
                continue                    # the user code does not speak this protocol
            if len(frame) < 8:
                self.ld.violations.append(f"{self.mode}: short frame {frame.hex()}")
                continue
            direction, op, size, chk = struct.unpack("<BBHI", frame[:8])
            payload = frame[8:]
            if direction != 0:
                self.ld.violations.append(f"{self.mode}: frame with direction {direction}")
                continue
            name = OPS.get(op, f"0x{op:02x}")
            self.ld.ops.append((self.mode, name))
            try:
                if size != len(payload):
                    raise _Fail(f"size field {size} but {len(payload)} payload bytes")
                unsupported = (op in ROM_ONLY and self.mode == "stub") or (op in STUB_ONLY and self.mode == "rom")
                handler = self._flash_commands.get(op) or getattr(self, f"do_{name}", None)
                if handler is None or unsupported:
                    raise _Fail("command not supported here", ROM_INVALID, STUB_INVALID_CMD)
                handler(op, payload, chk)
            except _Fail as fail:
                self.ld.violations.append(f"{self.mode}: {name}: {fail}")
                self.reply(op, error=fail.stub if self.mode == "stub" else fail.rom)

    @staticmethod
    def _words(payload: bytes, count: int, *, allow: tuple[int, ...] = ()) -> tuple[int, ...]:
        if len(payload) != 4 * count and len(payload) not in allow:
            raise _Fail(f"expected {4 * count} bytes of parameters, got {len(payload)}")
        return struct.unpack(f"<{len(payload) // 4}I", payload)

    def _data_block(self, payload: bytes, chk: int) -> tuple[int, bytes]:
        if len(payload) < 16:
            raise _Fail("data command without its 16-byte header")
        size, seq, z1, z2 = struct.unpack("<IIII", payload[:16])
        data = payload[16:]
        if size != len(data) or z1 or z2:
            raise _Fail(f"data header says {size} bytes ({z1},{z2}), got {len(data)}")
        if _xor_checksum(data) != chk:
            raise _Fail(f"checksum {chk:#x} does not match the data", ROM_CHECKSUM, STUB_CHECKSUM)
        return seq, data

    # ------------------------------------------------------------------ connect / registers

    def do_SYNC(self, op: int, payload: bytes, chk: int) -> None:
        if payload != SYNC_PAYLOAD:
            raise _Fail("not the SYNC pattern")
        if self.mode == "stub":
            self.reply(op, 0)
            return
        for _ in range(8):
            self.reply(op, ROM_SYNC_VALUE)

    def _read_word(self, addr: int) -> int:
        mac = self.ld.mac
        major, minor = self.ld.revision
        if addr == EFUSE_BLOCK2:
            return int.from_bytes(mac[2:6], "big")
        if addr == EFUSE_BLOCK2 + 4:
            return int.from_bytes(mac[0:2], "big") | (minor & 0xF) << 16 | (major & 0x3) << 20
        if addr == UART_CLKDIV:
            return int(self.ld.xtal_hz / self.baud) & 0xFFFFF
        if addr == CHIP_DETECT_MAGIC:
            return 0x7C41A06F
        for start, end in RAM_REGIONS:
            if start <= addr < end - 3:
                return int.from_bytes(self.ram[start][addr - start:addr - start + 4], "little")
        return self.regs.get(addr, 0)

    def do_READ_REG(self, op: int, payload: bytes, chk: int) -> None:
        (addr,) = self._words(payload, 1)
        if addr % 4:
            raise _Fail(f"unaligned register read {addr:#x}")
        self.reply(op, self._read_word(addr))

    def do_WRITE_REG(self, op: int, payload: bytes, chk: int) -> None:
        if not payload or len(payload) % 16:
            raise _Fail("WRITE_REG takes (addr, value, mask, delay) entries")
        for addr, value, mask, _delay in struct.iter_unpack("<IIII", payload):
            if addr == UART_DATE:
                continue                    # esptool's "delay after" dummy write
            old = self.regs.get(addr, 0)
            self.regs[addr] = (old & ~mask | value & mask) & 0xFFFFFFFF
            if addr == SPI_CMD and self.regs[addr] & SPI_CMD_USR:
                self._spi_user_command()
        self.reply(op)

    def _spi_user_command(self) -> None:
        usr, usr2 = self.regs.get(SPI_USR, 0), self.regs.get(SPI_USR2, 0)
        command = usr2 & 0xFF
        read_bits = self.regs.get(SPI_MISO_DLEN, 0) + 1 if usr & SPI_USR_MISO else 0
        addr = self.regs.get(SPI_ADDR, 0) if usr & SPI_USR_ADDR else 0
        if command == 0x9F:                 # RDID: manufacturer, memory type, capacity
            out = self.ld.flash_id.to_bytes(3, "little")
        elif command == 0x5A:               # SFDP
            out = bytes(_SFDP[addr:addr + 8]).ljust(8, b"\xff")
        elif command in (0x05, 0x35, 0x15):  # status registers
            out = b"\x00"
        else:                               # resets, write enable, power modes: no data
            out = b"\xff" * 8
        if read_bits:
            nbytes = (read_bits + 7) // 8
            value = int.from_bytes(out[:nbytes].ljust(nbytes, b"\xff"), "little") & ((1 << read_bits) - 1)
            for i in range(0, nbytes, 4):
                self.regs[SPI_W0 + i] = (value >> (8 * i)) & 0xFFFFFFFF
        self.regs[SPI_CMD] &= ~SPI_CMD_USR

    def do_GET_SECURITY_INFO(self, op: int, payload: bytes, chk: int) -> None:
        self._words(payload, 0)
        self.reply(op, data=struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, CHIP_ID_ESP32C2, 1))

    def do_CHANGE_BAUDRATE(self, op: int, payload: bytes, chk: int) -> None:
        new, old = self._words(payload, 2)
        if new == 0:
            raise _Fail("baud rate 0")
        if self.mode == "rom" and old != 0:
            raise _Fail("the ROM expects 0 as the second word")
        self.ld.baud_requests.append((self.mode, new, old))
        self.reply(op)                      # answered at the old rate, then switch
        # the C2 ROM computes its divider for a 40 MHz crystal; the stub knows the real one
        self.baud = new * self.ld.xtal_hz // 40_000_000 if self.mode == "rom" else new

    # ------------------------------------------------------------------ SPI flash

    def do_SPI_ATTACH(self, op: int, payload: bytes, chk: int) -> None:
        words = self._words(payload, 2 if self.mode == "rom" else 1)
        if words[0] != 0 or (len(words) > 1 and words[1] != 0):
            raise _Fail(f"only the default SPI flash pins are wired ({words})")
        self.attached = True
        self.reply(op)

    def do_SPI_SET_PARAMS(self, op: int, payload: bytes, chk: int) -> None:
        params = self._words(payload, 6)
        if params[1] > len(self.ld.flash) or params[1] == 0:
            raise _Fail(f"flash size {params[1]} does not fit this {len(self.ld.flash)}-byte chip")
        self.spi_params = params
        self.reply(op)

    def _need_flash(self, addr: int, size: int) -> None:
        if not self.attached:
            raise _Fail("flash used before SPI_ATTACH", ROM_FAILED, STUB_BAD_LEN)
        if addr + size > len(self.ld.flash):
            raise _Fail(f"{addr:#x}+{size:#x} is beyond the flash", ROM_INVALID, STUB_BAD_LEN)

    def _erase(self, start: int, end: int) -> None:
        start -= start % SECTOR
        end += -end % SECTOR
        with self.ld._lock:
            self.ld.flash[start:end] = b"\xff" * (end - start)

    def _program(self, addr: int, data: bytes) -> bool:
        """NOR programming (bits only go 1 -> 0); True when the flash now reads ``data``."""
        n = len(data)
        if addr + n > len(self.ld.flash):
            raise _Fail(f"write at {addr:#x}+{n:#x} is beyond the flash", ROM_FLASH_WRITE, STUB_TOO_MUCH)
        with self.ld._lock:
            old = self.ld.flash[addr:addr + n]
            new = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(n, "little")
            self.ld.flash[addr:addr + n] = new
        return new == data

    def _begin(self, op: int, payload: bytes, *, compressed: bool) -> None:
        size, blocks, block_size, offset, *rest = self._words(payload, 5, allow=(16,))
        if rest and rest[0]:
            raise _Fail("encrypted writes are not supported by this chip's configuration")
        if not 0 < block_size <= (STUB_BLOCK if self.mode == "stub" else ROM_BLOCK):
            raise _Fail(f"block size {block_size:#x}")
        if size:                            # BEGIN(0, 0) + END is how esptool leaves the loader
            self._need_flash(offset, size)
        w = _Write(offset, size, blocks, block_size, compressed)
        if compressed:
            w.inflate = zlib.decompressobj()
        if self.mode == "rom":              # the ROM erases the whole region up front
            if offset % SECTOR:
                raise _Fail(f"ROM flash offset {offset:#x} is not sector aligned")
            if size:
                self._erase(offset, offset + size)
        else:                               # the stub erases just in time
            w.erased_to = offset - offset % SECTOR
        self.write = w
        self.reply(op)

    def _store(self, w: _Write, data: bytes) -> None:
        if self.mode == "stub":
            if w.written + len(data) > w.total:
                if w.compressed:
                    raise _Fail("more data than announced", ROM_DEFLATE, STUB_TOO_MUCH)
                data = data[:w.total - w.written]       # the padding of the last block
            addr = w.offset + w.written
            if addr + len(data) > w.erased_to:
                self._erase(w.erased_to, addr + len(data))
                w.erased_to = addr + len(data) + (-(addr + len(data)) % SECTOR)
            self._program(addr, data)
        else:
            addr = w.offset + w.written
            if not self._program(addr, data):           # the ROM reads back what it wrote
                raise _Fail(f"read-back differs at {addr:#x} (not erased?)", ROM_FLASH_WRITE, 0)
        w.written += len(data)

    def _data(self, op: int, payload: bytes, chk: int, *, compressed: bool) -> None:
        w = self.write
        if w is None or w.compressed != compressed:
            raise _Fail("data without the matching BEGIN", ROM_FAILED, STUB_NOT_FLASHING)
        seq, data = self._data_block(payload, chk)
        if seq != w.next_seq:
            raise _Fail(f"sequence {seq}, expected {w.next_seq}", ROM_INVALID, STUB_BAD_LEN)
        if seq >= w.blocks:
            raise _Fail(f"block {seq} beyond the {w.blocks} announced", ROM_INVALID, STUB_TOO_MUCH)
        if len(data) > w.block_size or (not compressed and self.mode == "rom" and len(data) != w.block_size):
            raise _Fail(f"{len(data)}-byte block, block size {w.block_size}", ROM_INVALID, STUB_BAD_LEN)
        if compressed:
            try:
                data = w.inflate.decompress(data)
            except zlib.error as exc:
                raise _Fail(f"inflate: {exc}", ROM_DEFLATE, STUB_INFLATE) from None
        self._store(w, data)
        w.next_seq += 1                     # a failed block may be sent again with the same number
        self.reply(op)

    def _end(self, op: int, payload: bytes) -> None:
        (flag,) = self._words(payload, 1)
        w = self.write
        if self.mode == "stub":
            if w is None:
                raise _Fail("END without BEGIN", 0, STUB_NOT_FLASHING)
            if w.written < w.total:
                raise _Fail(f"only {w.written} of {w.total} bytes arrived", 0, STUB_NOT_ENOUGH)
        self.write = None
        self.reply(op)
        if flag == 0:
            self._power_on()                # reboot; the strapping pins select download mode
        elif self.mode == "rom":
            self.mode = "app"               # "run user code"

    def do_SPI_FLASH_MD5(self, op: int, payload: bytes, chk: int) -> None:
        addr, size, z1, z2 = self._words(payload, 4)
        if z1 or z2:
            raise _Fail("MD5 parameters 3 and 4 must be 0")
        self._need_flash(addr, size)
        digest = hashlib.md5(self.ld.read(addr, size))
        self.reply(op, data=digest.digest() if self.mode == "stub" else digest.hexdigest().encode())

    def do_READ_FLASH_SLOW(self, op: int, payload: bytes, chk: int) -> None:
        addr, size = self._words(payload, 2)
        if size > 64:
            raise _Fail(f"ROM reads at most 64 bytes, asked {size}", ROM_READ_LENGTH, 0)
        self._need_flash(addr, size)
        self.reply(op, data=self.ld.read(addr, size).ljust(64, b"\xff"))

    def do_READ_FLASH(self, op: int, payload: bytes, chk: int) -> None:
        addr, size, packet, in_flight = self._words(payload, 4)
        if packet == 0 or in_flight == 0:
            raise _Fail("READ_FLASH packet size and window must be non-zero")
        self._need_flash(addr, size)
        self.reply(op)
        data = self.ld.read(addr, size)
        sent = acked = 0
        while acked < size:
            while sent < size and (sent - acked) < packet * in_flight:
                self.send_frame(data[sent:sent + packet])
                sent = min(size, sent + packet)
            ack = self.read_frame()
            if len(ack) != 4:
                self.ld.violations.append(f"stub: READ_FLASH: bad acknowledgement {ack[:16].hex()}")
                return
            acked = struct.unpack("<I", ack)[0]
        self.send_frame(hashlib.md5(data).digest())

    def do_ERASE_FLASH(self, op: int, payload: bytes, chk: int) -> None:
        self._words(payload, 0)
        self._need_flash(0, len(self.ld.flash))
        self._erase(0, len(self.ld.flash))
        self.reply(op)

    def do_ERASE_REGION(self, op: int, payload: bytes, chk: int) -> None:
        addr, size = self._words(payload, 2)
        if addr % SECTOR or size % SECTOR:
            raise _Fail(f"erase {addr:#x}+{size:#x} is not sector aligned", 0, STUB_BAD_LEN)
        self._need_flash(addr, size)
        self._erase(addr, addr + size)
        self.reply(op)

    # ------------------------------------------------------------------ RAM download (the stub)

    def do_MEM_BEGIN(self, op: int, payload: bytes, chk: int) -> None:
        size, blocks, block_size, addr = self._words(payload, 4)
        if not any(start <= addr and addr + size <= end for start, end in RAM_REGIONS):
            raise _Fail(f"RAM download to {addr:#x}+{size:#x} is outside IRAM/DRAM", 0x0F, STUB_BAD_LEN)
        if block_size == 0 or blocks * block_size < size:
            raise _Fail(f"{blocks} blocks of {block_size} cannot hold {size} bytes", 0x0E, STUB_BAD_LEN)
        self.mem, self.mem_seq = (size, blocks, block_size, addr), 0
        self.reply(op)

    def do_MEM_DATA(self, op: int, payload: bytes, chk: int) -> None:
        if self.mem is None:
            raise _Fail("MEM_DATA without MEM_BEGIN", ROM_FAILED, STUB_NOT_FLASHING)
        size, blocks, block_size, addr = self.mem
        seq, data = self._data_block(payload, chk)
        if seq != self.mem_seq or seq >= blocks or len(data) > block_size or seq * block_size + len(data) > size:
            raise _Fail(f"block {seq} ({len(data)} bytes) does not fit the MEM_BEGIN {self.mem}")
        self.mem_seq += 1
        at = addr + seq * block_size
        for start, end in RAM_REGIONS:
            if start <= at < end:
                self.ram[start][at - start:at - start + len(data)] = data
        self.reply(op)

    def do_MEM_END(self, op: int, payload: bytes, chk: int) -> None:
        flag, entry = self._words(payload, 2)
        self.mem = None
        self.reply(op)
        if flag != 0:
            return                          # no jump: stay in the loader
        for stub in self.ld._stubs:
            if entry == stub["entry"] and all(self._ram_holds(a, b) for a, b in stub["segments"]):
                self.mode = "stub"
                self.attached = True        # the stub attaches the flash when it starts
                self.ld.stub_runs += 1
                self.send_frame(OHAI)
                return
        self.ld.violations.append(f"{self.mode}: MEM_END jumped to {entry:#x}, which is not esptool's stub")
        self.mode = "app"

    def _ram_holds(self, addr: int, data: bytes) -> bool:
        for start, end in RAM_REGIONS:
            if start <= addr and addr + len(data) <= end:
                return bytes(self.ram[start][addr - start:addr - start + len(data)]) == data
        return False
