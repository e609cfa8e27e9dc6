"""A folder of pending messages: written atomically, delivered oldest first, kept across restarts.

One spool per (station, target): ``<report dir>/spool/<station>/<target key>/``. Each message is
one file ``<time_ns>-<pid>-<seq>.msg`` (JSON), written through a temp file, fsynced and renamed, so a
message is either complete in the folder or absent. A message is removed only once its target
acknowledged it; one the target refused for good (an HTTP 4xx) moves to ``rejected/`` with the
reason beside it, so it neither blocks the queue nor gets lost.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

from ...core.fsutil import atomic_write

REJECTED = "rejected"
SUFFIX = ".msg"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Spool:
    """The pending messages of one target, in a folder (created if missing)."""

    def __init__(self, directory: str | Path, *, label: str | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        for orphan in self.dir.glob(".*.tmp"):       # a write that died before its rename
            with contextlib.suppress(OSError):
                orphan.unlink()
        if label is not None:
            info = self.dir / "target.txt"
            if not info.is_file() or info.read_text(encoding="utf-8").strip() != label:
                atomic_write(info, label + "\n")

    def put(self, message: bytes) -> Path:
        """Add a message (durable when this returns); its path."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{SUFFIX}"
        path = atomic_write(self.dir / name, message)
        _fsync_dir(self.dir)
        return path

    def pending(self) -> list[Path]:
        """The messages not yet delivered, oldest first."""
        return sorted(p for p in self.dir.glob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.pending())

    def delivered(self, path: Path) -> None:
        """Remove a message its target acknowledged."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _fsync_dir(self.dir)

    def reject(self, path: Path, reason: str) -> Path:
        """Move a message the target refused for good to ``rejected/`` (reason in ``<name>.reason``)."""
        folder = self.dir / REJECTED
        folder.mkdir(exist_ok=True)
        atomic_write(folder / (path.name + ".reason"), reason + "\n")
        dest = folder / path.name
        os.replace(path, dest)
        _fsync_dir(self.dir)
        return dest

    def rejected(self) -> list[Path]:
        """Messages moved aside by :meth:`reject`, oldest first."""
        folder = self.dir / REJECTED
        return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


__all__ = ["Spool", "REJECTED"]
