"""Bounded reading of every input file: regular files only, a size cap per kind, a depth cap.

Every reader of a user-supplied file goes through here before it parses anything, so a FIFO
never blocks, ``/dev/zero`` never fills memory, a symlink loop or a folder is one clean line, and
a document nested thousands deep is refused instead of raising ``RecursionError``. Every failure
is an :class:`~atfab.core.errors.InputError` (exit code 2) naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError

KiB = 1024
MiB = 1024 * KiB

#: Size caps per kind of input (bytes). Generous for any real file, small against a hostile one.
TOML_LIMIT = 1 * MiB          # recipes, profiles, params, inventories, GATT descriptions
CSV_LIMIT = 4 * MiB           # partition tables, factory_param and GATT tables
PEM_LIMIT = 1 * MiB           # certificates, keys, chains, CSRs
TEXT_LIMIT = 1 * MiB          # sdkconfig, flash argument files, small listings
JSON_LIMIT = 16 * MiB         # reports, manifests, journals
IMAGE_LIMIT = 128 * MiB       # flash images: the largest flash an ESP module carries
ESCROW_LIMIT = 256 * MiB      # key escrow files grow with the units of a line

#: Deepest nesting of tables/arrays (TOML) or objects/arrays (JSON) any atfab document needs.
MAX_DEPTH = 64


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n} bytes"


def resolved(path: str | Path) -> Path:
    """``path`` made absolute with symlinks resolved where they resolve; a symlink loop stays as
    written (absolute), so the reader that opens it reports the loop as one line instead of
    ``Path.resolve`` raising ``RuntimeError``."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def not_a_regular_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as an input file ("no such file", "a FIFO, not a regular
    file", "symbolic link loop"...), or None when it is a regular file. Never opens it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return _os_reason(exc)
    except ValueError as exc:
        return str(exc)
    return None if stat.S_ISREG(st.st_mode) else f"{_kind(st.st_mode)}, not a regular file"


def check_regular_file(path: str | Path, what: str, *, field: str = "file") -> os.stat_result:
    """The ``stat`` of ``path`` when it is a regular file (symlinks followed), else :class:`InputError`.

    Never opens the file, so it cannot block; use it before handing a path to another library
    (SQLite, esptool) that opens it itself.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read {what}: {_os_reason(exc)}", file=str(path), field=field) from None
    except ValueError as exc:            # a NUL byte in the path
        raise InputError(f"cannot read {what}: {exc}", file=str(path), field=field) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"cannot read {what}: {_kind(st.st_mode)}, not a regular file", file=str(path), field=field)
    return st


def read_bytes(path: str | Path, what: str, *, limit: int, field: str = "file") -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes.

    The file is opened non-blocking (a FIFO or a terminal never stalls the open), checked to be a
    regular file, and read at most ``limit + 1`` bytes (a file that grows or lies about its size,
    like those in ``/proc``, is caught too).
    """
    src = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(f"cannot read {what}: {_os_reason(exc)}", file=src, field=field) from None
    except ValueError as exc:
        raise InputError(f"cannot read {what}: {exc}", file=src, field=field) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"cannot read {what}: {_kind(st.st_mode)}, not a regular file", file=src, field=field)
        if st.st_size > limit:
            raise InputError(f"{what} is too large: {st.st_size} bytes (at most {_size(limit)})", file=src, field=field)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(limit + 1 - got, 4 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise InputError(f"{what} is too large: more than {_size(limit)}", file=src, field=field)
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read {what}: {_os_reason(exc)}", file=src, field=field) from None
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str, *, limit: int, field: str = "file", errors: str = "strict") -> str:
    """:func:`read_bytes` decoded as UTF-8 (a BOM-less decode error is an :class:`InputError`)."""
    data = read_bytes(path, what, limit=limit, field=field)
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {what}: not UTF-8 text ({exc})", file=str(path), field=field) from None


def depth(value: Any) -> int:
    """Nesting depth of parsed TOML/JSON (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        d += 1
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        stack.extend((c, d) for c in children)
    return deepest


def _too_deep(file: str | None, field: str) -> InputError:
    return InputError(f"nested too deep (at most {MAX_DEPTH} levels)", file=file, field=field)


def parse_toml(text: str, *, file: str | Path | None = None, field: str = "toml") -> dict[str, Any]:
    """``tomllib.loads`` with bad TOML, runaway nesting and ``RecursionError`` as :class:`InputError`."""
    src = str(file) if file is not None else None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=src, field=field, line=toml_error_line(exc)) from None
    except RecursionError:
        raise _too_deep(src, field) from None
    if depth(data) > MAX_DEPTH:
        raise _too_deep(src, field)
    return data


def toml_error_line(exc: tomllib.TOMLDecodeError) -> int | None:
    """The line a TOML error is on (tomllib says "(at line N, column M)")."""
    text = str(exc)
    marker = "at line "
    if marker in text:
        digits = text.split(marker, 1)[1].split(",", 1)[0].split(")", 1)[0]
        if digits.isdigit():
            return int(digits)
    return None


def load_toml(path: str | Path, what: str, *, limit: int = TOML_LIMIT, field: str = "toml") -> dict[str, Any]:
    """Read and parse the TOML file ``path`` within the caps."""
    return parse_toml(read_text(path, what, limit=limit), file=path, field=field)


def parse_json(text: str | bytes, *, file: str | Path | None = None, field: str = "json") -> Any:
    """``json.loads`` with bad JSON, runaway nesting and ``RecursionError`` as :class:`InputError`."""
    src = str(file) if file is not None else None
    try:
        data = json.loads(text)
    except RecursionError:
        raise _too_deep(src, field) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=src, field=field) from None
    if depth(data) > MAX_DEPTH:
        raise _too_deep(src, field)
    return data


def load_json(path: str | Path, what: str, *, limit: int = JSON_LIMIT, field: str = "json") -> Any:
    """Read and parse the JSON file ``path`` within the caps."""
    return parse_json(read_bytes(path, what, limit=limit), file=path, field=field)


__all__ = [
    "TOML_LIMIT", "CSV_LIMIT", "PEM_LIMIT", "TEXT_LIMIT", "JSON_LIMIT", "IMAGE_LIMIT", "ESCROW_LIMIT", "MAX_DEPTH",
    "resolved", "not_a_regular_file", "check_regular_file", "read_bytes", "read_text", "depth", "parse_toml", "toml_error_line", "load_toml",
    "parse_json", "load_json",
]
