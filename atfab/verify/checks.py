"""The verification checks: their names (a recipe's ``[verify] checks``) and which check each
measurement and mfg_nvs namespace belongs to (docs/recipes.md, ``[verify]``)."""

from __future__ import annotations

#: Every check :func:`atfab.verify.unit.verify_unit` knows: the names of ``[verify] checks``.
CHECKS = ("boot", "gmr", "mac", "factory_param", "uart", "rf_power", "country", "sysflash", "pki", "gatt")
#: Checks that need Wi-Fi commands in the firmware.
WIFI_CHECKS = ("rf_power", "country")
#: Measurement name prefix → the check it belongs to (see :func:`check_of`).
_CHECK_OF_PREFIX = (("at.", "boot"), ("gmr.", "gmr"), ("sta_mac", "mac"), ("mac.", "mac"),
                    ("at_customize.", "sysflash"), ("sysflash.", "sysflash"), ("mfg_nvs.factory_param.", "factory_param"),
                    ("factory_param.", "factory_param"), ("uart_", "uart"), ("rf_power.", "rf_power"),
                    ("country", "country"), ("gatt.", "gatt"), ("mfg_nvs.ble_data.", "gatt"), ("ble_data.", "gatt"))


def namespace_check(namespace: str) -> str | None:
    """The check an mfg_nvs namespace belongs to (None: checked whatever the checks)."""
    if namespace == "factory_param":
        return "factory_param"
    if namespace == "ble_data":
        return "gatt"
    if namespace.endswith(("_cert", "_key", "_ca")):
        return "pki"
    return None


def check_of(measurement: str) -> str | None:
    """The check a measurement name belongs to (PKI namespaces → ``pki``), or None."""
    for prefix, check in _CHECK_OF_PREFIX:
        if measurement.startswith(prefix):
            return check
    if measurement.startswith("partition."):     # a legacy unit's item partition read back with AT+SYSFLASH
        return namespace_check(measurement.removeprefix("partition."))
    return namespace_check(measurement.removeprefix("mfg_nvs.").split(".", 1)[0])


__all__ = ["CHECKS", "WIFI_CHECKS", "check_of", "namespace_check"]
