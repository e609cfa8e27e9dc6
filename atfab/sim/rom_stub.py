"""The commands only the flasher stub has (READ_FLASH, ERASE_FLASH, ERASE_REGION, RUN_USER_CODE).

A mixin of :class:`atfab.sim.rom_loader.DownloadSession`, which registers these handlers once
the stub runs; split out of ``rom_loader.py`` to keep that module about one idea (the ROM
loader and the commands ROM and stub share). The session provides ``flash``, ``_respond``,
``_send_frame``, ``_next_frame``, ``_frames``, ``_decoder`` and ``_pending``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import struct
from collections import deque
from dataclasses import dataclass
from importlib import resources

from .flash import SECTOR, NorFlash
from .rom_protocol import (READ_PACKET_MAX, ROM_FAILED, ROM_INVALID_MSG, STUB_BAD_DATA_LEN,
                           STUB_FAILED_SPI_OP, CommandFail)
from .slip import SlipDecoder


@dataclass(frozen=True)
class StubImage:
    """The code of one flasher stub as esptool uploads it: where its text goes, and its entry."""

    text_start: int
    text_sha256: bytes
    entry: int


@functools.lru_cache(maxsize=None)
def known_stubs(chip: str) -> tuple[StubImage, ...]:
    """The flasher stubs esptool ships for ``chip`` (``esptool/targets/stub_flasher/{1,2}/<chip>.json``).

    A RAM program is the stub only when its text segment, load address and entry are one of
    these: only then does the virtual chip greet with ``OHAI``. The data segment is not compared
    (esptool's stub plugins patch it in place).
    """
    found = []
    try:
        root = resources.files("esptool") / "targets" / "stub_flasher"
    except ModuleNotFoundError:        # no esptool installed: no RAM program is the stub
        return ()
    for subdir in ("1", "2"):
        path = root / subdir / f"{chip}.json"
        if not path.is_file():
            continue
        stub = json.loads(path.read_text())
        text = base64.b64decode(stub["text"])
        found.append(StubImage(stub["text_start"], hashlib.sha256(text).digest(), stub["entry"]))
    return tuple(found)


def is_known_stub(chip: str, segments: dict[int, bytes], entry: int) -> bool:
    """True when the RAM ``segments`` (load address -> bytes) and ``entry`` are esptool's stub."""
    for stub in known_stubs(chip):
        text = segments.get(stub.text_start)
        if entry == stub.entry and text is not None and hashlib.sha256(text).digest() == stub.text_sha256:
            return True
    return False


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


__all__ = ["StubCommands", "StubImage", "known_stubs", "is_known_stub"]
