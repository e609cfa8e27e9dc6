"""Command-line parsing of the virtual module's AT firmware (§1.1) and the error codes of §9.1.

A received line (without its CR LF) becomes an :class:`AtLine`: the command name, its form
(test ``=?``, query ``?``, set ``=...``, execute) and the raw parameter fields. Parameters
follow the ESP-AT rules: comma separated; strings in double quotes with the escapes ``\\\\``,
``\\,`` and ``\\"``; an omitted middle parameter is an empty field; numbers are decimal or
``0x`` hex. Accessors on :class:`Params` raise :class:`AtCmdError` with the subcategory code
and parameter index the real AT core would report.

Deliberately independent of :mod:`atfab.link.at.parse`: the simulator must not share parsing code with
the client it tests (a simulator that agrees with a wrong client proves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# -- error codes (§9.1): (0x01 << 24) | (subcategory << 16) | extension -----------------------
SUB_NO_TERMINATOR = 0x02
SUB_NO_AT = 0x03
SUB_PARA_LENGTH_MISMATCH = 0x04
SUB_PARA_TYPE_MISMATCH = 0x05
SUB_PARA_NUM_MISMATCH = 0x06
SUB_PARA_INVALID = 0x07
SUB_PARA_PARSE_FAIL = 0x08
SUB_UNSUPPORT_CMD = 0x09
SUB_CMD_EXEC_FAIL = 0x0A
SUB_CMD_PROCESSING = 0x0B
SUB_CMD_OP_ERROR = 0x0C

#: Longest accepted command line in bytes, CR LF included (§1.1, G3).
MAX_COMMAND = 256

FORMS = ("test", "query", "set", "exec")


def err_code(sub: int, ext: int = 0) -> int:
    """The 32-bit value printed as ``ERR CODE:0x%08x``."""
    return (0x01 << 24) | ((sub & 0xFF) << 16) | (ext & 0xFFFF)


class AtCmdError(Exception):
    """A command fails: the firmware answers ``ERROR``, preceded by ``ERR CODE`` when SYSLOG is on and
    the core has a code for this failure (``code`` None: the real core prints none, ground truth §0)."""

    def __init__(self, sub: int | None = SUB_CMD_EXEC_FAIL, ext: int = 0, why: str = "") -> None:
        self.code = None if sub is None else err_code(sub, ext)
        super().__init__(why or (f"error {self.code:#010x}" if self.code is not None else "error"))


def invalid(index: int, why: str = "") -> AtCmdError:
    """Parameter ``index`` (0-based) has a value out of range: the core's range checks print no code."""
    return AtCmdError(None, index, why)


def exec_fail(why: str = "", ext: int | None = None) -> AtCmdError:
    """The command could not be carried out (no ERR CODE, unless ``ext``: SYSFLASH ``0x010a000N``)."""
    return AtCmdError(None if ext is None else SUB_CMD_EXEC_FAIL, ext or 0, why)


def param_error(index: int, why: str = "") -> AtCmdError:
    """A parameter accessor failed (missing, malformed, unquoted string, bad escape): ``0x0108000N``."""
    return AtCmdError(SUB_PARA_PARSE_FAIL, index, why)


# -- one parameter field -------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One comma-separated parameter: ``text`` with escapes resolved, ``quoted`` if it was a string."""

    text: str
    quoted: bool

    @property
    def empty(self) -> bool:
        return not self.quoted and self.text == ""


class Params:
    """The parameter fields of a set command, with typed accessors."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields

    def __len__(self) -> int:
        return len(self.fields)

    def count(self, low: int, high: int | None = None) -> None:
        """Require between ``low`` and ``high`` (default ``low``) parameters."""
        high = low if high is None else high
        if not low <= len(self.fields) <= high:
            raise AtCmdError(None, 0, f"{len(self.fields)} parameters, expected {low}..{high}")

    def present(self, i: int) -> bool:
        """True when parameter ``i`` exists and is not an empty (omitted) field."""
        return i < len(self.fields) and not self.fields[i].empty

    def int(self, i: int, low: int | None = None, high: int | None = None) -> int:
        """Parameter ``i`` as an integer (decimal or ``0x`` hex), optionally range checked."""
        if i >= len(self.fields):
            raise param_error(i, "missing")
        f = self.fields[i]
        if f.quoted or f.empty:
            raise param_error(i, "not a number")
        value = parse_number(f.text)
        if value is None:
            raise param_error(i, "not a number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise invalid(i)
        return value

    def str(self, i: int, max_len: int | None = None, *, min_len: int = 0) -> str:
        """Parameter ``i`` as a quoted string, optionally length checked (in bytes)."""
        if i >= len(self.fields):
            raise param_error(i, "missing")
        f = self.fields[i]
        if not f.quoted:
            raise param_error(i, "not a quoted string")
        n = len(f.text.encode("utf-8", "surrogateescape"))
        if n < min_len or (max_len is not None and n > max_len):
            raise invalid(i, "string length")
        return f.text


def parse_number(text: str) -> int | None:
    """Decimal (optionally ``-``, never ``+``) or ``0x``/``0X`` hex; ``None`` when it is neither
    (``esp_at_get_para_as_digit``, ground truth §0)."""
    sign = 1
    body = text
    if body and body[0] == "-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body[:2].lower() == "0x":
        digits = body[2:]
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
            return None
        return sign * int(digits, 16)
    if not body or not body.isascii() or not body.isdigit():
        return None
    return sign * int(body)


def split_params(text: str) -> list[Field]:
    """Split the text after ``=`` into fields (§1.1); raises :class:`AtCmdError` on a bad quote."""
    fields: list[Field] = []
    i, n = 0, len(text)
    index = 0
    while True:
        if i < n and text[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise AtCmdError(SUB_PARA_PARSE_FAIL, index)
                c = text[i]
                if c == "\\" and i + 1 < n:
                    out.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                out.append(c)
                i += 1
            if i < n and text[i] != ",":
                raise AtCmdError(SUB_PARA_PARSE_FAIL, index)
            fields.append(Field("".join(out), True))
        else:
            j = text.find(",", i)
            j = n if j < 0 else j
            token = text[i:j]
            if '"' in token:
                raise AtCmdError(SUB_PARA_PARSE_FAIL, index)
            fields.append(Field(token, False))
            i = j
        if i >= n:
            break
        i += 1  # the comma
        index += 1
        if i >= n:  # trailing comma: one more empty field
            fields.append(Field("", False))
            break
    return fields


@dataclass
class AtLine:
    """A parsed command line."""

    name: str                      # "AT", "ATE0", "AT+GMR" (upper case as received)
    form: str                      # "test" | "query" | "set" | "exec"
    params: Params = field(default_factory=lambda: Params([]))
    raw: str = ""


#: Characters of a command name after ``AT`` (upper-cased first), ground truth §0 ``at_cmd_parse``.
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_!%-./:+")


def parse_line(line: bytes) -> AtLine:
    """Parse one command line (without its CR LF) as ``at_cmd_parse`` does (ground truth §0).

    ``A``/``a`` + ``T``/``t`` prefix (anything else, the bare CR LF included: ``0x01030000``); the
    name's letters are upper-cased (``at+gmr`` is ``AT+GMR``) and run while they are name
    characters; then ``?`` query, ``=?`` test, ``=...`` set, nothing = execute. Anything else after
    the name (a trailing space) makes a name no command has (``0x01090000``).
    """
    text = line.decode("utf-8", "surrogateescape")
    if len(text) < 2 or text[0] not in "Aa" or text[1] not in "Tt":
        raise AtCmdError(SUB_NO_AT, 0, "no AT prefix")
    i = 2
    while i < len(text) and text[i].upper() in NAME_CHARS:
        i += 1
    name = "AT" + text[2:i].upper()
    rest = text[i:]
    if rest == "":
        return AtLine(name, "exec", raw=text)
    if rest == "?":
        return AtLine(name, "query", raw=text)
    if rest == "=?":
        return AtLine(name, "test", raw=text)
    if rest.startswith("="):
        return AtLine(name, "set", Params(split_params(rest[1:])), raw=text)
    raise AtCmdError(SUB_UNSUPPORT_CMD, 0, f"no command {text!r}")


__all__ = [
    "AtCmdError", "AtLine", "Field", "Params", "parse_line", "split_params", "parse_number",
    "err_code", "invalid", "exec_fail", "param_error", "NAME_CHARS", "MAX_COMMAND", "FORMS",
    "SUB_NO_TERMINATOR", "SUB_NO_AT", "SUB_PARA_LENGTH_MISMATCH", "SUB_PARA_TYPE_MISMATCH",
    "SUB_PARA_NUM_MISMATCH", "SUB_PARA_INVALID", "SUB_PARA_PARSE_FAIL", "SUB_UNSUPPORT_CMD",
    "SUB_CMD_EXEC_FAIL", "SUB_CMD_PROCESSING", "SUB_CMD_OP_ERROR",
]
