"""NOR flash of a virtual module: erase sets bytes to 0xFF, programming can only clear bits."""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path

SECTOR = 4096


class FlashError(Exception):
    """An access outside the chip or a misaligned erase."""


#: Status register bits a WRSR/WRSR2/WRSR3 can change: not WIP (bit 0) nor WEL (bit 1), which
#: the chip drives itself (GD25Q/W25Q: SR1 BP0-4/SRP0, SR2 SRP1/QE/CMP, SR3 drive strength).
STATUS_WRITABLE = 0xFFFFFC


class NorFlash:
    """A flash chip of ``size`` bytes, in memory or backed by a file (``path``) that persists.

    ``program`` ANDs data into the array like real NOR flash: writing over unerased data does
    not silently succeed, it corrupts (and ``program`` reports whether every bit took).
    ``status`` is the 24-bit status register (SR3:SR2:SR1) that RDSR/WRSR reach; it lives with
    the chip, so it survives resets and reconnects (it is not kept in the flash file).
    Thread-safe: the ROM loader and the AT firmware of one module may touch it concurrently.
    """

    status: int = 0

    def __init__(self, size: int, path: str | Path | None = None) -> None:
        if size <= 0 or size % SECTOR:
            raise FlashError(f"flash size {size:#x} is not a multiple of {SECTOR:#x}")
        self.size = size
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        self._file = None
        if self.path is None:
            self._mem: bytearray | mmap.mmap = bytearray(b"\xff") * size
        else:
            # the flash holds the unit's private key once provisioned: the file is 0600, always
            fresh = not self.path.exists()
            if fresh:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(b"\xff" * size)
            elif not self.path.is_file():
                raise FlashError(f"{self.path}: not a regular file")
            elif self.path.stat().st_size != size:
                raise FlashError(f"{self.path}: holds {self.path.stat().st_size} bytes, expected {size}")
            self._file = open(self.path, "r+b")
            os.fchmod(self._file.fileno(), 0o600)     # a state file from before this rule
            self._mem = mmap.mmap(self._file.fileno(), size)

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise FlashError(f"access {addr:#x}+{length:#x} outside flash of {self.size:#x} bytes")

    def read(self, addr: int, length: int) -> bytes:
        """Bytes at ``addr``."""
        with self._lock:
            self._check(addr, length)
            return bytes(self._mem[addr:addr + length])

    def erase(self, addr: int, length: int) -> None:
        """Erase whole sectors covering ``addr``..``addr+length`` (both must be sector aligned)."""
        with self._lock:
            self._check(addr, length)
            if addr % SECTOR or length % SECTOR:
                raise FlashError(f"erase {addr:#x}+{length:#x} is not sector aligned")
            self._mem[addr:addr + length] = b"\xff" * length

    def write_status(self, value: int, mask: int) -> None:
        """Set the status register bits in ``mask`` (only :data:`STATUS_WRITABLE` ones take)."""
        mask &= STATUS_WRITABLE
        with self._lock:
            self.status = (self.status & ~mask) | (value & mask)

    def erase_all(self) -> None:
        """Erase the whole chip."""
        self.erase(0, self.size)

    def program(self, addr: int, data: bytes) -> bool:
        """AND ``data`` into flash at ``addr``; True when the result equals ``data`` (all bits took)."""
        with self._lock:
            self._check(addr, len(data))
            old = self._mem[addr:addr + len(data)]
            n = len(data)
            new = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(n, "little")
            self._mem[addr:addr + len(data)] = new
            return new == bytes(data)

    def snapshot(self) -> bytes:
        """A copy of the whole chip."""
        with self._lock:
            return bytes(self._mem)

    def flush(self) -> None:
        """Push a file-backed flash to disk."""
        with self._lock:
            if isinstance(self._mem, mmap.mmap):
                self._mem.flush()

    def close(self) -> None:
        with self._lock:
            if isinstance(self._mem, mmap.mmap):
                self._mem.flush()
                self._mem.close()
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> "NorFlash":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["NorFlash", "FlashError", "SECTOR"]
