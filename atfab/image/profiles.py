"""Module profiles: chip, flash settings, partition tables, default factory_param, firmware settings,
and the build configuration of the module's esp-at build (which namespaces its mfg_nvs holds).

A profile is a folder ``<name>/`` holding ``profile.toml`` and the two partition CSVs, or a single
``<name>.toml`` whose ``partitions`` / ``at_customize`` keys name CSV files relative to itself.
Profiles are looked up in ``$ATFAB_PROFILE_PATH`` (``os.pathsep``-separated folders), then in the
repository's ``partitions/`` folder. See ``partitions/README.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile, firmware_for
from ..core.firmware.catalog import release_data
from ..core.shipped import shipped_dir
from ..core.inputs import not_a_regular_file
from ..core.tomlfile import check_fields, read_toml
from . import factory_param, legacy_layout
from .build_config import BuildConfig, from_table
from .partition_table import (
    APP, AT_CUSTOMIZE_TYPE, DATA, FLAGS, NVS_SUBTYPE, SECTOR, Partition, PartitionTable, load_csv, validate,
)

PROFILE_FILE = "profile.toml"
ENV_PATH = "ATFAB_PROFILE_PATH"
BUILTIN_DIR = shipped_dir("partitions")
_KNOWN_KEYS = {
    "esp_at_module", "description", "module_name", "chip", "flash_size", "flash_mode", "flash_freq",
    "bootloader_offset", "partition_table_offset", "partitions", "at_customize", "factory_param", "firmware",
    "build", "firmware_release", "firmware_releases", "layout", "nonos",
}
_OTA_DATA_SUBTYPE = 0x00
#: ESP-IDF's otadata partition: two 0x1000 sectors.
_OTA_DATA_SIZE = 0x2000
_NVS_MIN_SIZE = 0x3000


@dataclass(frozen=True)
class NonosLayout:
    """Where a G0 (ESP8266 NONOS AT) module's files go: no partition table (reference §11)."""

    boot: int
    user1: int
    init_data: int
    blank: tuple[int, ...]
    #: esptool's name of the flash size the header at 0x0 carries (``1MB``, ``2MB-c1``): the NONOS SDK
    #: reads its flash map from it (16Mbit "-C1" = the 1024 KB + 1024 KB map of a 2 MB flash).
    size_name: str = ""

    def regions(self) -> tuple[tuple[str, int], ...]:
        """(file name, offset) of every file of the download map, by offset."""
        named = [("boot.bin", self.boot), ("user1.bin", self.user1), ("esp_init_data_default.bin", self.init_data),
                 *((f"blank.bin@0x{off:x}", off) for off in self.blank)]
        return tuple(sorted(named, key=lambda kv: kv[1]))


@dataclass(frozen=True)
class ModuleProfile:
    """Everything atfab knows about one module build (see DESIGN.md, profiles.py contract)."""

    name: str
    chip: str
    flash_size: int
    flash_mode: str
    flash_freq: str
    bootloader_offset: int
    partition_table_offset: int
    app_offset: int
    otadata_offset: int | None
    primary: PartitionTable
    at_customize: PartitionTable
    at_customize_offset: int
    #: The mfg_nvs entry of at_customize (G3); None on a legacy layout (per-item partitions).
    mfg_nvs: Partition | None
    factory_param: dict[str, int | str]
    firmware: FirmwareProfile
    #: CONFIG_AT_* options of the module's esp-at build (the ``[build]`` table, or a build folder's sdkconfig).
    build: BuildConfig
    module_name: str
    source: Path
    description: str = ""
    esp_at_module: str = ""
    #: esp-at releases whose builds of this module have this layout (``firmware`` is the first
    #: given as ``firmware_release``, the others via :meth:`for_release`); () = any (G3 profiles).
    releases: tuple[str, ...] = ()
    #: The profile's ``[firmware]`` settings (applied again by :meth:`for_release`).
    firmware_settings: tuple[tuple[str, Any], ...] = ()
    #: A G0 module (ESP8266 NONOS AT): its download map; the tables are then empty.
    nonos: NonosLayout | None = None

    @property
    def legacy(self) -> bool:
        """A G1/G2 layout: per-item partitions in at_customize, no mfg_nvs (reference §10)."""
        return self.mfg_nvs is None and self.nonos is None

    @property
    def nvs_partition(self) -> Partition:
        """The mfg_nvs entry; :class:`InputError` on a legacy layout, which has none."""
        if self.mfg_nvs is None:
            raise InputError(f"module {self.name} is a legacy ({self.firmware.generation}) layout without mfg_nvs",
                             file=str(self.source), field="mfg_nvs")
        return self.mfg_nvs

    def for_release(self, release: str, *, source: str | None = None) -> "ModuleProfile":
        """This module built from esp-at ``release`` (one of :attr:`releases`): its firmware profile."""
        if release == self.firmware.release:
            return self
        if self.releases and release not in self.releases:
            raise InputError(f"module {self.name} ({self.firmware.generation} layout) is built by esp-at "
                             f"{', '.join(self.releases)}, not {release}", file=source, field="release")
        fw = firmware_for(self.chip, dict(self.firmware_settings), source=str(self.source), release=release,
                          module=self.firmware.module or None, module_config=self.esp_at_module or None)
        return replace(self, firmware=fw)

    @property
    def flash_size_str(self) -> str:
        """esptool spelling of the flash size (``4MB``; ``2MB-c1`` for a NONOS SDK 1024+1024 map)."""
        if self.nonos is not None and self.nonos.size_name:
            return self.nonos.size_name
        return flash_size_text(self.flash_size)

    @property
    def at_customize_partition(self) -> Partition:
        """The primary table's at_customize entry (type 0x40, subtype 0)."""
        return _at_customize_entry(self.primary, "")

    @property
    def otadata(self) -> Partition | None:
        return next(iter(self.primary.find_type(DATA, _OTA_DATA_SUBTYPE)), None)

    def with_build(self, build: BuildConfig) -> "ModuleProfile":
        """This profile for a firmware built with ``build`` (e.g. read from its sdkconfig): BLE commands
        and the enterprise namespace names follow the build (``AT_BLE_COMMAND_SUPPORT``,
        ``AT_EAP_LEGACY_NAMESPACE_SUPPORT``)."""
        changes: dict[str, Any] = {"ble": build.ble_data}
        if build.legacy_eap:
            changes["enterprise_namespace"] = "wpa2"
        return replace(self, build=build, firmware=self.firmware.with_overrides(changes, source=build.source))

    def flash_settings(self) -> list[str]:
        """esptool arguments: ``--flash_mode dio --flash_freq 60m --flash_size 4MB``."""
        return ["--flash_mode", self.flash_mode, "--flash_freq", self.flash_freq, "--flash_size", self.flash_size_str]


def flash_size_text(size: int) -> str:
    """``4194304`` → ``4MB``; ``262144`` → ``256KB``."""
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)}MB"
    return f"{size // 1024}KB"


def parse_flash_size(text: str, *, source: str = "", field: str = "flash_size") -> int:
    """``4MB`` / ``512KB`` → bytes."""
    t = str(text).strip().upper()
    for suffix, mult in (("MB", 1024 * 1024), ("KB", 1024)):
        if t.endswith(suffix) and t[: -len(suffix)].isdigit():
            return int(t[: -len(suffix)]) * mult
    raise InputError(f"flash size {text!r} is not like 4MB or 512KB", file=source or None, field=field)


def search_path(search: list[Path] | None = None) -> list[Path]:
    """Folders searched for profiles: ``search`` if given, else ``$ATFAB_PROFILE_PATH`` then built-ins."""
    if search is not None:
        return [Path(p) for p in search]
    dirs = [Path(p) for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    return dirs + [BUILTIN_DIR]


def list_profiles(search: list[Path] | None = None) -> list[str]:
    """Names of every profile on the search path (earlier folders shadow later ones)."""
    names: set[str] = set()
    for d in search_path(search):
        if not d.is_dir():
            continue
        for item in d.iterdir():
            if item.is_dir() and (item / PROFILE_FILE).is_file():
                names.add(item.name)
            elif item.is_file() and item.suffix == ".toml":
                names.add(item.stem)
    return sorted(names)


def find_profile(name: str, search: list[Path] | None = None) -> Path:
    """Path of the profile TOML for ``name`` (a profile name, a folder or a .toml path)."""
    as_path = Path(name)
    if as_path.suffix == ".toml" and as_path.is_file():
        return as_path
    if (os.sep in name or name.startswith(".")) and as_path.is_dir():
        inner = as_path / PROFILE_FILE
        if inner.exists() or inner.is_symlink():     # read_toml says what is wrong with it
            return inner
        raise InputError(f"no {PROFILE_FILE} in {name}", file=name, field="module")
    if os.sep in name:
        why = not_a_regular_file(as_path)
        if why:
            raise InputError(f"cannot read module profile {name}: {why}", field="module")
    for d in search_path(search):
        if (d / name / PROFILE_FILE).is_file():
            return d / name / PROFILE_FILE
        if (d / f"{name}.toml").is_file():
            return d / f"{name}.toml"
    known = ", ".join(list_profiles(search)) or "none"
    raise InputError(f"unknown module profile {name!r} (known: {known})", field="module")


def load_profile(name: str, search: list[Path] | None = None) -> ModuleProfile:
    """Load and validate a profile; every problem is an :class:`InputError` naming file and field."""
    toml_path = find_profile(name, search)
    src = str(toml_path)
    data = read_toml(toml_path, "profile")
    check_fields(data, sorted(_KNOWN_KEYS), file=src)
    folder = toml_path.parent
    profile_name = folder.name if toml_path.name == PROFILE_FILE else toml_path.stem

    chip = _str(data, "chip", src)
    rom = _rom(chip, src)
    layout = _str(data, "layout", src, "esp-idf")
    if layout not in ("esp-idf", "nonos"):
        raise InputError(f"unknown layout {layout!r} (esp-idf: partition tables; nonos: ESP8266 NONOS AT)",
                         file=src, field="layout")
    firmware_tbl = data.get("firmware", {})
    if not isinstance(firmware_tbl, dict):
        raise InputError("must be a table", file=src, field="firmware")
    firmware_tbl = dict(firmware_tbl)
    table_offset = _int(data, "partition_table_offset", src, 0x8000)
    if "partition_table_offset" in {f.name for f in fields(FirmwareProfile)}:
        firmware_tbl.setdefault("partition_table_offset", table_offset)
    release = _str(data, "firmware_release", src, "") or None
    releases = data.get("firmware_releases", [release] if release else [])
    if not isinstance(releases, list) or not all(isinstance(r, str) for r in releases) or (release and release not in releases):
        raise InputError("must be a list of esp-at releases that includes firmware_release", file=src,
                         field="firmware_releases")
    firmware = firmware_for(chip, firmware_tbl, source=src, module_config=_str(data, "esp_at_module", src, "") or None,
                            module=_str(data, "module_name", src, "") or None, release=release)

    size_text = _str(data, "flash_size", src)
    c1 = layout == "nonos" and size_text.lower().endswith("-c1")
    flash_size = parse_flash_size(size_text[:-3] if c1 else size_text, source=src)
    size_name = flash_size_text(flash_size) + ("-c1" if c1 else "")
    if size_name not in rom.FLASH_SIZES:
        raise InputError(f"{chip} does not support flash size {size_name} "
                         f"(esptool knows {', '.join(rom.FLASH_SIZES)})", file=src, field="flash_size")
    flash_mode = _str(data, "flash_mode", src, "dio").lower()
    from esptool.cmds import FLASH_MODES  # noqa: PLC0415 (esptool import is slow)
    if flash_mode not in FLASH_MODES:
        raise InputError(f"unknown flash mode {flash_mode!r} (known: {', '.join(FLASH_MODES)})",
                         file=src, field="flash_mode")
    flash_freq = _str(data, "flash_freq", src).lower()
    if flash_freq not in rom.FLASH_FREQUENCY:
        raise InputError(f"{chip} does not support flash frequency {flash_freq!r} "
                         f"(esptool knows {', '.join(rom.FLASH_FREQUENCY)})", file=src, field="flash_freq")
    if layout == "nonos":
        return _nonos_profile(data, profile_name, chip, flash_size, flash_mode, flash_freq, firmware, toml_path,
                              releases, firmware_tbl, size_name)
    boot_offset = _int(data, "bootloader_offset", src, rom.BOOTLOADER_FLASH_OFFSET)
    if boot_offset != rom.BOOTLOADER_FLASH_OFFSET:
        raise InputError(f"{chip} boots from 0x{rom.BOOTLOADER_FLASH_OFFSET:x}, not 0x{boot_offset:x}",
                         file=src, field="bootloader_offset")
    if table_offset % SECTOR or table_offset <= boot_offset:
        raise InputError(f"partition table offset 0x{table_offset:x} must be 4 KB aligned and after the "
                         "bootloader", file=src, field="partition_table_offset")

    primary_csv = folder / _str(data, "partitions", src, "partitions_at.csv")
    custom_csv = folder / _str(data, "at_customize", src, "at_customize.csv")
    primary = load_csv(primary_csv, table_offset=table_offset)
    validate(primary, flash_size=flash_size, source=str(primary_csv), table_offset=table_offset)
    region = _at_customize_entry(primary, str(primary_csv))
    secondary = load_csv(custom_csv, table_offset=region.offset)
    validate(secondary, flash_size=flash_size, within=region, source=str(custom_csv))

    mfg = secondary.find("mfg_nvs")
    if firmware.legacy:
        if mfg is not None:
            raise InputError(f"a {firmware.generation} layout has per-item partitions, no mfg_nvs", file=str(custom_csv),
                             line=mfg.line, field="mfg_nvs")
        legacy_layout.check_layout(secondary, firmware, source=str(custom_csv))
    elif mfg is None:
        raise InputError("no mfg_nvs partition", file=str(custom_csv), field="mfg_nvs")
    elif (mfg.type, mfg.subtype) != (DATA, NVS_SUBTYPE):
        raise InputError("mfg_nvs must be type data, subtype nvs", file=str(custom_csv), line=mfg.line,
                         field="subtype" if mfg.type == DATA else "type")
    if mfg is not None and (mfg.size % SECTOR or mfg.size < _NVS_MIN_SIZE):
        raise InputError(f"mfg_nvs size 0x{mfg.size:x} must be a multiple of 0x1000 and at least 0x3000",
                         file=str(custom_csv), line=mfg.line, field="size")

    apps = primary.find_type(APP)
    if not apps:
        raise InputError("no app partition", file=str(primary_csv), field="app")
    first_app = next((p for p in apps if p.subtype == 0x10), None) or next(
        (p for p in apps if p.subtype == 0x00), apps[0])
    otadata = next(iter(primary.find_type(DATA, _OTA_DATA_SUBTYPE)), None)
    if otadata is not None and otadata.size != _OTA_DATA_SIZE:
        raise InputError(f"otadata is 0x{otadata.size:x} bytes: ESP-IDF's bootloader reads two 0x1000 sectors "
                         f"(0x{_OTA_DATA_SIZE:x})", file=str(primary_csv), line=otadata.line, field="otadata")
    if not any(p.name == "nvs" and (p.type, p.subtype) == (DATA, NVS_SUBTYPE) for p in primary.entries):
        raise InputError("no nvs partition (data, nvs, named nvs): ESP-IDF's nvs_flash_init and the AT "
                         "firmware's settings need it", file=str(primary_csv), field="nvs")
    if mfg is not None and mfg.flags & FLAGS["encrypted"]:
        raise InputError("mfg_nvs must not be flagged encrypted: the AT firmware reads it as plain NVS "
                         "(esp-at's tables never encrypt it)", file=str(custom_csv), line=mfg.line, field="flags")

    module_name = _str(data, "module_name", src, "")
    factory = data.get("factory_param", {})
    if not isinstance(factory, dict):
        raise InputError("must be a table", file=src, field="factory_param")
    factory = dict(factory)
    if module_name:
        factory.setdefault("module_name", module_name)
    else:
        module_name = str(factory.get("module_name", profile_name))
    try:
        if firmware.legacy:
            factory = legacy_layout.check_profile_factory(factory, chip, firmware, releases, source=src)
        else:
            factory = factory_param.validate(factory, chip=chip, file=src)
    except InputError as exc:
        raise InputError(exc.message, file=src, field=f"factory_param.{exc.field}" if exc.field else
                         "factory_param") from None

    if "build" not in data:
        raise InputError("missing [build] table: sdkconfig_y = the CONFIG_AT_* options esp-at's build of this "
                         "module enables (see partitions/README.md)", file=src, field="build")
    build = from_table(data["build"], base=folder, file=src)
    if build.ble_data != firmware.ble:
        has = "has" if build.ble_data else "has no"
        raise InputError(f"[build] {has} AT_BLE_COMMAND_SUPPORT but the firmware profile has ble = "
                         f"{str(firmware.ble).lower()} (chip default or [firmware]): they must agree",
                         file=src, field="build.sdkconfig_y")
    if build.legacy_eap and firmware.enterprise_namespace != "wpa2":
        firmware = replace(firmware, enterprise_namespace="wpa2")

    return ModuleProfile(
        name=profile_name, chip=chip, flash_size=flash_size, flash_mode=flash_mode, flash_freq=flash_freq,
        bootloader_offset=boot_offset, partition_table_offset=table_offset, app_offset=first_app.offset,
        otadata_offset=otadata.offset if otadata else None, primary=primary, at_customize=secondary,
        at_customize_offset=region.offset, mfg_nvs=mfg, factory_param=factory, firmware=firmware,
        build=build, module_name=module_name, source=toml_path, description=_str(data, "description", src, ""),
        esp_at_module=_str(data, "esp_at_module", src, ""), releases=tuple(releases),
        firmware_settings=tuple(firmware_tbl.items()),
    )


def _check_nonos_map(nonos: NonosLayout, release: str, src: str) -> None:
    """The download map is one the release's SDK builds for (``[release.g0_maps]``, when its data has them)."""
    maps = release_data(release)["release"].get("g0_maps")
    if not maps:
        return
    known = maps.get(nonos.size_name)
    if known is None:
        raise InputError(f"NONOS AT {release} has no build for a {nonos.size_name} flash map (its SDK's maps: "
                         f"{', '.join(k + ' = ' + v['name'] for k, v in maps.items())})", file=src, field="flash_size")
    want = (known["init_data"], tuple(known["blank"]))
    if (nonos.init_data, tuple(sorted(nonos.blank))) != want:
        raise InputError(f"the {known['name']} map of NONOS AT {release} has esp_init_data_default.bin at "
                         f"0x{want[0]:x} and blank.bin at {' & '.join(f'0x{b:x}' for b in want[1])}", file=src,
                         field="nonos")


def _nonos_profile(data: dict, name: str, chip: str, flash_size: int, flash_mode: str, flash_freq: str,
                   firmware: FirmwareProfile, toml_path: Path, releases: list, firmware_tbl: dict,
                   size_name: str) -> ModuleProfile:
    """A G0 profile: the ``[nonos]`` download map instead of partition tables."""
    src = str(toml_path)
    if firmware.generation != "G0":
        raise InputError(f"layout nonos needs an ESP8266 NONOS AT release, not {firmware.release}", file=src,
                         field="firmware_release")
    for key in ("partitions", "at_customize", "build", "partition_table_offset", "bootloader_offset"):
        if key in data:
            raise InputError("a nonos layout has no partition tables", file=src, field=key)
    tbl = data.get("nonos")
    if not isinstance(tbl, dict):
        raise InputError("missing [nonos] table (boot, user1, init_data, blank offsets)", file=src, field="nonos")
    check_fields(tbl, ["boot", "user1", "init_data", "blank"], file=src, where="nonos")
    blank = tbl.get("blank", [])
    if not isinstance(blank, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in blank):
        raise InputError("must be a list of offsets", file=src, field="nonos.blank")
    nonos = NonosLayout(_int(tbl, "boot", src, 0), _int(tbl, "user1", src, 0x1000),
                        _int(tbl, "init_data", src, flash_size - 0x4000), tuple(blank), size_name)
    for release in releases:
        _check_nonos_map(nonos, release, src)
    for fname, off in nonos.regions():
        if off % SECTOR or off >= flash_size:
            raise InputError(f"{fname} at 0x{off:x}: must be 4 KB aligned inside the {flash_size_text(flash_size)} "
                             "flash", file=src, field="nonos")
    if nonos.boot != 0:
        raise InputError("the ESP8266 ROM boots from 0x0", file=src, field="nonos.boot")
    factory = data.get("factory_param", {})
    if not isinstance(factory, dict) or set(factory) - {"uart_baudrate"}:
        raise InputError("a nonos module knows only uart_baudrate", file=src, field="factory_param")
    baud = factory.get("uart_baudrate", 115200)
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise InputError("must be a positive integer", file=src, field="factory_param.uart_baudrate")
    module_name = _str(data, "module_name", src, name)
    empty = PartitionTable([])
    return ModuleProfile(
        name=name, chip=chip, flash_size=flash_size, flash_mode=flash_mode, flash_freq=flash_freq,
        bootloader_offset=0, partition_table_offset=0, app_offset=nonos.user1, otadata_offset=None, primary=empty,
        at_customize=empty, at_customize_offset=0, mfg_nvs=None, factory_param={"uart_baudrate": baud},
        firmware=firmware, build=from_table({"sdkconfig_y": []}, base=toml_path.parent, file=src),
        module_name=module_name, source=toml_path, description=_str(data, "description", src, ""),
        releases=tuple(releases), firmware_settings=tuple(firmware_tbl.items()), nonos=nonos)


def _at_customize_entry(primary: PartitionTable, source: str) -> Partition:
    found = primary.find_type(AT_CUSTOMIZE_TYPE, 0)
    if not found:
        raise InputError("no at_customize partition (type 0x40, subtype 0)", file=source or None,
                         field="at_customize")
    if len(found) > 1:
        raise InputError("more than one at_customize partition (type 0x40, subtype 0)", file=source or None,
                         line=found[1].line, field="type")
    return found[0]


def _rom(chip: str, source: str) -> Any:
    from esptool.targets import CHIP_DEFS  # noqa: PLC0415 (esptool import is slow)

    if chip not in CHIP_DEFS:
        raise InputError(f"esptool does not know chip {chip!r}", file=source, field="chip")
    return CHIP_DEFS[chip]


def _str(data: dict, key: str, source: str, default: str | None = None) -> str:
    if key not in data:
        if default is None:
            raise InputError("missing", file=source, field=key)
        return default
    value = data[key]
    if not isinstance(value, str):
        raise InputError("must be a string", file=source, field=key)
    return value


def _int(data: dict, key: str, source: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError("must be a non-negative integer", file=source, field=key)
    return value


__all__ = ["NonosLayout", "ModuleProfile", "load_profile", "list_profiles", "find_profile", "search_path",
           "parse_flash_size", "flash_size_text", "BUILTIN_DIR", "ENV_PATH"]
