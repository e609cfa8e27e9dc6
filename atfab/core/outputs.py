"""Checking an output path before any work is done: a run that would fail to write its report,
JUnit file or image at the end must fail at the start, before any unit is touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError

#: Kernel and device file systems: nothing atfab writes belongs there.
FORBIDDEN_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))


def _problem(path: Path, kind: str) -> str | None:
    real = _real(path)
    for root in FORBIDDEN_ROOTS:
        if real == root or root in real.parents:
            return f"is under {root} (not a place for files)"
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        return exc.strerror or str(exc)
    except ValueError as exc:             # a NUL byte
        return str(exc)
    if st is not None:
        if kind == "dir" and not stat.S_ISDIR(st.st_mode):
            return "exists and is not a directory"
        if kind == "file" and stat.S_ISDIR(st.st_mode):
            return "is a directory"
        if kind == "file" and not stat.S_ISREG(st.st_mode):
            return "exists and is not a regular file"
        target = path if kind == "dir" else path.parent
        if not os.access(target, os.W_OK | os.X_OK):
            return f"{target} is not writable"
        return None
    # the nearest existing ancestor must be a writable directory (the rest is created)
    ancestor = Path(os.path.abspath(path)).parent
    while True:
        try:
            ast = os.stat(ancestor)
        except (FileNotFoundError, NotADirectoryError):
            if ancestor.parent == ancestor:
                return "has no existing parent folder"
            ancestor = ancestor.parent
            continue
        except OSError as exc:
            return f"{ancestor}: {exc.strerror or exc}"
        if not stat.S_ISDIR(ast.st_mode):
            return f"{ancestor} is a file, not a folder"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"{ancestor} is not writable"
        return None


def check_output(path: str | Path, what: str, *, kind: str = "file", field: str | None = None) -> Path:
    """``path`` when atfab can write the ``what`` there (``kind`` "file" or "dir"), else one-line
    :class:`InputError` naming the path: a parent that is a file, a folder where a file should be,
    a non-writable folder, a place under /proc, /sys or /dev."""
    assert kind in ("file", "dir"), kind
    p = Path(path)
    why = _problem(p, kind)
    if why:
        raise InputError(f"cannot write {what}: {why}", file=str(p), field=field)
    return p


__all__ = ["FORBIDDEN_ROOTS", "check_output"]
