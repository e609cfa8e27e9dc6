"""The shipped firmware data (``atfab/core/firmware/data``) and the profiles made from it.

Data layout (docs/DESIGN.md, "Firmware profiles"):

* ``common.toml``: ``[core]`` facts and ``[formats]`` identical at every release, ``[startup]``
  fresh-boot values, ``[features]`` marker names of the command sets, ``[chips.<chip>]`` chip
  constants the cores do not print.
* ``<release>.toml`` (one per esp-at release: ``v4.1.0.0``, ``master`` …):
  ``[release]`` facts of the tag (and ``[release.formats]`` / ``[release.markers]`` overrides),
  then per chip the tag ships a core for: ``[chip.<chip>]`` (core commit, version, build stamp,
  module-name table, BLE stack), ``[chip.<chip>.commands]`` (one array per command set, in
  table order; ``"@<release>/<chip>"`` or ``"@<chip>"`` = the same table as there),
  ``[chip.<chip>.rfpower]``, ``[chip.<chip>.ble]`` (GATT line formats, BLEINIT roles) and
  ``[chip.<chip>.modules."<factory module>"]`` (module_config, Bin version, command sets,
  mfg_nvs namespaces of Espressif's build of that module).

A firmware build is identified by (release, chip) and then its module or command sets:
:func:`firmware_profile`. A real image names its release by the core commit it carries:
:func:`release_of_core`. Nothing here is process state: the files are read once and never change.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import InputError
from .profile import FirmwareProfile

DATA_PACKAGE = "atfab.core.firmware"
#: The release a module profile's firmware defaults to when nothing names one.
DEFAULT_RELEASE = "v4.1.0.0"


def _read(name: str) -> dict[str, Any]:
    text = resources.files(DATA_PACKAGE).joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@lru_cache(maxsize=None)
def common() -> dict[str, Any]:
    """``common.toml`` as a dict (read once)."""
    return _read("common.toml")


@lru_cache(maxsize=None)
def _release_names() -> tuple[str, ...]:
    names = [p.name[:-5] for p in resources.files(DATA_PACKAGE).joinpath("data").iterdir()
             if p.name.endswith(".toml") and p.name != "common.toml"]
    return tuple(sorted(names, key=_release_key))


#: Prefix of a release of another product line than esp-at (``nonos-v1.7.6.0``: ESP8266 NONOS AT 1.x),
#: so that its version never sorts among (or clashes with) esp-at's own ``v1.x`` releases.
LINE_PREFIXES = ("nonos-",)


def _release_key(name: str) -> tuple[int, ...]:
    line = next((i + 1 for i, p in enumerate(LINE_PREFIXES) if name.startswith(p)), 0)
    digits = name[len(LINE_PREFIXES[line - 1]) if line else 0:].lstrip("vV").split(".")
    if all(d.isdigit() for d in digits):
        return (1 << 29, line, *(int(d) for d in digits)) if line else tuple(int(d) for d in digits)
    return (1 << 30,)        # "master" after every numbered release (another line's releases just before it)


def is_release_name(name: str) -> bool:
    """``v4.1.0.0`` (esp-at) or ``nonos-v1.7.6.0`` (a release of another line): a numbered release name."""
    return _release_key(name) != (1 << 30,)


def releases() -> tuple[str, ...]:
    """Every release atfab has data for, by version number ("master" last)."""
    return _release_names()


@lru_cache(maxsize=None)
def release_data(name: str) -> dict[str, Any]:
    """The parsed ``<release>.toml``; :class:`InputError` for an unknown release."""
    if name not in _release_names():
        raise InputError(f"unknown esp-at release {name!r} (atfab knows {', '.join(_release_names())})",
                         field="release")
    return _read(f"{name}.toml")


def chips(release: str) -> tuple[str, ...]:
    """Chips ``release`` ships a core for."""
    return tuple(release_data(release).get("chip", {}))


def chip_data(release: str, chip: str) -> dict[str, Any]:
    data = release_data(release).get("chip", {})
    if chip not in data:
        raise InputError(f"esp-at {release} has no {chip} core (it has {', '.join(data) or 'none'})", field="chip")
    return data[chip]


@dataclass(frozen=True)
class ModuleBuild:
    """Espressif's build of one factory module at one release (``[chip.X.modules."NAME"]``)."""

    name: str
    module_config: str
    fw_version: str
    features: tuple[str, ...]
    mfg_nvs_namespaces: tuple[str, ...]
    flash: str = ""


def modules(release: str, chip: str) -> tuple[ModuleBuild, ...]:
    """The factory modules of ``chip`` at ``release``, in factory_param_data.csv order."""
    out = []
    for name, m in chip_data(release, chip).get("modules", {}).items():
        out.append(ModuleBuild(name, m.get("module_config", ""), m.get("fw_version", ""),
                               tuple(m.get("features", ())), tuple(m.get("mfg_nvs_namespaces", ())),
                               m.get("flash", "")))
    return tuple(out)


def find_module(release: str, chip: str, *, module_config: str | None = None,
                name: str | None = None) -> ModuleBuild | None:
    """The module build with that module_config (preferred) or factory module name, else None."""
    builds = modules(release, chip)
    if module_config:
        hit = next((m for m in builds if m.module_config == module_config), None)
        if hit is not None:
            return hit
    if name:
        return next((m for m in builds if m.name == name), None)
    return None


def default_module(release: str, chip: str) -> ModuleBuild | None:
    """The chip's default module build (``module_<chip>_default``), else its first one."""
    builds = modules(release, chip)
    return find_module(release, chip, module_config=f"module_{chip}_default") or (builds[0] if builds else None)


def command_set(release: str, chip: str, feature: str, _seen: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """The commands of one command set as (name, forms), following ``@`` references."""
    table = chip_data(release, chip).get("commands", {}).get(feature)
    if table is None:
        return ()
    if isinstance(table, str):
        if not table.startswith("@") or table in _seen:
            raise InputError(f"bad command-set reference {table!r}", file=f"{release}.toml",
                             field=f"chip.{chip}.commands.{feature}")
        ref = table[1:]
        other_release, other_chip = ref.split("/", 1) if "/" in ref else (release, ref)
        return command_set(other_release, other_chip, feature, (*_seen, table))
    return tuple((entry.split(":", 1)[0], entry.split(":", 1)[1] if ":" in entry else "") for entry in table)


def marker_name(release: str, feature: str) -> str:
    """The name of ``feature`` inside its registration marker at ``release`` ("" = none)."""
    override = release_data(release).get("release", {}).get("markers", {})
    if feature in override:
        return override[feature]
    return common()["features"].get(feature, feature)


def feature_marker(release: str, feature: str) -> str:
    """The registration marker string a build of ``release`` with ``feature`` carries ("" = none)."""
    name = marker_name(release, feature)
    if not name:
        return ""
    return release_data(release)["release"]["marker"].replace("{set}", name)


def release_of_core(chip: str, commit: str) -> str | None:
    """The release whose ``chip`` core has library commit ``commit`` (how a real image is named)."""
    for name in _release_names():
        core = release_data(name).get("chip", {}).get(chip)
        if core is not None and core.get("core_commit") == commit:
            return name
    return None


def release_of_version(chip: str, generation: str, version: str) -> str | None:
    """The ``generation`` release whose ``chip`` build prints AT version ``version`` (how a NONOS AT
    image, which carries no core commit, is named), else None."""
    for name in _release_names():
        data = release_data(name)
        core = data.get("chip", {}).get(chip)
        if core is not None and data["release"].get("generation") == generation and core.get("core_version") == version:
            return name
    return None


def core_commits(chip: str) -> dict[str, str]:
    """core commit -> release, for every release with a ``chip`` core."""
    out = {}
    for name in _release_names():
        core = release_data(name).get("chip", {}).get(chip)
        if core is not None and core.get("core_commit"):
            out[core["core_commit"]] = name
    return out


def _ordered_features(release: str, features: tuple[str, ...]) -> list[str]:
    order = list(release_data(release)["release"].get("registration_order", ()))
    if "user" in order and "userwkmcu" not in order:
        order.insert(order.index("user") + 1, "userwkmcu")
    return [f for f in order if f in features] + [f for f in features if f not in order]


def _formats(release: str, chip: str) -> tuple[tuple[str, str], ...]:
    merged: dict[str, str] = dict(common()["formats"])
    merged.update(release_data(release)["release"].get("formats", {}))
    ble = chip_data(release, chip).get("ble", {})
    for key in ("gattssrv", "gattschar", "gattsdesc", "gattssrv_uuid128", "gattschar_uuid128"):
        if key in ble:
            merged[key] = ble[key]
    return tuple(merged.items())


def firmware_profile(release: str, chip: str, *, module: str | None = None, module_config: str | None = None,
                     features: tuple[str, ...] | list[str] | None = None, fw_version: str | None = None,
                     silence: bool = False) -> FirmwareProfile:
    """The profile of one build: ``release``'s ``chip`` core with a module's command sets.

    The module is looked up by ``module_config`` (esp-at ``module_config/<name>``), else by its
    factory ``module`` name, else the chip's default module. ``features`` (the command sets the
    image really carries) and ``fw_version`` (its Bin version) replace the module's when given.
    """
    rel = release_data(release)["release"]
    core = chip_data(release, chip)
    build = find_module(release, chip, module_config=module_config, name=module) if (module or module_config) else None
    if build is None and not features:
        build = default_module(release, chip)
    feats = tuple(features) if features else (build.features if build else ("base",))
    if "base" not in feats:
        feats = ("base", *feats)
    commands: list[tuple[str, str]] = []
    for feature in _ordered_features(release, feats):
        commands += command_set(release, chip, feature)
    base = common()["core"]
    rf = core.get("rfpower", {})
    ble = core.get("ble", {})
    consts = common().get("chips", {}).get(chip, {})
    ble_range = tuple(rf.get("ble_range", (0, 15)))
    levels = tuple(rf.get("wifi_levels", ()))
    wifi_range = (0, len(levels) - 1) if levels else tuple(rf.get("wifi_range", base.get("rfpower_wifi_range", (40, 84))))
    has_rst_set = any(name == "AT+RST" and "S" in forms for name, forms in commands)
    values: dict[str, Any] = dict(
        release=release, generation=rel.get("generation", "G3"), chip=chip,
        gmr_chip=chip.upper().replace("-", ""), core_version=core["core_version"],
        core_suffix=core.get("core_suffix", ""), core_commit=core["core_commit"], core_date=core["core_date"],
        core_time=core["core_time"], silence=silence, sdk_version=core.get("sdk_version", ""),
        module=module or (build.name if build else ""),
        module_config=module_config or (build.module_config if build else ""),
        fw_version=fw_version or (build.fw_version if build else ""),
        module_names=tuple(core.get("module_names", ())), features=feats, commands=tuple(commands),
        formats=_formats(release, chip),
        bin_version_source=rel.get("bin_version_source", "CONFIG_APP_PROJECT_VER"),
        app_desc_version=rel.get("app_desc_version", "bin_version"),
        compile_time_source=rel.get("compile_time_source", ""),
        sysstore_boot=rel.get("sysstore_boot", "factory_param"),
        cmd_search_duplicate=rel.get("cmd_search_duplicate", "last"),
        sysmfg_namespace_listing=rel.get("sysmfg_namespace_listing", "unique"),
        sysmfg_namespace_max=rel.get("sysmfg_namespace_max", 32),
        rfpower_set_wifi_requires_mode=rel.get("rfpower_set_wifi_requires_mode", False),
        pki_namespaces=tuple(rel.get("pki_namespaces", ())), default_dns=tuple(rel.get("default_dns", ())),
        factory_param_boot=rel.get("factory_param_boot", "split"),
        uart_missing_key=rel.get("uart_missing_key", "defaults"), marker=rel.get("marker", ""),
        uart_boot_baud=int(rel.get("uart_boot_baud", 0)),
        ble_stack=core.get("ble_stack", "none"),
        rfpower_fields=4 if set(rf.get("four_fields_with", ())) & set(feats) else 1,
        rfpower_min=wifi_range[0], rfpower_max=wifi_range[1],
        rfpower_ble_min=ble_range[0], rfpower_ble_max=ble_range[1],
        rfpower_readback=rf.get("wifi_readback", "echo"), rfpower_ble_readback=rf.get("ble_readback", "adv_all"),
        bleinit_roles=tuple(ble.get("bleinit_roles", (0, 1, 2, 3))), bleinit_u8=ble.get("bleinit_u8", False),
        gatts_auto_create=ble.get("gatts_create", "auto") == "auto",
        gattschar_style="full" if core.get("ble_stack") == "bluedroid" else "c2",
        echo_default=base.get("echo_default", True), ate0_echoed=base.get("ate0_echoed", True),
        syslog_default=base.get("syslog_default", 0),
        download_mode_commands=("AT+RST=1",) if has_rst_set else (),
        sysmfg_value_max=base.get("sysmfg_value_max", 8191), sysmfg_name_max=base.get("sysmfg_name_max", 15),
        sysmfg_numeric_length=base.get("sysmfg_numeric_length", "decimal_text"),
        nvs_string_max=base.get("nvs_string_max", 4000),
        sysmsg_nvs=tuple(base.get("sysmsg_nvs", ("NVM_012", "s_msg", "i32"))),
        sta_mac_nvs=tuple(base.get("sta_mac_nvs", ("NVM_004", "mac", "blob"))),
        cwcountry_boot_policy=base.get("cwcountry_boot_policy", 1),
        rfpower_levels=levels, **_legacy_fields(rel),
        uart_default_flow_control=base.get("uart_default_flow_control", 1),
    )
    known = {f.name for f in fields(FirmwareProfile)}
    values.update({k: v for k, v in consts.items() if k in known})
    return FirmwareProfile(**values)


#: [release] keys of a legacy generation read into FirmwareProfile fields of the same name.
_LEGACY_KEYS = ("factory_param_layout", "factory_param_module", "factory_param_tx_power", "factory_param_uart_port",
                "pki_item_types", "partition_table_md5", "at_customize_md5", "ble_data_json_order", "ble_data_default",
                "err_code_always",
                "sysflash_lookup", "pki_store", "gmr_at_version_args")


def _legacy_fields(rel: dict[str, Any]) -> dict[str, Any]:
    out = {k: rel[k] for k in _LEGACY_KEYS if k in rel}
    if "gmr_at_version_args" in out:
        out["gmr_at_version_args"] = tuple(out["gmr_at_version_args"])
    return out


def default_release(chip: str) -> str:
    """:data:`DEFAULT_RELEASE`, or the first release with a ``chip`` core when it has none."""
    if chip in chips(DEFAULT_RELEASE):
        return DEFAULT_RELEASE
    return next((r for r in _release_names() if chip in chips(r)), DEFAULT_RELEASE)


def firmware_for(chip: str, overrides: dict[str, Any] | None = None, *, source: str = "<profile>",
                 release: str | None = None, module: str | None = None,
                 module_config: str | None = None) -> FirmwareProfile:
    """The profile of ``chip``'s build of ``release`` (default :func:`default_release`; a module's,
    else the default module's), with ``overrides`` (a module profile's ``[firmware]`` table) applied."""
    try:
        profile = firmware_profile(release or default_release(chip), chip, module=module,
                                   module_config=module_config)
    except InputError as exc:
        if exc.field == "chip":
            known = sorted({c for r in _release_names() for c in chips(r)})
            raise InputError(f"unknown chip {chip!r} (known: {', '.join(known)})", file=source, field="chip") from None
        raise
    return profile.with_overrides(overrides or {}, source=source)


def known_chips() -> tuple[str, ...]:
    """Every chip some release has a core for."""
    return tuple(sorted({c for r in _release_names() for c in chips(r)}))


__all__ = ["DEFAULT_RELEASE", "LINE_PREFIXES", "is_release_name", "ModuleBuild", "common", "releases", "release_data", "chips", "chip_data",
           "modules", "find_module", "default_module", "command_set", "marker_name", "feature_marker",
           "release_of_core", "release_of_version", "core_commits", "firmware_profile", "firmware_for", "known_chips", "default_release"]
