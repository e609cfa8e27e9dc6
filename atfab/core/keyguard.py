"""The last line of defence against private keys in reports, events and logs.

Keys are kept out of outputs by construction (the AT transcript redacts ``*_key`` payloads,
reports hold fingerprints). This guard catches what slipped through anyway: any PEM private-key
armor line (``BEGIN … PRIVATE KEY``, in any case, with or without the dashes). Prose that merely
mentions a private key ("private key does not match the certificate") is not armor and passes,
so an error message about a key never costs a unit its report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: PEM armor of any private key (PKCS#1 RSA, SEC1 EC, PKCS#8, encrypted PKCS#8, OpenSSH).
ARMOR = re.compile(r"BEGIN [A-Z0-9 ]*PRIVATE KEY", re.IGNORECASE)
_ARMOR_BYTES = re.compile(ARMOR.pattern.encode(), re.IGNORECASE)


def holds_armor(value: str | bytes | bytearray) -> bool:
    """True when ``value`` contains a private-key armor line."""
    if isinstance(value, (bytes, bytearray)):
        return _ARMOR_BYTES.search(value) is not None
    return ARMOR.search(value) is not None


def find_private_key(data: Any, where: str = "$") -> str | None:
    """The path (``$.a.b[2]``) of the first string, bytes or key in ``data`` holding key armor.

    Walks mappings (keys too), sequences and dataclasses; None when there is none.
    """
    if isinstance(data, (str, bytes, bytearray)):
        return where if holds_armor(data) else None
    if isinstance(data, Mapping):
        for k, v in data.items():
            hit = find_private_key(str(k), f"{where}.{k}") or find_private_key(v, f"{where}.{k}")
            if hit:
                return hit
        return None
    if isinstance(data, (list, tuple, set, frozenset)):
        for i, v in enumerate(data):
            hit = find_private_key(v, f"{where}[{i}]")
            if hit:
                return hit
        return None
    if hasattr(data, "__dataclass_fields__") and not isinstance(data, type):
        for name in data.__dataclass_fields__:
            hit = find_private_key(getattr(data, name), f"{where}.{name}")
            if hit:
                return hit
    return None
