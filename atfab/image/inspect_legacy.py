"""``atfab inspect`` for the per-item partitions of G1/G2 layouts (reference §10).

A legacy at_customize table lists one type-0x40 partition per item: ``factory_param`` (0xFCFC
block), ``ble_data`` (u16 length, 0x27 0x95, JSON) and the PKI partitions (0xF1F1 header). Each
is decoded from its own bytes; a bare partition image (what ``atfab build`` writes per item, or
``AT+SYSFLASH`` reads back) is recognised by its magic alone. Private keys are shown as type and
size only, certificates as subject and SHA-256 fingerprint.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import InputError
from . import legacy_ble as lb
from . import legacy_factory as lf
from . import legacy_pki as lp
from .blob_summary import describe_blob
from .legacy_layout import KIND_BLE, KIND_FACTORY, KIND_PKI, item_partitions, kind_of
from .partition_table import PartitionTable


def legacy_kind(data: bytes) -> str | None:
    """``factory_param`` / ``pki`` / ``ble_data`` when ``data`` starts with that partition's magic."""
    if lf.looks_like_block(data):
        return KIND_FACTORY
    if lp.looks_like_pki(data):
        return KIND_PKI
    if lb.looks_like_ble_data(data):
        return KIND_BLE
    return None


def looks_like_legacy_block(data: bytes) -> bool:
    """True when ``data`` is (starts with) a legacy per-item partition image."""
    return legacy_kind(data) is not None


def _factory(data: bytes, source: str) -> dict[str, Any]:
    fields = lf.decode_block(data, source=source)
    firmware = fields.pop("firmware")
    fields.pop("magic", None)
    return {"version": fields.pop("version"), "fields": fields, "firmware": firmware}


def _pki(data: bytes, source: str, partition: str | None) -> dict[str, Any]:
    items = []
    for item in lp.decode_pki(data, source=source):
        where = partition or ""
        entry: dict[str, Any] = {"type": item.kind, "id": item.id}
        # A key item is recognised by its partition's name or by its content (a bare image has no name);
        # the v2.2-v2.4.0 builds typed key items as certificates (legacy_pki module docstring).
        entry.update(describe_blob(where, "key" if item.type == lp.TYPE_KEY else item.kind, item.data))
        items.append(entry)
    return {"items": items, "length": lp.image_length(data)}


def _ble(data: bytes, source: str) -> dict[str, Any]:
    rows = lb.decode_ble_data(data, source=source)
    return {"rows": [{"index": r.index, "uuid_len": r.uuid_len, "uuid": r.uuid, "perm": r.perm,
                      "val_max_len": r.val_max_len, "val_cur_len": r.val_cur_len, "value": r.value} for r in rows],
            "length": lb.image_length(data)}


def describe_item(data: bytes, *, kind: str | None = None, partition: str | None = None,
                  source: str = "<partition>") -> dict[str, Any]:
    """Decode one per-item partition (``kind`` from its name, else from its magic).

    The result has ``state``: ``blank`` (all 0xFF), ``outside the dump``, the kind, or ``not <kind>``
    with ``problem`` when the bytes do not decode as what the partition name says.
    """
    out: dict[str, Any] = {"partition": partition, "kind": kind}
    if not data:
        return {**out, "state": "outside the dump"}
    if data.count(0xFF) == len(data):
        return {**out, "state": "blank"}
    kind = kind or legacy_kind(data)
    out["kind"] = kind
    try:
        if kind == KIND_FACTORY:
            out.update(_factory(data, source))
        elif kind == KIND_PKI:
            out.update(_pki(data, source, partition))
        elif kind == KIND_BLE:
            out.update(_ble(data, source))
        else:
            raise InputError("not a legacy factory_param, PKI or ble_data partition", file=source, field="magic")
    except InputError as exc:
        return {**out, "state": f"not {kind or 'a legacy partition'}", "problem": exc.message}
    out["state"] = kind
    return out


def describe_legacy_items(table: PartitionTable, data: bytes, *, source: str,
                          problems: list[str]) -> list[dict[str, Any]]:
    """Every per-item partition of at_customize ``table`` inside flash image ``data``, decoded."""
    items = []
    for p in item_partitions(table):
        item = describe_item(data[p.offset:p.end], kind=kind_of(p.name), partition=p.name,
                             source=f"{source}@0x{p.offset:x}")
        item.update({"offset": f"0x{p.offset:x}", "size": f"0x{p.size:x}"})
        if "problem" in item:
            problems.append(f"{p.name} at 0x{p.offset:x}: {item['problem']}")
        items.append(item)
    return items


def _value(item: dict[str, Any]) -> str:
    if item.get("kind") == "private_key":
        bits = f" {item['key_bits']} bits" if item.get("key_bits") else ""
        return f"private key {item.get('key_type', '?')}{bits} ({item['size']} bytes, not shown)"
    if item.get("kind") == "certificates":
        return "certificate " + "; ".join(f"{c['subject'] or '(empty subject)'} sha256 {c['sha256'][:32]}… "
                                          f"until {c['not_after']}" for c in item["certificates"])
    return f"{item['size']} bytes sha256 {item['sha256'][:32]}…"


def render_items(items: list[dict[str, Any]], lines: list[str]) -> None:
    """Append the text form of :func:`describe_item` results to ``lines``."""
    for it in items:
        name = it.get("partition") or it.get("kind") or "partition"
        where = f" at {it['offset']}" if it.get("offset") else ""
        size = f" ({it['size']})" if it.get("size") else ""
        head = f"{name}{where}{size}"
        if it["state"] != it.get("kind") or it["state"] in ("blank", "outside the dump"):
            lines.append(f"{head}: {it['state']}" + (f" ({it['problem']})" if it.get("problem") else ""))
        elif it["kind"] == KIND_FACTORY:
            lines.append(f"{head}: factory_param block version {it['version']}")
            for key, value in it["fields"].items():
                lines.append(f"    {key:<16} {value!r}" if isinstance(value, str) else f"    {key:<16} {value}")
            fw = it["firmware"]
            applied = ", ".join(f"{k}={v}" for k, v in fw.items() if v is not None)
            lines.append(f"    firmware reads: {applied or 'nothing'}")
        elif it["kind"] == KIND_PKI:
            lines.append(f"{head}: PKI partition, {len(it['items'])} item(s), {it['length']} bytes")
            for entry in it["items"]:
                lines.append(f"    {entry['type']}.{entry['id']:<3} {_value(entry)}")
        else:
            lines.append(f"{head}: ble_data, {len(it['rows'])} GATT row(s), {it['length']} bytes")
            for r in it["rows"]:
                lines.append(f"    {r['index']:>3} uuid {r['uuid']} ({r['uuid_len']}) perm {r['perm']} "
                             f"len {r['val_cur_len']}/{r['val_max_len']} value {r['value'] or '-'}")


__all__ = ["legacy_kind", "looks_like_legacy_block", "describe_item", "describe_legacy_items", "render_items"]
