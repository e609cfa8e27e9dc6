"""MAC address text: the one notation reports, the ledger, serials and checks compare
(``aa:bb:cc:dd:ee:ff``, lower case, as the firmware prints it)."""

from __future__ import annotations

import re

from .errors import InputError

_MAC_HEX = re.compile(r"^[0-9a-fA-F]{12}$")


def format_mac(mac: bytes) -> str:
    """6 bytes → ``aa:bb:cc:dd:ee:ff`` (lower case, as the firmware prints)."""
    return ":".join(f"{b:02x}" for b in mac)


def normalize_mac(value: str | bytes, *, source: str | None = None, field: str = "mac") -> str:
    """``aa:bb:cc:dd:ee:ff`` (lower case) from 6 bytes or text with ``:``/``-``/no separators."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 6:
            raise InputError(f"a MAC address has 6 bytes, not {len(value)}", file=source, field=field)
        return format_mac(value)
    text = str(value).strip().strip('"')
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if not _MAC_HEX.match(digits):
        raise InputError(f"not a MAC address: {text!r}", file=source, field=field)
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


__all__ = ["format_mac", "normalize_mac"]
