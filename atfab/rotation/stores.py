"""Which :class:`~atfab.rotation.device.SlotStore` a unit's firmware keeps its TLS slots in.

The firmware profile says it (:attr:`~atfab.core.firmware.FirmwareProfile.pki_store`): ``sysmfg``
(G3: mfg_nvs blobs over AT+SYSMFG, :class:`~atfab.rotation.device.SlotIo`) or ``partition`` (G1/G2:
items of the 0xF1F1 PKI partitions over AT+SYSFLASH, :class:`~atfab.rotation.partition_io.PartitionSlotIo`).
This is the one place rotation looks at it.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile
from ..link.at.helpers import DEFAULT_CHUNK
from ..link.at.client import AtClient
from .device import SlotIo, SlotPlace, SlotStore
from .partition_io import PartitionSlotIo

STORES = {"sysmfg": SlotIo, "partition": PartitionSlotIo}


def longest_write(firmware: FirmwareProfile) -> int:
    """Bytes of the longest write payload the unit's store takes (what a cut write may still wait for)."""
    return STORES[firmware.pki_store].longest_write(firmware) if firmware.pki_store in STORES else DEFAULT_CHUNK


def check_layout(profile: Any, places: list[SlotPlace], *, file: Any = None) -> None:
    """InputError when the module profile's layout cannot take a rotation of ``places`` (before any unit)."""
    kind = profile.firmware.pki_store
    if kind in STORES:
        STORES[kind].check_layout(profile, places, file=file)


def cert_file_problem(profile: Any, places: list[SlotPlace], length: int) -> str | None:
    """Why a ``length``-byte certificate file cannot be stored for ``places`` (None: it can)."""
    kind = profile.firmware.pki_store
    return STORES[kind].cert_file_problem(profile, places, length) if kind in STORES else None


def open_slot(client: AtClient, place: SlotPlace) -> SlotStore:
    """The slot ``place`` on the unit behind ``client``, as its firmware stores it."""
    kind = client.firmware.pki_store
    if kind not in STORES:
        raise InputError(f"unknown PKI store {kind!r} (known: {', '.join(STORES)})", field="pki_store")
    return STORES[kind](client, place)


__all__ = ["STORES", "open_slot", "longest_write", "check_layout", "cert_file_problem"]
