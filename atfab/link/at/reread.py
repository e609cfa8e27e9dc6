"""The one re-read rule: link noise is never a unit verdict.

A read that does not hold (a read-back that differs from what was written, a value that fails its
check) is read once more before anything is concluded about the unit:

- the same answer twice is the unit's: it is returned, and the caller judges it (FAIL, rollback);
- a second answer that holds, where the caller can take one (``holds``: the bytes written read back
  once, so they are stored), is taken and the first noted as link noise;
- any other second answer raises :class:`ReadDisagrees` (link noise: ERROR, nothing concluded).

Verification (:class:`atfab.verify.reread.RereadVerifier`), rotation (G1/G2 partitions and G3
AT+SYSMFG slots), :class:`atfab.link.at.partition_head.PartitionHead` and ``customize --port`` use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .errors import AtResponseError

T = TypeVar("T")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class ReadDisagrees(AtResponseError):
    """A read did not hold and reading it again gave something else: the link, not the unit (exit 3)."""

    def __init__(self, name: str, first: Any, second: Any) -> None:
        super().__init__(name, f"the read-back disagrees with a re-read ({_short(first)} then {_short(second)}): "
                               "link noise, not a unit verdict")
        self.name, self.first, self.second = name, first, second


def reread(name: str, first: T, read: Callable[[], T], *, holds: Callable[[T], bool] | None = None,
           same: Callable[[T], Any] = lambda v: v, note: Callable[[str], None] | None = None) -> T:
    """``first`` (read by ``read``) did not hold: read once more and apply the rule (module doc).
    ``same`` maps an answer to what is compared (default: the answer itself); ``note`` records a
    first answer the second one overruled."""
    second = read()
    if same(second) == same(first):
        return first
    if holds is not None and holds(second):
        if note is not None:
            note(f"{name}: the first read did not hold, a re-read did (link noise)")
        return second
    raise ReadDisagrees(name, first, second)


__all__ = ["ReadDisagrees", "reread"]
