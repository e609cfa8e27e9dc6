"""Typed errors of the AT protocol layer (all :class:`~atfab.core.errors.DeviceError`, exit code 3)."""

from __future__ import annotations

from ...core.errors import DeviceError


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AtError(DeviceError):
    """The module answered ``ERROR`` (or ``SEND FAIL``) to ``command``.

    ``code`` is the ``ERR CODE:0x…`` value printed before it (only with ``AT+SYSLOG=1`` on
    G2/G3), ``lines`` the information lines that came before the error.
    """

    def __init__(self, command: str, code: int | None = None, lines: list[str] | None = None,
                 message: str | None = None) -> None:
        self.command = command
        self.code = code
        self.lines = list(lines or [])
        if message is None:
            message = "ERROR"
            if code is not None:
                message += f" (ERR CODE:0x{code:08x})"
        self.message = message
        super().__init__(f"{_one_line(command, 80)}: {_one_line(message)}")


class AtBusy(AtError):
    """The module answered ``busy p...``: it was still executing something. Retrying may work."""

    def __init__(self, command: str, code: int | None = None, lines: list[str] | None = None) -> None:
        super().__init__(command, code, lines, message="module busy (busy p...)")


class ModuleRestarted(AtError):
    """``ready`` arrived before the reply: the module (re)booted and the command was lost.

    A command sent while the firmware boots is dropped, as on a real board; resending it once
    the module is up is safe.
    """

    def __init__(self, command: str, lines: list[str] | None = None) -> None:
        super().__init__(command, None, lines, message="module restarted (ready) before replying")


class AtResponseError(AtError):
    """The module answered something that does not parse as the command's documented reply."""

    def __init__(self, command: str, message: str, lines: list[str] | None = None) -> None:
        super().__init__(command, None, lines, message=message)


class AtTimeout(DeviceError):
    """No complete reply to ``command`` within the timeout.

    ``seen`` holds the bytes received since the command was sent (empty when they belonged to
    a redacted payload; ``seen_count`` always holds their number), ``elapsed`` the seconds waited.
    """

    def __init__(self, command: str, seen: bytes, elapsed: float, *, seen_count: int | None = None,
                 redacted: bool = False, waiting_for: str = "reply") -> None:
        self.command = command
        self.seen = b"" if redacted else bytes(seen)
        self.seen_count = len(seen) if seen_count is None else seen_count
        self.elapsed = elapsed
        self.redacted = redacted
        if redacted:
            shown = f"<redacted {self.seen_count} bytes>"
        else:
            tail = self.seen[-60:]
            shown = repr(tail) + (" (last 60)" if len(self.seen) > 60 else "")
        super().__init__(
            f"{_one_line(command, 80)}: no {waiting_for} after {elapsed:.2f} s "
            f"({self.seen_count} bytes seen: {shown})"
        )


class LinkLost(DeviceError):
    """The connection to the module went away (port closed, unplugged, socket dropped)."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        self.command = command
        where = f"{_one_line(command, 80)}: " if command else ""
        super().__init__(f"{where}link lost: {_one_line(message)}")


__all__ = ["AtError", "AtBusy", "ModuleRestarted", "AtResponseError", "AtTimeout", "LinkLost"]
