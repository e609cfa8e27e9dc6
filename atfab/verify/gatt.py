"""GATT discovery compared by meaning (ground truth §10): what a built ble_data table will show.

The firmware's lines are read through its own formats (:mod:`atfab.link.at.gatt_lines`); the
expectation is the same meaning derived from the built rows (:func:`atfab.image.gatt.discover`):
service index and UUID; characteristic service/char index, UUID and, where the build prints them,
properties; descriptor lines only where the build prints them (Bluedroid). Both sides are compared
as :meth:`GattItem.text` lists, so case, padding and field order never decide a verdict.
"""

from __future__ import annotations

from ..core.firmware import FirmwareProfile
from ..image.gatt import GattRow, discover
from ..link.at.gatt_lines import GattItem, formats

_HEX_FIELD = "0x%"


def prints_properties(fw: FirmwareProfile) -> bool:
    """The build's char lines carry a properties field (v5.0.1+ C2, every Bluedroid build)."""
    return any(fmt.count(_HEX_FIELD) >= 2 for fmt in formats(fw, "char"))


def expected_items(rows: list[GattRow], fw: FirmwareProfile) -> tuple[list[GattItem], list[GattItem]]:
    """(services, chars+descs) the firmware ``fw`` shows for the GATT table ``rows``."""
    with_prop = prints_properties(fw)
    with_desc = bool(formats(fw, "desc"))
    services: list[GattItem] = []
    chars: list[GattItem] = []
    for s in discover(rows):
        services.append(GattItem("service", s.srv_index, int(s.uuid, 16)))
        for c in s.chars:
            chars.append(GattItem("char", s.srv_index, int(c.uuid, 16), c.char_index,
                                  prop=c.prop if with_prop else None))
            if with_desc:
                chars += [GattItem("desc", s.srv_index, int(d, 16), c.char_index, i)
                          for i, d in enumerate(c.descriptors, start=1)]
    return services, chars


def meaning(items: list[GattItem | str]) -> list[str]:
    """Comparable texts: a read item's :meth:`~GattItem.text`, an unreadable line as ``unreadable: <line>``."""
    return [i.text() if isinstance(i, GattItem) else f"unreadable: {i}" for i in items]


__all__ = ["prints_properties", "expected_items", "meaning"]
