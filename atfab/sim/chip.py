"""What a virtual chip looks like from the ROM loader's register window.

:class:`ChipIdentity` holds what eFuses and the flash chip say about one module (MAC, chip
revision, package, flash JEDEC id). :class:`Registers` is the memory-mapped register file that
READ_REG/WRITE_REG reach: eFuse words, the UART clock divider esptool uses to guess the
crystal, and the SPI1 "user command" sequence esptool drives to read the flash JEDEC id and
SFDP table. Addresses and bit fields are those of esptool's ``targets/esp32c2.py`` and
``targets/esp32c3.py`` (the C2 class inherits the C3 SPI1 layout).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

#: Espressif Systems organisationally unique identifiers (IEEE registry).
ESPRESSIF_OUIS: tuple[bytes, ...] = (
    bytes.fromhex("240AC4"), bytes.fromhex("30AEA4"), bytes.fromhex("7CDFA1"),
    bytes.fromhex("083AF2"), bytes.fromhex("348518"), bytes.fromhex("404CCA"),
)

MB = 1024 * 1024


@dataclass(frozen=True)
class ChipSpec:
    """Per-chip facts the ROM loader needs (only ESP32-C2 is modelled so far)."""

    name: str
    #: chip_id returned by GET_SECURITY_INFO (esptool's IMAGE_CHIP_ID).
    chip_id: int
    efuse_block2: int            # BLOCK2 read base: word0/1 = MAC, revision; word7 = flash
    spi1_base: int
    uart_clkdiv_reg: int
    xtal_hz: int
    #: The C2 ROM believes its crystal runs at 40 MHz whatever is fitted, so it programs
    #: ``40 MHz / arg`` on CHANGE_BAUDRATE (esptool compensates with ``baud * 40 // 26``).
    rom_assumed_xtal_hz: int
    #: Flash size the ROM assumes until SPI_SET_PARAMS (esptool: "The ROM defaults to 2MB").
    rom_default_flash_size: int
    #: Value field of the ROM's SYNC replies (any non-zero value means "ROM, not stub").
    rom_sync_value: int = 0x20120707
    #: Memory ranges (start, end) the stub may be loaded to (esptool MEMORY_MAP IRAM/DRAM).
    ram_ranges: tuple[tuple[int, int], ...] = ()
    #: RTC watchdog config register; bit 31 enables it (esptool ``--after watchdog-reset``).
    rtc_wdt_config0: int = 0


CHIPS: dict[str, ChipSpec] = {
    "esp32c2": ChipSpec(
        name="esp32c2", chip_id=12, efuse_block2=0x60008840, spi1_base=0x60002000,
        uart_clkdiv_reg=0x60000014, xtal_hz=26_000_000, rom_assumed_xtal_hz=40_000_000,
        rom_default_flash_size=2 * MB,
        ram_ranges=((0x3FCA0000, 0x3FCE0000), (0x4037C000, 0x403C0000)), rtc_wdt_config0=0x60008084,
    ),
}

#: JEDEC manufacturer id -> (name, eFuse flash-vendor code of the C2 BLOCK2 word 7).
FLASH_VENDORS: dict[int, tuple[str, int]] = {0x20: ("XMC", 1), 0xC8: ("GD", 2), 0xA1: ("FM", 3)}


def derive_mac(seed: object) -> bytes:
    """A base MAC that depends only on ``seed``: Espressif OUI, last byte a multiple of 4.

    ESP-IDF derives STA = base, softAP = base + 1, BT = base + 2, so a multiple of 4 keeps all
    three inside the same /30 the way factory-assigned MACs are.
    """
    digest = hashlib.sha256(f"atfab-sim-mac:{seed}".encode()).digest()
    oui = ESPRESSIF_OUIS[digest[0] % len(ESPRESSIF_OUIS)]
    return oui + bytes([digest[1], digest[2], digest[3] & 0xFC])


@dataclass(frozen=True)
class ChipIdentity:
    """What one module's eFuses and flash chip report."""

    chip: str = "esp32c2"
    mac: bytes = field(default_factory=lambda: derive_mac(0))
    #: (major, minor). v0.0 makes esptool refuse its flasher stub on the C2.
    revision: tuple[int, int] = (2, 0)
    flash_size: int = 4 * MB
    #: JEDEC id bytes as the RDID command returns them: manufacturer, memory type (capacity
    #: byte is derived from ``flash_size``). Default GigaDevice GD25Q-series.
    flash_manufacturer: int = 0xC8
    flash_memory_type: int = 0x40

    def __post_init__(self) -> None:
        if self.chip not in CHIPS:
            raise ValueError(f"no virtual chip model for {self.chip!r} (known: {', '.join(CHIPS)})")
        if len(self.mac) != 6:
            raise ValueError("MAC must be 6 bytes")
        major, minor = self.revision
        if not (0 <= major <= 3 and 0 <= minor <= 15):
            raise ValueError(f"chip revision v{major}.{minor} does not fit the eFuse fields")
        if self.flash_size < 64 * 1024 or self.flash_size & (self.flash_size - 1):
            raise ValueError(f"flash size {self.flash_size:#x} is not a power of two >= 64 KB")

    @property
    def spec(self) -> ChipSpec:
        return CHIPS[self.chip]

    @property
    def jedec_id(self) -> int:
        """RDID (0x9F) answer as esptool's ``flash_id()`` returns it, e.g. 0x1640C8."""
        capacity = self.flash_size.bit_length() - 1
        return (capacity << 16) | (self.flash_memory_type << 8) | self.flash_manufacturer

    @property
    def embedded_flash_code(self) -> int:
        """eFuse flash-capacity code of an in-package flash (1 = 4 MB, 2 = 2 MB, 3 = 1 MB, 0 = none)."""
        return {4 * MB: 1, 2 * MB: 2, 1 * MB: 3}.get(self.flash_size, 0)

    def efuse_words(self) -> dict[int, int]:
        """eFuse read registers (address -> value); everything else in the eFuse block reads 0.

        An in-package flash size (1/2/4 MB) reports the ESP8684H package (pkg 1) with that
        embedded flash; other sizes report a bare ESP32-C2 (pkg 0) with external flash.
        """
        base = self.spec.efuse_block2
        m = self.mac
        major, minor = self.revision
        cap = self.embedded_flash_code
        package = 1 if cap else 0
        vendor = FLASH_VENDORS.get(self.flash_manufacturer, ("", 0))[1] if cap else 0
        word0 = int.from_bytes(m[2:6], "big")
        word1 = (m[0] << 8) | m[1] | (minor << 16) | (major << 20) | (package << 22)
        word7 = (cap << 29) | (vendor << 24)
        return {base: word0, base + 4: word1, base + 28: word7}

    def sfdp(self) -> bytes:
        """A 256-byte JEDEC SFDP table: signature, basic flash parameter table, vendor header."""
        t = bytearray(b"\xff" * 256)
        t[0:8] = b"SFDP" + bytes([0x06, 0x01, 0x01, 0xFF])          # rev 1.6, 2 headers
        t[8:16] = bytes([0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF])   # BFPT @0x30, 16 dw
        t[16:24] = bytes([self.flash_manufacturer, 0x00, 0x01, 0x03, 0x90, 0x00, 0x00, 0xFF])
        bfpt = [0xFFF120E5, self.flash_size * 8 - 1, 0x6B08EB44, 0xBB423B08, 0xFFFFFFEE,
                0xFF00FFFF, 0xEB44FFFF, 0x520F200C, 0xFF00D810]
        t[0x30:0x30 + 4 * len(bfpt)] = struct.pack(f"<{len(bfpt)}I", *bfpt)
        return bytes(t)


# SPI1 register offsets and bits (esptool loader.run_spiflash_command, C3 layout).
SPI_CMD, SPI_ADDR, SPI_USR, SPI_USR1, SPI_USR2, SPI_MOSI_DLEN, SPI_MISO_DLEN, SPI_W0 = (
    0x00, 0x04, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x58)
SPI_CMD_USR = 1 << 18
SPI_USR_MISO = 1 << 28

RDID, RDSFDP, RDSR, RDSR2, RDSR3 = 0x9F, 0x5A, 0x05, 0x35, 0x15


class Registers:
    """The register window of one download-mode session.

    Plain RAM semantics (what was written reads back) except: eFuse words are read-only,
    UART_CLKDIV follows the current baud, and writing SPI_CMD_USR to SPI1's CMD register runs
    the user command at once (RDID, RDSFDP, RDSR) and reads back as done.
    """

    def __init__(self, identity: ChipIdentity, *, clkdiv: int) -> None:
        self.identity = identity
        self.spec = identity.spec
        self.clkdiv = clkdiv
        self._efuse = identity.efuse_words()
        self._sfdp = identity.sfdp()
        self._mem: dict[int, int] = {}
        self.spi_commands: list[int] = []   # command bytes run, for tests and debugging
        #: Set when the RTC watchdog was armed: the chip resets (the session restarts its ROM).
        self.reset_requested = False

    def read(self, addr: int) -> int:
        """Value at ``addr`` (32-bit)."""
        if addr in self._efuse:
            return self._efuse[addr]
        if addr == self.spec.uart_clkdiv_reg:
            return self.clkdiv & 0xFFFFF
        if addr == self.spec.spi1_base + SPI_CMD:
            return self._mem.get(addr, 0) & ~SPI_CMD_USR
        return self._mem.get(addr, 0)

    def write(self, addr: int, value: int, mask: int = 0xFFFFFFFF) -> None:
        """Masked write; eFuse words ignore writes."""
        value &= 0xFFFFFFFF
        if addr in self._efuse or self.spec.efuse_block2 - 0x40 <= addr < self.spec.efuse_block2 + 0x80:
            return
        if mask != 0xFFFFFFFF:
            value = (value & mask) | (self._mem.get(addr, 0) & ~mask & 0xFFFFFFFF)
        self._mem[addr] = value
        if addr == self.spec.rtc_wdt_config0 and value & (1 << 31):
            self.reset_requested = True
        base = self.spec.spi1_base
        if addr == base + SPI_CMD and value & SPI_CMD_USR:
            self._run_spi_user_command()
            self._mem[addr] = value & ~SPI_CMD_USR

    def _run_spi_user_command(self) -> None:
        base = self.spec.spi1_base
        command = self._mem.get(base + SPI_USR2, 0) & 0xFF
        usr = self._mem.get(base + SPI_USR, 0)
        self.spi_commands.append(command)
        if not usr & SPI_USR_MISO:
            return
        miso_bits = (self._mem.get(base + SPI_MISO_DLEN, 0) & 0xFFFFFF) + 1
        addr = self._mem.get(base + SPI_ADDR, 0) & 0xFFFFFF
        if command == RDID:
            j = self.identity.jedec_id
            reply = bytes([j & 0xFF, (j >> 8) & 0xFF, (j >> 16) & 0xFF])
        elif command == RDSFDP:
            reply = self._sfdp[addr:addr + 8]
        elif command in (RDSR, RDSR2, RDSR3):
            reply = b"\x00"
        else:
            reply = b"\xff" * 8       # nothing drives MISO: the line idles high
        nbytes = min(4, (miso_bits + 7) // 8)
        word = int.from_bytes(reply[:nbytes].ljust(4, b"\x00"), "little")
        if miso_bits < 32:
            word &= (1 << miso_bits) - 1
        self._mem[base + SPI_W0] = word


__all__ = ["ChipSpec", "CHIPS", "ChipIdentity", "Registers", "derive_mac", "ESPRESSIF_OUIS", "MB"]
