"""Measurements of a customised live module under the one re-read rule
(:func:`atfab.link.at.reread.reread`): a read that fails its check is read once more before it is
a failing measurement, so one damaged read is never a FAIL - the same answer twice is the unit's,
a second answer that holds is taken (noted in the transcript), two different answers raise
:class:`~atfab.link.at.reread.ReadDisagrees` (ERROR, exit 3)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.measurement import Measurement, evaluate
from ..link.at.errors import AtBusy, AtError, AtResponseError
from ..link.at.reread import reread


@dataclass(frozen=True)
class ReadRefused:
    """The module answered ERROR to a read (the same refusal twice is the unit's)."""

    message: str


def refusable(read: Callable[[], Any]) -> Callable[[], Any]:
    """``read`` with an ERROR reply as its answer (:class:`ReadRefused`); busy and garbled replies propagate."""

    def run() -> Any:
        try:
            return read()
        except (AtBusy, AtResponseError):
            raise
        except AtError as exc:
            return ReadRefused(str(exc))
    return run


def measure(client: Any, name: str, expected: Any, read: Callable[[], Any], rule: str = "equal", *,
            detail: str | None = None) -> Measurement:
    """``read()`` compared with ``expected``; a failing read is read again first (module doc)."""
    first = read()
    m = evaluate(name, expected, first, rule, detail=detail)
    if m.passed:
        return m
    got = reread(name, first, read, holds=lambda v: evaluate(name, expected, v, rule).passed, note=client.note)
    if isinstance(got, ReadRefused):
        return evaluate(name, expected, None, rule, detail=f"read failed: {got.message}")
    return evaluate(name, expected, got, rule, detail=detail)


def measure_bytes(client: Any, name: str, image: bytes, read: Callable[[], bytes]) -> Measurement:
    """The SHA-256 of what ``read()`` returns equals that of ``image`` (read again before a FAIL)."""
    return measure(client, name, hashlib.sha256(image).hexdigest(), lambda: hashlib.sha256(read()).hexdigest())


__all__ = ["measure", "measure_bytes", "refusable", "ReadRefused"]
