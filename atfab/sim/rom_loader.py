"""ROM download mode of a virtual ESP32-C2, and the esptool flasher stub it can be turned into.

One :class:`DownloadSession` serves one host on a :class:`~atfab.sim.link.Link` against a
:class:`~atfab.sim.flash.NorFlash`. It answers exactly what the chip answers, so that the real
esptool (CLI and Python API) drives it over ``socket://``:

* ROM format until a RAM program is started (MEM_END with the execute flag): replies carry a
  4-byte status ``[status, error, 0, 0]``; MD5 is 32 hex characters; flash reads go through
  READ_FLASH_SLOW (64 bytes); FLASH_BEGIN erases the whole region before answering; every
  written block is read back and a mismatch answers error 0x08 ("flash write error").
* Stub format after the raw ``OHAI`` frame (esp-flasher-stub as shipped with esptool 5.x):
  2-byte big-endian status (0xC000.. codes), raw 16-byte MD5, READ_FLASH with 4 KB frames each
  acknowledged by the host and a final raw MD5 frame, ERASE_FLASH/ERASE_REGION, just-in-time
  sector erase while writing, and replies to *_DATA sent *before* the data is written: a
  failure of that deferred work is answered to the next command, as the stub does.

* Only esptool's own flasher stub (its text at its address and its entry, compared with the
  stub JSON esptool ships for the chip) greets with ``OHAI``; any other RAM program started
  with MEM_END ends the session with :data:`RAM_APP` (nothing here executes it). The flash
  answers SPI user commands only once attached (SPI_ATTACH, or the stub's start); the status
  register is read and written through them. The ESP32 stub writes FLASH_BEGIN(encrypted=1)
  data through the flash-encryption transform with the blank chip's all-zero BLOCK1 key.

Modelling choices where the ROM's behaviour is not documented: ROM FLASH_DATA writes block
``seq`` at ``offset + seq * block_size``; FLASH_END value 0 ("reboot") returns to a fresh ROM
session on the same connection (an open connection stands for the boot strap held in download
mode; esp-flasher-stub leaves this reboot as a TODO); value 1 ("run user code") and an armed
RTC watchdog (a system reset that samples the released strap) end the session with
:data:`RUN_USER_CODE` so the module boots from flash. A RAM program started from the stub
(``load-ram``) silences the port, unless it is the stub itself (it starts afresh and greets).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field

from .chip import ChipIdentity, Registers
from .flash import SECTOR, FlashError, NorFlash
from .link import Link, LinkClosed
from .rom_protocol import (  # noqa: F401 - opcodes and codes are re-exported for tests and tools
    CHANGE_BAUDRATE, ERASE_FLASH, ERASE_REGION, FLASH_BEGIN, FLASH_DATA, FLASH_DEFL_BEGIN, FLASH_DEFL_DATA,
    FLASH_DEFL_END, FLASH_END, GET_SECURITY_INFO, MEM_BEGIN, MEM_DATA, MEM_END, OHAI, READ_FLASH,
    READ_FLASH_SLOW, READ_REG, ROM_BAD_CRC, ROM_BAD_RAM_ADDR, ROM_DEFLATE_ERR, ROM_FAILED,
    ROM_FLASH_READ_ERR, ROM_FLASH_WRITE_ERR, ROM_INVALID_MSG, ROM_READ_LEN_ERR, RUN_USER_CODE_OP,
    SPI_ATTACH, SPI_FLASH_MD5, SPI_SET_PARAMS, STUB_BAD_CHECKSUM, STUB_BAD_DATA_LEN, STUB_FAILED_SPI_OP,
    STUB_INFLATE_ERROR, STUB_INVALID_COMMAND, STUB_NOT_ENOUGH_DATA, STUB_NOT_IN_FLASH_MODE,
    STUB_TOO_MUCH_DATA, SYNC, SYNC_PAYLOAD, WRITE_REG, CommandFail, checksum)
from .flash_crypt import BLOCK as CRYPT_BLOCK
from .flash_crypt import esp32_flash_encrypt
from .rom_stub import StubCommands, is_known_stub
from .slip import SlipDecoder, encode

#: :meth:`DownloadSession.serve` results
CLOSED = "closed"              # the host went away (or the link was dropped)
RUN_USER_CODE = "run"          # the ROM left download mode to run the firmware in flash
RAM_APP = "ram_app"            # a RAM program other than the stub took over the port


class _WatchdogReset(Exception):
    """The armed RTC watchdog expired while the loader waited for a command."""


@dataclass
class SessionStats:
    """What one session moved; ``rx_bytes`` is every byte the host sent (the wire payload)."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    commands: int = 0
    stub_started: bool = False
    #: (rx_bytes so far, new baud) at each CHANGE_BAUDRATE
    baud_changes: list[tuple[int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class _FlashOp:
    offset: int            # next write address (stub) / region start (ROM)
    size: int              # bytes expected (stub: remaining)
    blocks: int
    block_size: int
    compressed: bool
    end: int               # end of the region the begin command covers
    next_erase: int = 0    # stub: first sector not erased yet
    inflater: "zlib._Decompress | None" = None
    written: int = 0       # ROM deflate: bytes written so far
    next_seq: int = 0      # the block number the next data command must carry
    encrypted: bool = False  # stub: written through the flash-encryption transform
    crypt_tail: bytes = b""  # plaintext not yet a whole 16-byte encryption block


class DownloadSession(StubCommands):
    """One power-on in download mode, served until the host goes away.

    ``baud`` is the rate the host syncs at (the ROM auto-bauds to it); ``paced`` makes the
    link follow CHANGE_BAUDRATE. ``serve()`` returns :data:`CLOSED`, :data:`RUN_USER_CODE`
    or :data:`RAM_APP`.
    """

    def __init__(self, link: Link, flash: NorFlash, identity: ChipIdentity, *,
                 baud: int = 115200, paced: bool = False) -> None:
        self.link = link
        self.flash = flash
        self.identity = identity
        self.spec = identity.spec
        self.paced = paced
        self.stats = SessionStats()
        self._decoder = SlipDecoder()
        self._frames: deque[bytes | None] = deque()
        self._rx_base = link.rx_count
        self._tx_base = link.tx_count
        self._baud = baud
        self._reset_rom()

    # -- state -------------------------------------------------------------------------------
    def _reset_rom(self) -> None:
        """Power-on (or software reset) state of the ROM loader."""
        self.stub = False
        self.regs = Registers(self.identity, clkdiv=(self.spec.rom_uart_clk_hz or self.spec.xtal_hz) // self._baud,
                              flash=self.flash, attached=self.spec.rom_attached_at_boot)
        self.flash_size_cfg = self.spec.rom_default_flash_size
        self._mem: dict | None = None
        self._ram: dict[int, bytearray] = {}   # RAM segments loaded since the last MEM_END
        self._op: _FlashOp | None = None
        self._pending: int | None = None   # stub: error of deferred work, told to the next command

    # -- I/O ---------------------------------------------------------------------------------
    def _next_frame(self) -> bytes | None:
        while not self._frames:
            wait = self.regs.watchdog_remaining()
            if wait is not None and wait <= 0:
                raise _WatchdogReset()
            data = self.link.recv(65536, timeout=1.0 if wait is None else wait)
            if data:
                self._frames.extend(self._decoder.feed(data))
        return self._frames.popleft()

    def _send_frame(self, payload: bytes) -> None:
        self.link.send(encode(payload))

    def _respond(self, op: int, value: int = 0, data: bytes = b"", error: CommandFail | None = None) -> None:
        if error is not None:
            data = b""
            status = struct.pack(">H", error.stub) if self.stub else bytes([1, error.rom, 0, 0])
        else:
            status = b"\x00\x00" if self.stub else b"\x00\x00\x00\x00"
        if not self.stub:
            status = status[:self.spec.rom_status_len]
        body = data + status
        self._send_frame(struct.pack("<BBHI", 1, op, len(body), value) + body)

    def _update_stats(self) -> None:
        self.stats.rx_bytes = self.link.rx_count - self._rx_base
        self.stats.tx_bytes = self.link.tx_count - self._tx_base

    # -- main loop ---------------------------------------------------------------------------
    def serve(self) -> str:
        """Answer commands until the host leaves or the chip leaves download mode."""
        try:
            while True:
                frame = self._next_frame()
                result = self._handle(frame)
                if result is not None:
                    return result
        except _WatchdogReset:
            # RTC watchdog (esptool --after watchdog-reset) expired: a system reset that samples
            # the boot strap again; esptool has released it, so the chip boots from flash.
            return RUN_USER_CODE
        except LinkClosed:
            return CLOSED
        finally:
            self._update_stats()

    def _handle(self, frame: bytes | None) -> str | None:
        if frame is None or len(frame) < 8:
            return None                     # line noise: the loader waits for the next frame
        direction, op, size, chk = struct.unpack_from("<BBHI", frame)
        payload = frame[8:]
        self.stats.commands += 1
        if direction != 0:
            self._respond(op, error=CommandFail(ROM_INVALID_MSG, STUB_INVALID_COMMAND, "not a request"))
            return None
        if len(payload) != size:
            self._respond(op, error=CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, "size field"))
            return None
        if self.stub and self._pending is not None:
            code, self._pending = self._pending, None
            self._respond(op, error=CommandFail(0, code))
            return None
        handler = self._handlers().get(op)
        try:
            if handler is None:
                if not self.stub and self.spec.rom_unknown_replies:
                    self._unsupported(op)
                    return None
                raise CommandFail(ROM_INVALID_MSG, STUB_INVALID_COMMAND, f"unknown command {op:#04x}")
            return handler(op, payload, chk)
        except CommandFail as fail:
            self.stats.errors.append(f"{op:#04x}: {fail}")
            self._respond(op, error=fail)
            return None
        except FlashError as exc:
            self.stats.errors.append(f"{op:#04x}: {exc}")
            self._respond(op, error=CommandFail(ROM_FAILED, STUB_FAILED_SPI_OP, str(exc)))
            return None

    def _unsupported(self, op: int) -> None:
        """How the ESP32 ROM refuses a command it does not have (GET_SECURITY_INFO among them).

        esptool (loader.py ``command``) raises UnsupportedCommandError on a reply whose opcode is
        not the request's and whose status is ``01 05``, then drains "the unsupported command
        response [...] sent 8 times [...] 14 bytes [...] including delimiter 0xC0 bytes": 8 frames
        of 8 header + 4 status bytes. Which opcode the ROM puts there is not documented; esptool
        only needs it to differ, and 0x00 (no command has it) is what this model sends.
        """
        self.stats.errors.append(f"{op:#04x}: not supported by the {self.spec.name} ROM")
        reply = encode(struct.pack("<BBHI", 1, 0x00, 4, 0) + bytes([1, ROM_INVALID_MSG, 0, 0]))
        self.link.send(reply * self.spec.rom_unknown_replies)

    def _handlers(self):
        common = {
            SYNC: self._sync, READ_REG: self._read_reg, WRITE_REG: self._write_reg,
            SPI_ATTACH: self._spi_attach,
            SPI_SET_PARAMS: self._spi_set_params, CHANGE_BAUDRATE: self._change_baud,
            MEM_BEGIN: self._mem_begin, MEM_DATA: self._mem_data, MEM_END: self._mem_end,
            FLASH_BEGIN: self._flash_begin, FLASH_DATA: self._flash_data, FLASH_END: self._flash_end,
            FLASH_DEFL_BEGIN: self._flash_begin, FLASH_DEFL_DATA: self._defl_data,
            FLASH_DEFL_END: self._flash_end, SPI_FLASH_MD5: self._md5,
        }
        if self.spec.security_info:
            common[GET_SECURITY_INFO] = self._security_info
        if self.stub:
            common.update({READ_FLASH: self._read_flash, ERASE_FLASH: self._erase_flash,
                           ERASE_REGION: self._erase_region, RUN_USER_CODE_OP: self._run_user_code})
        else:
            common[READ_FLASH_SLOW] = self._read_flash_slow
            if self.spec.rom_ops is not None:
                common = {op: h for op, h in common.items() if op in self.spec.rom_ops}
        return common

    # -- basic commands ----------------------------------------------------------------------
    def _sync(self, op: int, payload: bytes, chk: int) -> None:
        if payload != SYNC_PAYLOAD:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, "bad sync pattern")
        value = 0 if self.stub else self.spec.rom_sync_value
        for _ in range(8):
            self._respond(op, value=value)

    def _read_reg(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 4:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        (addr,) = struct.unpack("<I", payload)
        self._respond(op, value=self.regs.read(addr))

    def _write_reg(self, op: int, payload: bytes, chk: int) -> str | None:
        if not payload or len(payload) % 16:
            raise CommandFail(ROM_INVALID_MSG, STUB_NOT_ENOUGH_DATA)
        for i in range(0, len(payload), 16):
            addr, value, mask, _delay_us = struct.unpack_from("<IIII", payload, i)
            self.regs.write(addr, value, mask)
        self._respond(op)
        return None

    def _security_info(self, op: int, payload: bytes, chk: int) -> None:
        if payload:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        # flags, flash_crypt_cnt, 7 key purposes, chip_id, api/eco version
        info = struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, self.spec.chip_id, 0)
        self._respond(op, data=info)

    def _spi_attach(self, op: int, payload: bytes, chk: int) -> None:
        # The ROM takes an extra "is legacy" word; the stub only the pin word.
        if len(payload) != (4 if self.stub else 8):
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        self.regs.attached = True          # the SPI flash pins are routed to SPI1 from now on
        self._respond(op)

    def _spi_set_params(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 24:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        _fl_id, total, _block, _sector, _page, _mask = struct.unpack("<6I", payload)
        self.flash_size_cfg = total
        self._respond(op)

    def _change_baud(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 8:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        new, _old = struct.unpack("<II", payload)
        if new == 0:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, "baud 0")
        self._respond(op)
        if self.stub:
            actual = new
            self.regs.clkdiv = (self.spec.stub_uart_clk_hz or self.spec.xtal_hz) // new
        else:
            # The ROM computes its divider from the crystal it assumes, not the one fitted.
            actual = round(new * self.spec.xtal_hz / self.spec.rom_assumed_xtal_hz)
            self.regs.clkdiv = int(self.spec.rom_assumed_xtal_hz // new)
        self._baud = actual
        self._update_stats()
        self.stats.baud_changes.append((self.stats.rx_bytes, actual))
        if self.paced:
            self.link.set_baud(actual)

    # -- RAM download (stub upload) ----------------------------------------------------------
    def _mem_begin(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 16:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        size, blocks, block_size, addr = struct.unpack("<IIII", payload)
        if not self.stub and not any(lo <= addr and addr + size <= hi for lo, hi in self.spec.ram_ranges):
            raise CommandFail(ROM_BAD_RAM_ADDR, STUB_BAD_DATA_LEN, f"RAM load to {addr:#x}")
        self._mem = {"remaining": size, "addr": addr, "seq": 0}
        self._ram[addr] = bytearray()
        self._respond(op)

    def _split_block(self, payload: bytes, begun: bool, begin_name: str) -> tuple[int, bytes]:
        """``(seq, data)`` of a MEM_DATA / FLASH_DATA / FLASH_DEFL_DATA payload (16-byte header + data)."""
        if len(payload) < 16:
            raise CommandFail(ROM_INVALID_MSG, STUB_NOT_ENOUGH_DATA)
        if not begun:
            raise CommandFail(ROM_FAILED, STUB_NOT_IN_FLASH_MODE, f"no {begin_name}")
        length, seq = struct.unpack_from("<II", payload)
        data = payload[16:]
        if length != len(data):
            raise CommandFail(ROM_INVALID_MSG, STUB_TOO_MUCH_DATA, "length field")
        return seq, data

    def _mem_data(self, op: int, payload: bytes, chk: int) -> None:
        seq, data = self._split_block(payload, self._mem is not None, "MEM_BEGIN")
        length = len(data)
        if length > self._mem["remaining"]:
            raise CommandFail(ROM_INVALID_MSG, STUB_TOO_MUCH_DATA)
        if seq != self._mem["seq"]:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, f"RAM block {seq}, expected {self._mem['seq']}")
        if not self.stub and checksum(data) != chk & 0xFF:
            raise CommandFail(ROM_BAD_CRC, STUB_BAD_CHECKSUM)
        self._mem["remaining"] -= length
        self._mem["seq"] += 1
        self._ram[self._mem["addr"]] += data
        self._respond(op)

    def _mem_end(self, op: int, payload: bytes, chk: int) -> str | None:
        if len(payload) != 8:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        if self._mem is None:
            raise CommandFail(ROM_FAILED, STUB_NOT_IN_FLASH_MODE, "no MEM_BEGIN")
        no_execute, entry = struct.unpack("<II", payload)
        self._mem = None
        segments, self._ram = {a: bytes(d) for a, d in self._ram.items()}, {}
        self._respond(op)
        if no_execute:
            return None
        if not is_known_stub(self.spec.name, segments, entry):
            return RAM_APP           # some other program runs (nothing here executes it)
        # esptool's flasher stub (its exact code at its address): it greets and takes over. A
        # running stub loaded with it again (esptool --before no-reset-no-sync cannot know the stub
        # runs, so it uploads it) jumps to the fresh copy, which greets the same way.
        self._send_frame(OHAI)
        self.stub = True
        self.regs.attached = True            # the stub attaches the SPI flash when it starts
        if self.spec.stub_uart_clk_hz:       # same baud, now divided from the stub's UART clock
            self.regs.clkdiv = self.spec.stub_uart_clk_hz // self._baud
        self._op = None
        self._pending = None
        self.stats.stub_started = True
        return None

    # -- flash writing -----------------------------------------------------------------------
    def _flash_limit(self) -> int:
        """Highest address + 1 that flash commands may touch."""
        if self.stub:
            return self.flash.size
        return min(self.flash_size_cfg, self.flash.size)

    def _flash_begin(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) not in ((16, 20) if self.stub else self.spec.rom_flash_begin_lengths):
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        size, blocks, block_size, offset = struct.unpack_from("<IIII", payload)
        encrypted = bool(len(payload) == 20 and struct.unpack_from("<I", payload, 16)[0])
        if encrypted and not (self.stub and self.spec.stub_flash_encryption):
            raise CommandFail(ROM_FAILED, STUB_FAILED_SPI_OP, f"encrypted writes are not modelled on {self.spec.name}")
        if encrypted and offset % CRYPT_BLOCK:
            raise CommandFail(ROM_FAILED, STUB_FAILED_SPI_OP, "encrypted write not 16-byte aligned")
        compressed = op == FLASH_DEFL_BEGIN
        start = offset - offset % SECTOR
        end = -(-(offset + size) // SECTOR) * SECTOR
        if end > self._flash_limit():
            raise CommandFail(ROM_FAILED, STUB_FAILED_SPI_OP, f"region ends at {end:#x}, beyond flash")
        self._op = _FlashOp(offset=offset, size=size, blocks=blocks, block_size=block_size,
                            compressed=compressed, end=end, next_erase=start, encrypted=encrypted,
                            inflater=zlib.decompressobj() if compressed else None)
        if not self.stub and self.spec.rom_erase_overshoot:
            end = self._esp8266_rom_erase(offset, size)
            self._op.end = self._op.next_erase = end
        elif not self.stub and end > start:
            self.flash.erase(start, end - start)      # the ROM erases everything up front
            self._op.next_erase = end
        elif self.stub and end > start:
            self._erase_to(start + SECTOR)            # the stub starts the first erase at once
        self._respond(op)

    def _esp8266_rom_erase(self, offset: int, size: int) -> int:
        """What the ESP8266 ROM's FLASH_BEGIN erases for ``size`` bytes at ``offset``; the end.

        ``size`` sectors are rounded up, then the ROM erases the head sectors up to the next
        64 KB block boundary (at most ``size``'s count) and after them the full count again:
        ``head + count`` sectors from the first. esptool's ``get_erase_size`` inverts exactly
        this, so the region erased is the image's (rounded up to an even count when it is
        shorter than twice the head).
        """
        count = -(-size // SECTOR)
        first = offset // SECTOR
        head = min(16 - first % 16, count)
        erased = head + count if count else 0
        end = min((first + erased) * SECTOR, self.flash.size)
        if end > first * SECTOR:
            self.flash.erase(first * SECTOR, end - first * SECTOR)
        return end

    def _erase_to(self, target: int) -> None:
        op = self._op
        assert op is not None
        while op.next_erase < min(target, op.end):
            self.flash.erase(op.next_erase, SECTOR)
            op.next_erase += SECTOR

    def _data_header(self, payload: bytes, chk: int) -> tuple[int, bytes]:
        seq, data = self._split_block(payload, self._op is not None, "FLASH_BEGIN")
        if checksum(data) != chk & 0xFF:
            raise CommandFail(ROM_BAD_CRC, STUB_BAD_CHECKSUM, f"checksum of block {seq}")
        op = self._op
        if seq != op.next_seq or seq >= op.blocks:     # esptool numbers blocks 0, 1, ... < blocks
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, f"block {seq}, expected {op.next_seq} of {op.blocks}")
        if not self.stub and not op.compressed and len(data) != op.block_size:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, f"block of {len(data)} bytes, not {op.block_size}")
        op.next_seq += 1
        return seq, data

    def _program(self, addr: int, data: bytes) -> bool:
        """Program ``data``; False when a bit would have had to go from 0 to 1."""
        if addr + len(data) > self._flash_limit():
            return False
        return self.flash.program(addr, data)

    def _flash_data(self, op: int, payload: bytes, chk: int) -> None:
        seq, data = self._data_header(payload, chk)
        fop = self._op
        assert fop is not None
        if fop.compressed:
            raise CommandFail(ROM_FAILED, STUB_NOT_IN_FLASH_MODE, "FLASH_DATA after FLASH_DEFL_BEGIN")
        if not self.stub:
            addr = fop.offset + seq * fop.block_size
            if not self._program(addr, data):
                raise CommandFail(ROM_FLASH_WRITE_ERR, STUB_FAILED_SPI_OP, f"read-back mismatch at {addr:#x}")
            self._respond(op)
            return
        self._respond(op)                 # the stub acknowledges, then writes
        self._stub_write(data[:fop.size])

    def _stub_write(self, data: bytes) -> None:
        fop = self._op
        assert fop is not None
        if len(data) > fop.size:
            self._pending = STUB_TOO_MUCH_DATA
            return
        self._erase_to(fop.offset + len(data))
        addr, stored = fop.offset, data
        if fop.encrypted:
            # The flash controller encrypts whole 16-byte blocks; a partial one waits for the rest.
            plain = fop.crypt_tail + data
            keep = len(plain) % CRYPT_BLOCK if fop.size > len(data) else 0
            addr = fop.offset - len(fop.crypt_tail)
            fop.crypt_tail = plain[len(plain) - keep:] if keep else b""
            try:
                stored = esp32_flash_encrypt(plain[:len(plain) - keep], addr)
            except ValueError as exc:
                self.stats.errors.append(str(exc))
                self._pending = STUB_FAILED_SPI_OP
                stored = b""
        if stored and not self._program(addr, stored):
            self.stats.errors.append(f"stub write mismatch at {addr:#x}")
            self._pending = STUB_FAILED_SPI_OP
        fop.offset += len(data)
        fop.size -= len(data)

    def _defl_data(self, op: int, payload: bytes, chk: int) -> None:
        _seq, data = self._data_header(payload, chk)
        fop = self._op
        assert fop is not None and fop.inflater is not None
        if not fop.compressed:
            raise CommandFail(ROM_FAILED, STUB_NOT_IN_FLASH_MODE, "FLASH_DEFL_DATA after FLASH_BEGIN")
        if self.stub:
            self._respond(op)
        try:
            out = fop.inflater.decompress(data)
        except zlib.error as exc:
            if self.stub:
                self._pending = STUB_INFLATE_ERROR
                return
            raise CommandFail(ROM_DEFLATE_ERR, STUB_INFLATE_ERROR, str(exc)) from None
        if self.stub:
            self._stub_write(out)
            return
        addr = fop.offset + fop.written
        if fop.written + len(out) > fop.size:
            raise CommandFail(ROM_DEFLATE_ERR, STUB_TOO_MUCH_DATA, "inflated past the region")
        if out and not self._program(addr, out):
            raise CommandFail(ROM_FLASH_WRITE_ERR, STUB_FAILED_SPI_OP, f"read-back mismatch at {addr:#x}")
        fop.written += len(out)
        self._respond(op)

    def _flash_end(self, op: int, payload: bytes, chk: int) -> str | None:
        if len(payload) != 4:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        if self.stub:
            if self._op is None:
                raise CommandFail(ROM_FAILED, STUB_NOT_IN_FLASH_MODE)
            if self._op.size != 0:
                raise CommandFail(ROM_FAILED, STUB_BAD_DATA_LEN, f"{self._op.size} bytes still expected")
        (run_user_code,) = struct.unpack("<I", payload)
        self._op = None
        self._respond(op)
        if run_user_code and not self.stub:
            return RUN_USER_CODE
        if not run_user_code:
            self._reset_rom()                 # software reset: straps still say download mode
        return None

    # -- flash reading and erasing -----------------------------------------------------------
    def _md5(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 16:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        addr, size, _, _ = struct.unpack("<IIII", payload)
        if addr + size > self._flash_limit():
            raise CommandFail(ROM_FLASH_READ_ERR, STUB_FAILED_SPI_OP, "MD5 beyond flash")
        digest = hashlib.md5(self.flash.read(addr, size))
        self._respond(op, data=digest.digest() if self.stub else digest.hexdigest().encode())

    def _read_flash_slow(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 8:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        addr, length = struct.unpack("<II", payload)
        if length > 64:
            raise CommandFail(ROM_READ_LEN_ERR, STUB_BAD_DATA_LEN)
        if addr + length > self._flash_limit():
            raise CommandFail(ROM_FLASH_READ_ERR, STUB_FAILED_SPI_OP)
        data = self.flash.read(addr, min(64, self.flash.size - addr))
        self._respond(op, data=data.ljust(64, b"\x00"))   # always a 64-byte buffer


__all__ = ["DownloadSession", "SessionStats", "checksum", "CLOSED", "RUN_USER_CODE",
           "RAM_APP", "SYNC_PAYLOAD"]
