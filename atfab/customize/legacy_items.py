"""Certificates and keys of a G1/G2 module for ``atfab customize``: items of its 0xF1F1 PKI partitions.

On ESP32 AT v1.x and ESP-AT v2.x-v3.0.0.0 ``--client-cert0 FILE`` is item 0 of the ``client_cert``
partition (reference §10.2): the partition's image is decoded, that item's content replaced (the
other items, their order and types kept; :func:`atfab.image.legacy_pki.replace_item`) or, with
``--add-missing``, the next item appended, and the image written back at offset 0 over the sectors
it and the old image cover (:func:`rewrite_span`). The same planning serves an image
(:mod:`atfab.customize.image`) and a live module over AT+SYSFLASH (:mod:`atfab.customize.live_legacy`),
so both write the same bytes. Key contents are never shown in the changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile
from ..image.gatt import cfg_strings, rows_from_cfg_strings, validate_rows
from ..image.legacy_ble import decode_ble_data, encode_ble_data
from ..image.legacy_pki import decode_pki, item_type, looks_like_pki, replace_item
from .nvs_edit import Change
from .plan import CustomizeRequest, gatt_row_option, pki_namespace

BLE = "ble_data"

SECTOR = 4096


def rewrite_span(old_image: bytes | None, new_image: bytes, sector: int = SECTOR) -> int:
    """Bytes from offset 0 a rewrite erases: the sectors covering the old and the new image."""
    length = max(len(old_image or b""), len(new_image))
    return -(-length // sector) * sector


def _show(part: str, data: bytes | None) -> str | None:
    if data is None:
        return None
    if part.endswith("_key"):
        return f"<key, {len(data)} bytes>"
    return f"<{len(data)} bytes sha256={hashlib.sha256(data).hexdigest()[:16]}>"


def plan_items(request: CustomizeRequest, firmware: FirmwareProfile, *, sizes: dict[str, int],
               head: Callable[[str], bytes | None], target: str) -> tuple[dict[str, bytes], dict[str, bytes | None],
                                                                              list[Change]]:
    """New images of the PKI partitions ``request.pki`` names: ``(new images, old images, changes)``.

    ``sizes``: partition name -> size of the target's at_customize table; ``head(name)``: the
    0xF1F1 image at offset 0 of a partition (None when there is none). InputError (before anything
    is written) for a partition the target lacks, an item it lacks (without ``add_missing``), a
    broken image or one that would not fit.
    """
    new: dict[str, bytes] = {}
    old: dict[str, bytes | None] = {}
    changes: list[Change] = []
    for change in request.pki:
        part = pki_namespace(change.family, change.kind, firmware)
        if part not in sizes:
            raise InputError(f"{target} has no {part} partition (its at_customize table has "
                             f"{', '.join(n for n in sizes if looks_pki_name(n)) or 'no PKI partitions'})",
                             file=target, field=change.option)
        if part not in old:
            old[part] = head(part)
        base = new.get(part, old[part])
        try:
            items = decode_pki(base, source=part) if base is not None and looks_like_pki(base) else []
        except InputError as exc:
            raise InputError(f"{part} holds a broken PKI image ({exc.message}); rewrite it whole (atfab build + "
                             "flash)", file=target, field=change.option) from None
        index = change.index
        if index > len(items) or (index == len(items) and not request.add_missing):
            raise InputError(f"{part} holds {len(items)} item(s), no item {index}"
                             + (" (--add-missing appends the next one)" if index == len(items) else ""),
                             file=target, field=change.option)
        prev = items[index].data if index < len(items) else None
        if prev == change.data:
            continue
        image = replace_item(base or b"", index, change.data, source=part,
                             type_=None if items else item_type(part, firmware.pki_item_types))
        if len(image) > sizes[part]:
            raise InputError(f"the new {part} image is {len(image)} bytes, the partition holds {sizes[part]}",
                             file=target, field=change.option)
        new[part] = image
        changes.append(Change(part, f"item {index}", "pki", "changed" if prev is not None else "added",
                              _show(part, prev), _show(part, change.data)))
    return new, old, changes


def plan_ble(request: CustomizeRequest, firmware: FirmwareProfile, *, sizes: dict[str, int],
             head: Callable[[str], bytes | None], target: str) -> tuple[bytes | None, bytes | None, list[Change]]:
    """The new ``ble_data`` image for ``--gatt`` (the whole table) or ``--gatts-cfgN`` (single rows:
    an existing row replaced, with ``add_missing`` the next one appended), JSON keys in the release's
    order (:attr:`~atfab.core.firmware.FirmwareProfile.ble_data_json_order`): ``(new, old, changes)``;
    ``new`` None when nothing changes."""
    if request.gatt is None and not request.gatt_rows:
        return None, None, []
    option = "--gatt" if request.gatt is not None else gatt_row_option(min(request.gatt_rows))
    if BLE not in sizes:
        raise InputError(f"{target} has no {BLE} partition", file=target, field=option)
    old = head(BLE)
    try:
        table = cfg_strings(decode_ble_data(old, source=BLE)) if old is not None else []
    except InputError as exc:
        if request.gatt is None:
            raise InputError(f"{BLE} holds a broken image ({exc.message}); give the whole table with --gatt",
                             file=target, field=option) from None
        table = []
    rows = list(request.gatt) if request.gatt is not None else list(table)
    for index, row in sorted(request.gatt_rows.items()):
        if index < len(rows):
            rows[index] = row
        elif index == len(rows) and request.add_missing:
            rows.append(row)
        else:
            have = f"cfg0..cfg{len(rows) - 1}" if rows else "no rows"
            raise InputError(f"{BLE} has {have}: cfg{index} must be an existing row"
                             + (f" (--add-missing appends cfg{len(rows)})" if not request.add_missing else ""),
                             file=target, field=gatt_row_option(index))
    try:
        parsed = rows_from_cfg_strings(rows, source=target)
        validate_rows(parsed, source=target)
        image = encode_ble_data(parsed, firmware.ble_data_json_order)
    except InputError as exc:
        raise InputError(f"the GATT table: {exc.message}", file=target, field=option) from None
    if len(image) > sizes[BLE]:
        raise InputError(f"the new {BLE} image is {len(image)} bytes, the partition holds {sizes[BLE]}", file=target,
                         field=option)
    if image == old:
        return None, old, []
    changes = [Change(BLE, f"cfg{i}", "gatt", "changed" if i < len(table) else "added",
                      table[i] if i < len(table) else None, row)
               for i, row in enumerate(rows) if i >= len(table) or table[i] != row]
    changes += [Change(BLE, f"cfg{i}", "gatt", "removed", table[i], None) for i in range(len(rows), len(table))]
    return image, old, changes


def looks_pki_name(name: str) -> bool:
    return name.endswith(("_cert", "_key", "_ca"))


def without_pki(request: CustomizeRequest) -> CustomizeRequest:
    """The request's factory_param part (what the 0xFCFC block takes; PKI and GATT are partitions)."""
    return replace(request, pki=[], gatt=None, gatt_rows={})


__all__ = ["plan_items", "plan_ble", "rewrite_span", "without_pki", "SECTOR", "BLE"]
