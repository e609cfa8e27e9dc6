"""ESP app images: build the synthetic AT firmware, read version info from any ESP-IDF app.

There is no real ESP-AT binary in this project. :func:`make_app_image` builds a small but valid
ESP-IDF app image with esptool's own image classes: one DROM segment that starts with an
``esp_app_desc_t`` (as every ESP-IDF app does) followed by an AT-core record
``ATCORE:<core version>\\0ATCOMMIT:<commit>\\0`` from which the virtual module prints ``AT+GMR``
(§2.4), a DRAM segment and an IRAM segment holding a ``j .`` loop at the entry point.
:func:`read_app_info` reads the same information from ours and from real esp-at images (those
have no AT-core record: ``at_core`` is None).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Any

from ..core.errors import InputError

APP_DESC_MAGIC = 0xABCD5432
#: esp_app_desc_t: magic, secure_version, reserv1[2], version[32], project_name[32], time[16],
#: date[16], idf_ver[32], app_elf_sha256[32], min/max_efuse_blk_rev_full, mmu_page_size, reserv3[3],
#: reserv2[18] — 256 bytes.
APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")
#: esp_bootloader_desc_t: magic 0x50, reserved[3], version, idf_ver[32], date_time[24], reserved[16].
BOOTLOADER_DESC = struct.Struct("<B3sI32s24s16s")
ATCORE_MARKER = b"ATCORE:"
ATCOMMIT_MARKER = b"ATCOMMIT:"
_RECORD_RE = re.compile(rb"ATCORE:([^\x00]{1,200})\x00(?:ATCOMMIT:([^\x00]{0,64})\x00)?")
IMAGE_MAGIC = 0xE9
_HEADER = struct.Struct("<BBBBI")           # magic, segments, flash mode, size/freq, entry
_EXT_HEADER = struct.Struct("<BBBBHBHH4sB")  # wp, drv x3, chip_id, min_rev, min/max_rev_full, pad, digest
_RISCV_LOOP = b"\x6f\x00\x00\x00"            # j .
_XTENSA_LOOP = b"\x06\xff\xff\x00"           # j .


@dataclass(frozen=True)
class AppInfo:
    """Version information of an ESP app image (``at_core``/``commit`` only in atfab's images)."""

    project: str
    version: str
    idf_ver: str
    date: str
    time: str
    at_core: str | None
    chip_id: int
    commit: str | None = None
    chip: str | None = None
    secure_version: int = 0
    elf_sha256: str = ""
    checksum_ok: bool = True
    digest_ok: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ImageSummary:
    """Header facts of any ESP32-family image (bootloader or app)."""

    chip: str
    chip_id: int
    segments: int
    flash_mode: str | None
    flash_size: str | None
    flash_freq: str | None
    checksum_ok: bool
    digest_ok: bool | None
    size: int | None        # bytes including checksum and digest
    entry: int


def _rom(chip: str, source: str = "") -> Any:
    from esptool.targets import CHIP_DEFS  # noqa: PLC0415 (slow import, only when needed)

    if chip not in CHIP_DEFS or chip == "esp8266":
        raise InputError(f"esptool has no ESP32-family chip {chip!r}", file=source or None, field="chip")
    return CHIP_DEFS[chip]


def _image_class(chip: str) -> Any:
    from esptool import bin_image  # noqa: PLC0415

    return getattr(bin_image, f"ESP32{chip[5:].upper()}FirmwareImage")


def _ranges(rom: Any, kind: str) -> tuple[int, int]:
    return next((lo, hi) for lo, hi, name in rom.MEMORY_MAP if name == kind)


def _fixed(text: str, size: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= size:
        raise InputError(f"{what} {text!r} is longer than {size - 1} bytes", field=what)
    return raw.ljust(size, b"\x00")


def _flash_byte(rom: Any, flash_mode: str, flash_size: str, flash_freq: str | None) -> tuple[int, int]:
    from esptool.cmds import FLASH_MODES  # noqa: PLC0415

    if flash_mode not in FLASH_MODES:
        raise InputError(f"unknown flash mode {flash_mode!r}", field="flash_mode")
    if flash_size not in rom.FLASH_SIZES:
        raise InputError(f"flash size {flash_size!r} not supported by {rom.CHIP_NAME}", field="flash_size")
    if flash_freq is not None and flash_freq not in rom.FLASH_FREQUENCY:
        raise InputError(f"flash frequency {flash_freq!r} not supported by {rom.CHIP_NAME}", field="flash_freq")
    return FLASH_MODES[flash_mode], rom.FLASH_SIZES[flash_size] | rom.parse_flash_freq_arg(flash_freq)


def _save(chip: str, rom: Any, segments: list[tuple[str, int, bytes]], entry: int, flash: tuple[int, int]) -> bytes:
    from esptool.bin_image import ELFSection  # noqa: PLC0415

    image = _image_class(chip)()
    image.flash_mode, image.flash_size_freq = flash
    image.entrypoint = entry
    image.min_rev_full, image.max_rev_full = 0, 0xFFFF  # any chip revision
    image.segments = [ELFSection(name.encode(), addr, data, 0) for name, addr, data in segments]
    return bytes(image.save(None))


def default_at_core(version: str, chip: str, *, core_hash: str = "3b13d04",
                    built: str = "May  8 2024 08:21:45") -> str:
    """AT-core string like ``3.3.0.0(3b13d04 - ESP32C2 - May  8 2024 08:21:45)`` for an app version."""
    core = version.lstrip("vV")
    return f"{core}({core_hash} - {chip.upper().replace('-', '')} - {built})"


def make_app_image(*, chip: str, version: str, at_core: str, idf_ver: str, project: str = "esp-at",
                   date: str = "May  8 2024", time: str = "08:50:59", commit: str = "be332568",
                   flash_mode: str = "dio", flash_size: str = "4MB", flash_freq: str | None = None,
                   secure_version: int = 0, markers: tuple[str, ...] = ()) -> bytes:
    """A valid ESP-IDF app image for ``chip`` carrying the app description and the AT-core record.

    ``markers`` are the registration markers of the build's command sets
    (:func:`atfab.core.firmware.feature_marker`), NUL-terminated in flash rodata as a real esp-at
    image keeps them: the virtual module reads the build's features from them.
    """
    rom = _rom(chip)
    if not at_core or "\x00" in at_core or len(at_core.encode()) > 200:
        raise InputError("AT core version must be 1..200 bytes without NUL", field="at_core")
    if "\x00" in commit or len(commit.encode()) > 64:
        raise InputError("commit must be at most 64 bytes without NUL", field="commit")
    elf_sha = hashlib.sha256("\x00".join((chip, version, at_core, idf_ver, project, date, time, commit))
                             .encode()).digest()
    desc = APP_DESC.pack(
        APP_DESC_MAGIC, secure_version, b"\x00" * 8, _fixed(version, 32, "version"),
        _fixed(project, 32, "project"), _fixed(time, 16, "time"), _fixed(date, 16, "date"),
        _fixed(idf_ver, 32, "idf_ver"), elf_sha, 0, 99, 0, b"\x00" * 3, b"\x00" * 72,
    )
    record = ATCORE_MARKER + at_core.encode() + b"\x00" + ATCOMMIT_MARKER + commit.encode() + b"\x00"
    record += b"".join(m.encode() + b"\x00" for m in markers if m)
    drom = rom.DROM_MAP_START + 0x20   # file offset 0x20 maps here (64 KB page aligned)
    dram = _ranges(rom, "DRAM")[0]
    iram = _ranges(rom, "IRAM")[0]
    loop = _XTENSA_LOOP if chip in ("esp32", "esp32s2", "esp32s3") else _RISCV_LOOP
    segments = [
        (".flash.appdesc", drom, desc + record),
        (".dram0.data", dram, f"{project} {version} (atfab synthetic image)".encode() + b"\x00"),
        (".iram0.text", iram, loop),
    ]
    return _save(chip, rom, segments, iram, _flash_byte(rom, flash_mode, flash_size, flash_freq))


def make_bootloader_image(*, chip: str, idf_ver: str = "v5.0.6", flash_mode: str = "dio",
                          flash_size: str = "4MB", flash_freq: str | None = None,
                          date_time: str = "May  8 2024 08:50:30") -> bytes:
    """A minimal valid second-stage bootloader image (DRAM segment starts with esp_bootloader_desc_t)."""
    rom = _rom(chip)
    desc = BOOTLOADER_DESC.pack(0x50, b"\x00" * 3, 1, _fixed(idf_ver, 32, "idf_ver"),
                                _fixed(date_time, 24, "date_time"), b"\x00" * 16)
    dram = _ranges(rom, "DRAM")[0]
    iram = _ranges(rom, "IRAM")[0]
    loop = _XTENSA_LOOP if chip in ("esp32", "esp32s2", "esp32s3") else _RISCV_LOOP
    return _save(chip, rom, [(".dram0.bootdesc", dram, desc), (".iram0.text", iram, loop)], iram,
                 _flash_byte(rom, flash_mode, flash_size, flash_freq))


def image_chip(data: bytes) -> str | None:
    """esptool chip name from an image header's chip id, or None when it is not an ESP32-family image."""
    if len(data) < 24 or data[0] != IMAGE_MAGIC:
        return None
    chip_id = _EXT_HEADER.unpack_from(data, 8)[4]
    from esptool.targets import CHIP_DEFS  # noqa: PLC0415

    return next((name for name, rom in CHIP_DEFS.items()
                 if name != "esp8266" and getattr(rom, "IMAGE_CHIP_ID", None) == chip_id), None)


def _load(data: bytes, source: str) -> tuple[str, Any]:
    if len(data) < 24 or data[0] != IMAGE_MAGIC:
        head = data[:1].hex() or "nothing"
        raise InputError(f"not an ESP image (first byte {head}, expected e9)", file=source or None, field="magic")
    chip = image_chip(data)
    if chip is None:
        chip_id = _EXT_HEADER.unpack_from(data, 8)[4]
        raise InputError(f"unknown image chip id {chip_id}", file=source or None, field="chip_id")
    from esptool.bin_image import LoadFirmwareImage  # noqa: PLC0415
    from esptool.util import FatalError  # noqa: PLC0415

    try:
        return chip, LoadFirmwareImage(chip, bytes(data))
    except (FatalError, struct.error, RuntimeError, ValueError, IndexError) as exc:
        raise InputError(f"not a valid {chip} image: {exc}", file=source or None, field="image") from None
    except TypeError:   # esptool's ord() of a checksum byte past the end of a cut-off image
        raise InputError(f"not a valid {chip} image: it ends before its checksum (cut off)",
                         file=source or None, field="image") from None


def _summary(chip: str, image: Any) -> ImageSummary:
    from esptool.cmds import FLASH_MODES  # noqa: PLC0415

    rom = image.ROM_LOADER

    def key(table: dict, value: int) -> str | None:
        return next((k for k, v in table.items() if v == value), None)

    digest_ok = (image.stored_digest == image.calc_digest) if image.append_digest else None
    return ImageSummary(
        chip=chip, chip_id=image.chip_id, segments=len(image.segments),
        flash_mode=key(FLASH_MODES, image.flash_mode), flash_size=key(rom.FLASH_SIZES, image.flash_size_freq & 0xF0),
        flash_freq=key(rom.FLASH_FREQUENCY, image.flash_size_freq & 0x0F),
        checksum_ok=image.checksum == image.calculate_checksum(), digest_ok=digest_ok,
        size=(image.data_length + (32 if image.append_digest else 0)) if image.data_length else None,
        entry=image.entrypoint,
    )


def read_image_summary(data: bytes, *, source: str = "") -> ImageSummary:
    """Header, checksum and digest facts of an ESP32-family image; :class:`InputError` if not one."""
    chip, image = _load(data, source)
    return _summary(chip, image)


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


def read_app_info(data: bytes, *, source: str = "") -> AppInfo:
    """Version info of an app image; :class:`InputError` if it is not an ESP app image."""
    chip, image = _load(data, source)
    # like ``esptool image-info``: the first DROM segment starts with esp_app_desc_t
    seg = next((s for s in image.segments if "DROM" in s.get_memory_type(image)), None)
    if seg is None or len(seg.data) < APP_DESC.size:
        raise InputError("image has no app description (a bootloader?)", file=source or None, field="app_desc")
    (magic, secure_version, _r1, version, project, time, date, idf_ver, elf_sha, *_rest) = APP_DESC.unpack_from(
        bytes(seg.data))
    if magic != APP_DESC_MAGIC:
        raise InputError(f"app description magic 0x{magic:08x} (expected 0x{APP_DESC_MAGIC:08x})",
                         file=source or None, field="app_desc")
    match = _RECORD_RE.search(bytes(seg.data), APP_DESC.size)
    summary = _summary(chip, image)
    return AppInfo(
        project=_text(project), version=_text(version), idf_ver=_text(idf_ver), date=_text(date),
        time=_text(time), at_core=match.group(1).decode("utf-8", "replace") if match else None,
        chip_id=image.chip_id,
        commit=match.group(2).decode("utf-8", "replace") if match and match.group(2) is not None else None,
        chip=chip, secure_version=secure_version, elf_sha256=elf_sha.hex(),
        checksum_ok=summary.checksum_ok, digest_ok=summary.digest_ok,
    )


__all__ = ["AppInfo", "ImageSummary", "make_app_image", "make_bootloader_image", "read_app_info",
           "read_image_summary", "image_chip", "default_at_core", "ATCORE_MARKER", "ATCOMMIT_MARKER"]
