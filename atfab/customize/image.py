"""One-off customisation of a factory image, a bare mfg_nvs or legacy factory_param block (§8, §10.4).

:func:`customize_image` is the offline equivalent of esp-at's ``at.py modify_bin``: the factory
data is found through the partition tables (:mod:`atfab.image.locate`), the mfg_nvs is read
(:func:`atfab.image.nvs.reader.read_nvs`) and rebuilt with every key that is not changed kept, in its
namespace and order (:func:`atfab.image.mfg_nvs.build_nvs_from_entries`). An option the image has no
key for is refused (:class:`InputError`) unless ``add_missing`` is set (:mod:`atfab.customize.plan`).
The result carries the reader diff of the old and new mfg_nvs, which :func:`customize_nvs`
checks holds exactly the requested keys. The live mode is :mod:`atfab.customize.live`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .plan import (
    BLE_NS, FACTORY_NS, OPTION_KEYS, PKI_FAMILIES, PKI_KINDS, CustomizeRequest, Edit, ImageView, KeyView, PkiChange,
    load_gatt_rows, make_request, pki_namespace, pki_option, plan_edits,
)
from ..core.errors import AtfabError, InputError
from ..core.firmware import G3_DEFAULTS, FirmwareProfile, firmware_for
from ..core.fsutil import atomic_write
from ..image.locate import LEGACY, Located, locate
from ..image.mfg_nvs import build_nvs_from_entries
from ..image.nvs.reader import NvsEntry, NvsImage, read_nvs
from ..image.profiles import ModuleProfile, load_profile


# ----------------------------------------------------------------------------------------- diff


def show_value(namespace: str, key: str, value: Any) -> Any:
    """A JSON-safe, secret-safe form: numbers and text as-is, blobs as ``<N bytes sha256=…>``."""
    if value is None or isinstance(value, int):
        return value
    secret = "_key" in namespace or "_key" in key
    if isinstance(value, str) and not secret:
        return value
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return f"<{'redacted ' if secret else ''}{len(raw)} bytes sha256={hashlib.sha256(raw).hexdigest()[:16]}>"


@dataclass(frozen=True)
class Change:
    """One key that differs: ``action`` "changed", "added" or "removed"; values shown safely."""

    namespace: str
    key: str
    type: str
    action: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "key": self.key, "type": self.type, "action": self.action,
                "old": self.old, "new": self.new}

    def describe(self) -> str:
        return f"{self.namespace}/{self.key} ({self.type}): {self.action} {self.old!r} -> {self.new!r}"


def nvs_diff(before: NvsImage, after: NvsImage) -> list[Change]:
    """Keys added, removed or changed (type or value) between two reader results."""
    old = {(e.namespace, e.key): e for e in before.entries}
    new = {(e.namespace, e.key): e for e in after.entries}
    out = []
    for (ns, key), e in new.items():
        o = old.get((ns, key))
        if o is None:
            out.append(Change(ns, key, e.type, "added", None, show_value(ns, key, e.value)))
        elif (o.type, o.value) != (e.type, e.value):
            out.append(Change(ns, key, e.type, "changed", show_value(ns, key, o.value), show_value(ns, key, e.value)))
    out += [Change(ns, key, o.type, "removed", show_value(ns, key, o.value), None)
            for (ns, key), o in old.items() if (ns, key) not in new]
    return out


def apply_edits(image: NvsImage, edits: list[Edit]) -> tuple[list[NvsEntry], list[str]]:
    """The entries and declared namespaces after ``edits``: changed keys keep their place,
    added keys go to the end of their namespace, new namespaces to the end."""
    index = {(e.namespace, e.key): i for i, e in enumerate(image.entries)}
    entries: list[NvsEntry | None] = list(image.entries)
    for ed in edits:
        i = index.get((ed.namespace, ed.key))
        if ed.action == "remove":
            if i is not None:
                entries[i] = None
        elif i is not None:
            entries[i] = NvsEntry(ed.namespace, ed.key, ed.type, ed.value)  # type: ignore[arg-type]
        else:
            entries.append(NvsEntry(ed.namespace, ed.key, ed.type, ed.value))  # type: ignore[arg-type]
    return [e for e in entries if e is not None], image.namespaces()


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
    return chip, firmware_for(chip) if chip in G3_DEFAULTS else FirmwareProfile()


def _effective(before: NvsImage, edits: list[Edit]) -> set[tuple[str, str]]:
    """Keys the edits really change (a value set to what the key holds is no change)."""
    out = set()
    for e in edits:
        cur = before.get(e.namespace, e.key)
        if e.action == "remove" or cur is None or (cur.type, cur.value) != (e.type, e.value):
            out.add((e.namespace, e.key))
    return out


def customize_nvs(region: bytes, request: CustomizeRequest, *, chip: str | None, firmware: FirmwareProfile,
                  target: str) -> tuple[bytes, list[Change], NvsImage]:
    """Rebuild an mfg_nvs region (same size) with ``request`` applied; (new bytes, diff, input image)."""
    before = read_nvs(region, source=target)
    edits = plan_edits(ImageView(before), request, chip=chip, firmware=firmware, target=target)
    entries, namespaces = apply_edits(before, edits)
    built = build_nvs_from_entries(entries, len(region), namespaces=namespaces, source=target)
    after = read_nvs(built.image, source=target)
    diff = nvs_diff(before, after)
    if {(c.namespace, c.key) for c in diff} != _effective(before, edits) or after.problems:
        raise AtfabError(f"rebuilt mfg_nvs of {target} does not read back as planned (internal error)")
    return built.image, diff, before


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
    chip, firmware = _chip_and_firmware(located, profile, chip, source)
    region = located.region(data)
    problems: list[str] = []
    if located.param == LEGACY:
        from .legacy import customize_legacy_block  # noqa: PLC0415

        new_region, changes = customize_legacy_block(region, request, chip=chip, target=source)
        secret = False
    else:
        new_region, changes, before = customize_nvs(region, request, chip=chip, firmware=firmware, target=source)
        problems = list(before.problems)
        secret = any("_key" in ns for ns in read_nvs(new_region).namespaces())
    out = data[:located.offset] + new_region + data[located.offset + located.size:]
    return out, ImageResult(source, located, chip, changes, problems, secret)


def customize_file(image: str | Path, request: CustomizeRequest, *, output: str | Path | None = None,
                   in_place: bool = False, module: str | ModuleProfile | None = None, chip: str | None = None,
                   table_offset: int | None = None) -> ImageResult:
    """:func:`customize_image` on a file, written atomically to ``output`` (which may be the
    input only with ``in_place``); outputs holding private keys get mode 0600."""
    src = Path(image)
    if output is None and not in_place:
        raise InputError("give -o OUTPUT (or --in-place to overwrite the image)", field="-o")
    dest = src if output is None else Path(output)
    if not in_place and (dest.resolve() == src.resolve() or (dest.exists() and os.path.samefile(dest, src))):
        raise InputError("output is the input image; use --in-place to overwrite it", file=str(dest), field="-o")
    if request.is_empty():
        raise InputError("nothing to change: give at least one option to customise", field="options")
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(src), field="--image") from None
    new, result = customize_image(data, request, module=module, chip=chip, table_offset=table_offset,
                                  source=str(src))
    atomic_write(dest, new, mode=0o600 if result.secret else None)
    return result


def customize_module(client: Any, request: CustomizeRequest, **kwargs: Any) -> Any:
    """Customise one live module; see :func:`atfab.customize.live.customize_module`."""
    from .live import customize_module as run  # noqa: PLC0415

    return run(client, request, **kwargs)


__all__ = ["CustomizeRequest", "PkiChange", "Edit", "KeyView", "ImageView", "Change", "ImageResult", "make_request",
           "plan_edits", "customize_image", "customize_nvs", "customize_file", "customize_module", "nvs_diff",
           "apply_edits", "show_value", "load_gatt_rows", "pki_option", "pki_namespace", "OPTION_KEYS",
           "PKI_FAMILIES", "PKI_KINDS", "FACTORY_NS", "BLE_NS"]
