"""The host-side journal of a G1/G2 ``customize --port`` block rewrite.

A G1/G2 factory_param partition is one 4 KB sector: its block is rewritten by erasing the sector and
writing the new block, so a power cut between the two leaves no block (the firmware falls back to its
defaults). Before the erase the old block (public: pins, power, country, module name - no secret) and
the planned one are kept in ``<folder>/factory_param-<mac>.json`` (written atomically); the entry is
removed once the module holds a whole block again. The next ``customize --port`` on that unit (matched
by its base MAC) finds the entry and :func:`atfab.customize.live_legacy.recover_block` settles it.

The folder is the CLI's ``--journal`` (default :func:`default_folder`: ``$XDG_STATE_HOME/atfab/customize``,
else ``~/.local/state/atfab/customize``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from ..core.fsutil import atomic_write

PARTITION = "factory_param"


def default_folder() -> Path:
    """Where ``customize --port`` keeps its journal unless told otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "atfab" / "customize"


@dataclass(frozen=True)
class BlockEntry:
    """A block rewrite in progress on the unit ``mac``: what its partition held (``old``) and the block
    being written (``new``), ``size`` bytes of partition erased for it."""

    mac: str
    size: int
    old: bytes
    new: bytes


class BlockJournal:
    """The journal entries of one folder, one file per unit."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, mac: str) -> Path:
        return self.folder / f"{PARTITION}-{mac.replace(':', '').lower()}.json"

    def record(self, entry: BlockEntry) -> Path:
        """Keep ``entry`` (before the erase): atomic, so the file is whole or absent."""
        doc = {"partition": PARTITION, "mac": entry.mac, "size": entry.size,
               "old": base64.b64encode(entry.old).decode(), "old_sha256": hashlib.sha256(entry.old).hexdigest(),
               "new": base64.b64encode(entry.new).decode(), "new_sha256": hashlib.sha256(entry.new).hexdigest()}
        return atomic_write(self.path(entry.mac), json.dumps(doc, indent=1) + "\n", mode=0o644)

    def load(self, mac: str) -> BlockEntry | None:
        """The unit's entry, None when there is none; InputError naming the file when it is damaged."""
        path = self.path(mac)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable journal entry ({exc})", file=str(path)) from None
        try:
            old, new = base64.b64decode(doc["old"], validate=True), base64.b64decode(doc["new"], validate=True)
            size = int(doc["size"])
            ok = (doc.get("mac") == mac and hashlib.sha256(old).hexdigest() == doc["old_sha256"]
                  and hashlib.sha256(new).hexdigest() == doc["new_sha256"] and 0 < len(new) <= size)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"journal entry lacks or garbles {exc}", file=str(path)) from None
        if not ok:
            raise InputError("journal entry does not hold a whole old and new block for this MAC", file=str(path))
        return BlockEntry(mac, size, old, new)

    def close(self, mac: str) -> None:
        """The unit holds a whole block again: its entry goes."""
        self.path(mac).unlink(missing_ok=True)


__all__ = ["BlockEntry", "BlockJournal", "default_folder", "PARTITION"]
