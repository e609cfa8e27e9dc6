"""Find the factory-data region of an image through its partition tables (§8, §10, §11).

A full flash image (factory image or flash dump): the primary table at 0x8000 (or the given
offset; 0xC000 is tried next on C5/C61 layouts), its type-0x40 ``at_customize`` entry, the
secondary table at that entry's offset, and there the firmware's choice (§8 "param mode"): a
data/nvs entry named ``mfg_nvs`` (G3), else a type-0x40 entry named ``factory_param`` (legacy
0xFCFC block, §10.4). No byte-pattern guessing. Bare ``mfg_nvs.bin`` and bare legacy
``factory_param.bin`` files are recognised by content. The chip comes from the first app
partition that holds a valid ESP app header.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import InputError
from .appimage import IMAGE_MAGIC, image_chip
from .factory_param import LEGACY_SIZE
from .nvs.reader import read_nvs
from .partition_table import (
    APP, AT_CUSTOMIZE_TYPE, DATA, NVS_SUBTYPE, SECTOR, Partition, PartitionTable, decode, looks_like_table,
)

TABLE_OFFSETS = (0x8000, 0xC000)
MFG_NVS = "mfg_nvs"
LEGACY_NAME = "factory_param"
NVS_PAGE = 0x1000

#: kinds of :class:`Located`
FLASH_IMAGE, BARE_NVS, BARE_LEGACY = "flash_image", "mfg_nvs", "legacy_block"
#: what the region holds
NVS, LEGACY = "nvs", "legacy"


@dataclass(frozen=True)
class Located:
    """Where the factory data of an image is.

    ``kind``: "flash_image", "mfg_nvs" (bare NVS file) or "legacy_block" (bare 0xFCFC block);
    ``param``: "nvs" (mfg_nvs, G3) or "legacy" (factory_param block, ESP-AT v2.x);
    ``offset``/``size``: the region inside the data (the whole file for bare kinds).
    """

    kind: str
    param: str
    offset: int
    size: int
    table_offset: int | None = None
    primary: PartitionTable | None = None
    at_customize: Partition | None = None       # primary entry of type 0x40
    secondary: PartitionTable | None = None
    partition: Partition | None = None          # the mfg_nvs / factory_param entry
    chip: str | None = None                     # esptool chip name from the app header
    app_partition: str | None = None

    def region(self, data: bytes) -> bytes:
        """The bytes of the region in ``data``."""
        return bytes(data[self.offset:self.offset + self.size])

    def describe(self) -> str:
        """``mfg_nvs at 0x1f000 (0x1f000 bytes)`` and the like."""
        what = {NVS: "mfg_nvs", LEGACY: "legacy factory_param block"}[self.param]
        if self.kind != FLASH_IMAGE:
            return f"bare {what} ({self.size:#x} bytes)"
        return f"{what} at {self.offset:#x} ({self.size:#x} bytes, secondary table at {self.at_customize.offset:#x})"  # type: ignore[union-attr]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "param": self.param, "offset": f"0x{self.offset:x}", "size": f"0x{self.size:x}",
                "table_offset": None if self.table_offset is None else f"0x{self.table_offset:x}",
                "at_customize": None if self.at_customize is None else f"0x{self.at_customize.offset:x}",
                "chip": self.chip, "app_partition": self.app_partition}


def _blank(data: bytes) -> bool:
    return data.count(0xFF) == len(data)


def _at_customize_entry(primary: PartitionTable) -> Partition | None:
    entries = primary.find_type(AT_CUSTOMIZE_TYPE)
    named = [p for p in entries if p.name == "at_customize"]
    return (named or entries or [None])[0]


def app_chip(data: bytes, primary: PartitionTable) -> tuple[str | None, str | None]:
    """(chip, partition name) of the first app partition whose content is an ESP image."""
    for p in primary.find_type(APP):
        head = data[p.offset:p.offset + 64]
        if head[:1] == bytes([IMAGE_MAGIC]):
            chip = image_chip(head)
            if chip is not None:
                return chip, p.name
    return None, None


def locate_in_flash(data: bytes, table_offset: int, *, source: str = "<image>") -> Located:
    """Follow the tables of a flash image whose primary table is at ``table_offset``."""
    primary = decode(data[table_offset:table_offset + SECTOR], source=f"{source}@0x{table_offset:x}")
    at = _at_customize_entry(primary)
    if at is None:
        raise InputError(f"partition table at 0x{table_offset:x} has no at_customize (type 0x40) partition: "
                         "not an ESP-AT image", file=source, field="at_customize")
    raw = data[at.offset:at.offset + SECTOR]
    if len(raw) < 32 or _blank(raw):
        raise InputError(f"at_customize table at 0x{at.offset:x} is {'missing' if len(raw) < 32 else 'blank'}",
                         file=source, field="at_customize")
    secondary = decode(raw, source=f"{source}@0x{at.offset:x}")
    part = secondary.find(MFG_NVS)
    param = NVS
    if part is None or (part.type, part.subtype) != (DATA, NVS_SUBTYPE):
        part, param = secondary.find(LEGACY_NAME), LEGACY
        if part is None or part.type != AT_CUSTOMIZE_TYPE:
            raise InputError(f"at_customize table at 0x{at.offset:x} has neither a data/nvs mfg_nvs nor a "
                             "type-0x40 factory_param partition", file=source, field="at_customize")
    if part.end > len(data):
        raise InputError(f"image of 0x{len(data):x} bytes ends before {part.name} (0x{part.offset:x}..0x{part.end:x})",
                         file=source, field=part.name)
    size = part.size if param == NVS else min(part.size, LEGACY_SIZE)
    chip, app = app_chip(data, primary)
    return Located(FLASH_IMAGE, param, part.offset, size, table_offset, primary, at, secondary, part, chip, app)


def locate(data: bytes, *, table_offset: int | None = None, source: str = "<image>") -> Located:
    """Find the mfg_nvs partition or the legacy factory_param block in ``data``.

    With ``table_offset`` the primary table must be there; otherwise 0x8000 then 0xC000 are
    tried. Data without a partition table is taken as a bare mfg_nvs or legacy block file.
    """
    data = bytes(data)
    if not data:
        raise InputError("file is empty", file=source, field="image")
    offsets = (table_offset,) if table_offset is not None else TABLE_OFFSETS
    for off in offsets:
        if len(data) >= off + 32 and looks_like_table(data[off:off + 32]):
            return locate_in_flash(data, off, source=source)
    boot = next((o for o in (0x0, 0x1000, 0x2000) if len(data) > max(offsets) and data[o:o + 1] == bytes([IMAGE_MAGIC])), None)
    if boot is not None:    # a flash image (a bootloader at 0x0/0x1000/0x2000) whose table is not where it must be
        raise InputError(f"a flash image (bootloader at 0x{boot:x}) without a partition table at "
                         + "/".join(f"0x{o:x}" for o in offsets) + ": its layout cannot be proven, nothing is changed",
                         file=source, field="partition_table")
    if data[:2] == b"\xfc\xfc" and len(data) <= LEGACY_SIZE:
        return Located(BARE_LEGACY, LEGACY, 0, len(data))
    why = "size is not a multiple of 4 KB"
    if len(data) % NVS_PAGE == 0 and not _blank(data):
        try:
            read_nvs(data, source=source)
            return Located(BARE_NVS, NVS, 0, len(data))
        except InputError as exc:
            why = exc.message
    elif _blank(data):
        why = "all 0xFF"
    raise InputError("not a flash image (no partition table at " + "/".join(f"0x{o:x}" for o in offsets)
                     + f"), an mfg_nvs image ({why}) or a legacy factory_param block", file=source, field="image")


__all__ = ["Located", "locate", "locate_in_flash", "app_chip", "FLASH_IMAGE", "BARE_NVS", "BARE_LEGACY",
           "NVS", "LEGACY", "TABLE_OFFSETS"]
