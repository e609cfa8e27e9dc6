"""Wire facts of the ROM loader / flasher-stub protocol shared by the download-mode handlers.

Opcodes are esptool's ``ESPLoader.ESP_CMDS``; ROM error bytes are the second status byte of a
ROM reply (esptool shows them as ``01xx``); stub codes are the big-endian 16-bit status of
esp-flasher-stub. :class:`CommandFail` is how a handler says "answer this command with an error".
"""

from __future__ import annotations

# Opcodes (esptool ESPLoader.ESP_CMDS)
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, READ_FLASH_SLOW, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0E, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END, SPI_FLASH_MD5 = 0x10, 0x11, 0x12, 0x13
GET_SECURITY_INFO = 0x14
ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE_OP = 0xD0, 0xD1, 0xD2, 0xD3

SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
OHAI = b"OHAI"

# ROM error byte (status byte 1; esptool shows them as 0x1xx)
ROM_INVALID_MSG, ROM_FAILED, ROM_BAD_CRC = 0x05, 0x06, 0x07
ROM_FLASH_WRITE_ERR, ROM_FLASH_READ_ERR, ROM_READ_LEN_ERR, ROM_DEFLATE_ERR = 0x08, 0x09, 0x0A, 0x0B
ROM_BAD_RAM_ADDR = 0x0F
# Stub status codes (big-endian u16)
STUB_BAD_DATA_LEN, STUB_BAD_CHECKSUM, STUB_INVALID_COMMAND = 0xC000, 0xC100, 0xC300
STUB_FAILED_SPI_OP, STUB_NOT_IN_FLASH_MODE, STUB_INFLATE_ERROR = 0xC400, 0xC600, 0xC700
STUB_NOT_ENOUGH_DATA, STUB_TOO_MUCH_DATA = 0xC800, 0xC900

READ_PACKET_MAX = 4096


class CommandFail(Exception):
    """A command failed: ``rom`` is the ROM error byte, ``stub`` the stub status code."""

    def __init__(self, rom: int, stub: int, why: str = "") -> None:
        super().__init__(why)
        self.rom = rom
        self.stub = stub


def checksum(data: bytes, state: int = 0xEF) -> int:
    """XOR of ``data`` seeded with 0xEF (the *_DATA checksum), computed by folding a big int."""
    if not data:
        return state
    v = int.from_bytes(data, "little")
    width = len(data) * 8
    while width > 8:
        half = ((width // 8 + 1) // 2) * 8
        v = (v & ((1 << half) - 1)) ^ (v >> half)
        width = half
    return (v & 0xFF) ^ state
