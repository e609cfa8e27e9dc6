"""What a virtual chip looks like from the ROM loader's register window.

:class:`ChipIdentity` holds what eFuses and the flash chip say about one module (MAC, chip
revision, package, flash JEDEC id). :class:`Registers` is the memory-mapped register file that
READ_REG/WRITE_REG reach: eFuse words, the UART clock divider esptool uses to guess the
crystal, and the SPI1 "user command" sequence esptool drives to read the flash JEDEC id and
SFDP table. Four chip models: ESP32-C2 (esptool ``targets/esp32c2.py``; the C2 class inherits
the C3 SPI1 layout of ``targets/esp32c3.py``), ESP32-C3 (``targets/esp32c3.py``: eFuse BLOCK1 MAC,
package/revision/flash words, chip id 5 from GET_SECURITY_INFO) and the classic ESP32 (``targets/esp32.py``: eFuse
BLK0, the chip magic register, APB_CTL_DATE, its own SPI1 layout), and the ESP8266
(``targets/esp8266.py``: OTP MAC words, magic register, a ROM with few commands). The per-chip eFuse and fixed
register images are in :mod:`atfab.sim.efuse`.
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from .efuse import ESP32_ROM_XTAL_ESTIMATE_HZ, efuse_words, embedded_flash_code, fixed_registers
from .rom_protocol import (FLASH_BEGIN, FLASH_DATA, FLASH_END, MEM_BEGIN, MEM_DATA, MEM_END, READ_REG, SYNC,
                           WRITE_REG)

if TYPE_CHECKING:
    from .flash import NorFlash

#: Espressif Systems organisationally unique identifiers (IEEE registry).
ESPRESSIF_OUIS: tuple[bytes, ...] = (
    bytes.fromhex("240AC4"), bytes.fromhex("30AEA4"), bytes.fromhex("7CDFA1"),
    bytes.fromhex("083AF2"), bytes.fromhex("348518"), bytes.fromhex("404CCA"),
)

MB = 1024 * 1024


@dataclass(frozen=True)
class SpiLayout:
    """SPI1 "user command" register offsets from the SPI1 base (esptool ``SPI_*_OFFS``)."""

    usr: int
    usr1: int
    usr2: int
    #: None: the chip has no data-length registers; the bit lengths sit in USR1 (ESP8266:
    #: MOSI bits - 1 at [25:17], MISO bits - 1 at [16:8], esptool ``set_data_lengths``).
    mosi_dlen: int | None
    miso_dlen: int | None
    w0: int
    #: The address register takes the address left-aligned (esptool ``SPI_ADDR_REG_MSB``).
    addr_msb: bool
    cmd: int = 0x00
    addr: int = 0x04


#: esptool ``targets/esp32c3.py`` (inherited by the C2): SPI_ADDR_REG_MSB = False.
SPI_C3_LAYOUT = SpiLayout(usr=0x18, usr1=0x1C, usr2=0x20, mosi_dlen=0x24, miso_dlen=0x28, w0=0x58,
                          addr_msb=False)
#: esptool ``targets/esp32.py``: W0 at 0x80, address register MSB-aligned (ESPLoader default).
SPI_ESP32_LAYOUT = SpiLayout(usr=0x1C, usr1=0x20, usr2=0x24, mosi_dlen=0x28, miso_dlen=0x2C, w0=0x80,
                             addr_msb=True)

#: esptool ``targets/esp8266.py``: SPI_REG_BASE 0x60000200, W0 at 0x40, no *_DLEN registers.
SPI_ESP8266_LAYOUT = SpiLayout(usr=0x1C, usr1=0x20, usr2=0x24, mosi_dlen=None, miso_dlen=None, w0=0x40,
                               addr_msb=True)


@dataclass(frozen=True)
class ChipSpec:
    """Per-chip facts the ROM loader needs (ESP32-C2, ESP32-C3, ESP32 and ESP8266 are modelled)."""

    name: str
    #: chip_id returned by GET_SECURITY_INFO (esptool's IMAGE_CHIP_ID).
    chip_id: int
    #: First eFuse read register the identity fills (C2: BLOCK2 word 0; ESP32: BLK0 word 0).
    efuse_base: int
    #: [start, end) of the eFuse register window: writes there are ignored.
    efuse_window: tuple[int, int]
    spi1_base: int
    uart_clkdiv_reg: int
    xtal_hz: int
    #: The crystal frequency the ROM believes in when it programs ``that / arg`` on CHANGE_BAUDRATE.
    #: C2: 40 MHz whatever is fitted (esptool sends ``baud * 40 // 26``); ESP32: its own estimate
    #: from the RTC calibration (esptool reads it back and sends ``baud * estimate // 40 MHz``).
    rom_assumed_xtal_hz: float
    #: Flash size the ROM assumes until SPI_SET_PARAMS (esptool: "The ROM defaults to 2MB").
    rom_default_flash_size: int
    spi: SpiLayout = SPI_C3_LAYOUT
    #: Value field of the ROM's SYNC replies (any non-zero value means "ROM, not stub").
    rom_sync_value: int = 0x20120707
    #: Memory ranges (start, end) the stub may be loaded to (esptool MEMORY_MAP IRAM/DRAM).
    ram_ranges: tuple[tuple[int, int], ...] = ()
    #: RTC watchdog config register; bit 31 enables it (esptool ``--after watchdog-reset``).
    rtc_wdt_config0: int = 0
    #: The ROM (and stub) answer GET_SECURITY_INFO (esptool SECURITY_INFO_SUPPORTED).
    security_info: bool = True
    #: Value at esptool's CHIP_DETECT_MAGIC_REG_ADDR 0x40001000 when the chip is told apart by it.
    magic_value: int | None = None
    #: Payload lengths the ROM takes for FLASH_BEGIN / FLASH_DEFL_BEGIN (16: no "encrypted" word).
    rom_flash_begin_lengths: tuple[int, ...] = (16, 20)
    #: 0: the ROM answers an unknown command with one error reply echoing its opcode. N: N error
    #: replies (status 01 05) whose opcode field is not the request's (the ESP32 ROM, 8 of them).
    rom_unknown_replies: int = 0
    #: UART clock once the stub runs (0 = the crystal); the ESP32 stub runs the APB from the PLL.
    stub_uart_clk_hz: int = 0
    #: (major, minor) revision of a module that does not say; highest minor the eFuses hold.
    default_revision: tuple[int, int] = (2, 0)
    max_minor: int = 15
    max_major: int = 3
    #: Status bytes after a ROM reply's data: 4 (``status, error, 0, 0``) or 2 (the ESP8266 ROM;
    #: esptool loader.py ``check_command``: "ROM bootloaders of the chips (except ESP8266) return
    #: another 2 bytes").
    rom_status_len: int = 4
    #: Opcodes the ROM has (None: every command the model knows). The ESP8266 ROM has no
    #: SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE, compressed writes, MD5 or flash reads: esptool
    #: never sends them to it (``stub_and_esp32_function_only``, ``flash_spi_attach`` → FLASH_BEGIN).
    rom_ops: frozenset[int] | None = None
    #: Clock the ROM's UART divider is taken from (0: the crystal). ESP8266: twice the 26 MHz
    #: crystal (esptool ``XTAL_CLK_DIVIDER = 2``).
    rom_uart_clk_hz: int = 0
    #: The ESP8266 ROM's FLASH_BEGIN erase bug: it erases the sectors up to the next 64 KB block
    #: boundary *and then* the whole requested count again (esptool ``ESP8266ROM.get_erase_size``
    #: sends a reduced size to make up for it).
    rom_erase_overshoot: bool = False
    #: The ROM has the SPI flash attached from boot (the ESP8266 ROM has no SPI_ATTACH; its
    #: FLASH_BEGIN attaches). Otherwise the flash answers only after SPI_ATTACH or the stub.
    rom_attached_at_boot: bool = False
    #: The stub writes FLASH_BEGIN(encrypted=1) data through the flash-encryption transform
    #: (:mod:`atfab.sim.flash_crypt`: the classic ESP32's, with the blank chip's zero key).
    stub_flash_encryption: bool = False
    #: UART0 rate of the ROM's boot messages: 115200 from a 40 MHz crystal, 74880 from a 26 MHz
    #: one (esptool's TestReset: "Mangled bytes are for C2 26 MHz when the baudrate doesn't match").
    rom_log_baud: int = 115200
    #: What the ROM prints on UART0 when it leaves an EN reset: (strap low = download, strap high =
    #: flash boot). ``boot:0xNN`` is the GPIO_STRAP register (esptool docs,
    #: advanced-topics/boot-mode-selection.rst "Boot Log": ESP32 bits GPIO5 0x01, MTDO 0x02, GPIO0
    #: 0x10; C-series GPIO8 0x04, GPIO9 0x08; ESP8266 "boot mode:(1,x)" download, "(3,x)" flash).
    rom_boot_log: tuple[str, str] = (
        "rst:0x1 (POWERON),boot:0x4 (DOWNLOAD(USB/UART0))\r\nwaiting for download\r\n",
        "rst:0x1 (POWERON),boot:0xc (SPI_FAST_FLASH_BOOT)\r\n")


CHIPS: dict[str, ChipSpec] = {
    "esp32c2": ChipSpec(
        name="esp32c2", chip_id=12, efuse_base=0x60008840, efuse_window=(0x60008800, 0x600088C0),
        spi1_base=0x60002000, uart_clkdiv_reg=0x60000014, xtal_hz=26_000_000, rom_assumed_xtal_hz=40_000_000,
        rom_default_flash_size=2 * MB,
        ram_ranges=((0x3FCA0000, 0x3FCE0000), (0x4037C000, 0x403C0000)), rtc_wdt_config0=0x60008084,
        rom_log_baud=74880,
    ),
    # esptool targets/esp32c3.py: chip told apart by GET_SECURITY_INFO (IMAGE_CHIP_ID 5, no magic
    # value), MAC in eFuse BLOCK1 (0x60008844..), the C3 SPI1 layout, a fixed 40 MHz crystal (the ROM
    # divides 40 MHz on CHANGE_BAUDRATE: ESPLoader.change_baud), RTC WDT at 0x60008090; the stub's text
    # at 0x40380000 (IRAM 0x4037C000..0x403E0000), data/bss at 0x3FC84000.. (DRAM 0x3FC80000..0x3FCE0000).
    "esp32c3": ChipSpec(
        name="esp32c3", chip_id=5, efuse_base=0x60008844, efuse_window=(0x60008800, 0x60008900),
        spi1_base=0x60002000, uart_clkdiv_reg=0x60000014, xtal_hz=40_000_000, rom_assumed_xtal_hz=40_000_000,
        rom_default_flash_size=2 * MB,
        ram_ranges=((0x3FC80000, 0x3FCE0000), (0x4037C000, 0x403E0000)), rtc_wdt_config0=0x60008090,
        default_revision=(0, 4), max_minor=15, max_major=3,
    ),
    "esp32": ChipSpec(
        name="esp32", chip_id=0, efuse_base=0x3FF5A000, efuse_window=(0x3FF5A000, 0x3FF5A100),
        spi1_base=0x3FF42000, spi=SPI_ESP32_LAYOUT, uart_clkdiv_reg=0x3FF40014, xtal_hz=40_000_000,
        rom_assumed_xtal_hz=ESP32_ROM_XTAL_ESTIMATE_HZ, rom_default_flash_size=2 * MB,
        # DRAM 0x3FFAE000.., IRAM + DIRAM_IRAM 0x40080000..0x400BFFFC (esptool ESP32ROM.MEMORY_MAP)
        ram_ranges=((0x3FFAE000, 0x40000000), (0x40080000, 0x400BFFFC)),
        security_info=False, magic_value=0x00F01D83, rom_flash_begin_lengths=(16,),
        rom_unknown_replies=8, stub_uart_clk_hz=80_000_000, default_revision=(3, 0), max_minor=3,
        stub_flash_encryption=True,
        rom_boot_log=(
            "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/"
            "SDIO_REI_REO_V2))\r\nwaiting for download\r\n",
            "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"),
    ),
    # esptool targets/esp8266.py: magic 0xFFF0C101, OTP MAC words at 0x3FF00050.., UART_CLKDIV
    # 0x60000014 divided from 52 MHz (2 x the 26 MHz crystal), DRAM 0x3FFE8000.. and IRAM
    # 0x40100000..0x40110000 (the stub's text starts at 0x4010C500, beyond esptool's MEMORY_MAP
    # IRAM entry, which ends at 0x40108000 and is only used to label ELF sections).
    "esp8266": ChipSpec(
        name="esp8266", chip_id=0, efuse_base=0x3FF00050, efuse_window=(0x3FF00050, 0x3FF00060),
        spi1_base=0x60000200, spi=SPI_ESP8266_LAYOUT, uart_clkdiv_reg=0x60000014, xtal_hz=26_000_000,
        rom_assumed_xtal_hz=26_000_000, rom_default_flash_size=16 * MB,
        ram_ranges=((0x3FFE8000, 0x40000000), (0x40100000, 0x40110000)),
        security_info=False, magic_value=0xFFF0C101, rom_flash_begin_lengths=(16,),
        stub_uart_clk_hz=52_000_000, default_revision=(0, 0), max_minor=0, max_major=0,
        rom_status_len=2, rom_uart_clk_hz=52_000_000, rom_erase_overshoot=True, rom_attached_at_boot=True,
        rom_ops=frozenset({SYNC, READ_REG, WRITE_REG, MEM_BEGIN, MEM_DATA, MEM_END, FLASH_BEGIN, FLASH_DATA,
                           FLASH_END}),
        rom_log_baud=74880,
        rom_boot_log=("\r\n ets Jan  8 2013,rst cause:2, boot mode:(1,7)\r\n\r\n",
                      "\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n\r\n"),
    ),
}

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
    #: (major, minor); None = the chip model's default (C2 v2.0, ESP32 v3.0). v0.0 makes
    #: esptool refuse its flasher stub on the C2.
    revision: tuple[int, int] = None  # type: ignore[assignment]  # set in __post_init__
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
        if self.revision is None:
            object.__setattr__(self, "revision", self.spec.default_revision)
        major, minor = self.revision
        if not (0 <= major <= self.spec.max_major and 0 <= minor <= self.spec.max_minor):
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
        """C2 eFuse flash-capacity code of an in-package flash (1 = 4 MB, 2 = 2 MB, 3 = 1 MB, 0 = none)."""
        return embedded_flash_code(self.flash_size)

    def efuse_words(self) -> dict[int, int]:
        """eFuse read registers (address -> value); everything else in the eFuse block reads 0."""
        return efuse_words(self)

    def readonly_registers(self) -> dict[int, int]:
        """Every register READ_REG answers from the identity: eFuse words plus fixed ones (the
        ESP32 chip magic word, APB_CTL_DATE, RTC calibration)."""
        return {**efuse_words(self), **fixed_registers(self)}

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


# SPI1 bits (esptool loader.run_spiflash_command); offsets are the chip's SpiLayout.
SPI_CMD_USR = 1 << 18
SPI_USR_MISO = 1 << 28
SPI_USR_MOSI = 1 << 27
SPI_USR_ADDR_LEN_SHIFT = 26

RDID, RDSFDP, RDSR, RDSR2, RDSR3 = 0x9F, 0x5A, 0x05, 0x35, 0x15
WRSR, WRSR2, WRSR3, WREN, WEVSR, WRDI = 0x01, 0x31, 0x11, 0x06, 0x50, 0x04
#: status register byte (shift) each read / write command reaches
_STATUS_READ = {RDSR: 0, RDSR2: 8, RDSR3: 16}
_STATUS_WRITE = {WRSR: 0, WRSR2: 8, WRSR3: 16}
STATUS_WEL = 1 << 1

#: RTC slow clock (the ~136-150 kHz internal RC) and the watchdog stage-0 timeout when none is set.
RTC_SLOW_CLK_HZ = 150_000
RTC_WDT_DEFAULT_TICKS = 2000


class Registers:
    """The register window of one download-mode session.

    Plain RAM semantics (what was written reads back) except: eFuse words and the chip's fixed
    registers are read-only, UART_CLKDIV follows the current baud, and writing SPI_CMD_USR to
    SPI1's CMD register runs the user command at once and reads back as done: RDID, RDSFDP, the
    status register (RDSR/RDSR2/RDSR3; WRSR 8 or 16 bits, WRSR2, WRSR3 after WREN or WEVSR, on
    ``flash.status``). Until the SPI pins are attached (``attached``: SPI_ATTACH, the stub's
    start, or a ROM that attaches at boot) nothing answers: RDID reads all ones, every other
    read 0.
    """

    def __init__(self, identity: ChipIdentity, *, clkdiv: int, flash: "NorFlash | None" = None,
                 attached: bool = False) -> None:
        self.identity = identity
        self.spec = identity.spec
        self.clkdiv = clkdiv
        self.flash = flash
        self.attached = attached
        self._write_enabled = False
        self._fixed = identity.readonly_registers()
        self._sfdp = identity.sfdp()
        self._mem: dict[int, int] = {}
        self.spi_commands: list[int] = []   # command bytes run, for tests and debugging
        #: monotonic time the RTC watchdog was armed at (None: not armed); it resets the chip
        #: ``WDTCONFIG1`` slow-clock ticks later (esptool arms it with 2000, then locks it).
        self._wdt_armed_at: float | None = None

    def read(self, addr: int) -> int:
        """Value at ``addr`` (32-bit)."""
        if addr in self._fixed:
            return self._fixed[addr]
        if addr == self.spec.uart_clkdiv_reg:
            return self.clkdiv & 0xFFFFF
        if addr == self.spec.spi1_base + self.spec.spi.cmd:
            return self._mem.get(addr, 0) & ~SPI_CMD_USR
        return self._mem.get(addr, 0)

    def write(self, addr: int, value: int, mask: int = 0xFFFFFFFF) -> None:
        """Masked write; eFuse words and fixed registers ignore writes."""
        value &= 0xFFFFFFFF
        lo, hi = self.spec.efuse_window
        if addr in self._fixed or lo <= addr < hi:
            return
        if mask != 0xFFFFFFFF:
            value = (value & mask) | (self._mem.get(addr, 0) & ~mask & 0xFFFFFFFF)
        self._mem[addr] = value
        if addr == self.spec.rtc_wdt_config0 and value & (1 << 31) and self._wdt_armed_at is None:
            self._wdt_armed_at = time.monotonic()
        cmd = self.spec.spi1_base + self.spec.spi.cmd
        if addr == cmd and value & SPI_CMD_USR:
            self._run_spi_user_command()
            self._mem[addr] = value & ~SPI_CMD_USR

    def watchdog_remaining(self) -> float | None:
        """Seconds until the armed RTC watchdog resets the chip (None: not armed)."""
        if self._wdt_armed_at is None:
            return None
        ticks = self._mem.get(self.spec.rtc_wdt_config0 + 4, 0) or RTC_WDT_DEFAULT_TICKS
        return self._wdt_armed_at + ticks / RTC_SLOW_CLK_HZ - time.monotonic()

    def _spi_address(self) -> int:
        base, spi = self.spec.spi1_base, self.spec.spi
        reg = self._mem.get(base + spi.addr, 0)
        if not spi.addr_msb:
            return reg & 0xFFFFFF
        bits = ((self._mem.get(base + spi.usr1, 0) >> SPI_USR_ADDR_LEN_SHIFT) & 0x3F) + 1
        return reg >> (32 - bits)        # the address sits in the top ``bits`` bits

    def _run_spi_user_command(self) -> None:
        base, spi = self.spec.spi1_base, self.spec.spi
        command = self._mem.get(base + spi.usr2, 0) & 0xFF
        usr = self._mem.get(base + spi.usr, 0)
        self.spi_commands.append(command)
        if not usr & (SPI_USR_MOSI | SPI_USR_MISO):
            self._spi_plain_command(command)
        if usr & SPI_USR_MOSI:
            self._spi_write_command(command, self._mosi_bytes())
        if not usr & SPI_USR_MISO:
            return
        if spi.miso_dlen is None:
            miso_bits = ((self._mem.get(base + spi.usr1, 0) >> 8) & 0x1FF) + 1
        else:
            miso_bits = (self._mem.get(base + spi.miso_dlen, 0) & 0xFFFFFF) + 1
        addr = self._spi_address()
        if not self.attached:
            reply = b"\xff" * 8 if command == RDID else b"\x00" * 8   # flash not on the bus yet
        elif command == RDID:
            j = self.identity.jedec_id
            reply = bytes([j & 0xFF, (j >> 8) & 0xFF, (j >> 16) & 0xFF])
        elif command == RDSFDP:
            reply = self._sfdp[addr:addr + 8]
        elif command in _STATUS_READ:
            status = self._status() | (STATUS_WEL if self._write_enabled else 0)
            reply = bytes([(status >> _STATUS_READ[command]) & 0xFF])
        else:
            reply = b"\xff" * 8       # nothing drives MISO: the line idles high
        nbytes = min(4, (miso_bits + 7) // 8)
        word = int.from_bytes(reply[:nbytes].ljust(4, b"\x00"), "little")
        if miso_bits < 32:
            word &= (1 << miso_bits) - 1
        self._mem[base + spi.w0] = word

    def _status(self) -> int:
        return self.flash.status if self.flash is not None else 0

    def _mosi_bytes(self) -> bytes:
        """The bytes a user command shifts out on MOSI (W0.. little-endian, MOSI bit length)."""
        base, spi = self.spec.spi1_base, self.spec.spi
        if spi.mosi_dlen is None:
            bits = ((self._mem.get(base + spi.usr1, 0) >> 17) & 0x1FF) + 1
        else:
            bits = (self._mem.get(base + spi.mosi_dlen, 0) & 0xFFFFFF) + 1
        n = (bits + 7) // 8
        words = b"".join(self._mem.get(base + spi.w0 + 4 * i, 0).to_bytes(4, "little") for i in range(-(-n // 4)))
        return words[:n]

    def _spi_write_command(self, command: int, data: bytes) -> None:
        """WREN/WEVSR/WRDI and the status register writes (a write needs WREN or WEVSR first)."""
        if not self.attached or self.flash is None:
            return
        if command in (WREN, WEVSR):
            self._write_enabled = True
        elif command == WRDI:
            self._write_enabled = False
        elif command in _STATUS_WRITE and self._write_enabled:
            shift = _STATUS_WRITE[command]
            value = int.from_bytes(data[:2] if command == WRSR else data[:1], "little")
            width = 16 if command == WRSR and len(data) >= 2 else 8
            self.flash.write_status(value << shift, ((1 << width) - 1) << shift)
            self._write_enabled = False          # the chip clears WEL when the write completes

    def _spi_plain_command(self, command: int) -> None:
        """A command without data phases (WREN 0x06, WEVSR 0x50, WRDI 0x04)."""
        self._spi_write_command(command, b"")


__all__ = ["ChipSpec", "CHIPS", "SpiLayout", "SPI_ESP8266_LAYOUT", "ChipIdentity", "Registers", "derive_mac", "ESPRESSIF_OUIS", "MB"]
