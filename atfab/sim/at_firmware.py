"""The AT firmware of a virtual module: boots from flash, answers AT commands byte-exact (§1.2).

:class:`AtFirmware` is driven by the module (``atfab.sim.module``): ``boot()`` after every
power-on or reset, ``serve(link, token)`` for a connected AT host. Command groups live in
``at_basic`` (AT, ATE, RST, GMR, CMD, RESTORE, SYSSTORE, SYSLOG, SYSMSG), ``at_uart``,
``at_sysflash``, ``at_sysmfg``, ``at_wifi`` (RFPOWER, CWCOUNTRY, MACs) and ``at_ble``.

Framing choices (G3, each from §1.2 or a :class:`~atfab.core.firmware.FirmwareProfile` field):

* A command is a line ending in CR LF; 2..256 bytes including CR LF, a longer line is
  discarded up to its CR LF and answered ``ERROR`` (ERR CODE 0x01030000). A bare CR LF is a
  line without ``AT``: ``ERROR`` (0x01030000), ground truth §0.
* Echo (ATE1, on after boot per ``firmware.echo_default``) sends the received line plus CR LF
  before anything else; ``ATE0`` is echoed when ``firmware.ate0_echoed``.
* Info lines ``+CMD:...\\r\\n``; final ``\\r\\nOK\\r\\n`` / ``\\r\\nERROR\\r\\n``; with ``AT+SYSLOG=1`` an
  ``ERR CODE:0x%08x\\r\\n`` line precedes ERROR.
* Bytes that arrive while a command runs (seen when it ends, or after a raw payload was read)
  are discarded with one ``\\r\\nbusy p...\\r\\n`` per line, before the command's result code.
* Raw payloads after a ``>`` prompt are read exactly; the firmware waits for them as long as the
  link and the power last (no timeout: esp-at blocks on its data-mode semaphore).

Faults (``host.faults``, one-shot each): ``busy_next`` answers ``busy p...`` instead of running
the next N commands; ``garbage_between_lines`` / ``urc_between_lines`` are sent between the last
info line and the final OK of the next command that has info lines; ``stall_reply_seconds``
delays the next reply (its echo included); ``corrupt_next_read`` / ``error_next_write`` / ``power_loss_after_writes``
are applied by the SYSFLASH/SYSMFG handlers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .at_boot import NVS_ERRORS, boot_from_flash
from typing import Any

from .at_build import identify, legacy_profile, served_profile
from .at_command import OK, ERROR, PENDING_PAYLOAD, POLL, READY, After, CommandSpec, Ctx, RunState, StopServing
from .at_parser import (
    MAX_COMMAND, SUB_CMD_PROCESSING, SUB_NO_AT, SUB_UNSUPPORT_CMD, AtCmdError,
    err_code, parse_line,
)
from .at_registry import build_table, init_run_state
from .host import ModuleHost
from .link import Link, LinkClosed

class AtFirmware:
    """The AT interpreter of one virtual module (see the module docstring)."""

    def __init__(self, host: ModuleHost) -> None:
        self.host = host
        self.state: RunState | None = None
        #: The build that booted (from the flashed app); the module profile's until a boot.
        self.profile = host.firmware
        #: What the last boot printed outside the AT port: the ROM's loop on UART0, why no app runs.
        self.boot_log: list[str] = []
        self.rom_log = b""
        self.commands: dict[str, CommandSpec] = {}
        self.order: list[CommandSpec] = []
        self._lock = threading.RLock()
        #: Unexpected exceptions of command handlers (answered ERROR); tests assert it stays empty.
        self.errors: list[BaseException] = []

    # -- boot ---------------------------------------------------------------------------------
    def boot(self) -> bytes:
        """Read flash like a real boot and return what the AT port prints (``\\r\\nready\\r\\n``).

        Returns ``b""`` and leaves the AT port silent when no firmware would run (blank or
        corrupt partition table, no valid app image).
        """
        with self._lock:
            module = self.host.firmware
            serve = self._legacy_build if module.legacy else None
            info = boot_from_flash(self.host.flash, module, getattr(self.host, "chip", None), serve=serve)
            self.rom_log = info.rom_log
            self.boot_log = [info.reason] if info.reason else []
            if not info.runs:
                self.state = None
                return b""
            assert info.app is not None
            if module.legacy:                       # G1/G2: the release the flashed app names
                self.profile = info.firmware
                self.boot_log.append(f"booted {self.profile.label} ({info.served_why})")
            else:
                ident = identify(info.app, info.app_image)
                if ident.release is None:           # no recognisable description: the AT port stays silent
                    self.boot_log.append(f"app not recognised: {ident.why}")
                    self.state = None
                    return b""
                self.profile = served_profile(ident, info.app, module)
                sets = ", ".join(ident.features) if ident.features else "the factory module's (no markers)"
                self.boot_log.append(f"booted {self.profile.label} ({ident.why}); command sets: {sets}")
            self.order = build_table(self.profile)
            self.commands = {c.name: c for c in self.order}
            st = RunState(boot=info, echo=self.profile.echo_default, uart_cur=info.uart_def)
            init_run_state(st, self.host, self.profile)
            self.state = st
            self.host.set_at_baud(info.uart_def.baud)
            return READY

    @property
    def running(self) -> bool:
        """True when an AT firmware booted (False = silent module)."""
        return self.state is not None

    def _legacy_build(self, app: Any, image: bytes) -> tuple[Any, str]:
        """The G1/G2 build of the flashed app: its release (AT core commit, else app version), with
        the module's build of that release; (None, why) when the app names no release."""
        ident = identify(app, image)
        if ident.release is None:
            return None, ident.why
        return legacy_profile(ident, app, self.host.firmware), ident.why

    # -- serving ------------------------------------------------------------------------------
    def serve(self, link: Link, token: int) -> str:
        """Answer commands from ``link`` until it closes ("closed") or the module changes state ("state")."""
        ctx = Ctx(self, link, token)
        try:
            return self._serve(ctx)
        except LinkClosed:
            return "closed"
        except StopServing as stop:
            return stop.result

    def _serve(self, ctx: Ctx) -> str:
        link = ctx.link
        buf = bytearray()
        overflow = False
        if self.state is not None and PENDING_PAYLOAD in self.state.extra:
            # a UART has no connections: a command still reading its payload when the host's link
            # dropped takes the next bytes that arrive, from whoever sends them (ground truth §5)
            self._resume(ctx, self.state.extra.pop(PENDING_PAYLOAD))
        while True:
            ctx.check_state()
            if self.state is None:  # no firmware runs: input is lost
                link.recv(4096, POLL)
                buf.clear()
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) >= MAX_COMMAND:
                    overflow = True
                    keep = buf[-1:] if buf.endswith(b"\r") else b""
                    buf[:] = keep
                buf += link.recv(4096, POLL)
                continue
            line = bytes(buf[:end])
            rest = bytes(buf[end + 2:])
            buf.clear()
            if rest:
                link.unread(rest)
            if overflow or end + 2 > MAX_COMMAND:
                overflow = False
                self._finish(ctx, AtCmdError(SUB_NO_AT, 0, "line longer than 256 bytes"))
                continue
            result = self._run_line(ctx, line)
            if result is not None:
                return result

    def _resume(self, ctx: Ctx, pending: Callable[[Ctx], None]) -> None:
        """Finish a command whose payload a link drop cut (its handler's continuation), then its result."""
        try:
            pending(ctx)
        except AtCmdError as exc:
            self._finish(ctx, exc)
            return
        except NVS_ERRORS as exc:
            self._finish(ctx, AtCmdError(None, 0, str(exc)))
            return
        self._finish(ctx, None)

    def _run_line(self, ctx: Ctx, line: bytes) -> str | None:
        st = self.state
        assert st is not None
        faults = self.host.faults
        if getattr(faults, "busy_next", 0) > 0:
            faults.busy_next -= 1
            self._send_busy(ctx)
            return None
        stall = getattr(faults, "stall_reply_seconds", 0.0)
        if stall:  # the whole reply (echo included) is held back
            faults.stall_reply_seconds = 0.0
            ctx.sleep(stall)
        is_ate0 = line.upper() == b"ATE0"
        if st.echo and (not is_ate0 or self.profile.ate0_echoed):
            ctx.send(line + b"\r\n")
        ctx.info_lines = 0
        after: After | None = None
        try:
            cmd = parse_line(line)
            spec = self.commands.get(cmd.name)
            if spec is None:
                raise AtCmdError(SUB_UNSUPPORT_CMD, 0, f"unknown command {cmd.name}")
            handler = spec.handler(cmd.form)
            if handler is None:
                raise AtCmdError(None, 0, f"{cmd.name}: {cmd.form} form not supported")
            after = handler(ctx, cmd.params)
        except AtCmdError as exc:
            self._finish(ctx, exc)
            return None
        except NVS_ERRORS as exc:          # a flash/NVS step failed: the command fails
            self._finish(ctx, AtCmdError(None, 0, str(exc)))
            return None
        except (StopServing, LinkClosed):
            raise
        except Exception as exc:  # noqa: BLE001 - a simulator bug must not kill the AT port
            self.errors.append(exc)
            self._finish(ctx, AtCmdError(None, 0, repr(exc)))
            return None
        if self._finish(ctx, None):
            return None                     # restarted by a forced AT+RST: the command's hook never runs
        if after is None:
            return None
        try:
            return after()
        except (StopServing, LinkClosed):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a boot that broke: keep the port alive
            self.errors.append(exc)
            return None

    def _finish(self, ctx: Ctx, error: AtCmdError | None) -> bool:
        """Busy lines for input that arrived meanwhile, injected faults, then OK or ERROR.

        True when a line that arrived meanwhile forced a restart (nothing more of the command is sent)."""
        if self._drain_busy(ctx):
            return True
        faults = self.host.faults
        if ctx.info_lines:
            garbage = getattr(faults, "garbage_between_lines", None)
            if garbage:
                faults.garbage_between_lines = None
                ctx.send(garbage)
            urc = getattr(faults, "urc_between_lines", None)
            if urc:
                faults.urc_between_lines = None
                ctx.send(urc.encode() + b"\r\n")
        if error is None:
            ctx.send(OK)
            return False
        st = self.state
        if st is not None and (st.syslog or self.profile.err_code_always) and error.code is not None:
            ctx.send(f"ERR CODE:0x{error.code:08x}\r\n".encode())
        ctx.send(ERROR)
        return False

    def _send_busy(self, ctx: Ctx) -> None:
        st = self.state
        if st is not None and st.syslog:
            ctx.send(f"ERR CODE:0x{err_code(SUB_CMD_PROCESSING):08x}\r\n".encode())
        ctx.send(b"\r\n" + self.profile.busy_text.encode() + b"\r\n")

    def _drain_busy(self, ctx: Ctx) -> bool:
        """Discard input that arrived while the command ran: one busy line per received line.

        A line holding ``AT+RST\\r\\n`` (ground truth "Busy": at_recv_task) prints the firmware's
        ``Will force to restart!!!`` and restarts at once: True, the running command says nothing more."""
        if not ctx.link.has_pending():
            return False
        data = bytearray()
        while ctx.link.has_pending():
            data += ctx.link.recv(4096, 0)
        lines = bytes(data).split(b"\r\n")
        complete = lines[:-1] or [bytes(data)]
        for i, line in enumerate(complete):
            if i < len(lines) - 1 and line.endswith(b"AT+RST"):
                ctx.send(dict(self.host.firmware.formats)["force_restart"].encode())
                self.reboot(ctx)
                return True
            self._send_busy(ctx)
        return False

    # -- used by handlers -----------------------------------------------------------------------
    def reboot(self, ctx: Ctx) -> str | None:
        """Restart in place (AT+RST, AT+RESTORE): boot again and print its output."""
        out = self.boot()
        if out:
            ctx.send(out)
        return None


__all__ = ["AtFirmware"]
