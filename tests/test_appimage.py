"""Synthetic ESP app/bootloader images: valid for esptool, version info readable (§2.4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from esptool.bin_image import ELFSection, LoadFirmwareImage
from esptool.targets import CHIP_DEFS

from atfab.image import appimage
from atfab.image.appimage import (
    APP_DESC, APP_DESC_MAGIC, default_at_core, image_chip, make_app_image, make_bootloader_image, read_app_info,
    read_image_summary,
)
from atfab.core.errors import InputError

CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32c2": 12, "esp32c6": 13, "esp32c5": 23, "esp32c61": 20}
CORE = "3.3.0.0(3b13d04 - ESP32C2 - May  8 2024 08:21:45)"


def _app(chip: str = "esp32c2", **kw) -> bytes:
    args = dict(chip=chip, version="v3.3.0.0", at_core=CORE, idf_ver="v5.0.6-dirty")
    args.update(kw)
    return make_app_image(**args)


def test_chip_ids_match_esptool():
    for chip, cid in CHIP_IDS.items():
        assert CHIP_DEFS[chip].IMAGE_CHIP_ID == cid


@pytest.mark.parametrize("chip", sorted(CHIP_IDS))
def test_app_image_valid_for_esptool(chip: str):
    data = _app(chip, flash_size="2MB", flash_freq="40m" if chip != "esp32c2" else "60m")
    image = LoadFirmwareImage(chip, data)
    assert image.chip_id == CHIP_IDS[chip]
    assert image.checksum == image.calculate_checksum()
    assert image.append_digest and image.stored_digest == image.calc_digest
    assert data[0] == 0xE9 and image_chip(data) == chip
    info = read_app_info(data)
    assert (info.project, info.version, info.idf_ver, info.date, info.time) == \
        ("esp-at", "v3.3.0.0", "v5.0.6-dirty", "May  8 2024", "08:50:59")
    assert (info.at_core, info.commit, info.chip, info.chip_id) == (CORE, "be332568", chip, CHIP_IDS[chip])
    assert info.checksum_ok and info.digest_ok
    summary = read_image_summary(data)
    assert (summary.flash_mode, summary.flash_size) == ("dio", "2MB")
    # a partition dump: the image followed by erased flash
    assert read_app_info(data + b"\xff" * 0x10000).version == "v3.3.0.0"


@pytest.mark.parametrize("chip", sorted(CHIP_IDS))
def test_bootloader_image_valid(chip: str):
    data = make_bootloader_image(chip=chip, flash_size="4MB")
    image = LoadFirmwareImage(chip, data)
    assert image.checksum == image.calculate_checksum() and image.stored_digest == image.calc_digest
    s = read_image_summary(data)
    assert (s.chip, s.checksum_ok, s.digest_ok) == (chip, True, True)
    with pytest.raises(InputError) as ei:
        read_app_info(data)
    assert ei.value.field == "app_desc"


def test_esptool_image_info_cli(tmp_path: Path):
    path = tmp_path / "esp-at.bin"
    path.write_bytes(_app("esp32c2", flash_freq="60m"))
    res = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32c2", "image-info", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Chip ID: 12 (ESP32-C2)" in out
    assert "Checksum:" in out and "(valid)" in out and "invalid" not in out
    assert "App version: v3.3.0.0" in out and "ESP-IDF: v5.0.6-dirty" in out
    assert "Flash freq: 60m" in out


def test_default_at_core():
    assert default_at_core("v3.3.0.0", "ESP32C2") == CORE


def test_real_like_image_without_atcore():
    """An ESP-IDF app without atfab's record (like a real esp-at.bin): at_core is None."""
    from esptool.bin_image import ESP32C3FirmwareImage

    desc = APP_DESC.pack(APP_DESC_MAGIC, 0, b"\0" * 8, b"v4.0.0.0".ljust(32, b"\0"), b"esp-at".ljust(32, b"\0"),
                         b"10:00:00".ljust(16, b"\0"), b"Jan  1 2025".ljust(16, b"\0"), b"v5.4".ljust(32, b"\0"),
                         b"\x11" * 32, 0, 99, 0, b"\0" * 3, b"\0" * 72)
    image = ESP32C3FirmwareImage()
    rom = CHIP_DEFS["esp32c3"]
    image.segments = [ELFSection(b".flash.appdesc", rom.DROM_MAP_START + 0x20, desc + b"AT version:x\0", 0),
                      ELFSection(b".iram0.text", 0x4037C000, b"\x6f\0\0\0", 0)]
    data = image.save(None)
    info = read_app_info(data)
    assert (info.version, info.idf_ver, info.at_core, info.commit, info.chip_id) == \
        ("v4.0.0.0", "v5.4", None, None, 5)
    assert info.elf_sha256 == "11" * 32


def test_not_images():
    table = bytes.fromhex("aa50") + b"\0" * 30
    for bad in (b"", b"\xe9", table, b"\xff" * 4096, b"hello world, this is not an image at all"):
        with pytest.raises(InputError):
            read_app_info(bad, source="x.bin")
    data = bytearray(_app())
    data[12] = 0x77  # unknown chip id
    with pytest.raises(InputError, match="chip id") as ei:
        read_app_info(bytes(data), source="x.bin")
    assert ei.value.file == "x.bin"
    with pytest.raises(InputError):
        read_app_info(_app()[:100])  # truncated


def test_corruption_is_reported():
    data = bytearray(_app())
    data[0x40] ^= 0xFF  # inside the app description (version text)
    info = read_app_info(bytes(data))
    assert info.checksum_ok is False and info.digest_ok is False


def test_field_limits():
    with pytest.raises(InputError) as ei:
        _app(version="v" * 32)
    assert ei.value.field == "version"
    with pytest.raises(InputError):
        _app(at_core="")
    with pytest.raises(InputError):
        _app(chip="esp8266")
    with pytest.raises(InputError):
        _app(flash_freq="61m")
    assert appimage.ATCORE_MARKER + CORE.encode() + b"\0" in _app()
