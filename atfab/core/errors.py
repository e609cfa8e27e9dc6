"""Typed errors of atfab and the one table that maps them to exit codes.

Library code raises these; only :mod:`atfab.cli` turns them into a message and an exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class AtfabError(Exception):
    """Base of every error atfab raises on purpose."""

    exit_code = 1


class InputError(AtfabError):
    """Bad input from the user: a file, a field or a value is wrong (exit code 2).

    ``str()`` gives one line: ``file:line: field: message`` with the parts that are known.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
        parts = [_one_line(p) for p in (where, self.field) if p]
        text = " ".join(self.message.split())  # always one line
        return ": ".join(parts + [text])

    def located(self, *, file: str | Path | None = None, field: str | None = None) -> "InputError":
        """Return a copy that names ``file``/``field`` where this error did not."""
        return type(self)(
            self.message,
            file=self.file or (str(file) if file is not None else None),
            field=self.field or field,
            line=self.line,
        )


def _one_line(text: str) -> str:
    """``text`` with line breaks turned into spaces (a file or field name can hold any character)."""
    return "".join(" " if ch in _LINE_BREAKS else ch for ch in text)


_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class DeviceError(AtfabError):
    """The station, the link or the tool broke while talking to a module (exit code 3)."""

    exit_code = 3


class UnitFailed(AtfabError):
    """The unit is bad: a verification check did not hold (exit code 1)."""

    exit_code = 1


class Aborted(AtfabError):
    """The operator stopped the run (exit code 130)."""

    exit_code = 130


#: Final outcomes of one unit attempt (or one rotated module): all checks met; :class:`UnitFailed`;
#: :class:`DeviceError` (station, link or tool); :class:`Aborted`.
PASS, FAIL, ERROR, ABORTED = "PASS", "FAIL", "ERROR", "ABORTED"
OUTCOMES = (PASS, FAIL, ERROR, ABORTED)

EXIT_OK = 0
EXIT_UNIT_FAILED = UnitFailed.exit_code
EXIT_INPUT = InputError.exit_code
EXIT_DEVICE = DeviceError.exit_code
EXIT_ABORTED = Aborted.exit_code


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception that reached the CLI (not an atfab error: 3)."""
    if isinstance(exc, AtfabError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_ABORTED
    return EXIT_DEVICE


def exit_code_for_outcomes(counts: Mapping[str, int], *, interrupted: bool = False) -> int:
    """The process exit code of a run from its outcome counts: 130 interrupted or any ABORTED,
    else 3 any ERROR, else 1 any FAIL, else 0."""
    if interrupted or counts.get(ABORTED, 0):
        return EXIT_ABORTED
    if counts.get(ERROR, 0):
        return EXIT_DEVICE
    if counts.get(FAIL, 0):
        return EXIT_UNIT_FAILED
    return EXIT_OK
