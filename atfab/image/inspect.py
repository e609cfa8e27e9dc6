"""``atfab inspect``: what is inside a factory image, a flash dump, a partition table or an mfg_nvs image.

The kind is detected from the content, never from the file name. Certificates are shown as
subject + SHA-256 fingerprint; private keys only as type and size, never their bytes; other
blobs as size + SHA-256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import IMAGE_LIMIT, read_bytes
from .appimage import IMAGE_MAGIC, read_app_info, read_image_summary
from .blob_summary import describe_blob
from .inspect_legacy import describe_item, describe_legacy_items, looks_like_legacy_block, render_items
from .nvs.reader import read_nvs
from .partition_table import (
    APP, AT_CUSTOMIZE_TYPE, DATA, NVS_SUBTYPE, Partition, PartitionTable, decode, looks_like_table,
)
from .profiles import ModuleProfile, list_profiles, load_profile

TABLE_OFFSETS = (0x8000, 0xC000)       # §11.2: 0xC000 on ESP32-C5/C61
BOOTLOADER_OFFSETS = (0x0, 0x1000, 0x2000)
NVS_PAGE_STATES = (b"\xfe\xff\xff\xff", b"\xfc\xff\xff\xff", b"\xf8\xff\xff\xff")


def _entry(p: Partition) -> dict[str, Any]:
    return {"name": p.name, "type": p.type_name, "subtype": p.subtype_name, "offset": f"0x{p.offset:x}",
            "size": f"0x{p.size:x}", "flags": p.flags}


def _table(table: PartitionTable, offset: int | None) -> dict[str, Any]:
    return {"offset": None if offset is None else f"0x{offset:x}", "md5": table.has_md5,
            "entries": [_entry(p) for p in table.entries]}


# ------------------------------------------------------------------------------- NVS values


def describe_nvs(data: bytes, *, source: str = "") -> dict[str, Any]:
    """Namespaces, keys, types and (safe) values of an NVS image."""

    image = read_nvs(data, source=source or "<nvs>")
    namespaces = []
    for ns in image.namespaces():
        keys = []
        for e in image.keys(ns):
            item: dict[str, Any] = {"key": e.key, "type": e.type}
            if isinstance(e.value, (bytes, bytearray)):
                item.update(describe_blob(ns, e.key, bytes(e.value)))
            elif isinstance(e.value, str) and ("_key" in ns or "_key" in e.key):
                item.update({"kind": "private_key", "size": len(e.value.encode()), "redacted": True})
            else:
                item["value"] = e.value
            keys.append(item)
        namespaces.append({"name": ns, "keys": keys})
    return {"namespaces": namespaces, "problems": list(image.problems),
            "key_count": sum(len(n["keys"]) for n in namespaces)}


# ------------------------------------------------------------------------------------ kinds


def _blank(data: bytes) -> bool:
    return data.count(0xFF) == len(data)


def _app(data: bytes, source: str) -> dict[str, Any] | None:
    if not data or data[0] != IMAGE_MAGIC:
        return None
    try:
        return read_app_info(data, source=source).to_dict()
    except InputError as exc:
        return {"error": exc.message}


def _bootloader(data: bytes, offsets: tuple[int, ...]) -> dict[str, Any] | None:
    for off in offsets:
        if len(data) > off + 24 and data[off] == IMAGE_MAGIC:
            try:
                s = read_image_summary(data[off:])
            except InputError:
                continue
            return {"offset": f"0x{off:x}", "chip": s.chip, "flash_mode": s.flash_mode, "flash_size": s.flash_size,
                    "flash_freq": s.flash_freq, "checksum_ok": s.checksum_ok, "digest_ok": s.digest_ok}
    return None


def _find_table(data: bytes, offsets: tuple[int, ...]) -> tuple[int, PartitionTable] | None:
    for off in offsets:
        if len(data) >= off + 32 and looks_like_table(data[off:off + 32]):
            try:
                return off, decode(data[off:off + 0x1000], source=f"table at 0x{off:x}")
            except InputError:
                continue
    return None


def _flash_image(data: bytes, table_off: int, primary: PartitionTable, profile: ModuleProfile | None,
                 source: str) -> dict[str, Any]:
    problems: list[str] = []
    boot_offsets = (profile.bootloader_offset,) + BOOTLOADER_OFFSETS if profile else BOOTLOADER_OFFSETS
    out: dict[str, Any] = {"kind": "flash_image", "bootloader": _bootloader(data, boot_offsets),
                           "partition_table": _table(primary, table_off)}
    out["chip"] = out["bootloader"]["chip"] if out["bootloader"] else (profile.chip if profile else None)
    secondary: PartitionTable | None = None
    region = next(iter(primary.find_type(AT_CUSTOMIZE_TYPE, 0)), None)
    if region is not None:
        raw = data[region.offset:region.offset + 0x1000]
        if not raw or _blank(raw):
            problems.append(f"at_customize table at 0x{region.offset:x} is blank")
        else:
            try:
                secondary = decode(raw, source=f"{source}@0x{region.offset:x}")
                out["at_customize"] = _table(secondary, region.offset)
            except InputError as exc:
                problems.append(f"at_customize table at 0x{region.offset:x}: {exc.message}")
    if secondary is not None:
        legacy = describe_legacy_items(secondary, data, source=source, problems=problems)
        if legacy:
            out["legacy"] = legacy
    nvs_parts = primary.find_type(DATA, NVS_SUBTYPE) + (secondary.find_type(DATA, NVS_SUBTYPE) if secondary else [])
    out["nvs"] = [_nvs_part(p, data, source, problems) for p in nvs_parts]
    out["apps"] = []
    for p in primary.find_type(APP):
        chunk = data[p.offset:p.end]
        info = _app(chunk, f"{source}@0x{p.offset:x}")
        out["apps"].append({"partition": p.name, "offset": f"0x{p.offset:x}",
                            "state": "image" if info else ("blank" if not chunk or _blank(chunk[:4096]) else "data"),
                            "app": info})
    if len(data) < max((p.end for p in primary.entries), default=0):
        problems.append(f"dump of 0x{len(data):x} bytes ends before the last partition")
    if profile is not None:
        out["profile_differences"] = _differences(profile, primary, secondary, table_off)
        if out["bootloader"] and out["bootloader"]["chip"] != profile.chip:
            out["profile_differences"].append(f"bootloader is for {out['bootloader']['chip']}, profile is {profile.chip}")
        out["profile_match"] = not out["profile_differences"]
    else:
        out["matching_profiles"] = _matching(primary, secondary, out["chip"])
    out["problems"] = problems
    return out


def _nvs_part(p: Partition, data: bytes, source: str, problems: list[str]) -> dict[str, Any]:
    chunk = data[p.offset:p.end]
    item: dict[str, Any] = {"partition": p.name, "offset": f"0x{p.offset:x}", "size": f"0x{p.size:x}"}
    if not chunk:
        item["state"] = "outside the dump"
    elif _blank(chunk):
        item["state"] = "blank"
    else:
        try:
            item.update(describe_nvs(chunk, source=f"{source}@0x{p.offset:x}"))
            item["state"] = "nvs"
        except InputError as exc:
            item["state"] = "not nvs"
            problems.append(f"{p.name} at 0x{p.offset:x}: {exc.message}")
    return item


def _differences(profile: ModuleProfile, primary: PartitionTable, secondary: PartitionTable | None,
                 table_off: int) -> list[str]:
    diffs = []
    if table_off != profile.partition_table_offset:
        diffs.append(f"partition table at 0x{table_off:x}, profile has 0x{profile.partition_table_offset:x}")
    if primary.entries != profile.primary.entries:
        diffs.append("partition table differs from the profile's partitions CSV")
    if secondary is None or secondary.entries != profile.at_customize.entries:
        diffs.append("at_customize table differs from the profile's at_customize CSV")
    return diffs


def _matching(primary: PartitionTable, secondary: PartitionTable | None, chip: str | None) -> list[str]:
    names = []
    for name in list_profiles():
        try:
            prof = load_profile(name)
        except InputError:
            continue
        if (prof.primary.entries == primary.entries and secondary is not None
                and prof.at_customize.entries == secondary.entries and (chip is None or chip == prof.chip)):
            names.append(name)
    return names


def inspect_bytes(data: bytes, *, source: str = "<data>", profile: ModuleProfile | None = None) -> dict[str, Any]:
    """Inspect ``data``; the ``kind`` key says what it is. :class:`InputError` if nothing fits."""
    data = bytes(data)
    base: dict[str, Any] = {"source": source, "size": len(data), "module": profile.name if profile else None}
    if not data:
        raise InputError("file is empty", file=source, field="file")
    offsets = (profile.partition_table_offset,) if profile else TABLE_OFFSETS
    found = _find_table(data, offsets)
    if found is not None:
        return {**base, **_flash_image(data, found[0], found[1], profile, source)}
    if looks_like_table(data):
        table = decode(data, source=source)
        role = "primary" if table.find_type(AT_CUSTOMIZE_TYPE, 0) else "secondary"
        return {**base, "kind": "partition_table", "table_role": role, "partition_table": _table(table, None)}
    if data[0] == IMAGE_MAGIC:
        try:
            return {**base, "kind": "app_image", "app": read_app_info(data, source=source).to_dict()}
        except InputError as exc:
            if exc.field != "app_desc":
                raise
        s = read_image_summary(data, source=source)
        return {**base, "kind": "bootloader_image", "chip": s.chip,
                "bootloader": {"chip": s.chip, "flash_mode": s.flash_mode, "flash_size": s.flash_size,
                               "flash_freq": s.flash_freq, "checksum_ok": s.checksum_ok, "digest_ok": s.digest_ok}}
    if _blank(data):
        return {**base, "kind": "blank"}
    if looks_like_legacy_block(data):
        item = describe_item(data, source=source)
        if "problem" in item:
            raise InputError(item["problem"], file=source, field=item["kind"] or "content")
        return {**base, "kind": "legacy_partition", "legacy": [item]}
    if data[:4] in NVS_PAGE_STATES:   # a wrong size is reported by the NVS reader
        return {**base, "kind": "nvs", "nvs": [{"partition": None, "offset": None, "size": f"0x{len(data):x}",
                                                 "state": "nvs", **describe_nvs(data, source=source)}]}
    raise InputError("not a flash image, partition table, app image, NVS image or legacy factory_param/PKI/ble_data "
                     "partition", file=source, field="content")


def inspect_file(path: str | Path, *, module: str | None = None, search: list[Path] | None = None) -> dict[str, Any]:
    """Read ``path`` and :func:`inspect_bytes` it (with the profile ``module`` if given)."""
    path = Path(path)
    data = read_bytes(path, "image", limit=IMAGE_LIMIT)
    profile = load_profile(module, search) if module else None
    return inspect_bytes(data, source=str(path), profile=profile)


# ------------------------------------------------------------------------------------- text


def _fmt_value(item: dict[str, Any]) -> str:
    kind = item.get("kind")
    if kind == "private_key":
        bits = f" {item['key_bits']} bits" if item.get("key_bits") else ""
        return f"private key {item.get('key_type', '?')}{bits} ({item['size']} bytes, not shown)"
    if kind == "certificates":
        parts = [f"{c['subject'] or '(empty subject)'} sha256 {c['sha256'][:32]}… until {c['not_after']}"
                 for c in item["certificates"]]
        return "certificate " + "; ".join(parts)
    if kind == "blob":
        return f"{item['size']} bytes sha256 {item['sha256'][:32]}…"
    value = item.get("value")
    return f'"{value}"' if isinstance(value, str) else str(value)


def _render_table(title: str, table: dict[str, Any], lines: list[str]) -> None:
    at = f" at {table['offset']}" if table.get("offset") else ""
    lines.append(f"{title}{at} ({'MD5 ok' if table['md5'] else 'no MD5'}):")
    lines.append(f"  {'name':<16} {'type':<8} {'subtype':<9} {'offset':>9} {'size':>9}  flags")
    for e in table["entries"]:
        lines.append(f"  {e['name']:<16} {e['type']:<8} {e['subtype']:<9} {e['offset']:>9} {e['size']:>9}  {e['flags'] or ''}".rstrip())


def _render_app(app: dict[str, Any]) -> str:
    if "error" in app:
        return f"not a valid app image: {app['error']}"
    text = f"{app['project']} {app['version']} ({app['chip']}), IDF {app['idf_ver']}, built {app['date']} {app['time']}"
    if app.get("at_core"):
        text += f", AT core {app['at_core']}"
    ok = app["checksum_ok"] and app["digest_ok"] is not False
    return text + ("" if ok else ", CHECKSUM/DIGEST WRONG")


def render_text(report: dict[str, Any]) -> str:
    """The human-readable form of an :func:`inspect_bytes` report."""
    kinds = {"flash_image": "full flash image", "partition_table": "partition table", "nvs": "NVS image",
             "app_image": "app image", "bootloader_image": "bootloader image",
             "legacy_partition": "legacy partition image", "blank": "blank (all 0xFF)"}
    lines = [f"{report['source']}: {kinds.get(report['kind'], report['kind'])}, {report['size']} bytes"]
    boot = report.get("bootloader")
    if boot:
        where = f" at {boot['offset']}" if boot.get("offset") else ""
        ok = "ok" if boot["checksum_ok"] and boot["digest_ok"] is not False else "WRONG"
        lines.append(f"bootloader{where}: {boot['chip']}, {boot['flash_mode']} {boot['flash_freq']} "
                     f"{boot['flash_size']}, checksum/digest {ok}")
    if report.get("module"):
        match = "matches" if report.get("profile_match") else "DIFFERS: " + "; ".join(
            report.get("profile_differences", []))
        lines.append(f"module {report['module']}: {match}")
    elif "matching_profiles" in report:
        lines.append("matching module profiles: " + (", ".join(report["matching_profiles"]) or "none"))
    if report.get("app") and report["kind"] == "app_image":
        lines.append("app: " + _render_app(report["app"]))
    if report.get("partition_table"):
        title = "partition table" if report["kind"] != "partition_table" else f"{report['table_role']} partition table"
        _render_table(title, report["partition_table"], lines)
    if report.get("at_customize"):
        _render_table("at_customize table", report["at_customize"], lines)
    render_items(report.get("legacy", []), lines)
    for part in report.get("nvs", []):
        name = f"nvs {part['partition']}" if part.get("partition") else "nvs"
        where = f" at {part['offset']}" if part.get("offset") else ""
        if part["state"] != "nvs":
            lines.append(f"{name}{where} ({part['size']}): {part['state']}")
            continue
        lines.append(f"{name}{where} ({part['size']}): {len(part['namespaces'])} namespaces, {part['key_count']} keys")
        for ns in part["namespaces"]:
            lines.append(f"  [{ns['name']}]")
            for item in ns["keys"]:
                lines.append(f"    {item['key']:<16} {item['type']:<7} {_fmt_value(item)}")
        for problem in part.get("problems", []):
            lines.append(f"  problem: {problem}")
    for app in report.get("apps", []):
        state = _render_app(app["app"]) if app["app"] else app["state"]
        lines.append(f"app {app['partition']} at {app['offset']}: {state}")
    for problem in report.get("problems", []):
        lines.append(f"problem: {problem}")
    return "\n".join(lines)


__all__ = ["inspect_bytes", "inspect_file", "describe_nvs", "describe_blob", "render_text"]
