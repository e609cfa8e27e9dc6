"""Reading a TOML input file, with one wording for the file that cannot be read or parsed."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed document at ``path``.

    An unreadable file is ``InputError("cannot read <what>: …", field="file")``, bad TOML is
    ``InputError("not valid TOML: …", field="toml")``; both name the file and are one line.
    """
    src = str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what}: {exc}", file=src, field="file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=src, field="toml") from None
