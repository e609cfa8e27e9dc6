"""The per-item partitions of a G1/G2 at_customize table (reference §10.1, notes §1.2-§1.4).

A legacy layout has no mfg_nvs: ``at_customize.csv`` lists one type-0x40 partition per item -
``factory_param`` (from esp32-at v1.1.3.0), ``ble_data``, the PKI partitions ``server_*``,
``client_*`` and (ESP-AT v2.0+) ``wpa2_*``, ``mqtt_*`` - and a ``fatfs`` data partition. The
firmware finds them by name (subtype numbers differ per module and mean nothing). This module
checks a profile's table and factory values against the releases that used it and names what
each partition holds.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile, firmware_profile
from . import factory_param as fp
from . import legacy_factory as lf
from .partition_table import AT_CUSTOMIZE_TYPE, PartitionTable

FACTORY = "factory_param"
BLE = "ble_data"
PKI_PARTITIONS = ("server_cert", "server_key", "server_ca", "client_cert", "client_key", "client_ca",
                  "wpa2_cert", "wpa2_key", "wpa2_ca", "mqtt_cert", "mqtt_key", "mqtt_ca")
#: What each kind of per-item partition holds (inspect, customize).
KIND_FACTORY, KIND_BLE, KIND_PKI = "factory_param", "ble_data", "pki"


def kind_of(name: str) -> str | None:
    """``factory_param`` / ``ble_data`` / ``pki`` for an item partition name, None for others."""
    if name == FACTORY:
        return KIND_FACTORY
    if name == BLE:
        return KIND_BLE
    if name in PKI_PARTITIONS:
        return KIND_PKI
    return None


def item_partitions(table: PartitionTable) -> list[Any]:
    """The entries of ``table`` atfab writes (factory_param, ble_data, PKI), in table order."""
    return [p for p in table.entries if p.type == AT_CUSTOMIZE_TYPE and kind_of(p.name) is not None]


def tx_power_range(firmware: FirmwareProfile) -> tuple[int, int]:
    """What factory_param byte 4 holds: G1 a power level 0..11, else the release's 0.25 dBm range."""
    return (0, 11) if firmware.generation == "G1" else (firmware.rfpower_min, firmware.rfpower_max)


def check_layout(table: PartitionTable, firmware: FirmwareProfile, *, source: str) -> None:
    """A legacy at_customize table: item partitions of type 0x40; factory_param exactly when the
    release has a factory_param block."""
    for p in table.entries:
        if kind_of(p.name) is not None and p.type != AT_CUSTOMIZE_TYPE:
            raise InputError(f"{p.name} must be type 0x40 (the legacy firmware finds items there)", file=source,
                             line=p.line, field="type")
    has = table.find(FACTORY) is not None
    if has != bool(firmware.factory_param_layout):
        what = "has a factory_param partition" if has else "has no factory_param partition"
        raise InputError(f"the table {what}, but esp-at {firmware.release} "
                         f"{'reads none' if has else 'reads one'}", file=source, field=FACTORY)


def check_profile_factory(values: dict[str, Any], chip: str, firmware: FirmwareProfile, releases: list[str],
                          *, source: str) -> dict[str, int | str]:
    """A legacy profile's ``[factory_param]``: each value checked against the block of every
    release of the profile that stores it; a key no release stores is an error. Without a block
    (v1.0/v1.1) the values only describe the firmware's fixed defaults (G3 rules, all optional)."""
    values = {k: v for k, v in values.items() if k != "version"}
    layouts = {}
    for rel in releases or [firmware.release]:
        name = firmware_profile(rel, chip, module=firmware.module or None).factory_param_layout
        if name:
            layouts[rel] = lf.layout(name)
    if not layouts:
        return fp.validate(values, chip=chip, file=source, require_all=False)
    out: dict[str, int | str] = {}
    for key, value in values.items():
        stores = [lay for lay in layouts.values() if key in lf.block_keys(lay) or key == "module_name"]
        if not stores:
            raise InputError(f"no factory_param block of {', '.join(layouts)} has a {key} field", file=source,
                             field=key)
        for lay in stores:
            out.update(lf.check_values({key: value}, lay, chip=chip, tx_power=tx_power_range(firmware), file=source))
    return out


__all__ = ["FACTORY", "BLE", "PKI_PARTITIONS", "kind_of", "item_partitions", "tx_power_range", "check_layout",
           "check_profile_factory", "KIND_FACTORY", "KIND_BLE", "KIND_PKI"]
