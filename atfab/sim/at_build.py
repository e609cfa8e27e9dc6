"""Which firmware build the flashed app is: the profile the virtual AT firmware serves (issue 13).

The virtual module answers with the command set and formats of the app that was really flashed,
never with the ``--module-profile`` it was started with (that only gives chip and flash layout):

* **release**: the AT-core commit in the app (``AT version:...(<commit> - ...)``, the record an
  atfab synthetic image carries) names the esp-at release whose core has that commit
  (:func:`atfab.core.firmware.release_of_core`); else the app description's version when it is a
  release atfab knows (``v4.1.0.0``, or ``v3.3.0.0-12-gabc`` as git describe prints it).
* **build features**: every compiled-in command set leaves its registration marker
  (``esp_at_<set>_cmd_regist``, the release's ``marker``) in the image's flash rodata; the sets
  whose marker the image holds are the build's. An image with no marker at all (an older atfab
  image) gets the factory module's sets of that release.

An app with neither a known core commit nor a known version is not recognised: the boot log says
so and the AT port stays silent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile, chips, feature_marker, firmware_profile, release_of_core, releases
from ..core.firmware.catalog import chip_data
from ..image.appimage import AppInfo

_COMMIT = re.compile(r"\((?:s-)?([0-9a-f]{7})\b")


@dataclass(frozen=True)
class BuildIdentity:
    """What the flashed app says about itself."""

    release: str | None
    features: tuple[str, ...] | None     # None: the image carries no registration marker
    why: str = ""                        # how the release was recognised, or why it was not


def app_release(app: AppInfo) -> tuple[str | None, str]:
    """The esp-at release of ``app`` and how it was found (None and the reason when unknown)."""
    chip = app.chip or ""
    m = _COMMIT.search(app.at_core or "")
    if m:
        rel = release_of_core(chip, m.group(1))
        if rel is not None:
            return rel, f"AT core {m.group(1)} = esp-at {rel}"
    known = [r for r in releases() if chip in chips(r)]
    version = app.version.strip()
    if version in known:
        return version, f"app version {version}"
    for rel in sorted(known, key=len, reverse=True):
        if version.startswith(rel + "-"):
            return rel, f"app version {version} (git describe of {rel})"
    core = f"AT core {m.group(1)}" if m else "no AT core record"
    return None, f"app {app.project!r} version {version!r} ({core}) is no esp-at release atfab knows"


def app_features(image: bytes, release: str, chip: str) -> tuple[str, ...] | None:
    """Command sets whose registration marker ``image`` holds (None: it holds none)."""
    names = list(chip_data(release, chip).get("commands", {}))
    found = []
    for name in names:
        marker = feature_marker(release, name)
        if marker and marker.encode() + b"\x00" in image:
            found.append(name)
    return tuple(found) or None


def identify(app: AppInfo, image: bytes) -> BuildIdentity:
    """Release and command sets of the flashed app (see the module docstring)."""
    rel, why = app_release(app)
    if rel is None:
        return BuildIdentity(None, None, why)
    return BuildIdentity(rel, app_features(image, rel, app.chip or ""), why)


def served_profile(ident: BuildIdentity, app: AppInfo, module: FirmwareProfile) -> FirmwareProfile:
    """The profile the firmware serves: ``module``'s own when it describes this very build (same
    release and sets; it may refine facts, e.g. a test's overrides), else the catalog's."""
    assert ident.release is not None
    marked = {f for f in module.features if feature_marker(module.release, f)} | {"base"}
    same_sets = ident.features is None or set(ident.features) | {"base"} == marked
    if ident.release == module.release and same_sets:
        return module
    try:
        return firmware_profile(ident.release, app.chip or module.chip, module=module.module or None,
                                features=ident.features, fw_version=app.version)
    except InputError:
        return firmware_profile(ident.release, app.chip or module.chip, features=ident.features,
                                fw_version=app.version)


def legacy_profile(ident: BuildIdentity, app: AppInfo, module: FirmwareProfile) -> FirmwareProfile:
    """The G1/G2 build a legacy module serves: ``module`` itself when the app is its release, else the
    catalog's build of the app's release for the same esp-at module (its Bin version, block layout,
    command tables and formats are that release's)."""
    assert ident.release is not None
    if ident.release == module.release:
        return module
    chip = app.chip or module.chip
    try:
        return firmware_profile(ident.release, chip, module_config=module.module_config or None,
                                module=module.module or None)
    except InputError:
        return firmware_profile(ident.release, chip)


__all__ = ["BuildIdentity", "identify", "served_profile", "legacy_profile", "app_release", "app_features"]
