"""Readable GATT description (TOML) ⇄ esp-at gatts_data rows.

Format (every key optional unless marked)::

    [[service]]
    uuid = "0xA002"                 # required; 4, 8 or 32 hex digits (16/32/128-bit)
    primary = true                  # false → secondary service (0x2801)
    perm = ["read"]                 # permissions of the 0x2800 declaration row (default read)

    [[service.characteristic]]
    uuid = "0xC300"                 # required
    properties = ["read", "notify"] # names of PROPERTIES, or the hex text of the property byte
    permissions = ["read"]          # names of PERMISSIONS, or hex text such as "0x11"
                                    # (default: read for read/notify/indicate, write for writes)
    max_len = 1                     # default: length of the value
    value = "30"                    # initial value as hex … or:  text = "0"
    cur_len = 512                   # only when no value is given (the firmware zero-fills)
    description = "Temp"            # 0x2901 row; or {text|value, permissions, max_len, cur_len}
    declaration_perm = ["read"]     # permissions of the 0x2803 row (default read)

    [[service.characteristic.descriptor]]   # any further descriptors, in order
    uuid = "0x2901"
    permissions = ["read", "write"]
    max_len = 512
    cur_len = 512

Rows come out in this order per characteristic: declaration, value, the CCCD (0x2902, added
automatically for notify/indicate unless a descriptor entry gives one), the description, then
the descriptor entries. Text fields (UUIDs, hex values, raw perm/property text) are copied
verbatim, so ``rows → description → rows`` is exact; :func:`decompile` proves it on every call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import TOML_LIMIT, parse_toml, read_text
from .gatt import (
    CCCD, CHAR_DECLARATION, PERMISSIONS, PRIMARY_SERVICE, PROPERTIES, SECONDARY_SERVICE, USER_DESCRIPTION,
    GattRow, _strip_hex,
)

_DIGITS_TO_BITS = {4: 16, 8: 32, 32: 128}
_AUTO_CCCD = ("0x11", "2", "2", "0000")   # perm, max, cur, value of an added CCCD (esp-at default)
_DEFAULT_DECL_PERM = "0x01"


def _perm_text(bits: int) -> str:
    return f"0x{bits:02X}"


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[GattRow] = []

    def err(self, where: str, message: str) -> InputError:
        return InputError(message, file=self.source or None, field=where)

    def add(self, uuid: str, perm: str, max_len: int | str, cur_len: int | str, value: str, where: str) -> None:
        digits = len(_strip_hex(uuid))
        if digits not in _DIGITS_TO_BITS:
            raise self.err(f"{where}.uuid", f"UUID {uuid!r} must have 4, 8 or 32 hex digits")
        self.rows.append(GattRow(str(len(self.rows)), str(_DIGITS_TO_BITS[digits]), uuid, perm,
                                 str(max_len), str(cur_len), value))

    def uuid(self, table: dict, where: str) -> str:
        value = table.get("uuid")
        if isinstance(value, int) and not isinstance(value, bool):
            return f"0x{value:04X}" if value <= 0xFFFF else (f"0x{value:08X}" if value <= 0xFFFFFFFF else f"0x{value:032X}")
        if not isinstance(value, str) or not value:
            raise self.err(f"{where}.uuid", "uuid is required (e.g. \"0xC300\")")
        try:
            int(_strip_hex(value), 16)
        except ValueError:
            raise self.err(f"{where}.uuid", f"UUID {value!r} is not hex") from None
        return value

    def bits(self, value: Any, names: dict[str, int], where: str, what: str) -> str:
        """A permission/property field: list of names → canonical hex text; str/int → verbatim text."""
        if isinstance(value, list):
            total = 0
            for name in value:
                if name not in names:
                    raise self.err(where, f"unknown {what} {name!r} (known: {', '.join(names)})")
                total |= names[name]
            return _perm_text(total)
        if isinstance(value, int) and not isinstance(value, bool):
            return _perm_text(value)
        if isinstance(value, str):
            try:
                int(value, 0)
            except ValueError:
                try:
                    int(value, 16)
                except ValueError:
                    raise self.err(where, f"{value!r} is not a list of {what} names or a number") from None
            return value
        raise self.err(where, f"expected a list of {what} names or a number")

    def props(self, value: Any, where: str) -> str:
        """The 0x2803 value text: names → two upper-case hex digits; a string is kept verbatim."""
        if isinstance(value, str):
            try:
                bits = int(_strip_hex(value), 16)
            except ValueError:
                raise self.err(where, f"{value!r} is not a list of property names or a hex byte") from None
            if not 0 <= bits <= 0xFF:
                raise self.err(where, f"property byte {value!r} out of range")
            return _strip_hex(value)
        return f"{int(self.bits(value, PROPERTIES, where, 'property'), 16):02X}"

    def value_of(self, table: dict, where: str) -> str:
        if "value" in table and "text" in table:
            raise self.err(where, "give either value (hex) or text, not both")
        if "text" in table:
            text = table["text"]
            if not isinstance(text, str):
                raise self.err(f"{where}.text", "text must be a string")
            return text.encode("utf-8").hex().upper()
        value = table.get("value", "")
        if not isinstance(value, str):
            raise self.err(f"{where}.value", "value must be a hex string such as \"30\"")
        try:
            bytes.fromhex(value)
        except ValueError:
            raise self.err(f"{where}.value", f"value {value!r} is not an even-length hex byte string") from None
        return value

    def lengths(self, table: dict, value: str, where: str) -> tuple[int, int]:
        nbytes = len(value) // 2
        cur = table.get("cur_len", nbytes)
        maxl = table.get("max_len", max(cur, nbytes) if isinstance(cur, int) else nbytes)
        for name, n in (("cur_len", cur), ("max_len", maxl)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise self.err(f"{where}.{name}", f"{name} must be a non-negative integer")
        return maxl, cur

    def attribute(self, uuid: str, table: dict, where: str, default_perm: str) -> None:
        perm = self.bits(table["permissions"], PERMISSIONS, f"{where}.permissions", "permission") \
            if "permissions" in table else (self.bits(table["perm"], PERMISSIONS, f"{where}.perm", "permission")
                                            if "perm" in table else default_perm)
        value = self.value_of(table, where)
        maxl, cur = self.lengths(table, value, where)
        self.add(uuid, perm, maxl, cur, value, where)


def compile_description(desc: dict[str, Any], *, source: str = "<gatt.toml>") -> list[GattRow]:
    """Rows of a description (the dict of a parsed TOML file). Check the result with validate_rows."""
    c = _Compiler(source)
    services = desc.get("service")
    if not isinstance(services, list) or not services:
        raise c.err("service", "description needs at least one [[service]]")
    for si, srv in enumerate(services):
        sw = f"service[{si}]"
        if not isinstance(srv, dict):
            raise c.err(sw, "must be a table")
        uuid = c.uuid(srv, sw)
        primary = srv.get("primary", True)
        if not isinstance(primary, bool):
            raise c.err(f"{sw}.primary", "must be true or false")
        digits = _strip_hex(uuid)
        if len(digits) not in _DIGITS_TO_BITS:
            raise c.err(f"{sw}.uuid", f"UUID {uuid!r} must have 4, 8 or 32 hex digits")
        perm = c.bits(srv["perm"], PERMISSIONS, f"{sw}.perm", "permission") if "perm" in srv else _DEFAULT_DECL_PERM
        c.add("0x2800" if primary else "0x2801", perm, len(digits) // 2, len(digits) // 2, digits, sw)
        chars = srv.get("characteristic", [])
        if not isinstance(chars, list):
            raise c.err(f"{sw}.characteristic", "must be an array of tables [[service.characteristic]]")
        for ci, ch in enumerate(chars):
            cw = f"{sw}.characteristic[{ci}]"
            if not isinstance(ch, dict):
                raise c.err(cw, "must be a table")
            cuuid = c.uuid(ch, cw)
            prop_text = c.props(ch.get("properties", []), f"{cw}.properties")
            dperm = c.bits(ch["declaration_perm"], PERMISSIONS, f"{cw}.declaration_perm", "permission") \
                if "declaration_perm" in ch else _DEFAULT_DECL_PERM
            c.add("0x2803", dperm, 1, 1, prop_text, cw)
            c.attribute(cuuid, ch, cw, _perm_text(_perms_for(int(prop_text, 16))))
            extra = ch.get("descriptor", [])
            if not isinstance(extra, list):
                raise c.err(f"{cw}.descriptor", "must be an array of tables [[...descriptor]]")
            prop_bits = int(_strip_hex(prop_text), 16)
            explicit_cccd = any(isinstance(d, dict) and _is_uuid(d.get("uuid"), CCCD) for d in extra)
            if prop_bits & (PROPERTIES["notify"] | PROPERTIES["indicate"]) and not explicit_cccd:
                perm, maxl, cur, value = _AUTO_CCCD
                c.add("0x2902", perm, maxl, cur, value, f"{cw}.cccd")
            if "description" in ch:
                d = ch["description"]
                dw = f"{cw}.description"
                if isinstance(d, str):
                    d = {"text": d, "permissions": ["read"]}
                if not isinstance(d, dict):
                    raise c.err(dw, "description is a string or a table {text|value, permissions, max_len}")
                c.attribute("0x2901", d, dw, _perm_text(PERMISSIONS["read"]))
            for di, d in enumerate(extra):
                dw = f"{cw}.descriptor[{di}]"
                if not isinstance(d, dict):
                    raise c.err(dw, "must be a table")
                c.attribute(c.uuid(d, dw), d, dw, _perm_text(PERMISSIONS["read"]))
    return c.rows


def _perms_for(props: int) -> int:
    """Default value permissions for a property byte: read for read/notify/indicate, write for writes."""
    perm = 0
    if props & (PROPERTIES["read"] | PROPERTIES["notify"] | PROPERTIES["indicate"]):
        perm |= PERMISSIONS["read"]
    if props & (PROPERTIES["write"] | PROPERTIES["write_no_rsp"]):
        perm |= PERMISSIONS["write"]
    if props & PROPERTIES["auth_signed_write"]:
        perm |= PERMISSIONS["write_signed"]
    return perm


def _is_uuid(text: Any, value: int) -> bool:
    try:
        return isinstance(text, str) and int(_strip_hex(text), 16) == value and len(_strip_hex(text)) == 4
    except ValueError:
        return False


def load_description(path: str | Path) -> list[GattRow]:
    """Parse a TOML description file and compile it to rows."""
    path = Path(path)
    desc = parse_toml(read_text(path, "GATT description", limit=TOML_LIMIT, field=""), file=path, field="")
    return compile_description(desc, source=str(path))


# ---------------------------------------------------------------------------------------------
# rows → description

def _names(bits_text: str, names: dict[str, int], canonical) -> list[str] | str:
    """Names for a bit field when they reproduce ``bits_text`` exactly, else the text itself."""
    try:
        value = int(bits_text, 0) if bits_text[:2].lower() in ("0x", "0b", "0o") or bits_text.isdigit() else None
    except ValueError:
        value = None
    if value is None:
        return bits_text
    listed = [n for n, b in names.items() if value & b]
    if sum(names[n] for n in listed) != value or canonical(value) != bits_text:
        return bits_text
    return listed


def _printable(hex_text: str) -> str | None:
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if not data or data.hex().upper() != hex_text or not all(0x20 <= b < 0x7F for b in data):
        return None
    return data.decode("ascii")


def _attr_table(row: GattRow, default_perm: str) -> dict[str, Any]:
    t: dict[str, Any] = {}
    if row.perm != default_perm:
        t["permissions"] = _names(row.perm, PERMISSIONS, _perm_text)
    t["max_len"] = int(row.val_max_len)
    if row.val_cur_len != str(len(row.value) // 2):
        t["cur_len"] = int(row.val_cur_len)
    text = _printable(row.value)
    if text is not None:
        t["text"] = text
    elif row.value:
        t["value"] = row.value
    return t


def decompile(rows: list[GattRow], *, source: str = "<gatts_data.csv>") -> dict[str, Any]:
    """A description dict for ``rows`` (which must pass validate_rows) that compiles back to them.

    Raises InputError naming the first row that the description format cannot express exactly.
    """
    services: list[dict[str, Any]] = []
    pos = 0
    while pos < len(rows):
        row = rows[pos]
        uuid = row.uuid_value if row.uuid_bits == 16 else -1
        if uuid in (PRIMARY_SERVICE, SECONDARY_SERVICE):
            srv: dict[str, Any] = {"uuid": "0x" + row.value}
            if uuid == SECONDARY_SERVICE:
                srv["primary"] = False
            if row.perm != _DEFAULT_DECL_PERM:
                srv["perm"] = _names(row.perm, PERMISSIONS, _perm_text)
            srv["characteristic"] = []
            services.append(srv)
            pos += 1
            continue
        if uuid != CHAR_DECLARATION or not services or pos + 1 >= len(rows):
            raise InputError(f"row {row.cfg_string()!r} is not where a service or characteristic starts",
                             file=source, field=f"cfg{pos}")
        vrow = rows[pos + 1]
        ch: dict[str, Any] = {"uuid": vrow.uuid}
        prop_names = _names("0x" + row.value, PROPERTIES, _perm_text)
        ch["properties"] = prop_names if isinstance(prop_names, list) else row.value
        if row.perm != _DEFAULT_DECL_PERM:
            ch["declaration_perm"] = _names(row.perm, PERMISSIONS, _perm_text)
        attr = _attr_table(vrow, _perm_text(0))
        if "permissions" not in attr:
            attr["permissions"] = []
        ch.update({"permissions": attr.pop("permissions"), **attr})
        pos += 2
        descs: list[GattRow] = []
        while pos < len(rows) and rows[pos].uuid_bits == 16 and 0x2900 <= rows[pos].uuid_value <= 0x29FF:
            descs.append(rows[pos])
            pos += 1
        prop_bits = int(row.value, 16) if row.value else 0
        notifying = prop_bits & (PROPERTIES["notify"] | PROPERTIES["indicate"])
        cccds = [d for d in descs if _is_uuid(d.uuid, CCCD)]
        if notifying and descs and descs[0] is cccds[0] and len(cccds) == 1 and \
                (descs[0].uuid, descs[0].perm, descs[0].val_max_len, descs[0].val_cur_len, descs[0].value) == \
                ("0x2902", *_AUTO_CCCD):
            descs = descs[1:]
        if descs and _is_uuid(descs[0].uuid, USER_DESCRIPTION) and descs[0].uuid == "0x2901":
            d = _attr_table(descs[0], _perm_text(PERMISSIONS["read"]))
            if set(d) == {"text", "max_len"} and d["max_len"] == len(d["text"].encode()):
                ch["description"] = d["text"]
            else:
                ch["description"] = d
            descs = descs[1:]
        if descs:
            ch["descriptor"] = [{"uuid": d.uuid, **_attr_table(d, _perm_text(PERMISSIONS["read"]))} for d in descs]
        services[-1]["characteristic"].append(ch)
    desc = {"service": services}
    again = compile_description(desc, source=source)
    for i, (a, b) in enumerate(zip(again, rows)):
        if a != b:
            raise InputError(f"row {b.cfg_string()!r} cannot be expressed exactly in a GATT description "
                             f"(would become {a.cfg_string()!r}); keep the CSV", file=source, field=f"cfg{i}")
    if len(again) != len(rows):
        raise InputError("table cannot be expressed exactly in a GATT description; keep the CSV", file=source)
    return desc


# ---------------------------------------------------------------------------------------------
# TOML output (tomllib only reads; this writes the small subset descriptions use)

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _emit_table(lines: list[str], header: str, table: dict[str, Any]) -> None:
    lines.append(f"[[{header}]]")
    subtables = []
    for key, value in table.items():
        if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            subtables.append((key, value))
        elif isinstance(value, list) and not value and key in ("characteristic", "descriptor"):
            continue
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    for key, items in subtables:
        for item in items:
            _emit_table(lines, f"{header}.{key}", item)


def dump_description(desc: dict[str, Any], *, comment: str | None = None) -> str:
    """TOML text for a description dict (as produced by :func:`decompile`)."""
    lines = [f"# {line}" for line in (comment or "").splitlines()]
    if lines:
        lines.append("")
    for srv in desc.get("service", []):
        _emit_table(lines, "service", srv)
    return "\n".join(lines).rstrip("\n") + "\n"


__all__ = ["compile_description", "load_description", "decompile", "dump_description"]
