"""The flash-args set of an ``atfab build`` output folder, as the flasher needs it.

``flash_args`` (parsed by :func:`atfab.image.build.read_flash_args`): esptool flash options
(``--flash_mode dio --flash_freq 60m --flash_size 4MB``), then ``<offset> <file>`` pairs, files
relative to the folder.
``manifest.json`` (optional here) names the chip the images were built for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esptool.targets import CHIP_DEFS

from ..core.errors import InputError
from ..core.inputs import IMAGE_LIMIT, load_json, read_bytes
from .build import read_flash_args

FLASH_PARAM_KEYS = ("flash_mode", "flash_freq", "flash_size")


def padded(data: bytes) -> bytes:
    """The bytes esptool writes for ``data`` (padded to 4 with 0xFF)."""
    return data + b"\xff" * (-len(data) % 4)


@dataclass(frozen=True)
class Region:
    """One image of a flash set: ``data`` goes to ``offset``."""

    offset: int
    name: str
    data: bytes = field(repr=False)

    @property
    def md5(self) -> str:
        return hashlib.md5(padded(self.data)).hexdigest()


@dataclass(frozen=True)
class FlashSet:
    """What ``atfab build`` wrote for one unit, as esptool needs it."""

    regions: tuple[Region, ...]
    flash_mode: str = "keep"
    flash_freq: str = "keep"
    flash_size: str = "keep"
    chip: str | None = None            # esptool chip name ("esp32c2") when the manifest says it
    source: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(len(r.data) for r in self.regions)


def load_flash_set(folder: str | Path) -> FlashSet:
    """Read ``flash_args`` (and ``manifest.json`` when present) of a build output folder."""

    folder = Path(folder)
    args_path = folder / "flash_args"
    if not args_path.is_file():
        raise InputError("no flash_args here (not an `atfab build` output folder?)", file=args_path)
    options, pairs = read_flash_args(args_path)
    params: dict[str, str] = {}
    it = iter(options)
    for option in it:
        key, _, value = option[2:].replace("-", "_").partition("=")
        if key not in FLASH_PARAM_KEYS:
            raise InputError(f"option {option} is not a flash setting", file=args_path, field="flash_args")
        params[key] = value or next(it, "")
    regions: list[Region] = []
    for offset, path in pairs:
        try:
            data = read_bytes(path, path.name, limit=IMAGE_LIMIT)
        except InputError as exc:
            raise InputError(exc.message, file=args_path, field="flash_args") from None
        regions.append(Region(offset, path.name, data))
    if not regions:
        raise InputError("no images listed", file=args_path, field="flash_args")
    regions.sort(key=lambda r: r.offset)
    for a, b in zip(regions, regions[1:]):
        if a.offset + len(a.data) > b.offset:
            raise InputError(f"{a.name} overlaps {b.name}", file=args_path, field="flash_args")
    chip = None
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = load_json(manifest_path, "manifest", field="")
        chip = _manifest_chip(manifest)
        if chip is not None and chip not in CHIP_DEFS:
            raise InputError(f"unknown chip {chip!r}", file=manifest_path, field="chip")
    return FlashSet(tuple(regions), chip=chip, source=str(folder), **params)


def _manifest_chip(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return None
    for holder in (manifest, manifest.get("profile"), manifest.get("module")):
        if isinstance(holder, dict) and isinstance(holder.get("chip"), str):
            return holder["chip"]
    return None


__all__ = ["FLASH_PARAM_KEYS", "FlashSet", "Region", "load_flash_set", "padded"]
