"""A legacy (G1/G2) unit's partitions from its content: at_customize.bin and one image per item
partition, byte-identical to the build of the module's esp-at release (reference §10, §11.1).

* ``factory_param.bin``: :mod:`atfab.image.legacy_factory` in the release's layout (none before v1.1.3.0);
* ``<pki partition>.bin``: :mod:`atfab.image.legacy_pki`, items typed as the release's wrappers typed them;
* ``ble_data.bin``: :mod:`atfab.image.legacy_ble`, JSON keys in the release's order;
* ``at_customize.bin``: the secondary table, with the MD5 entry from v1.2.0.0 on.

Each image is written at its partition's offset and is not padded: the rest of the partition
keeps what the flash holds (esp-at flashes the bare files the same way). A partition with no
content gets no image (esp-at's wrappers write none, or an empty file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import InputError
from . import legacy_factory as lf
from .gatt import rows_from_cfg_strings
from .legacy_ble import encode_ble_data
from .legacy_layout import BLE, FACTORY
from .legacy_pki import encode_partition
from .mfg_nvs import UnitContent
from .partition_table import encode
from .profiles import ModuleProfile


@dataclass
class LegacyImages:
    """A legacy unit's images: the at_customize table and partition name -> image, in table order."""

    at_customize: bytes
    parts: dict[str, bytes] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)

    def regions(self, profile: ModuleProfile) -> list[tuple[int, str, bytes]]:
        """(offset, file name, bytes) of every image, at_customize.bin first."""
        out = [(profile.at_customize_offset, "at_customize.bin", self.at_customize)]
        out += [(self.offsets[name], f"{name}.bin", data) for name, data in self.parts.items()]
        return out

    @property
    def secret(self) -> bool:
        """An image holds private keys (``*_key`` partitions)."""
        return any(name.endswith("_key") for name in self.parts)


def _fits(profile: ModuleProfile, name: str, data: bytes, source: str) -> int:
    part = profile.at_customize.find(name)
    if part is None:
        raise InputError(f"module {profile.name} has no {name} partition", file=source or None, field=name)
    if len(data) > part.size:
        raise InputError(f"{name} image is {len(data)} bytes, the partition holds {part.size}", file=source or None,
                         field=name)
    return part.offset


def build_legacy_images(profile: ModuleProfile, content: UnitContent, *, source: str = "") -> LegacyImages:
    """The images of ``content`` for legacy ``profile`` (its firmware = the release built for)."""
    if not profile.legacy:
        raise InputError(f"module {profile.name} is a G3 (mfg_nvs) layout", field="module")
    fw = profile.firmware
    images = LegacyImages(encode(profile.at_customize, md5=fw.at_customize_md5))
    made: dict[str, bytes] = {}
    if fw.factory_param_layout and profile.at_customize.find(FACTORY) is not None:
        try:
            made[FACTORY] = lf.encode_block(content.factory_param, fw.factory_param_layout)
        except InputError as exc:
            raise InputError(exc.message, file=exc.file or source or None, field=f"factory_param.{exc.field}") from None
    for name, files in content.pki.items():
        if not files:
            continue
        try:
            made[name] = encode_partition(name, [f.data for f in files], fw.pki_item_types)
        except InputError as exc:
            raise InputError(exc.message, file=files[0].path or source or None, field=name) from None
    if content.ble_rows:
        rows = rows_from_cfg_strings(content.ble_rows, source=source or "ble_data")
        try:
            made[BLE] = encode_ble_data(rows, fw.ble_data_json_order)
        except InputError as exc:
            raise InputError(exc.message, file=source or None, field=f"ble_data.{exc.field}") from None
    for part in profile.at_customize.entries:
        if part.name in made:
            images.offsets[part.name] = _fits(profile, part.name, made[part.name], source)
            images.parts[part.name] = made[part.name]
    unknown = set(made) - set(images.parts)
    if unknown:
        name = sorted(unknown)[0]
        raise InputError(f"module {profile.name} has no {name} partition", file=source or None, field=name)
    return images


__all__ = ["LegacyImages", "build_legacy_images"]
