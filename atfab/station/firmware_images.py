"""The firmware part of every unit's flash set: what a recipe's ``[firmware]`` puts on each unit.

Read once when a station (or ``atfab batch``) starts, the same for every unit of the recipe:

* ESP-IDF layouts (G1, G2, G3): the synthetic esp-at build, an esp-at build folder, or a factory
  image (everything of it except the ``at_customize`` region, which is the unit's own); a G1/G2
  recipe's profile is already the build of the release its firmware names
  (:func:`atfab.station.recipe_checks.legacy_release`);
* NONOS AT (G0): the download map (``boot.bin``, ``user1.bin``, ``blank.bin``,
  ``esp_init_data_default.bin``), synthetic or from a folder; never a factory image.

``info`` goes to every report (version, source, path); ``app`` is what ``AT+GMR`` will say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import InputError
from ..core.inputs import IMAGE_LIMIT, read_bytes
from ..image.appimage import read_app_info
from ..image.build import OUT_NAMES, firmware_from_synthetic, load_firmware, nonos_download_map
from ..image.flash_set import Region
from ..image.nonos import read_user1
from .recipe_spec import Recipe


@dataclass(frozen=True)
class FirmwareImages:
    """The firmware part of every unit's flash set (same for all units of a recipe)."""

    regions: tuple[Region, ...]
    info: dict[str, Any]                 # version / source for reports
    app: dict[str, Any] | None           # app description (what AT+GMR will say), if known


def firmware_images(recipe: Recipe) -> FirmwareImages:
    """The firmware regions every unit of ``recipe`` gets (synthetic, build folder or factory image)."""

    profile, src = recipe.profile, recipe.firmware
    if profile.nonos is not None:
        return nonos_firmware_images(recipe)
    if src.kind in ("synthetic", "build_dir"):
        fw = firmware_from_synthetic(profile, src.version) if src.kind == "synthetic" else load_firmware(src.path, profile)
        regions = tuple(Region(off, OUT_NAMES[role], data) for role, (off, data) in sorted(fw.files.items(),
                                                                                         key=lambda kv: kv[1][0]))
        info = {"version": fw.app.version, "source": src.kind}
        if src.path is not None:
            info["path"] = str(src.path)
        return FirmwareImages(regions, info, fw.app.to_dict())
    data = read_bytes(src.path, "factory image", limit=IMAGE_LIMIT)  # factory_image: everything except the unit's at_customize area
    cut = profile.at_customize_partition
    pieces = [(0, data[:cut.offset]), (cut.offset + cut.size, data[cut.offset + cut.size:])]
    regions = tuple(Region(off, f"{src.path.name}@0x{off:x}", part) for off, part in pieces if part)
    try:
        app = read_app_info(data[profile.app_offset:], source=str(src.path)).to_dict()
    except InputError:
        app = None
    return FirmwareImages(regions, {"version": app["version"] if app else None, "source": "factory_image",
                                    "path": str(src.path)}, app)


def nonos_firmware_images(recipe: Recipe) -> FirmwareImages:
    """The download map of a G0 (ESP8266 NONOS AT) module: synthetic files, or the files of a build folder."""
    profile, src = recipe.profile, recipe.firmware
    if src.kind == "factory_image":
        raise InputError("a NONOS AT module is flashed from its download map (synthetic or build_dir), "
                         "not a factory image", file=recipe.path, field="firmware.factory_image")
    try:
        files = nonos_download_map(profile, firmware=src.path, synthetic_firmware=src.version)
    except InputError as exc:
        raise InputError(exc.message, file=exc.file or recipe.path, field=f"firmware.{src.kind}") from None
    app = read_user1(next(data for _off, name, data in files if name == "user1.bin"))
    version = app.at_version or profile.firmware.core_version
    info: dict[str, Any] = {"version": version, "source": src.kind}
    if src.path is not None:
        info["path"] = str(src.path)
    return FirmwareImages(tuple(Region(off, name, data) for off, name, data in files), info,
                          {"version": version, "sdk_version": app.sdk_version or profile.firmware.sdk_version,
                           "project_name": "nonos-at", "synthetic": app.synthetic,
                           **_custom_info_facts(app.custom_info)})


def _custom_info_facts(custom_info: str) -> dict[str, str]:
    """NONOS AT 1.x: the compile time and Bin version the flashed app's custom GMR text carries."""
    out: dict[str, str] = {}
    for line in custom_info.split("\r\n"):
        if line.startswith("compile time:"):
            out["compile_time"] = line[len("compile time:"):].strip()
        elif line.startswith("Bin version(") and "):" in line:
            out["bin_version"] = line.split("):", 1)[1].strip()
    return out


__all__ = ["FirmwareImages", "firmware_images", "nonos_firmware_images"]
