"""Pure byte-level framing of one AT reply (no I/O): feed bytes, get lines, raw payloads, a result.

:class:`ReplyParser` implements the parser rules of the reference (§1.2): split on CR LF, skip
empty lines and the echoed command, collect the command's information lines (by their
``+NAME:`` prefix), stop at ``OK``/``ERROR``/``SEND OK``/``SEND FAIL``, remember a preceding
``ERR CODE:`` line, accept the ``>`` data prompt with or without a trailing space, and read raw
binary replies (``+SYSFLASH:<len>,`` / ``+SYSMFG:"ns","key",<type>,<len>,``) by exact length
even when they contain CR LF. Everything else is an unsolicited line (URC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import AtBusy, AtError, AtResponseError, ModuleRestarted

#: Information-line prefixes of commands whose lines are not ``+NAME:`` (§2.4).
SPECIAL_INFO: dict[str, tuple[str, ...]] = {
    "AT+GMR": ("AT version:", "SDK version:", "compile time", "Bin version:", "Bin version("),  # "Bin version(": NONOS AT 1.x
}

_RAW_HEADERS = {
    "sysflash": re.compile(rb"\+SYSFLASH:(\d{1,10}),"),
    "sysmfg": re.compile(rb'\+SYSMFG:"((?:[^"\\\r\n]|\\.){0,64})","((?:[^"\\\r\n]|\\.){0,64})",(\d{1,3}),(\d{1,10}),'),
}
_RAW_PREFIX = {"sysflash": b"+SYSFLASH:", "sysmfg": b"+SYSMFG:"}
#: SYSMFG value types sent as raw bytes (7 string, 8 blob); numeric ones are ordinary lines.
RAW_SYSMFG_TYPES = (7, 8)

_ERR_CODE = re.compile(r"ERR CODE:\s*0x([0-9a-fA-F]{1,8})\s*$")


def command_name(command: str) -> str:
    """``AT+SYSMFG=1,"x"`` → ``AT+SYSMFG``; ``AT+GMR`` → ``AT+GMR``; ``ATE0`` → ``ATE0``."""
    text = command.strip()
    m = re.match(r"AT\+[A-Za-z0-9_]+", text, re.IGNORECASE)
    return m.group(0).upper() if m else text.upper()


def info_prefixes(command: str) -> tuple[str, ...]:
    """The information-line prefixes that belong to ``command`` (``+NAME:``)."""
    name = command_name(command)
    if name in SPECIAL_INFO:
        return SPECIAL_INFO[name]
    if name.startswith("AT+"):
        return ("+" + name[3:] + ":",)
    return ()


def raw_kind(command: str) -> str | None:
    """``"sysflash"`` / ``"sysmfg"`` when ``command`` is a read that may answer raw bytes."""
    text = command.strip().upper()
    if re.match(r"AT\+SYSFLASH=\s*2\s*,", text):
        return "sysflash"
    # AT+SYSMFG=1,"ns","key"[,offset,length]: three or more fields.
    if re.match(r'AT\+SYSMFG=\s*1\s*,\s*".*"\s*,\s*"', text):
        return "sysmfg"
    return None


def parse_err_code(line: str) -> int | None:
    """The number of an ``ERR CODE:0x…`` line, or None when ``line`` is not one."""
    m = _ERR_CODE.match(line.strip())
    return int(m.group(1), 16) if m else None


@dataclass
class RawItem:
    """A raw binary reply: ``header`` is the text before the payload (``+SYSMFG:"ns","k",8,3,``)."""

    kind: str
    header: str
    fields: list[str]
    data: bytes = b""


@dataclass
class Reply:
    """The parsed reply to one command."""

    command: str
    lines: list[str] = field(default_factory=list)
    raws: list[RawItem] = field(default_factory=list)
    urcs: list[str] = field(default_factory=list)
    result: str | None = None
    ok_before_prompt: bool = False


@dataclass
class Event:
    """One thing seen on the wire, in order (for the transcript)."""

    kind: str            # "echo" | "info" | "final" | "code" | "urc" | "raw" | "prompt" | "note"
    text: str
    raw: RawItem | None = None


@dataclass
class ReplyParser:
    """Incremental parser of the reply to one command. Feed bytes until :attr:`done`.

    ``prompt=True`` waits for the ``>`` data prompt instead of a final result (an ``OK`` line
    before it is tolerated). ``finals`` maps extra line texts to a successful end (``ready``).
    :meth:`feed` raises :class:`AtError` / :class:`AtBusy` when the reply is an error; the bytes
    after the end stay in :attr:`buf` (they belong to whatever comes next).
    """

    command: str
    info: tuple[str, ...] | None = None
    raw: str | None = None
    prompt: bool = False
    echo: bool = True
    busy_text: str = "busy p..."
    trailer: bytes = b"\r\n"
    finals: tuple[str, ...] = ()
    max_line: int = 8192
    ready_is_error: bool = True
    #: When set, a raw header announcing another length is an error (before reading it).
    raw_length: int | None = None

    buf: bytearray = field(default_factory=bytearray)
    lines: list[str] = field(default_factory=list)
    raws: list[RawItem] = field(default_factory=list)
    urcs: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    code: int | None = None
    done: bool = False
    result: str | None = None    # "ok" | "prompt" | a matched final text
    ok_before_prompt: bool = False
    _echo_seen: bool = False
    _raw_item: RawItem | None = None
    _raw_need: int = 0
    _want_trailer: bool = False

    def __post_init__(self) -> None:
        if self.info is None:
            self.info = info_prefixes(self.command)
        self._busy = self.busy_text.strip()

    # -- public ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> bool:
        """Add received bytes; returns :attr:`done`. Raises the typed error of an error reply."""
        if data:
            self.buf += data
        if not self.done:
            self._process()
        return self.done

    def need(self) -> int:
        """Bytes worth waiting for before feeding again (exact count inside a raw payload)."""
        if self._raw_item is not None:
            return max(1, self._raw_need - len(self.buf))
        return 1

    def in_raw(self) -> RawItem | None:
        """The raw item whose payload is being read (its header is known), if any."""
        return self._raw_item

    def take_rest(self) -> bytes:
        """The unparsed bytes after the end (or everything still buffered), removing them."""
        rest = bytes(self.buf)
        self.buf.clear()
        return rest

    # -- internals ------------------------------------------------------------------------
    def _process(self) -> None:
        buf = self.buf
        while not self.done:
            if self._raw_item is not None:
                if len(buf) < self._raw_need:
                    return
                item = self._raw_item
                item.data = bytes(buf[: self._raw_need])
                del buf[: self._raw_need]
                self._raw_item = None
                self.raws.append(item)
                self.events.append(Event("raw", item.header, item))
                self._want_trailer = bool(self.trailer)
                continue
            if self._want_trailer:
                if len(buf) < len(self.trailer) and self.trailer.startswith(bytes(buf)):
                    return
                if buf.startswith(self.trailer):
                    del buf[: len(self.trailer)]
                self._want_trailer = False
                continue
            if self.raw and not self.raws and self._start_raw():
                continue
            if self.raw and not self.raws and self._raw_may_start():
                return
            if self.prompt and buf[:1] == b">":
                rest = bytes(buf[1:3])
                if rest in (b"", b" ") or rest.startswith(b"\r") or rest == b" \r":
                    del buf[: 2 if rest[:1] == b" " else 1]
                    self.done, self.result = True, "prompt"
                    self.events.append(Event("prompt", ">"))
                    return
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self.max_line:
                    junk = bytes(buf)
                    buf.clear()
                    self._urc(junk.decode("utf-8", "replace"))
                return
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            self._line(line.decode("utf-8", "replace"))

    def _start_raw(self) -> bool:
        assert self.raw is not None
        m = _RAW_HEADERS[self.raw].match(self.buf)
        if not m:
            return False
        groups = [g.decode("utf-8", "replace") for g in m.groups()]
        if self.raw == "sysmfg" and int(groups[2]) not in RAW_SYSMFG_TYPES:
            return False  # numeric value: an ordinary line
        header = bytes(self.buf[: m.end()]).decode("utf-8", "replace")
        length = int(groups[-1])
        if self.raw_length is not None and length != self.raw_length:
            self.done, self.result = True, "error"
            raise AtResponseError(self.command, f"module announced {length} bytes, asked for {self.raw_length}",
                                  self.lines)
        del self.buf[: m.end()]
        self._raw_item = RawItem(self.raw, header, groups)
        self._raw_need = length
        return True

    def _raw_may_start(self) -> bool:
        """True while the buffered bytes could still become a raw header (wait for more)."""
        assert self.raw is not None
        prefix = _RAW_PREFIX[self.raw]
        head = bytes(self.buf)
        if b"\n" in head:
            return False
        if len(head) > 200:
            return False
        return head.startswith(prefix) or (bool(head) and prefix.startswith(head))

    def _urc(self, text: str) -> None:
        self.urcs.append(text)
        self.events.append(Event("urc", text))

    def _line(self, text: str) -> None:
        s = text.strip()
        if not s:
            return
        if self.echo and not self._echo_seen and s == self.command.strip():
            self._echo_seen = True
            self.events.append(Event("echo", text))
            return
        code = parse_err_code(s)
        if code is not None:
            self.code = code
            self.events.append(Event("code", text))
            return
        if s in self.finals:
            self.events.append(Event("final", text))
            self.done, self.result = True, s
            return
        if s == "OK" and self.prompt:
            self.ok_before_prompt = True
            self.events.append(Event("final", text))
            return
        if s in ("OK", "SEND OK"):
            self.events.append(Event("final", text))
            self.done, self.result = True, "ok"
            return
        if s in ("ERROR", "SEND FAIL"):
            self.events.append(Event("final", text))
            self.done, self.result = True, "error"
            raise AtError(self.command, self.code, self.lines,
                          message=None if s == "ERROR" else s)
        if s == self._busy or s.startswith("busy p"):
            self.events.append(Event("final", text))
            self.done, self.result = True, "busy"
            raise AtBusy(self.command, self.code, self.lines)
        if self.info and text.startswith(self.info):
            self.lines.append(text)
            self.events.append(Event("info", text))
            return
        if s == "ready" and self.ready_is_error and "ready" not in self.finals:
            self.events.append(Event("urc", text))
            self.done, self.result = True, "restarted"
            raise ModuleRestarted(self.command, self.lines)
        self._urc(text)


__all__ = ["ReplyParser", "RawItem", "Event", "info_prefixes", "raw_kind", "command_name",
           "parse_err_code", "SPECIAL_INFO", "RAW_SYSMFG_TYPES"]
