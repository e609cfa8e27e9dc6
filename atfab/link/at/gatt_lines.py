"""GATT discovery lines read by the firmware's own format strings (ground truth §10), by meaning.

Each release prints ``AT+BLEGATTSSRV?`` / ``AT+BLEGATTSCHAR?`` differently: v3.3–v4.1 C2
``+BLEGATTSSRV:1,<index>,0x%04X,1`` (a literal 1 first), v5.0.1/HEAD ``<index>,1,…``; C2 char lines
gain ``,0x%02x`` properties in v5.0.1 and ``,0x%x`` at HEAD; Bluedroid (ESP32/C3) prints
``<index>,<start>,0x<uuid>,1`` and lower-case properties plus ``"desc"`` lines. The formats are
firmware data (:meth:`FirmwareProfile.fmt` ``gattssrv``, ``gattschar``, ``gattsdesc`` and the
``*_uuid128`` variants); this module reads a line *through* its format:

* ``%d``/``%u`` fields are decimal numbers; ``0x%04X``, ``0x%02x``, ``0x%x``, ``0x%U`` fields are
  hex numbers compared as numbers (case and padding are not meaning); any other field is a literal
  the line must carry (``1``, ``"char"``);
* numbers take their role by order: service index then start; char service index, char index;
  desc service, char, desc index; the first hex field is the UUID, a second one the properties.

A line that fits none of the build's formats is returned as None (the caller decides what that means).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...core.firmware import FirmwareProfile
from .errors import AtResponseError
from .parse import split_fields

_HEX_CONV = re.compile(r"0x%(?:0?\d*)?[xXU]")
_INT_CONV = re.compile(r"%[du]")
_HEX_TEXT = re.compile(r"0[xX]([0-9a-fA-F]{1,32})")
_INT_TEXT = re.compile(r"-?\d{1,10}")

#: Roles of the decimal fields, in order, per line kind.
_INT_ROLES = {"service": ("srv_index", "start"), "char": ("srv_index", "char_index"),
              "desc": ("srv_index", "char_index", "desc_index")}
_HEX_ROLES = ("uuid", "prop")
_PREFIX = {"service": "+BLEGATTSSRV:", "char": "+BLEGATTSCHAR:", "desc": "+BLEGATTSCHAR:"}
_FORMATS = {"service": ("gattssrv", "gattssrv_uuid128"), "char": ("gattschar", "gattschar_uuid128"),
            "desc": ("gattsdesc",)}


@dataclass(frozen=True)
class GattItem:
    """One discovery line by meaning: ``kind`` service/char/desc; ``prop`` None when not printed."""

    kind: str
    srv_index: int
    uuid: int
    char_index: int | None = None
    desc_index: int | None = None
    prop: int | None = None

    def text(self) -> str:
        """``srv 1 uuid=0xA002`` / ``char 1.2 uuid=0xC301 prop=0x02`` / ``desc 1.2.1 uuid=0x2901``."""
        uuid = f"uuid={uuid_text(self.uuid)}"
        if self.kind == "service":
            return f"srv {self.srv_index} {uuid}"
        if self.kind == "char":
            prop = "" if self.prop is None else f" prop=0x{self.prop:02X}"
            return f"char {self.srv_index}.{self.char_index} {uuid}{prop}"
        return f"desc {self.srv_index}.{self.char_index}.{self.desc_index} {uuid}"


def uuid_text(value: int) -> str:
    """A UUID number as ``0x`` + upper-case hex, 4, 8 or 32 digits."""
    digits = 4 if value <= 0xFFFF else 8 if value <= 0xFFFFFFFF else 32
    return f"0x{value:0{digits}X}"


def _tokens(fmt: str, prefix: str) -> list[str] | None:
    body = fmt.rstrip("\r\n")
    if not body.startswith("%s:"):
        return None
    return body[3:].split(",")


def _read(line: str, fmt: str, kind: str) -> GattItem | None:
    tokens = _tokens(fmt, _PREFIX[kind])
    prefix = _PREFIX[kind]
    if tokens is None or not line.startswith(prefix):
        return None
    try:
        fields = split_fields(line[len(prefix):].rstrip("\r\n"), command=prefix)
    except AtResponseError:
        return None
    if len(fields) != len(tokens):
        return None
    ints: list[int] = []
    hexes: list[int] = []
    for token, f in zip(tokens, fields):
        if _INT_CONV.fullmatch(token):
            if f.quoted or not _INT_TEXT.fullmatch(f.text):
                return None
            ints.append(int(f.text))
        elif _HEX_CONV.fullmatch(token):
            m = _HEX_TEXT.fullmatch(f.text)
            if f.quoted or m is None:
                return None
            hexes.append(int(m.group(1), 16))
        else:
            literal = token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token
            if f.text != literal or f.quoted != (literal != token):
                return None
    roles = dict(zip(_INT_ROLES[kind], ints))
    roles.update(zip(_HEX_ROLES, hexes))
    if "srv_index" not in roles or "uuid" not in roles:
        return None
    return GattItem(kind, roles["srv_index"], roles["uuid"], roles.get("char_index"), roles.get("desc_index"),
                    roles.get("prop"))


def formats(firmware: FirmwareProfile, kind: str) -> list[str]:
    """The build's format strings for ``kind`` (service/char/desc); empty when it prints none."""
    return [firmware.fmt(name) for name in _FORMATS[kind] if firmware.has_fmt(name)]


def read_gatt_line(line: str, firmware: FirmwareProfile, kinds: tuple[str, ...]) -> GattItem | None:
    """``line`` read through the first of ``firmware``'s formats of ``kinds`` it fits, else None."""
    for kind in kinds:
        for fmt in formats(firmware, kind):
            item = _read(line, fmt, kind)
            if item is not None:
                return item
    return None


def read_services(lines: list[str], firmware: FirmwareProfile) -> list[GattItem | str]:
    """``AT+BLEGATTSSRV?`` lines by meaning; a line no format fits stays as its text."""
    return [read_gatt_line(ln, firmware, ("service",)) or ln for ln in lines]


def read_chars(lines: list[str], firmware: FirmwareProfile) -> list[GattItem | str]:
    """``AT+BLEGATTSCHAR?`` lines (char and, where printed, desc) by meaning; unfit lines as text."""
    return [read_gatt_line(ln, firmware, ("char", "desc")) or ln for ln in lines]


__all__ = ["GattItem", "uuid_text", "formats", "read_gatt_line", "read_services", "read_chars"]
