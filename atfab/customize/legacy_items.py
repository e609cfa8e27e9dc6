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
from ..image.legacy_pki import decode_pki, item_type, looks_like_pki, replace_item
from .nvs_edit import Change
from .plan import CustomizeRequest, pki_namespace

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


def looks_pki_name(name: str) -> bool:
    return name.endswith(("_cert", "_key", "_ca"))


def without_pki(request: CustomizeRequest) -> CustomizeRequest:
    """The request's factory_param part (what the 0xFCFC block takes)."""
    return replace(request, pki=[])


__all__ = ["plan_items", "rewrite_span", "without_pki", "SECTOR"]
