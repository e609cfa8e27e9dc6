"""eFuse words and fixed read-only registers of each virtual chip model (what READ_REG sees).

Bit positions are those esptool reads (``targets/esp32c2.py``, ``targets/esp32c3.py``,
``targets/esp32.py``, ``targets/esp8266.py``) and, for
the ESP32 MAC CRC, espefuse's ``efuse/esp32/fields.py`` (``EfuseMacField.calc_crc``, the ROM's
``esp_crc8``) with the field map of ``efuse_defs/esp32.yaml``.
"""

from __future__ import annotations

from typing import Callable, Protocol

MB = 1024 * 1024


class _Spec(Protocol):
    @property
    def efuse_base(self) -> int: ...
    @property
    def magic_value(self) -> int | None: ...


class FuseSource(Protocol):
    """What the eFuse words are made of (:class:`atfab.sim.chip.ChipIdentity` is one)."""

    @property
    def chip(self) -> str: ...
    @property
    def mac(self) -> bytes: ...
    @property
    def revision(self) -> tuple[int, int]: ...
    @property
    def flash_size(self) -> int: ...
    @property
    def flash_manufacturer(self) -> int: ...
    @property
    def spec(self) -> _Spec: ...

#: JEDEC manufacturer id -> (name, eFuse flash-vendor code of the C2 BLOCK2 word 7).
FLASH_VENDORS: dict[int, tuple[str, int]] = {0x20: ("XMC", 1), 0xC8: ("GD", 2), 0xA1: ("FM", 3)}

#: esptool ESPLoader.CHIP_DETECT_MAGIC_REG_ADDR (a ROM address whose word differs per chip).
CHIP_DETECT_MAGIC_REG_ADDR = 0x40001000
#: ESP32 APB_CTL_DATE (DR_REG_SYSCON_BASE + 0x7C): bit 31 is the third revision bit (v3).
ESP32_APB_CTL_DATE_ADDR = 0x3FF6607C
#: Low bits of APB_CTL_DATE: a date stamp esptool ignores (value not taken from a real chip).
ESP32_APB_CTL_DATE_STAMP = 0x16042000
#: ESP32 RTC calibration register esptool reads for the ROM's crystal estimate (value << 7).
ESP32_RTCCALICFG1 = 0x3FF5F06C
#: ESP32 ROM crystal estimate inputs: RTC calibration value (RTCCALICFG1 >> 7) and the 8 MHz
#: clock eFuse CK8M_FREQ (BLK0 word 4 [7:0]); esptool computes ``cali * 15625 * ck8m / 40``
#: (targets/esp32.py ``get_rom_cal_crystal_freq``): 40.04 MHz here, a drift of 0.1 % like a
#: real chip's, so the baud-rate compensation esptool applies matters.
ESP32_RTC_CALI, ESP32_CK8M_FREQ = 2010, 51
ESP32_ROM_XTAL_ESTIMATE_HZ = ESP32_RTC_CALI * 15625 * ESP32_CK8M_FREQ / 40


def embedded_flash_code(flash_size: int) -> int:
    """C2 eFuse flash-capacity code of an in-package flash (1 = 4 MB, 2 = 2 MB, 3 = 1 MB, 0 = none)."""
    return {4 * MB: 1, 2 * MB: 2, 1 * MB: 3}.get(flash_size, 0)


def esp32_mac_crc(mac: bytes) -> int:
    """CRC-8 of the ESP32 factory MAC (reflected polynomial 0x8C, init 0), over the MAC bytes in
    printed order; stored in BLK0 word 2 bits [23:16] (eFuse MAC_CRC)."""
    crc = 0
    for b in mac:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def _esp32c2_words(ident: FuseSource) -> dict[int, int]:
    """BLOCK2 words 0, 1, 7: MAC, revision, package, in-package flash.

    An in-package flash size (1/2/4 MB) reports the ESP8684H package (pkg 1) with that
    embedded flash; other sizes report a bare ESP32-C2 (pkg 0) with external flash.
    """
    base = ident.spec.efuse_base
    m = ident.mac
    major, minor = ident.revision
    cap = embedded_flash_code(ident.flash_size)
    package = 1 if cap else 0
    vendor = FLASH_VENDORS.get(ident.flash_manufacturer, ("", 0))[1] if cap else 0
    word0 = int.from_bytes(m[2:6], "big")
    word1 = (m[0] << 8) | m[1] | (minor << 16) | (major << 20) | (package << 22)
    word7 = (cap << 29) | (vendor << 24)
    return {base: word0, base + 4: word1, base + 28: word7}


def _esp32c3_words(ident: FuseSource) -> dict[int, int]:
    """BLOCK1 words 0, 1, 3, 5 (esptool ``targets/esp32c3.py``, base ``EFUSE_BLOCK1_ADDR``).

    word0 = MAC[2:6] big-endian, word1 [15:0] = MAC[0:2] (``read_mac`` packs ``>II`` of words 1, 0
    and drops 2 bytes); word3: minor revision bits [2:0] at [20:18], package [23:21] = 0 (ESP32-C3,
    QFN32), embedded flash capacity [29:27] = 0 (the flash is beside the chip, as on a WROOM-02;
    word4's vendor bits stay 0 with it); word5: minor revision bit 3 at [23], major [25:24].
    """
    base = ident.spec.efuse_base
    m = ident.mac
    major, minor = ident.revision
    word0 = int.from_bytes(m[2:6], "big")
    word1 = (m[0] << 8) | m[1]
    word3 = (minor & 7) << 18
    word5 = ((minor >> 3) << 23) | (major << 24)
    return {base: word0, base + 4: word1, base + 12: word3, base + 20: word5}


#: ESP32 major revision -> (BLK0 word3 bit 15, word5 bit 20, APB_CTL_DATE bit 31); esptool
#: ``get_major_chip_version`` maps the combined 3 bits 0/1/3/7 to v0/v1/v2/v3.
_ESP32_REV_BITS = {0: (0, 0, 0), 1: (1, 0, 0), 2: (1, 1, 0), 3: (1, 1, 1)}


def _esp32_words(ident: FuseSource) -> dict[int, int]:
    """BLK0 read words 0-6 of an ESP32-D0WD(-V3) as fitted on a WROOM-32(E).

    word1 = MAC[2:6] big-endian, word2 = CRC << 16 | MAC[0:2] (esptool ``read_mac`` packs
    ``>II`` of words 2, 1 and drops the first 2 bytes); word3: package 1 (D0WD) in [11:9], rev
    bit 0 in [15], CPU rated (bit 13) at 240 MHz (bit 12 clear), both cores and BT enabled, SPI
    pads 0 (flash on the default pins); word4: CK8M_FREQ [7:0], ADC_VREF [12:8]; word5: rev
    bit 1 in [20], minor revision in [25:24]; words 0 and 6: no flash encryption, no secure
    boot, coding scheme None.
    """
    base = ident.spec.efuse_base
    m = ident.mac
    major, minor = ident.revision
    bit0, bit1, _ = _ESP32_REV_BITS[major]
    package = 1
    word1 = int.from_bytes(m[2:6], "big")
    word2 = (esp32_mac_crc(m) << 16) | (m[0] << 8) | m[1]
    word3 = ((package & 7) << 9) | ((package >> 3) << 2) | (bit0 << 15) | (1 << 13)
    word4 = ESP32_CK8M_FREQ | (0x03 << 8)
    word5 = (bit1 << 20) | (minor << 24)
    return {base + 4 * i: w for i, w in enumerate((0, word1, word2, word3, word4, word5, 0))}


def _esp32_fixed(ident: FuseSource) -> dict[int, int]:
    """The chip magic word, APB_CTL_DATE (revision bit 2) and the RTC calibration value."""
    bit2 = _ESP32_REV_BITS[ident.revision[0]][2]
    return {CHIP_DETECT_MAGIC_REG_ADDR: ident.spec.magic_value or 0,
            ESP32_APB_CTL_DATE_ADDR: (bit2 << 31) | ESP32_APB_CTL_DATE_STAMP,
            ESP32_RTCCALICFG1: ESP32_RTC_CALI << 7}


def _esp8266_words(ident: FuseSource) -> dict[int, int]:
    """OTP words 0x3FF00050/54/58/5C as esptool ``ESP8266ROM.read_mac`` and ``get_efuses`` read them.

    MAC0 [31:24] = MAC byte 5; MAC1 [15:0] = MAC bytes 3, 4 (big-endian), [23:16] the OUI selector
    (unused once MAC3 names the OUI); MAC3 [23:0] = the OUI (bytes 0..2). Bit 4 of word 0 and bit
    16 of word 2 stay clear: an ESP8266EX, not an ESP8285 with in-package flash.
    """
    base = ident.spec.efuse_base
    m = ident.mac
    mac0 = m[5] << 24
    mac1 = (m[3] << 8) | m[4]
    mac3 = int.from_bytes(m[0:3], "big")
    return {base: mac0, base + 4: mac1, base + 8: 0, base + 12: mac3}


def _esp8266_fixed(ident: FuseSource) -> dict[int, int]:
    """The chip magic word esptool tells the ESP8266 apart by."""
    return {CHIP_DETECT_MAGIC_REG_ADDR: ident.spec.magic_value or 0}


_EFUSE: dict[str, Callable[[FuseSource], dict[int, int]]] = {
    "esp32c2": _esp32c2_words, "esp32c3": _esp32c3_words, "esp32": _esp32_words, "esp8266": _esp8266_words}
_FIXED: dict[str, Callable[[FuseSource], dict[int, int]]] = {"esp32": _esp32_fixed, "esp8266": _esp8266_fixed}


def efuse_words(ident: FuseSource) -> dict[int, int]:
    """eFuse read registers (address -> value) of ``ident``; the rest of the block reads 0."""
    return _EFUSE[ident.chip](ident)


def fixed_registers(ident: FuseSource) -> dict[int, int]:
    """Read-only registers outside the eFuse block that esptool reads (none on the C2 model)."""
    fixed = _FIXED.get(ident.chip)
    return fixed(ident) if fixed else {}


__all__ = ["efuse_words", "fixed_registers", "esp32_mac_crc", "embedded_flash_code", "FLASH_VENDORS",
           "CHIP_DETECT_MAGIC_REG_ADDR", "ESP32_APB_CTL_DATE_ADDR", "ESP32_RTCCALICFG1",
           "ESP32_ROM_XTAL_ESTIMATE_HZ"]
