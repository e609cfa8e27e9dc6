"""The re-read discipline every verification follows, whatever the firmware generation.

A wrong value is a failing measurement only once it is read twice alike: a read that does not
hold is read again, and a re-read that disagrees with the first read (a byte flipped on the wire)
raises :class:`ReadDisagrees` (link noise: ERROR, never FAIL) - the project's one re-read rule,
:func:`atfab.link.at.reread.reread`. An ``ERROR`` answer to a read,
given again to the re-read, is a failing measurement of the unit (:class:`Refused`); timeouts,
busy and garbled replies propagate as the :class:`~atfab.core.errors.DeviceError` they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..core.firmware import FirmwareProfile
from ..core.measurement import FAIL, PASS, Measurement, evaluate
from ..link.at.client import AtClient
from ..link.at.errors import AtBusy, AtError, AtResponseError
from ..link.at.reread import ReadDisagrees, reread

T = TypeVar("T")


class Refused(Exception):
    """The module answered ERROR to a read: the unit, not the station, is at fault."""

    def __init__(self, error: AtError) -> None:
        super().__init__(str(error))
        self.error = error


def ask(fn: Callable[[], T]) -> T:
    """Run one AT read; an ERROR reply becomes :class:`Refused`, link/station trouble propagates."""
    try:
        return fn()
    except (AtBusy, AtResponseError):
        raise
    except AtError as exc:
        raise Refused(exc) from exc


def refused_measurement(name: str, expected: Any, rule: str, exc: Refused) -> Measurement:
    return Measurement(name, expected, None, rule, FAIL, detail=f"module refused: {exc}")



class RereadVerifier:
    """Measurements of one unit on ``at`` under the re-read discipline (see the module doc).

    The base of every generation's verifier (G3 :func:`atfab.verify.unit.verify_unit`, legacy,
    NONOS): ``out`` collects the measurements; ``check``/``add`` read, compare and re-read
    before a failing verdict; ``basics`` and ``recipe_version`` are the checks every AT firmware has.
    """

    def __init__(self, at: AtClient, firmware: FirmwareProfile) -> None:
        self.at = at
        self.fw = firmware
        self.out: list[Measurement] = []
        self.gmr_reply: Any = None          # AT+GMR as read by a gmr check (recipe_version reuses it)

    def add(self, name: str, expected: Any, measured: Any, rule: str = "equal", detail: str | None = None, *,
            reread: Callable[[], Any] | None = None) -> None:
        """A measurement of a value already read; ``reread`` reads it again before a failing verdict."""
        m = evaluate(name, expected, measured, rule, detail=detail)
        if not m.passed and reread is not None:
            self.confirm(name, measured, reread)
        self.out.append(m)

    def refused(self, name: str, expected: Any, rule: str, exc: "Refused", read: Callable[[], Any]) -> None:
        """The module answered ERROR to ``read``: a failing measurement once a re-read is refused too."""
        self.confirm(name, exc, read)
        self.out.append(refused_measurement(name, expected, rule, exc))

    def check(self, name: str, expected: Any, read: Callable[[], Any], rule: str = "equal", *,
              detail: str | None = None) -> Any:
        """Read, compare, and before a failing verdict read again (:meth:`confirm`)."""
        try:
            measured = ask(read)
        except Refused as exc:
            self.refused(name, expected, rule, exc, read)
            return None
        self.add(name, expected, measured, rule, detail, reread=read)
        return measured

    def confirm(self, name: str, first: Any, read: Callable[[], Any]) -> None:
        """A read that does not hold is read once more (:func:`atfab.link.at.reread.reread`, no second
        answer taken): :class:`ReadDisagrees` unless it reads the same. A refusal counts as an answer."""

        def again() -> Any:
            try:
                return ask(read)
            except Refused as exc:
                return exc

        reread(name, first, again, same=lambda v: ("refused",) if isinstance(v, Refused) else ("read", v))

    def basics(self) -> None:
        self.check("at.alive", "OK", lambda: (self.at.at(), "OK")[1])
        self.check("at.echo_off", "off", self._echo_after_ate0)

    def _echo_after_ate0(self) -> str:
        self.at.echo_off()
        start = len(self.at.transcript)
        self.at.at()
        return "on" if any(e.direction == "rx" and e.kind == "echo" for e in self.at.transcript[start:]) else "off"

    def recipe_version(self, expected: str, *, core: bool = False) -> None:
        """``gmr.recipe_version``: the ``Bin version`` (``core``: the ``AT version``, as on legacy
        releases whose Bin version is the build's CONFIG_ESP_AT_FW_VERSION) starts with ``expected``
        (a leading ``v`` ignored on both sides); uses the AT+GMR a gmr check read."""
        gmr = self.gmr_reply
        if gmr is None:
            self.out.append(Measurement("gmr.recipe_version", expected, None, "prefix", FAIL,
                                        detail="AT+GMR was refused"))
            return

        def version(g: Any) -> Any:
            return g.at_version if core else (g.bin_version or g.at_version)

        measured = version(gmr)
        ok = measured is not None and measured.lstrip("vV").startswith(expected.lstrip("vV"))
        if not ok:
            self.confirm("gmr.recipe_version", measured, lambda: version(self.at.gmr()))
        self.out.append(Measurement("gmr.recipe_version", expected, measured, "prefix", PASS if ok else FAIL,
                                    detail="AT version (the release's core)" if core else None))

__all__ = ["RereadVerifier", "ReadDisagrees", "Refused", "ask", "refused_measurement"]
