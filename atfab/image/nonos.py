"""ESP8266 NONOS SDK flash images (generation G0): the synthetic AT firmware and how one is read.

A G0 module's flash holds no partition table (reference §11, 512 KB map of the v0.21 manual):
``boot.bin`` (the second-stage boot, an ESP8266 "v1" image, magic 0xE9) at 0x00000, ``user1.bin``
(the application, a "v2" image: magic 0xEA, the irom0 segment, then a v1 header with the RAM
segments, checksum and the SDK's CRC-32) at 0x01000, ``esp_init_data_default.bin`` (RF init data,
128 bytes) at 0x7C000 and ``blank.bin`` (4 KB of 0xFF) at 0x3E000 and 0x7E000 to factory
initialise the user and system parameter areas. The image formats are esptool's own
(``bin_image.ESP8266ROMFirmwareImage`` / ``ESP8266V2FirmwareImage``), used to write and to read.

The synthetic firmware is what demos and tests flash: a valid boot.bin and user1.bin whose irom0
segment carries the strings a NONOS AT build prints for AT+GMR (``AT version:<v>`` and
``SDK version:<v>``), so the virtual module knows what was flashed. A real NONOS AT user1.bin is
recognised the same way (its irom0 holds the same strings).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Protocol

from esptool.bin_image import ESP8266ROMFirmwareImage, ESP8266V2FirmwareImage, ImageSegment, esp8266_crc32
from esptool.targets import ESP8266ROM

from ..core.errors import InputError
from ..core.esptool_log import EsptoolSink, routed
from ..core.firmware import FirmwareProfile
from ..core.firmware.catalog import chip_data

KB = 1024
BOOT_OFFSET = 0x00000
USER1_OFFSET = 0x01000
SECTOR = 0x1000
#: esptool ESP8266ROM.FLASH_SIZES / FLASH_FREQUENCY codes (high / low nibble of header byte 3).
FLASH_SIZE_CODES = {512 * KB: 0x00, 256 * KB: 0x10, 1024 * KB: 0x20, 2048 * KB: 0x30, 4096 * KB: 0x40}
FLASH_MODES = {"qio": 0, "qout": 1, "dio": 2, "dout": 3}
FLASH_FREQS = {"40m": 0x0, "26m": 0x1, "20m": 0x2, "80m": 0xF}
#: The marker of atfab's synthetic images (a real build's irom0 has no such string).
SYNTHETIC_MARK = b"atfab synthetic NONOS AT firmware"
_AT_VERSION = re.compile(rb"AT version:([0-9][0-9A-Za-z.\-]{0,31})\x00")
#: A real NONOS AT build prints its version from numbers (``AT version:%d.%d.%d.%d(%s %s)`` in
#: NONOS SDK 3.0's AT 1.7): the format string is there, the version is not readable from the bytes.
_AT_FORMAT = rb"AT version:%"
_SDK_VERSION = re.compile(rb"SDK version:([0-9][0-9A-Za-z.()\-]{0,31})\x00")
#: The custom info a NONOS AT 1.x user_init hands to at_set_custom_info (ESP8266_NONOS_SDK
#: examples/at/user/user_main.c:182: "compile time:" __DATE__ " " __TIME__ "\r\n" ESP_AT_FW_VERSION); a
#: literal string in the image, which AT+GMR prints after the SDK line.
_CUSTOM_INFO = re.compile(rb"compile time:[ -~]{1,40}(?:\r\n[ -~]{1,63})?\x00")


@dataclass(frozen=True)
class NonosApp:
    """What a flashed (or given) user1.bin says about itself (``at_version`` "" = a real build whose
    version is printed from numbers, not readable from its bytes)."""

    at_version: str
    sdk_version: str
    entry: int
    flash_mode: int
    flash_size_freq: int
    synthetic: bool
    sha256: str
    custom_info: str = ""       # NONOS AT 1.x: "compile time:…\r\nBin version(…):…" ("" = none, v0.21)


def _header_byte(flash_size: int, flash_freq: str, size_name: str = "") -> int:
    """Header byte 3: the flash size code (esptool's ``ESP8266ROM.FLASH_SIZES``, by name when given:
    ``2MB-c1`` = 0x50, the NONOS SDK's 1024+1024 map) and the frequency."""
    if size_name:
        if size_name not in ESP8266ROM.FLASH_SIZES:
            raise InputError(f"an ESP8266 image cannot say flash size {size_name}", field="flash_size")
        return ESP8266ROM.FLASH_SIZES[size_name] | FLASH_FREQS[flash_freq]
    if flash_size not in FLASH_SIZE_CODES:
        raise InputError(f"an ESP8266 image cannot say flash size {flash_size:#x}", field="flash_size")
    return FLASH_SIZE_CODES[flash_size] | FLASH_FREQS[flash_freq]


def size_name_of(header_byte: int) -> str | None:
    """esptool's name of the flash size an ESP8266 image header byte 3 says (None: no such code)."""
    code = header_byte & 0xF0
    return next((name for name, c in ESP8266ROM.FLASH_SIZES.items() if c == code), None)


def _filler(seed: str, size: int) -> bytes:
    out = bytearray()
    block = seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def synthetic_boot_bin(*, flash_size: int = 512 * KB, flash_mode: str = "qio", flash_freq: str = "40m",
                       size_name: str = "") -> bytes:
    """A valid second-stage boot.bin ("v1" image with one IRAM and one DRAM segment)."""
    img = ESP8266ROMFirmwareImage()
    img.flash_mode = FLASH_MODES[flash_mode]
    img.flash_size_freq = _header_byte(flash_size, flash_freq, size_name)
    img.entrypoint = 0x40100004
    img.segments = [ImageSegment(0x40100000, _filler("boot.iram", 1856)),
                    ImageSegment(0x3FFE8000, b"atfab synthetic 2nd stage boot\x00".ljust(776, b"\x00"))]
    saved = img.save(None)
    assert isinstance(saved, tuple)        # v1 images: (irom, image); a boot has no irom
    return saved[1]


def synthetic_user1_bin(firmware: FirmwareProfile, *, flash_size: int = 512 * KB, flash_mode: str = "qio",
                        flash_freq: str = "40m", size_name: str = "") -> bytes:
    """A valid user1.bin ("v2" image) of the NONOS AT build ``firmware`` describes: its AT and SDK
    version strings and, for a 1.x build, the custom info its user_init registers (release data
    ``compile_date``/``compile_time``/``bin_version``)."""
    if firmware.generation != "G0":
        raise InputError(f"{firmware.release} ({firmware.chip}) is not a NONOS AT firmware", field="synthetic")
    strings = (SYNTHETIC_MARK + b"\x00" + f"AT version:{firmware.core_version}".encode() + b"\x00"
               + f"SDK version:{firmware.sdk_version}".encode() + b"\x00")
    build = chip_data(firmware.release, firmware.chip)
    if build.get("compile_date"):
        info = f"compile time:{build['compile_date']} {build['compile_time']}"
        strings += (info + (f"\r\n{build['bin_version']}" if build.get("bin_version") else "")).encode() + b"\x00"
    img = ESP8266V2FirmwareImage()
    img.flash_mode = FLASH_MODES[flash_mode]
    img.flash_size_freq = _header_byte(flash_size, flash_freq, size_name)
    img.entrypoint = 0x40100004
    irom = ImageSegment(ESP8266ROM.IROM_MAP_START + USER1_OFFSET + 0x10, strings + _filler("user1.irom", 4096))
    img.segments = [irom, ImageSegment(0x40100000, _filler("user1.iram", 2048)),
                    ImageSegment(0x3FFE8000, _filler("user1.dram", 512))]
    data = img.save(None)
    assert isinstance(data, bytes)
    return data


def read_user1(data: bytes) -> NonosApp:
    """Decode a user1.bin (esptool checks its header and checksum); :class:`InputError` if it is not one
    or names no AT version."""
    try:
        with routed(EsptoolSink()):      # esptool warns about header disagreements on its logger
            img = ESP8266V2FirmwareImage(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - esptool raises FatalError / struct.error on garbage
        raise InputError(f"not an ESP8266 v2 application image: {exc}", field="user1") from None
    if img.calculate_checksum() != img.checksum:
        raise InputError(f"application image checksum 0x{img.checksum:02x}, its segments sum to "
                         f"0x{img.calculate_checksum():02x}", field="user1")
    end = _v2_end(data)
    if end is not None and esp8266_crc32(data[:end]) != int.from_bytes(data[end:end + 4], "little"):
        raise InputError("application image CRC-32 does not match (the SDK boot refuses it)", field="user1")
    irom = b"".join(bytes(s.data) for s in img.segments)
    at = _AT_VERSION.search(irom)
    sdk = _SDK_VERSION.search(irom)
    info = _CUSTOM_INFO.search(irom)
    if at is None and _AT_FORMAT not in irom:
        raise InputError("the application image names no AT version (not an AT firmware)", field="user1")
    return NonosApp(at.group(1).decode() if at else "", sdk.group(1).decode() if sdk else "", img.entrypoint,
                    img.flash_mode,
                    img.flash_size_freq, SYNTHETIC_MARK in irom, hashlib.sha256(data).hexdigest(),
                    info.group(0)[:-1].decode() if info else "")


def read_boot(data: bytes) -> ESP8266ROMFirmwareImage:
    """Decode a boot.bin ("v1" image) the way the ROM checks it; :class:`InputError` if it is not valid."""
    try:
        with routed(EsptoolSink()):
            img = ESP8266ROMFirmwareImage(io.BytesIO(data))
            img.verify()
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"not an ESP8266 boot image: {exc}", field="boot") from None
    if img.calculate_checksum() != img.checksum:
        raise InputError(f"boot image checksum 0x{img.checksum:02x}, its segments sum to "
                         f"0x{img.calculate_checksum():02x} (the ROM stops at csum)", field="boot")
    return img


def _v2_end(data: bytes) -> int | None:
    """Offset of the CRC-32 esptool's ``ESP8266V2FirmwareImage.save`` appends (after the 16-byte
    aligned checksum of the second header's segments); None when the bytes end before it."""
    try:
        irom_len = int.from_bytes(data[12:16], "little")
        pos = 16 + irom_len
        count = data[pos + 1]
        pos += 8
        for _ in range(count):
            pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "little")
        pos = (pos + 16) & ~15            # checksum byte at the end of the 16-byte aligned block
        return pos if pos + 4 <= len(data) else None
    except IndexError:
        return None


#: Size of the NONOS SDK's RF init data file (esp_init_data_default.bin).
INIT_DATA_SIZE = 128


def synthetic_init_data() -> bytes:
    """A placeholder for esp_init_data_default.bin (128 bytes). Not RF calibration data: the virtual
    module never reads it; a real station flashes the SDK's own file (a recipe's build folder)."""
    return (b"atfab placeholder: flash the NONOS SDK's esp_init_data_default.bin".ljust(INIT_DATA_SIZE, b"\xff"))


def synthetic_files(layout: "NonosLayoutLike", firmware: FirmwareProfile, *, flash_size: int, flash_mode: str,
                    flash_freq: str) -> list[tuple[int, str, bytes]]:
    """(offset, file name, bytes) of the synthetic NONOS AT firmware for a download map, by offset."""
    size_name = getattr(layout, "size_name", "")
    data = {"boot.bin": synthetic_boot_bin(flash_size=flash_size, flash_mode=flash_mode, flash_freq=flash_freq,
                                           size_name=size_name),
            "user1.bin": synthetic_user1_bin(firmware, flash_size=flash_size, flash_mode=flash_mode,
                                             flash_freq=flash_freq, size_name=size_name),
            "esp_init_data_default.bin": synthetic_init_data()}
    return [(off, name, data.get(name.split("@")[0], b"\xff" * SECTOR)) for name, off in layout.regions()]


class NonosLayoutLike(Protocol):
    """:class:`atfab.image.profiles.NonosLayout`: file name and offset of each download-map entry."""

    def regions(self) -> tuple[tuple[str, int], ...]: ...


__all__ = ["synthetic_files", "synthetic_init_data", "NonosLayoutLike", "NonosApp", "synthetic_boot_bin", "synthetic_user1_bin", "read_user1", "read_boot", "BOOT_OFFSET",
           "USER1_OFFSET", "SYNTHETIC_MARK", "FLASH_SIZE_CODES", "size_name_of"]
