"""What a command handler of the virtual AT firmware works with: the command table entry
(:class:`CommandSpec`), the RAM state of one boot (:class:`RunState`), the handler context
(:class:`Ctx`: the module, the run state and the output primitives) and the result codes.

The interpreter that runs them is :class:`atfab.sim.at_firmware.AtFirmware`; handlers see it only
as the :class:`Interpreter` protocol, so the command groups (``at_basic``, ``at_uart``, …) and the
interpreter that registers them (through ``at_registry``) import this module, not each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from ..core.firmware import FirmwareProfile
from .at_boot import BootInfo, UartConfig
from .at_parser import Params
from .faults import FaultPlan
from .host import ModuleHost
from .link import Link, LinkClosed

READY = b"\r\nready\r\n"
OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
POLL = 0.05

#: A handler runs one form of a command. It returns None (then OK is sent) or an "after" hook
#: run once OK was sent; the hook may return "state"/"closed" to end ``serve``.
After = Callable[[], Optional[str]]
Handler = Callable[["Ctx", Params], Optional[After]]


@dataclass
class CommandSpec:
    """One AT command and its handlers per form (None = form not supported)."""

    name: str
    test: Handler | None = None
    query: Handler | None = None
    set: Handler | None = None
    exec: Handler | None = None

    def handler(self, form: str) -> Handler | None:
        return {"test": self.test, "query": self.query, "set": self.set, "exec": self.exec}[form]

    def flags(self) -> tuple[int, int, int, int]:
        return tuple(int(h is not None) for h in (self.test, self.query, self.set, self.exec))  # type: ignore


@dataclass
class RunState:
    """RAM state of one boot of the firmware (lost on reset)."""

    boot: BootInfo
    echo: bool = True
    syslog: int = 0
    sysstore: int = 1
    sysmsg: int = 0
    uart_cur: UartConfig = field(default_factory=UartConfig)
    extra: dict[str, Any] = field(default_factory=dict)   # per command group (rf, country, ble ...)


#: ``RunState.extra`` key of a command cut in the middle of its payload by a link drop: a callable
#: ``(ctx) -> None`` that reads the rest from the next link and does the command's work.
PENDING_PAYLOAD = "pending_payload"


class StopServing(Exception):
    """Leave ``serve`` without a final result code (power loss, download mode)."""

    def __init__(self, result: str) -> None:
        super().__init__(result)
        self.result = result


class Interpreter(Protocol):
    """What handlers use of the interpreter (:class:`atfab.sim.at_firmware.AtFirmware`)."""

    host: ModuleHost
    state: RunState | None
    order: list[CommandSpec]
    profile: FirmwareProfile

    def reboot(self, ctx: Ctx) -> str | None: ...


class Ctx:
    """What a command handler sees: the module, the run state and the output primitives."""

    def __init__(self, fw: Interpreter, link: Link, token: int) -> None:
        self.fw = fw
        self.link = link
        self.token = token
        self.info_lines = 0

    # -- accessors -------------------------------------------------------------------------
    @property
    def host(self) -> ModuleHost:
        return self.fw.host

    @property
    def profile(self) -> FirmwareProfile:
        """The firmware build that booted (from the flashed app, :mod:`atfab.sim.at_build`)."""
        return self.fw.profile

    @property
    def st(self) -> RunState:
        assert self.fw.state is not None
        return self.fw.state

    @property
    def boot(self) -> BootInfo:
        return self.st.boot

    @property
    def faults(self) -> FaultPlan:
        return self.fw.host.faults

    # -- output -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.link.send(data)

    def info(self, line: str | bytes) -> None:
        """Send one information line (``+CMD:...``) followed by CR LF."""
        data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        self.link.send(data + b"\r\n")
        self.info_lines += 1

    def info_raw(self, head: str, payload: bytes, trailer: bytes) -> None:
        """Send ``head`` + raw ``payload`` + ``trailer`` as one information item (binary reads)."""
        self.link.send(head.encode("utf-8", "surrogateescape") + payload + trailer)
        self.info_lines += 1

    def err_code(self, code: int) -> None:
        """``ERR CODE:0x%08x`` now (SYSLOG on), for a handler that reports a problem and carries on."""
        if self.fw.state is not None and self.fw.state.syslog:
            self.link.send(f"ERR CODE:0x{code:08x}\r\n".encode())

    def prompt(self, style: str) -> None:
        """Data prompt: "ok_prompt" = ``\\r\\nOK\\r\\n\\r\\n>``; "bare_prompt" = ``\\r\\n>`` (§1.2)."""
        self.link.send(b"\r\nOK\r\n\r\n>" if style == "ok_prompt" else b"\r\n>")

    # -- input ---------------------------------------------------------------------------------
    def check_state(self) -> None:
        if self.fw.host.state_token != self.token:
            raise StopServing("state")

    def read_payload(self, n: int) -> bytes:
        """Exactly ``n`` raw bytes from the host (waits while the link and the power last)."""
        data = bytearray()
        while len(data) < n:
            self.check_state()
            data += self.link.recv(n - len(data), POLL)
        return bytes(data)

    def payload_across_links(self, length: int, finish: Callable[["Ctx", bytes], None], *, got: bytes = b"",
                             cut_at: int | None = None) -> bytes:
        """A write's ``length`` payload bytes (``got`` of them already arrived), as the core reads its
        UART: a link that drops meanwhile does not end the command - it waits for the rest on the next
        link (:data:`PENDING_PAYLOAD`: the interpreter resumes it, ``finish`` then gets the bytes); a
        power loss forgets it. ``cut_at``: the fault "drop the link after this many payload bytes"."""
        data = bytearray(got)
        try:
            while len(data) < length:
                self.check_state()
                want = (cut_at if cut_at is not None else length) - len(data)
                data += self.link.recv(max(1, want), POLL)
                if cut_at is not None and len(data) >= cut_at:
                    self.link.close()
                    raise LinkClosed("fault: link dropped in the middle of a write payload")
        except LinkClosed:
            so_far = bytes(data)
            self.st.extra[PENDING_PAYLOAD] = lambda c: finish(c, c.payload_across_links(length, finish, got=so_far))
            raise
        return bytes(data)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` while watching for power loss / mode change."""
        end = time.monotonic() + seconds
        while True:
            self.check_state()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, POLL))


__all__ = ["CommandSpec", "RunState", "Ctx", "Interpreter", "StopServing", "PENDING_PAYLOAD", "After", "Handler", "READY", "OK", "ERROR", "POLL"]
