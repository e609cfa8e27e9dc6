"""Atomic file output: a file is either its old self or complete, never half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    ``mode`` (e.g. ``0o600``) is applied to the temp file before any byte is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Build a folder's new files in a staging folder; move them into ``target`` only on success.

    Files already in ``target`` that the staged run does not produce are left alone; on an
    exception nothing in ``target`` changes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.stage."))
    try:
        yield stage
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(stage.rglob("*")):
            if item.is_file():
                dest = target / item.relative_to(stage)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
