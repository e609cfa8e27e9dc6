"""The commands only the flasher stub has (READ_FLASH, ERASE_FLASH, ERASE_REGION, RUN_USER_CODE).

A mixin of :class:`atfab.sim.rom_loader.DownloadSession`, which registers these handlers once
the stub runs; split out of ``rom_loader.py`` to keep that module about one idea (the ROM
loader and the commands ROM and stub share). The session provides ``flash``, ``_respond``,
``_send_frame``, ``_next_frame``, ``_frames``, ``_decoder`` and ``_pending``.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque

from .flash import SECTOR, NorFlash
from .rom_protocol import (READ_PACKET_MAX, ROM_FAILED, ROM_INVALID_MSG, STUB_BAD_DATA_LEN,
                           STUB_FAILED_SPI_OP, CommandFail)
from .slip import SlipDecoder


class StubCommands:
    """Handlers of the stub-only commands (replies in stub format: 2-byte status)."""

    flash: "NorFlash"
    _frames: "deque[bytes | None]"
    _decoder: "SlipDecoder"
    _pending: int | None

    def _respond(self, op: int, value: int = 0, data: bytes = b"", error: CommandFail | None = None) -> None:
        raise NotImplementedError

    def _send_frame(self, payload: bytes) -> None:
        raise NotImplementedError

    def _next_frame(self) -> bytes | None:
        raise NotImplementedError

    def _read_flash(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 16:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        offset, length, packet, _inflight = struct.unpack("<IIII", payload)
        self._respond(op)
        # Everything below is the stub's deferred work: failures go to the next command.
        if packet > READ_PACKET_MAX or packet == 0:
            self._pending = STUB_BAD_DATA_LEN
            return
        if offset + length > self.flash.size:
            self._pending = STUB_FAILED_SPI_OP
            return
        self._frames.clear()
        self._decoder.reset()
        md5 = hashlib.md5()
        sent = acked = unacked = 0
        while sent < length or acked < length:
            if sent < length and unacked < 1:       # the stub keeps one packet in flight
                chunk = self.flash.read(offset + sent, min(packet, length - sent))
                md5.update(chunk)
                self._send_frame(chunk)
                sent += len(chunk)
                unacked += 1
                continue
            ack = self._next_frame()
            if ack is None or len(ack) != 4:
                break
            (acked,) = struct.unpack("<I", ack)
            unacked = max(0, unacked - 1)
        self._send_frame(md5.digest())

    def _erase_flash(self, op: int, payload: bytes, chk: int) -> None:
        self.flash.erase_all()
        self._respond(op)

    def _erase_region(self, op: int, payload: bytes, chk: int) -> None:
        if len(payload) != 8:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN)
        addr, size = struct.unpack("<II", payload)
        if addr % SECTOR or size % SECTOR:
            raise CommandFail(ROM_INVALID_MSG, STUB_BAD_DATA_LEN, "not sector aligned")
        if addr + size > self.flash.size:
            raise CommandFail(ROM_FAILED, STUB_FAILED_SPI_OP, "erase beyond flash")
        self.flash.erase(addr, size)
        self._respond(op)

    def _run_user_code(self, op: int, payload: bytes, chk: int) -> None:
        # esp-flasher-stub: no reply, and the reset it would do is not implemented.
        return None


__all__ = ["StubCommands"]
