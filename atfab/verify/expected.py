"""What the flashed firmware will print, as verification expects it (ground truth §2).

* :func:`firmware_of_app` - the firmware profile of the release the unit's app was built from
  (its app version names a release, else its AT core commit does), so a unit flashed with
  esp-at v5.0.1.0 is verified against v5.0.1.0's formats even when its module profile defaults
  to another release.
* :func:`expected_module_name` - ``Bin version:`` prints a compiled-in module-name table entry:
  factory_param/module_name only selects an entry by exact match; a custom or missing name
  prints entry 0 (``esp_at_get_current_module_name``, [src] at_default_config.c).
* :func:`module_name_warning` - the one line ``atfab check`` shows for such a name.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile, firmware_profile, release_of_core, releases

_CORE_COMMIT = re.compile(r"\((?:s-)?([0-9a-f]{7})\b")


def release_of_app(chip: str, app: dict[str, Any] | None) -> str | None:
    """The esp-at release an app (``manifest["app"]`` / AppInfo dict) was built from, None if unknown."""
    if not isinstance(app, dict):
        return None
    version = app.get("version")
    if isinstance(version, str) and version in releases():
        return version
    m = _CORE_COMMIT.search(str(app.get("at_core") or ""))
    return release_of_core(chip, m.group(1)) if m else None


def firmware_of_app(fw: FirmwareProfile, app: dict[str, Any] | None) -> FirmwareProfile:
    """``fw`` for the release ``app`` was built from (same chip, module and command sets); ``fw``
    itself when the app names no other known release or that release has no core for the chip."""
    if fw.legacy:
        return fw
    release = release_of_app(fw.chip, app)
    if release is None or release == fw.release:
        return fw
    try:
        return firmware_profile(release, fw.chip, module=fw.module or None, module_config=fw.module_config or None,
                                features=fw.features)
    except InputError:
        return fw


def expected_module_name(fw: FirmwareProfile, name: object) -> tuple[str | None, str | None]:
    """(what ``Bin version:`` prints for factory_param/module_name ``name``, a note when that is not ``name``).

    A firmware without a known table (legacy data, custom profiles) is expected to print ``name``.
    """
    if not fw.module_names or fw.factory_param_module != "name":
        return (name if isinstance(name, str) else None), None
    printed = fw.printed_module_name(name)
    if printed == name:
        return printed, None
    given = "no factory_param/module_name" if name is None else f"factory_param/module_name {name!r}"
    return printed, (f"{given} is not in the {fw.gmr_chip} {fw.release} module-name table: "
                     f"the firmware prints entry 0 {printed!r}")


def module_name_warning(fw: FirmwareProfile, name: object) -> str | None:
    """One line for ``atfab check`` when ``name`` will never be printed by ``fw`` (None when it will)."""
    printed, note = expected_module_name(fw, name)
    if note is None:
        return None
    table = ", ".join(dict.fromkeys(fw.module_names))
    return (f"{name!r} is not in the module-name table of esp-at {fw.release} {fw.gmr_chip} ({table}): "
            f"AT+GMR will print {printed!r} (verify expects that)")


__all__ = ["release_of_app", "firmware_of_app", "expected_module_name", "module_name_warning"]
