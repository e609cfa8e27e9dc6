"""``AT+SYSMFG`` of the virtual AT firmware (§5): key/value access to the mfg_nvs partition.

Reads come from the NVS image in flash at the time of the command, writes go through
:class:`atfab.image.nvs.editor.NvsEditor` (append the new copy, then mark the old one erased), so a
reboot - or a power loss between two writes - sees exactly what a chip would.

* No ``mfg_nvs`` partition, or an mfg NVS whose init failed at boot (not NVS at all) -> every
  form answers ERROR. ``AT+SYSMFG?`` == ``AT+SYSMFG=1``: namespaces holding at least one key,
  in the order their first entry sits in flash (``nvs_entry_find`` order); a blank (valid,
  empty) mfg_nvs lists nothing and answers OK, while every key read on it answers ERROR.
* ``=1,"ns"`` -> ``+SYSMFG:"ns","key",<type>`` per key; unknown namespace -> ERROR.
* ``=1,"ns","key"[,<off>,<len>]`` -> ``+SYSMFG:"ns","key",<type>,<len>,<value>``. Numbers: value
  in decimal, length per ``firmware.sysmfg_numeric_length`` ("decimal_text": characters of the
  decimal text, "type_size": bytes of the type), line ends in CR LF; offset/length on a number ->
  ERROR. Strings/blobs: raw bytes (the string without its NUL) + ``firmware.raw_read_trailer``;
  ``off+len`` beyond the value -> ERROR.
* ``=2,"ns","key",<type 1-6>,<value>`` -> range checked for the type, stored, OK.
  ``=2,"ns","key",<7|8>,<len>`` -> prompt per ``firmware.sysmfg_write_prompt``, exactly ``len``
  bytes, stored, OK. Strings must leave room for the NUL (``firmware.nvs_string_max``).
* ``=0,"ns"`` erases every key of the namespace (OK even when empty); ``=0,"ns","key"`` erases
  one key, ERROR when it does not exist.
Faults: ``error_next_write`` / ``error_after_writes`` (ERROR, nothing stored - after the payload for types 7/8),
``corrupt_next_read`` (one byte of the next string/blob read), ``store_corrupt_next_write`` (one byte of
the next blob stored), ``power_loss_after_writes``
(after the N-th committed write the module loses power before answering).
"""

from __future__ import annotations

from typing import Any

from .at_boot import NVS_ERRORS, nvs_editor, read_nvs_region
from .at_command import CommandSpec, Ctx, StopServing
from .at_parser import Params, exec_fail, invalid
from .at_sysflash import corrupt, corrupt_read, countdown, take_fault, take_write_error

#: AT+SYSMFG type numbers (§5) <-> NVS type names.
TYPE_NUMBERS = {"u8": 1, "i8": 2, "u16": 3, "i16": 4, "u32": 5, "i32": 6, "string": 7, "blob": 8}
TYPE_NAMES = {v: k for k, v in TYPE_NUMBERS.items()}
RANGES = {
    "u8": (0, 0xFF), "i8": (-0x80, 0x7F), "u16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF), "i32": (-0x80000000, 0x7FFFFFFF),
}
SIZES = {"u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4}
NAME_MAX = 15


def _image(ctx: "Ctx") -> Any:
    boot = ctx.boot
    if boot.mfg is None or not boot.mfg_ok:
        raise exec_fail("mfg_nvs not available")
    try:
        return read_nvs_region(ctx.host.flash, boot.mfg, "mfg_nvs")
    except NVS_ERRORS as exc:
        raise exec_fail(f"mfg_nvs unreadable: {exc}") from None


def _namespaces(image: Any) -> list[str]:
    seen: list[str] = []
    for e in image.entries:
        if e.namespace not in seen:
            seen.append(e.namespace)
    return seen


def _value_bytes(entry: Any) -> bytes:
    if entry.type == "string":
        return entry.value.encode("utf-8", "surrogateescape")
    return bytes(entry.value)


def _numeric_length(ctx: "Ctx", entry: Any) -> int:
    if ctx.profile.sysmfg_numeric_length == "type_size":
        return SIZES.get(entry.type, 8)
    return len(str(entry.value))


def _list_namespaces(ctx: "Ctx", image: Any) -> None:
    names = _namespaces(image)
    if not names:                      # nvs_entry_find fails on an empty mfg_nvs (ground truth §6)
        raise exec_fail("mfg_nvs holds no entry")
    for ns in names[:ctx.profile.sysmfg_namespace_max or None]:
        ctx.info(f'+SYSMFG:"{ns}"')


def _query(ctx: "Ctx", p: Params) -> None:
    _list_namespaces(ctx, _image(ctx))


def _read(ctx: "Ctx", p: Params) -> None:
    image = _image(ctx)
    if len(p) == 1:
        _list_namespaces(ctx, image)
        return
    p.count(2, 5)
    ns = p.str(1, NAME_MAX, min_len=1)
    if len(p) == 2:
        keys = list(image.keys(ns))
        if not keys:
            raise invalid(1, f"no namespace {ns!r}")
        for e in keys:
            ctx.info(f'+SYSMFG:"{ns}","{e.key}",{TYPE_NUMBERS.get(e.type, -1)}')
        return
    key = p.str(2, NAME_MAX, min_len=1)
    entry = image.get(ns, key)
    if entry is None or entry.type not in TYPE_NUMBERS:
        raise invalid(2, f"no key {ns}/{key}")
    tnum = TYPE_NUMBERS[entry.type]
    head = f'+SYSMFG:"{ns}","{key}",{tnum},'
    off = length = 0
    if len(p) > 3:
        p.count(5)
        off, length = p.int(3), p.int(4)
    if entry.type in RANGES:
        if off or length:
            raise invalid(3, "offset/length on a numeric value")
        ctx.info(f"{head}{_numeric_length(ctx, entry)},{entry.value}")
        return
    data = _value_bytes(entry)
    if off < 0 or length < 0:
        raise invalid(3, "negative offset/length")
    if length == 0:                    # len 0 reads to the end (ground truth §6)
        length = len(data) - off
    if length < 0 or off + length > len(data):
        raise invalid(4, "range beyond the value")
    data = corrupt_read(ctx.faults, data[off:off + length])
    ctx.info_raw(f"{head}{len(data)},", data, ctx.profile.sysmfg_read_trailer)


def _committed(ctx: "Ctx") -> None:
    """Count a committed write for ``power_loss_after_writes``; lose power when it runs out."""
    faults = ctx.faults
    left = getattr(faults, "power_loss_after_writes", None)
    if left is None:
        return
    left -= 1
    if left > 0:
        faults.power_loss_after_writes = left
        return
    faults.power_loss_after_writes = None
    ctx.host.power_loss()
    raise StopServing("state")


def _write(ctx: "Ctx", p: Params) -> None:
    boot = ctx.boot
    image = _image(ctx)  # mfg NVS must be usable
    del image
    p.count(5)
    ns = p.str(1, NAME_MAX, min_len=1)
    key = p.str(2, NAME_MAX, min_len=1)
    tnum = p.int(3, 1, 8)
    tname = TYPE_NAMES[tnum]
    if tname in RANGES:
        value: int | str | bytes = truncate(p.int(4), tname)   # no range check (ground truth §6)
        if take_write_error(ctx.faults):
            raise exec_fail("fault: write refused")
        _store(ctx, boot, ns, key, tname, value)
        return
    length = p.int(4, 1, ctx.profile.sysmfg_value_max)     # 1..8191, before any prompt
    ctx.send(ctx.profile.sysmfg_prompt)

    def finish(c: "Ctx", payload: bytes) -> None:
        if take_write_error(c.faults):
            raise exec_fail("fault: write refused")
        if tname == "string":
            if b"\x00" in payload:
                raise exec_fail("string holds a NUL")
            if len(payload) + 1 > c.profile.nvs_string_max:
                raise exec_fail("nvs_set_str: value too long")
        if tname == "blob" and take_fault(c.faults, "store_corrupt_next_write"):
            payload = corrupt(payload)
        _store(c, c.boot, ns, key, tname, payload.decode("utf-8", "surrogateescape") if tname == "string" else payload)

    # a link cut inside the payload leaves the command reading the next link's bytes (ground truth §6)
    cut = length // 2 if length >= 2 and countdown(ctx.faults, "drop_in_sysmfg_write") else None
    finish(ctx, ctx.payload_across_links(length, finish, cut_at=cut))


def _store(ctx: "Ctx", boot: Any, ns: str, key: str, tname: str, value: int | str | bytes) -> None:
    try:
        nvs_editor(ctx.host.flash, boot.mfg).set(ns, key, tname, value)
    except NVS_ERRORS as exc:
        raise exec_fail(f"nvs write failed: {exc}") from None
    _committed(ctx)


def _erase(ctx: "Ctx", p: Params) -> None:
    _image(ctx)
    p.count(2, 3)
    ns = p.str(1, NAME_MAX, min_len=1)
    editor = nvs_editor(ctx.host.flash, ctx.boot.mfg)
    try:
        if len(p) == 2:
            editor.erase_namespace(ns)
            return
        key = p.str(2, NAME_MAX, min_len=1)
        if not editor.erase_key(ns, key):
            raise invalid(2, f"no key {ns}/{key}")
    except NVS_ERRORS as exc:
        raise exec_fail(f"nvs erase failed: {exc}") from None


def truncate(value: int, tname: str) -> int:
    """``value`` cut to the width of NVS type ``tname`` (u8 300 -> 44, i8 200 -> -56)."""
    bits = SIZES[tname] * 8
    value &= (1 << bits) - 1
    if tname.startswith("i") and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _set(ctx: "Ctx", p: Params) -> None:
    op = p.int(0, 0, 2)
    (_erase, _read, _write)[op](ctx, p)


def commands(profile: Any) -> list[CommandSpec]:
    return [CommandSpec("AT+SYSMFG", query=_query, set=_set)]


__all__ = ["commands", "TYPE_NUMBERS", "TYPE_NAMES"]
