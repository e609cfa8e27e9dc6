"""Proof of a factory image's layout before ``atfab customize --image`` writes a byte of it.

An image is only changed when its layout is proven: the primary partition table decodes (its
MD5 entry holds; it must have one where the module's firmware writes one) without overlaps, the image is exactly the flash size (the module profile's, else the one the
bootloader header declares), every partition lies inside it, the at_customize table and the
factory data lie inside the at_customize partition, and with a module profile both tables are
the profile's. Anything less could be a dump of something else, and a change would brick it.
"""

from __future__ import annotations

from ..core.errors import InputError
from ..image.appimage import IMAGE_MAGIC, read_image_summary
from ..image.partition_table import APP
from ..image.locate import FLASH_IMAGE, Located
from ..image.profiles import ModuleProfile, parse_flash_size

#: Where a bootloader image starts (0x0 on most chips, 0x1000 on ESP32/ESP32-S2, 0x2000 on ESP32-C5/C61).
BOOTLOADER_OFFSETS = (0x0, 0x1000, 0x2000)


def _header_flash_size(data: bytes, off: int, source: str) -> int | None:
    if not (len(data) > off + 24 and data[off] == IMAGE_MAGIC):
        return None
    try:
        summary = read_image_summary(data[off:off + 0x10000], source=source)
        return parse_flash_size(summary.flash_size, source=source) if summary.flash_size else None
    except InputError:
        return None


def declared_flash_size(data: bytes, located: Located | None = None, *, source: str = "") -> int | None:
    """The flash size the image's own headers declare: the bootloader's (at 0x0, 0x1000 or 0x2000),
    else the first app partition's (esptool writes the same flash byte into both)."""
    offsets = list(BOOTLOADER_OFFSETS)
    if located is not None and located.primary is not None:
        offsets += [p.offset for p in located.primary.find_type(APP)]
    for off in offsets:
        size = _header_flash_size(data, off, source)
        if size is not None:
            return size
    return None


def prove_layout(data: bytes, located: Located, profile: ModuleProfile | None, *, source: str) -> None:
    """Raise :class:`InputError` unless the layout of the flash image ``data`` is proven (module doc)."""
    if located.kind != FLASH_IMAGE:
        return
    assert located.primary is not None and located.at_customize is not None and located.partition is not None
    where = f"partition table at 0x{located.table_offset:x}"
    # an MD5 entry, when there is one, was checked by decode(); esp-at's own builds write one only
    # on some releases (firmware data: partition_table_md5), so it is required where they do
    if profile is not None and profile.firmware.partition_table_md5 and not located.primary.has_md5:
        raise InputError(f"{where} has no MD5 entry, but module {profile.name}'s firmware writes one: its "
                         "content cannot be proven, nothing is changed", file=source, field="partition_table")
    entries = sorted(located.primary.entries, key=lambda p: p.offset)
    for a, b in zip(entries, entries[1:]):
        if a.end > b.offset:
            raise InputError(f"{where}: {a.name} overlaps {b.name}", file=source, field="partition_table")
    if profile is not None:
        flash, why = profile.flash_size, f"module {profile.name}'s flash"
        if located.primary.entries != profile.primary.entries:
            raise InputError(f"{where} is not module {profile.name}'s (partitions_at.csv)", file=source,
                             field="partition_table")
        if located.secondary is not None and located.secondary.entries != profile.at_customize.entries:
            raise InputError(f"at_customize table at 0x{located.at_customize.offset:x} is not module "
                             f"{profile.name}'s (at_customize.csv)", file=source, field="at_customize")
    else:
        declared = declared_flash_size(data, located, source=source)
        if declared is None:
            raise InputError("neither a bootloader nor an app header declares the flash size: the image cannot "
                             "be proven to be a whole flash (give --module)", file=source, field="size")
        flash, why = declared, "the flash size its image headers declare"
    if len(data) != flash:
        raise InputError(f"image is 0x{len(data):x} bytes, {why} is 0x{flash:x}: a factory image covers the "
                         "whole flash exactly", file=source, field="size")
    for p in located.primary.entries:
        if p.end > flash:
            raise InputError(f"partition {p.name} (0x{p.offset:x}..0x{p.end:x}) lies beyond the 0x{flash:x}-byte "
                             "flash", file=source, field="partition_table")
    at = located.at_customize
    part = located.partition
    if not (at.offset <= part.offset and part.end <= at.end):
        raise InputError(f"{part.name} (0x{part.offset:x}..0x{part.end:x}) lies outside the at_customize "
                         f"partition (0x{at.offset:x}..0x{at.end:x})", file=source, field=part.name)


def unchanged_outside(before: bytes, after: bytes, offset: int, size: int) -> bool:
    """True when ``after`` differs from ``before`` only inside ``offset .. offset+size``."""
    return (len(before) == len(after) and before[:offset] == after[:offset]
            and before[offset + size:] == after[offset + size:])


__all__ = ["prove_layout", "declared_flash_size", "unchanged_outside", "BOOTLOADER_OFFSETS"]
