"""The base MAC of a running module, asked over AT (used by :mod:`atfab.verify.unit` and :mod:`atfab.station.fleet`).

Wi-Fi firmware: ``AT+CIPSTAMAC?`` (the station MAC is the base MAC). BLE-only firmware
(``FirmwareProfile.wifi`` false, e.g. ``esp32c2-2mb-ble``) has no Wi-Fi commands: the base MAC is
``AT+BLEADDR?`` minus ``FirmwareProfile.bt_mac_offset`` (ESP-IDF convention BT = base + 2, §6.3).
BLE is initialised for the query when it is off, and de-initialised again afterwards. A random BLE
address set with ``AT+BLEADDR=1,…`` (not persisted: gone after a reset) would give a wrong base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.firmware import FirmwareProfile
from ...core.mac import format_mac


@dataclass(frozen=True)
class ModuleMac:
    """What the module said: ``base`` MAC (``aa:bb:…``), the ``command`` asked, the address it
    printed and the ``offset`` between the two (``reported`` = ``base`` + ``offset``)."""

    base: str
    command: str
    reported: str
    offset: int = 0

    @property
    def detail(self) -> str:
        """How ``base`` was obtained, for reports (``AT+BLEADDR? 24:0a:c4:00:00:03 - 2``)."""
        return f"{self.command} {self.reported}" + (f" - {self.offset}" if self.offset else "")


def base_from_bt(addr: bytes, offset: int = 2) -> bytes:
    """The base MAC of a module whose BT address is ``addr`` (= base + ``offset``, 48-bit wrap)."""
    return ((int.from_bytes(addr, "big") - offset) % (1 << 48)).to_bytes(6, "big")


def read_module_mac(client: Any, firmware: FirmwareProfile | None = None) -> ModuleMac:
    """Ask the module on ``client`` (an :class:`~atfab.link.at.client.AtClient`) for its base MAC;
    ``firmware``: the module's firmware behaviour (default ``client.firmware``).

    AT errors (:class:`~atfab.link.at.errors.AtError` and friends) propagate: callers decide whether
    a refusal is the unit's fault (verify) or a reason to stop (rotate).
    """
    fw = firmware or client.firmware
    if fw.wifi:
        mac = format_mac(client.sta_mac())
        return ModuleMac(mac, "AT+CIPSTAMAC?", mac)
    started = client.ble_role() == 0
    if started:                      # the address is only readable with BLE initialised
        client.ble_init(2)
    try:
        addr = client.ble_addr()
    finally:
        if started:
            client.ble_init(0)
    return ModuleMac(format_mac(base_from_bt(addr, fw.bt_mac_offset)), "AT+BLEADDR?", format_mac(addr),
                     fw.bt_mac_offset)


def read_base_mac(client: Any) -> str:
    """The module's base MAC as ``aa:bb:cc:dd:ee:ff`` (:func:`read_module_mac`)."""
    return read_module_mac(client).base


__all__ = ["ModuleMac", "base_from_bt", "read_module_mac", "read_base_mac"]
