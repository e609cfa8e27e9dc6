"""Serial-number schemes.

A scheme turns a ledger counter value or a MAC address into a unit serial:

* ``counter``: ``prefix`` + the counter zero-padded to ``width`` digits, counting from ``start``;
  the counter lives in the ledger under ``counter_key`` (default: the prefix), so recipes that
  share a prefix share a counter and never hand out the same serial.
* ``mac``: ``prefix`` + the 12 hex digits of the MAC (upper case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import InputError
from ..core.mac import normalize_mac

SCHEMES = ("counter", "mac")
#: Characters allowed in a serial (it ends up in certificate subjects, file names and CSVs).
SERIAL_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
#: Longest serial accepted (an X.509 CN holds 64 characters).
SERIAL_MAX = 64

@dataclass(frozen=True)
class SerialScheme:
    """How serials are made. See the module docstring for the schemes."""

    scheme: str = "counter"
    prefix: str = ""
    width: int = 6
    start: int = 1
    counter: str | None = None

    @property
    def counter_key(self) -> str:
        """Name of the ledger counter this scheme draws from."""
        return self.counter if self.counter is not None else f"prefix:{self.prefix}"

    @property
    def max_counter(self) -> int:
        """Largest counter value that still fits in ``width`` digits."""
        return 10**self.width - 1

    def render(self, *, counter: int | None = None, mac: str | bytes | None = None) -> str:
        """The serial for ``counter`` (counter scheme) or ``mac`` (mac scheme)."""
        if self.scheme == "counter":
            if counter is None:
                raise ValueError("the counter scheme needs a counter value")
            if counter < 0 or counter > self.max_counter:
                raise InputError(
                    f"counter {counter} does not fit in {self.width} digits", field="serial.width"
                )
            return f"{self.prefix}{counter:0{self.width}d}"
        if self.scheme == "mac":
            if mac is None:
                raise ValueError("the mac scheme needs a MAC address")
            return self.prefix + normalize_mac(mac).replace(":", "").upper()
        raise InputError(f"unknown serial scheme {self.scheme!r}", field="serial.scheme")

    def problems(self, *, source: str = "") -> list[InputError]:
        """Every problem with this scheme's values (empty when it is usable)."""
        out: list[InputError] = []

        def bad(field: str, msg: str) -> None:
            out.append(InputError(msg, file=source or None, field=f"serial.{field}"))

        if self.scheme not in SCHEMES:
            bad("scheme", f"must be one of {', '.join(SCHEMES)}, not {self.scheme!r}")
        if not SERIAL_CHARS.match(self.prefix):
            bad("prefix", f"{self.prefix!r} may only hold letters, digits, '.', '_' and '-'")
        if self.scheme == "counter":
            if not 1 <= self.width <= 18:
                bad("width", f"must be 1..18 digits, not {self.width}")
            elif not 0 <= self.start <= self.max_counter:
                bad("start", f"{self.start} does not fit in {self.width} digits")
        if self.counter is not None and not self.counter:
            bad("counter", "counter name must not be empty")
        longest = len(self.prefix) + (self.width if self.scheme == "counter" else 12)
        if longest > SERIAL_MAX:
            bad("prefix", f"serials would be {longest} characters long (max {SERIAL_MAX})")
        return out


__all__ = ["SerialScheme", "SCHEMES", "SERIAL_MAX"]
