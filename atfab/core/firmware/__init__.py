"""Firmware versions as data: what each esp-at build prints and expects.

* :mod:`.profile` - :class:`FirmwareProfile`, one build's behaviour (the record client, verifier
  and simulator read);
* :mod:`.catalog` - the shipped data files (``data/common.toml``, ``data/<release>.toml``) and
  :func:`firmware_profile` / :func:`firmware_for` that make profiles from them.

See docs/DESIGN.md ("Firmware profiles") for the data schema and how a legacy generation is added.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .catalog import (
    DEFAULT_RELEASE, ModuleBuild, chips, default_release, command_set, core_commits, default_module, feature_marker, find_module,
    firmware_for, firmware_profile, known_chips, marker_name, modules, release_data, release_of_core, releases,
)
from .profile import ESP32_RFPOWER_STEPS, FORM_LETTERS, FirmwareProfile, rfpower_readback


class _DefaultProfiles(Mapping[str, FirmwareProfile]):
    """chip -> the default module's profile at :data:`DEFAULT_RELEASE` (made when first asked for)."""

    def __getitem__(self, chip: str) -> FirmwareProfile:
        if chip not in known_chips():
            raise KeyError(chip)
        return firmware_for(chip)

    def __iter__(self) -> Iterator[str]:
        return iter(known_chips())

    def __len__(self) -> int:
        return len(known_chips())


#: The default build of every known chip (kept for callers that list chips or want "a" profile).
G3_DEFAULTS: Mapping[str, FirmwareProfile] = _DefaultProfiles()

__all__ = [
    "FirmwareProfile", "ESP32_RFPOWER_STEPS", "FORM_LETTERS", "rfpower_readback", "G3_DEFAULTS",
    "DEFAULT_RELEASE", "ModuleBuild", "chips", "default_release", "command_set", "core_commits", "default_module", "feature_marker",
    "find_module", "firmware_for", "firmware_profile", "known_chips", "marker_name", "modules", "release_data",
    "release_of_core", "releases",
]
