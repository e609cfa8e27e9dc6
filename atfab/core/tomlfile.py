"""Reading a TOML input file: one wording for the file that cannot be read or parsed, and for a
table key nobody asked for."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import InputError
from .inputs import load_toml


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed document at ``path``.

    An unreadable file is ``InputError("cannot read <what>: …", field="file")``, bad TOML is
    ``InputError("not valid TOML: …", field="toml")``; both name the file and are one line.
    """
    return load_toml(path, what)


def unknown_fields(table: Iterable[str], known: Iterable[str], *, file: str | Path | None = None,
                   where: str = "") -> list[InputError]:
    """One ``<where>.<key>: unknown field (known: …)`` error per key of ``table`` not in ``known``
    (listed in the order given)."""
    known = tuple(known)
    return [InputError(f"unknown field (known: {', '.join(known)})", file=file, field=f"{where}.{k}" if where else k)
            for k in table if k not in known]


def check_fields(table: Iterable[str], known: Iterable[str], *, file: str | Path | None = None,
                 where: str = "") -> None:
    """Raise the first of :func:`unknown_fields`."""
    problems = unknown_fields(table, known, file=file, where=where)
    if problems:
        raise problems[0]
