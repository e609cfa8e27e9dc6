"""One-off customisation of a factory image, a bare mfg_nvs or legacy factory_param block (§8, §10.4).

:func:`customize_image` is the offline equivalent of esp-at's ``at.py modify_bin``: the factory
data is found through the partition tables (:mod:`atfab.image.locate`), the mfg_nvs is read
(:func:`atfab.image.nvs.reader.read_nvs`) and rebuilt with every key that is not changed kept, in its
namespace and order (:func:`atfab.image.mfg_nvs.build_nvs_from_entries`). An option the image has no
key for is refused (:class:`InputError`) unless ``add_missing`` is set (:mod:`atfab.customize.plan`).
The result carries the reader diff of the old and new mfg_nvs, which
:func:`atfab.customize.nvs_edit.customize_nvs` checks holds exactly the requested keys. The live mode is :mod:`atfab.customize.live`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import IMAGE_LIMIT, read_bytes, resolved
from ..core.outputs import check_output
from ..core.firmware import G3_DEFAULTS, FirmwareProfile, firmware_for
from ..core.fsutil import atomic_write
from .layout import prove_layout, unchanged_outside
from .legacy import customize_legacy_block
from .legacy_items import BLE, plan_ble, plan_items, rewrite_span, without_pki
from .nvs_edit import Change, customize_nvs
from .plan import CustomizeRequest
from ..image.appimage import read_app_info
from ..image import legacy_ble
from ..image.legacy_pki import image_length, looks_like_pki
from ..image.locate import LEGACY, Located, locate
from ..image.nvs.reader import read_nvs
from ..image.profiles import ModuleProfile, load_profile


# ----------------------------------------------------------------------------------------- images


@dataclass
class ImageResult:
    """What :func:`customize_image` did."""

    source: str
    located: Located
    chip: str | None
    changes: list[Change]
    problems: list[str] = field(default_factory=list)   # damage in the input the firmware also skips
    secret: bool = False                                 # the output holds private keys

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "location": self.located.to_dict(), "chip": self.chip,
                "changes": [c.to_dict() for c in self.changes], "problems": list(self.problems)}


def _chip_and_firmware(located: Located, profile: ModuleProfile | None, chip: str | None,
                       source: str) -> tuple[str | None, FirmwareProfile]:
    found = located.chip
    wanted = profile.chip if profile is not None else chip
    if found and wanted and found != wanted:
        raise InputError(f"the image's app is built for {found}, not {wanted}", file=source, field="--module")
    chip = found or wanted
    if profile is not None:
        return chip, profile.firmware
    return chip, firmware_for(chip if chip in G3_DEFAULTS else "esp32c2")


def _generation(data: bytes, located: Located, profile: ModuleProfile | None) -> str | None:
    """G1/G2 of the firmware a legacy block is for: ``profile``'s, else the image's app version
    (esp32-at v1.x = G1, ESP-AT v2.x-v3.0 = G2), else None (a bare block without --module)."""
    if profile is not None and profile.firmware.legacy:
        return profile.firmware.generation
    if located.primary is not None and located.app_partition is not None:
        app = located.primary.find(located.app_partition)
        if app is not None:
            try:
                version = read_app_info(data[app.offset:app.end], source=located.app_partition).version
            except InputError:
                return None
            return "G1" if version.lstrip("vV").startswith("1.") else "G2"
    return None


def customize_image(data: bytes, request: CustomizeRequest, *, module: str | ModuleProfile | None = None,
                    chip: str | None = None, table_offset: int | None = None,
                    source: str = "<image>") -> tuple[bytes, ImageResult]:
    """Apply ``request`` to a factory image, a bare mfg_nvs or a legacy factory_param block.

    The chip used to validate values is the one of the image's app header, else ``module``'s
    (a profile name or object, which also gives the table offset), else ``chip``. Returns the
    new bytes (same length) and what changed.
    """
    profile = load_profile(module) if isinstance(module, str) else module
    if table_offset is None and profile is not None:
        table_offset = profile.partition_table_offset
    data = bytes(data)
    located = locate(data, table_offset=table_offset, source=source)
    prove_layout(data, located, profile, source=source)
    chip, firmware = _chip_and_firmware(located, profile, chip, source)
    region = located.region(data)
    problems: list[str] = []
    writes: list[tuple[int, bytes]] = []          # (offset, bytes) outside the factory data region
    if located.param == LEGACY:
        block_request = without_pki(request)
        new_region, changes = (customize_legacy_block(region, block_request, chip=chip, target=source,
                                                      generation=_generation(data, located, profile))
                               if not block_request.is_empty() else (region, []))
        writes, pki_changes = _legacy_items(data, located, request, firmware, source)
        changes += pki_changes
        secret = any(c.namespace.endswith("_key") for c in pki_changes)
    else:
        new_region, changes, before = customize_nvs(region, request, chip=chip, firmware=firmware, target=source,
                                                    build=profile.build if profile is not None else None)
        problems = list(before.problems)
        secret = any("_key" in ns for ns in read_nvs(new_region).namespaces())
    out = bytearray(data[:located.offset] + new_region + data[located.offset + located.size:])
    if len(new_region) != located.size or not unchanged_outside(data, bytes(out), located.offset, located.size):
        raise AssertionError(f"{source}: a change outside the factory data region")   # never: by construction
    for offset, chunk in writes:                  # the legacy PKI partitions named by the request
        out[offset:offset + len(chunk)] = chunk
    out = bytes(out)
    return out, ImageResult(source, located, chip, changes, problems, secret)


def _legacy_items(data: bytes, located: Located, request: CustomizeRequest, firmware: FirmwareProfile,
                  source: str) -> tuple[list[tuple[int, bytes]], list[Change]]:
    """Certificates/keys of a legacy image: item rewrites of its PKI partitions (:mod:`.legacy_items`),
    each the new image padded with 0xFF over the sectors a live rewrite erases."""
    if not request.pki and request.gatt is None and not request.gatt_rows:
        return [], []
    if located.secondary is None:
        option = request.pki[0].option if request.pki else "--gatt"
        raise InputError(f"{source} is a bare factory_param block: certificates, keys and GATT data live in "
                         "their own partitions (give the whole flash image)", file=source, field=option)
    parts = {p.name: p for p in located.secondary.entries}

    def head(name: str) -> bytes | None:
        p = parts[name]
        chunk = bytes(data[p.offset:p.offset + p.size])
        if name == BLE:
            ok = legacy_ble.looks_like_ble_data(chunk) and legacy_ble.image_length(chunk) <= len(chunk)
            return chunk[:legacy_ble.image_length(chunk)] if ok else None
        if not looks_like_pki(chunk) or len(chunk) < 8 or image_length(chunk) > len(chunk):
            return None
        return chunk[:image_length(chunk)]

    sizes = {n: p.size for n, p in parts.items()}
    new, old, changes = plan_items(request, firmware, sizes=sizes, head=head, target=source)
    ble, ble_old, ble_changes = plan_ble(request, firmware, sizes=sizes, head=head, target=source)
    if ble is not None:
        new[BLE], old[BLE] = ble, ble_old
        changes += ble_changes
    writes = []
    for name, image in new.items():
        span = min(rewrite_span(old[name], image), parts[name].size)
        writes.append((parts[name].offset, image + b"\xff" * (span - len(image))))
    return writes, changes


def customize_file(image: str | Path, request: CustomizeRequest, *, output: str | Path | None = None,
                   in_place: bool = False, module: str | ModuleProfile | None = None, chip: str | None = None,
                   table_offset: int | None = None) -> ImageResult:
    """:func:`customize_image` on a file, written atomically to ``output`` (which may be the
    input only with ``in_place``); outputs holding private keys get mode 0600."""
    src = Path(image)
    if output is None and not in_place:
        raise InputError("give -o OUTPUT (or --in-place to overwrite the image)", field="-o")
    dest = src if output is None else Path(output)
    if not in_place and (resolved(dest) == resolved(src) or (dest.exists() and os.path.samefile(dest, src))):
        raise InputError("output is the input image; use --in-place to overwrite it", file=str(dest), field="-o")
    if request.is_empty():
        raise InputError("nothing to change: give at least one option to customise", field="options")
    check_output(dest, "image", field="-o")
    data = read_bytes(src, "image", limit=IMAGE_LIMIT, field="--image")
    new, result = customize_image(data, request, module=module, chip=chip, table_offset=table_offset,
                                  source=str(src))
    atomic_write(dest, new, mode=0o600 if result.secret else None)
    return result


__all__ = ["ImageResult", "customize_image", "customize_file"]
