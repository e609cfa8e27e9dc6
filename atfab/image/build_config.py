"""What an esp-at build enables that decides which namespaces its mfg_nvs holds (reference §8.2, §8.5).

esp-at's generator (``components/customized_partitions/generation_tools/mfg_nvs.py``) reads a
``raw_data/<folder>`` only when the option ``at_customized_config_dependency.txt`` gives for it is
``y`` in the build's ``sdkconfig``: the ``server_*`` / ``client_*`` folders with the SSL options,
``wpa_ent_*`` with ``AT_EAP_COMMAND_SUPPORT``, ``mqtt_*``, ``https_*``, ``wss_*`` with their
authentication options, ``ble_data`` with ``AT_BLE_COMMAND_SUPPORT``; ``factory_param`` always
(``AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT``, without which there is no mfg_nvs at all). With
``AT_EAP_LEGACY_NAMESPACE_SUPPORT`` the ``wpa_ent_*`` folders are written as namespaces
``wpa2_*`` (the names firmware up to v5.0 used for them).

A :class:`BuildConfig` holds the options that are ``y``: read from an esp-at build folder's
``sdkconfig`` / ``sdkconfig.json`` (:func:`read_sdkconfig`, :func:`find_sdkconfig`), or from a
module profile's ``[build]`` table (:func:`from_table`), which records the module's defaults.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import read_bytes

#: ``at_customized_config_dependency.txt`` of esp-at HEAD b49e4b98, in file order: (option, raw_data folder).
DEPENDENCIES: tuple[tuple[str, str], ...] = (
    ("AT_BLE_COMMAND_SUPPORT", "ble_data"),
    ("AT_FS_COMMAND_SUPPORT", "fs_storage"),
    ("AT_SSL_SERVER_CLIENT_AUTH_SERVER", "server_cert"),
    ("AT_SSL_SERVER_CLIENT_AUTH_SERVER", "server_key"),
    ("AT_SSL_SERVER_SERVER_AUTH_CLIENT", "server_ca"),
    ("AT_SSL_CLIENT_SERVER_AUTH_CLIENT", "client_cert"),
    ("AT_SSL_CLIENT_SERVER_AUTH_CLIENT", "client_key"),
    ("AT_SSL_CLIENT_CLIENT_AUTH_SERVER", "client_ca"),
    ("AT_EAP_COMMAND_SUPPORT", "wpa_ent_cert"),
    ("AT_EAP_COMMAND_SUPPORT", "wpa_ent_key"),
    ("AT_EAP_COMMAND_SUPPORT", "wpa_ent_ca"),
    ("AT_MQTT_BROKER_AUTH_CLIENT", "mqtt_cert"),
    ("AT_MQTT_BROKER_AUTH_CLIENT", "mqtt_key"),
    ("AT_MQTT_CLIENT_AUTH_BROKER", "mqtt_ca"),
    ("AT_HTTPS_SERVER_AUTH_CLIENT", "https_cert"),
    ("AT_HTTPS_SERVER_AUTH_CLIENT", "https_key"),
    ("AT_HTTPS_CLIENT_AUTH_SERVER", "https_ca"),
    ("AT_WSS_SERVER_AUTH_CLIENT", "wss_cert"),
    ("AT_WSS_SERVER_AUTH_CLIENT", "wss_key"),
    ("AT_WSS_CLIENT_AUTH_SERVER", "wss_ca"),
    ("AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT", "factory_param"),
    ("AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT", "mfg_nvs"),
)
BLE_OPTION = "AT_BLE_COMMAND_SUPPORT"
EAP_OPTION = "AT_EAP_COMMAND_SUPPORT"
EAP_LEGACY_OPTION = "AT_EAP_LEGACY_NAMESPACE_SUPPORT"
MFG_OPTION = "AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT"
#: raw_data folders that are PKI namespaces, in esp-at's order (the enterprise ones under HEAD's names).
PKI_FOLDERS: tuple[str, ...] = tuple(f for _o, f in DEPENDENCIES if f not in ("ble_data", "fs_storage",
                                                                               "factory_param", "mfg_nvs"))
#: The options a module profile's ``[build] sdkconfig_y`` may list: those that change what mfg_nvs holds.
OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(
    [BLE_OPTION] + [o for o, f in DEPENDENCIES if f in PKI_FOLDERS] + [EAP_LEGACY_OPTION]))
#: Enterprise folder names of esp-at HEAD -> the legacy namespace names (mfg_nvs.py WPA_ENT_LEGACY_NAME_MAP).
LEGACY_EAP_NAMES = {"wpa_ent_ca": "wpa2_ca", "wpa_ent_cert": "wpa2_cert", "wpa_ent_key": "wpa2_key"}
_OPTION_OF = {f: o for o, f in DEPENDENCIES}
_OPTION_OF.update({legacy: _OPTION_OF[head] for head, legacy in LEGACY_EAP_NAMES.items()})
#: Largest sdkconfig / sdkconfig.json read (a real one is ~70 KB).
SDKCONFIG_MAX = 4 << 20
#: Where an esp-at build folder may hold its configuration, tried in order (the project's
#: ``sdkconfig``, ESP-IDF's ``build/config/sdkconfig.json``, a flat copy).
SDKCONFIG_NAMES = ("sdkconfig", "config/sdkconfig.json", "sdkconfig.json")
_LINE = re.compile(r"CONFIG_([A-Za-z0-9_]+)=(.*)\Z")


def option_for(name: str) -> str | None:
    """The option that makes esp-at's build write raw_data folder or namespace ``name`` (``None``: unknown)."""
    return _OPTION_OF.get(name)


@dataclass(frozen=True)
class BuildConfig:
    """The ``CONFIG_AT_*`` options of :data:`OPTIONS` that are ``y`` in one build, and where that was read."""

    enabled: frozenset[str]
    source: str

    def enables(self, option: str) -> bool:
        return option in self.enabled

    @property
    def ble_data(self) -> bool:
        """The firmware has BLE commands and reads ``ble_data``."""
        return BLE_OPTION in self.enabled

    @property
    def legacy_eap(self) -> bool:
        """Enterprise namespaces are named ``wpa2_*`` (``AT_EAP_LEGACY_NAMESPACE_SUPPORT``)."""
        return EAP_LEGACY_OPTION in self.enabled

    def reads(self, name: str) -> bool:
        """The firmware reads namespace (or raw_data folder) ``name``; names esp-at's build does not
        know (custom namespaces) count as read."""
        option = option_for(name)
        return option is None or option == MFG_OPTION or option in self.enabled

    def why_unread(self, name: str) -> str:
        """``CONFIG_AT_MQTT_CLIENT_AUTH_BROKER is not enabled (<source>)`` for a namespace it does not read."""
        return f"CONFIG_{option_for(name)} is not enabled ({self.source})"

    def options(self) -> list[str]:
        """The enabled options in :data:`OPTIONS` order."""
        return [o for o in OPTIONS if o in self.enabled]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sdkconfig_y": self.options()}


def from_options(options: Any, *, source: str, file: str | None = None, field: str = "build.sdkconfig_y") -> BuildConfig:
    """A :class:`BuildConfig` from a list of option names (``AT_...``, ``CONFIG_`` prefix allowed)."""
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise InputError("must be a list of CONFIG_AT_* option names", file=file, field=field)
    seen: set[str] = set()
    for raw in options:
        name = raw.removeprefix("CONFIG_")
        if name not in OPTIONS:
            raise InputError(f"{raw!r} is not an option that changes mfg_nvs (known: {', '.join(OPTIONS)})",
                             file=file, field=field)
        if name in seen:
            raise InputError(f"{raw!r} is listed twice", file=file, field=field)
        seen.add(name)
    if EAP_LEGACY_OPTION in seen and EAP_OPTION not in seen:
        raise InputError(f"{EAP_LEGACY_OPTION} needs {EAP_OPTION} (it renames the enterprise namespaces)",
                         file=file, field=field)
    return BuildConfig(frozenset(seen), source)


def from_table(table: Any, *, base: Path, file: str) -> BuildConfig:
    """A module profile's ``[build]`` table: ``sdkconfig_y = [...]`` (the options that are y) or
    ``sdkconfig = "FILE"`` (an sdkconfig / sdkconfig.json relative to the profile)."""
    if not isinstance(table, dict):
        raise InputError("must be a table", file=file, field="build")
    unknown = [k for k in table if k not in ("sdkconfig_y", "sdkconfig")]
    if unknown:
        raise InputError("unknown field (known: sdkconfig_y, sdkconfig)", file=file, field=f"build.{unknown[0]}")
    if ("sdkconfig_y" in table) == ("sdkconfig" in table):
        raise InputError("give exactly one of sdkconfig_y (the CONFIG_AT_* options esp-at's build of this module "
                         "enables) or sdkconfig (a file)", file=file, field="build")
    if "sdkconfig" in table:
        name = table["sdkconfig"]
        if not isinstance(name, str) or not name:
            raise InputError("must be a file name", file=file, field="build.sdkconfig")
        return read_sdkconfig(base / name)
    return from_options(table["sdkconfig_y"], source=f"{file} [build]", file=file)


def _read_text(path: Path, field: str) -> str:
    try:
        data = read_bytes(path, "sdkconfig", limit=SDKCONFIG_MAX, field=field)
    except InputError as exc:
        if "too large" in exc.message:
            raise InputError(f"larger than {SDKCONFIG_MAX >> 20} MiB: not an sdkconfig", file=str(path),
                             field=field) from None
        raise
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text: not an sdkconfig", file=str(path), field=field) from None


def read_sdkconfig(path: str | Path, *, field: str = "sdkconfig") -> BuildConfig:
    """The build configuration of an ESP-IDF ``sdkconfig`` (``CONFIG_X=y`` lines) or ``sdkconfig.json``
    (kconfgen's ``{"X": true}``). An option that is absent or not ``y`` is off.

    esp-at's generator looks for the text ``CONFIG_X=y`` anywhere in the file; this reads the
    assignment lines (the same for every sdkconfig kconfgen writes; a ``# CONFIG_X=y`` comment
    counts for esp-at, not here: the firmware built from that file does not have the option).
    A build without ``CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT`` has no mfg_nvs: refused.
    """
    path = Path(path)
    text = _read_text(path, field)
    values: dict[str, Any] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"not valid JSON: {exc}", file=str(path), field=field) from None
        if not isinstance(data, dict):
            raise InputError("not an sdkconfig.json (expected an object of option values)", file=str(path), field=field)
        values = data
    else:
        for raw in text.splitlines():
            m = _LINE.match(raw.strip())
            if m:
                values[m.group(1)] = m.group(2)
        if not values:
            raise InputError("no CONFIG_... lines: not an sdkconfig", file=str(path), field=field)
    on = {name for name, value in values.items() if value is True or value == "y"}
    if MFG_OPTION not in on:
        raise InputError(f"CONFIG_{MFG_OPTION} is not enabled: this firmware reads no mfg_nvs "
                         "(atfab provisions only builds with the AT customized partition table)",
                         file=str(path), field=field)
    return BuildConfig(frozenset(on & set(OPTIONS)), str(path))


def find_sdkconfig(folder: str | Path) -> Path | None:
    """The build configuration file of an esp-at build folder (:data:`SDKCONFIG_NAMES`), if it has one."""
    folder = Path(folder)
    return next((folder / name for name in SDKCONFIG_NAMES if (folder / name).is_file()), None)


__all__ = ["BuildConfig", "DEPENDENCIES", "OPTIONS", "PKI_FOLDERS", "LEGACY_EAP_NAMES", "BLE_OPTION",
           "EAP_OPTION", "EAP_LEGACY_OPTION", "MFG_OPTION", "SDKCONFIG_NAMES", "option_for", "from_options",
           "from_table", "read_sdkconfig", "find_sdkconfig"]
