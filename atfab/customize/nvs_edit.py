"""The mfg_nvs edit shared by the image and live modes: apply a request's edits to a reader
result, rebuild the region (same size) and check the diff holds exactly the requested keys.

:func:`customize_nvs` reads the region (:func:`atfab.image.nvs.reader.read_nvs`), plans the edits
(:func:`atfab.customize.plan.plan_edits`), rebuilds it with every other key kept in its namespace
and order (:func:`atfab.image.mfg_nvs.build_nvs_from_entries`) and returns the reader diff
(:class:`Change` per key, values shown secret-safe by :func:`show_value`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..core.errors import AtfabError
from ..core.firmware import FirmwareProfile
from .plan import CustomizeRequest, Edit, ImageView, plan_edits
from ..image.build_config import BuildConfig
from ..image.mfg_nvs import build_nvs_from_entries, place_namespace
from ..image.nvs.reader import NvsEntry, NvsImage, read_nvs


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


def apply_edits(image: NvsImage, edits: list[Edit], firmware: FirmwareProfile) -> tuple[list[NvsEntry], list[str]]:
    """The entries and namespace order after ``edits``: changed keys keep their place, added keys
    go to the end of their namespace, a new namespace where esp-at's order puts it
    (:func:`atfab.image.mfg_nvs.place_namespace`)."""
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
    namespaces = image.namespaces()
    for ed in edits:
        if ed.action == "add":
            namespaces = place_namespace(namespaces, ed.namespace, firmware)
    return [e for e in entries if e is not None], namespaces


def _effective(before: NvsImage, edits: list[Edit]) -> set[tuple[str, str]]:
    """Keys the edits really change (a value set to what the key holds is no change)."""
    out = set()
    for e in edits:
        cur = before.get(e.namespace, e.key)
        if e.action == "remove" or cur is None or (cur.type, cur.value) != (e.type, e.value):
            out.add((e.namespace, e.key))
    return out


def customize_nvs(region: bytes, request: CustomizeRequest, *, chip: str | None, firmware: FirmwareProfile,
                  target: str, build: BuildConfig | None = None) -> tuple[bytes, list[Change], NvsImage]:
    """Rebuild an mfg_nvs region (same size) with ``request`` applied; (new bytes, diff, input image)."""
    before = read_nvs(region, source=target)
    edits = plan_edits(ImageView(before), request, chip=chip, firmware=firmware, target=target, build=build)
    entries, namespaces = apply_edits(before, edits, firmware)
    built = build_nvs_from_entries(entries, len(region), namespaces=namespaces, source=target)
    after = read_nvs(built.image, source=target)
    diff = nvs_diff(before, after)
    if {(c.namespace, c.key) for c in diff} != _effective(before, edits) or after.problems:
        raise AtfabError(f"rebuilt mfg_nvs of {target} does not read back as planned (internal error)")
    return built.image, diff, before


__all__ = ["Change", "show_value", "nvs_diff", "apply_edits", "customize_nvs"]
