"""Module profiles: the 20 esp-at layouts, search path, single-TOML profiles, validation errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from esptool.targets import CHIP_DEFS

from atfab.core.errors import InputError
from atfab.image.profiles import BUILTIN_DIR, ENV_PATH, list_profiles, load_profile
from tests.paths import MODULE_CONFIG

REF = MODULE_CONFIG
NAMES = {
    "esp32-wroom-32": "module_esp32_default", "esp32-wrover-32": "module_wrover-32",
    "esp32-d2wd": "module_esp32-d2wd", "esp32-sdio": "module_esp32-sdio",
    "esp32c2-4mb": "module_esp32c2_default", "esp32c2-4mb-g2": "module_esp32c2-4mb-g2",
    "esp32c2-2mb": "module_esp32c2-2mb", "esp32c2-2mb-g2": "module_esp32c2-2mb-g2",
    "esp32c2-2mb-ble": "module_esp32c2-2mb-ble", "esp32c2-2mb-ble-g2": "module_esp32c2-2mb-ble-g2",
    "esp32c2-2mb-no-ota-g2": "module_esp32c2-2mb-no-ota-g2", "esp32c3-mini-1": "module_esp32c3_default",
    "esp32c3-spi": "module_esp32c3-spi", "esp32c3-rainmaker": "module_esp32c3_rainmaker",
    "esp32c5-4mb": "module_esp32c5_default", "esp32c5-sdio": "module_esp32c5-sdio",
    "esp32c5-spi": "module_esp32c5-spi", "esp32c6-4mb": "module_esp32c6_default",
    "esp32c61-4mb": "module_esp32c61_default", "esp32s2-mini": "module_esp32s2_default",
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_PATH, raising=False)


#: The legacy (G1/G2) layouts: tests/test_legacy_images.py and test_legacy_build.py.
LEGACY = {"esp32-at-v1.1", "esp32-at-v1.2", "esp32-at-v2", "esp32c3-at-v2", "esp32c2-4mb-at-v3.0", "esp32c2-2mb-at-v3.0"}
#: The ESP8266 NONOS AT (G0) profiles, with no partition tables: tests/test_nonos.py.
NONOS = {"esp8266-nonos-512k", "esp8266-nonos-at-2mb", "esp8266-nonos-at-1mb"}


def test_twenty_builtin_profiles():
    assert set(list_profiles()) == set(NAMES) | LEGACY | NONOS
    assert sorted(NAMES.values()) == sorted(p.name for p in REF.iterdir())


@pytest.mark.parametrize("name", sorted(NAMES))
def test_profile_loads_and_matches_reference(name: str):
    p = load_profile(name)
    assert p.name == name and p.esp_at_module == NAMES[name]
    for f in ("partitions_at.csv", "at_customize.csv"):
        assert (p.source.parent / f).read_bytes() == (REF / NAMES[name] / f).read_bytes()
    rom = CHIP_DEFS[p.chip]
    assert p.bootloader_offset == rom.BOOTLOADER_FLASH_OFFSET
    assert p.flash_freq in rom.FLASH_FREQUENCY and p.flash_size_str in rom.FLASH_SIZES
    region = p.primary.find("at_customize")
    assert (region.type, region.subtype, region.offset) == (0x40, 0, p.at_customize_offset)
    assert all(region.offset + 0x1000 <= e.offset and e.end <= region.end for e in p.at_customize)
    assert (p.mfg_nvs.type, p.mfg_nvs.subtype) == (1, 2)
    assert p.factory_param["module_name"] == p.module_name
    assert len(p.factory_param) == 13
    assert p.app_offset == (p.primary.find("ota_0") or p.primary.find("factory")).offset
    assert p.otadata_offset == p.primary.find("otadata").offset
    assert p.flash_settings()[:2] == ["--flash_mode", "dio"]


def test_specific_layouts():
    c2 = load_profile("esp32c2-4mb")
    assert (c2.chip, c2.flash_size, c2.flash_freq, c2.bootloader_offset, c2.partition_table_offset) == \
        ("esp32c2", 4 << 20, "60m", 0, 0x8000)
    assert (c2.otadata_offset, c2.at_customize_offset, c2.mfg_nvs.offset, c2.app_offset) == \
        (0xD000, 0x1E000, 0x1F000, 0x60000)
    assert c2.factory_param["uart_cts_pin"] == 5 and not c2.firmware.ble
    c2s = load_profile("esp32c2-2mb")
    assert (c2s.flash_size, c2s.at_customize_offset, c2s.mfg_nvs.offset, c2s.mfg_nvs.size, c2s.app_offset) == \
        (2 << 20, 0x1A000, 0x1B000, 0xF000, 0xD0000)
    assert (c2s.factory_param["uart_cts_pin"], c2s.factory_param["uart_rts_pin"]) == (19, 20)
    ble = load_profile("esp32c2-2mb-ble")
    assert ble.firmware.ble and not ble.firmware.wifi
    wroom = load_profile("esp32-wroom-32")
    assert (wroom.bootloader_offset, wroom.app_offset, wroom.mfg_nvs.size, wroom.factory_param["uart_tx_pin"]) == \
        (0x1000, 0x100000, 112 * 1024, 17)
    c5 = load_profile("esp32c5-4mb")
    assert (c5.bootloader_offset, c5.partition_table_offset, c5.at_customize_offset) == (0x2000, 0xC000, 0x30000)
    assert load_profile("esp32c61-4mb").partition_table_offset == 0xC000
    assert load_profile("esp32-sdio").factory_param["uart_baudrate"] == -1
    assert load_profile("esp32s2-mini").module_name == "MINI"
    assert load_profile("esp32-d2wd").app_offset == 0x80000


def test_unknown_profile():
    with pytest.raises(InputError) as ei:
        load_profile("esp32c2-8mb")
    assert ei.value.field == "module" and "esp32c2-4mb" in ei.value.message


def _copy(tmp_path: Path, name: str = "esp32c2-4mb", new: str = "mine") -> Path:
    dest = tmp_path / new
    shutil.copytree(BUILTIN_DIR / name, dest)
    return dest


def test_env_path_adds_and_shadows(tmp_path: Path, monkeypatch):
    mine = _copy(tmp_path)
    shadow = _copy(tmp_path, new="esp32c2-2mb")
    text = (shadow / "profile.toml").read_text().replace('module_name = "ESP32C2-4MB"\n', 'module_name = "SHADOW"\n', 1)
    (shadow / "profile.toml").write_text(text)
    monkeypatch.setenv(ENV_PATH, f"{tmp_path / 'nothing'}:{tmp_path}")
    assert "mine" in list_profiles()
    assert load_profile("mine").source == mine / "profile.toml"
    assert load_profile("esp32c2-2mb").module_name == "SHADOW"
    with pytest.raises(InputError):
        load_profile("mine", search=[BUILTIN_DIR])


def test_profile_by_path_and_single_toml(tmp_path: Path):
    folder = _copy(tmp_path)
    assert load_profile(str(folder)).name == "mine"
    single = tmp_path / "acme.toml"
    body = (folder / "profile.toml").read_text()
    body = body.replace('partitions = "partitions_at.csv"', 'partitions = "mine/partitions_at.csv"')
    body = body.replace('at_customize = "at_customize.csv"', 'at_customize = "mine/at_customize.csv"')
    single.write_text(body)
    p = load_profile(str(single))
    assert p.name == "acme" and p.mfg_nvs.offset == 0x1F000
    assert "acme" in list_profiles(search=[tmp_path])
    assert load_profile("acme", search=[tmp_path]).name == "acme"


def _broken(tmp_path: Path, file: str, old: str, new: str) -> Path:
    folder = _copy(tmp_path)
    path = folder / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return folder


@pytest.mark.parametrize("file, old, new, field, line", [
    ("partitions_at.csv", "nvs, data, nvs, 0x10000, 0xE000", "nvs, data, nvs, 0x10000, 0xF000", "offset", 5),
    ("partitions_at.csv", "ota_1, app, ota_1, 0x230000, 0x1d0000", "ota_1, app, ota_1, 0x230000, 0x2d0000", "size", 7),
    ("partitions_at.csv", "at_customize, 0x40, 0,", "at_customize, 0x41, 0,", "at_customize", None),
    ("at_customize.csv", "fs_storage, data, 0xff, 0x47000, 100K", "fs_storage, data, 0xff, 0x47000, 200K", "offset", 3),
    ("at_customize.csv", "mfg_nvs, data, nvs,", "mfg_nvs, data, fat,", "subtype", 2),
    ("at_customize.csv", "mfg_nvs, data, nvs,", "mfg_data, data, nvs,", "mfg_nvs", None),
    ("at_customize.csv", "mfg_nvs, data, nvs, 0x1f000, 124K", "mfg_nvs, data, nvs, 0x1f000, 0x2000", "size", 2),
    ("profile.toml", 'flash_freq = "60m"', 'flash_freq = "80m"', "flash_freq", None),
    ("profile.toml", "bootloader_offset = 0x0", "bootloader_offset = 0x1000", "bootloader_offset", None),
    ("profile.toml", 'chip = "esp32c2"', 'chip = "esp8266x"', "chip", None),
    ("profile.toml", 'flash_size = "4MB"', 'flash_size = "4MiB"', "flash_size", None),
    ("profile.toml", 'flash_mode = "dio"', 'flash_mod = "dio"', "flash_mod", None),
    ("profile.toml", "uart_tx_pin = 7", 'uart_tx_pin = "seven"', "factory_param.uart_tx_pin", None),
    ("profile.toml", "[factory_param]", "[firmware]\nbel = true\n[factory_param]", "firmware.bel", None),
])
def test_profile_errors(tmp_path: Path, file: str, old: str, new: str, field: str, line: int | None):
    folder = _broken(tmp_path, file, old, new)
    with pytest.raises(InputError) as ei:
        load_profile(str(folder))
    err = ei.value
    assert err.field == field, str(err)
    assert err.file and Path(err.file).name in (file, "partitions_at.csv", "profile.toml")
    if line is not None:
        assert err.line == line
        assert f"{file}:{line}: {field}: " in str(err)


def test_shipped_folders_found_in_checkout_then_in_the_wheel(tmp_path):
    from atfab.core.shipped import PACKAGED, shipped_dir
    package = tmp_path / "site-packages" / "atfab"
    (package / PACKAGED / "partitions").mkdir(parents=True)
    assert shipped_dir("partitions", package) == package / PACKAGED / "partitions"      # installed wheel
    (tmp_path / "site-packages" / "partitions").mkdir()
    assert shipped_dir("partitions", package) == tmp_path / "site-packages" / "partitions"  # checkout first
    assert shipped_dir("recipes", package) == tmp_path / "site-packages" / "recipes"    # neither: where expected
    with pytest.raises(ValueError):
        shipped_dir("certs", package)
