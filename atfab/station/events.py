"""The station's event stream: every step of every unit on every port becomes an :class:`Event`.

The per-unit runner (:mod:`atfab.station.runner`) emits events; subscribers turn them into what people
and files need: the unit report (:class:`atfab.station.recorder.ReportRecorder`), the live console status
(:class:`atfab.station.console.StatusRenderer`), a test's or a bench's own bookkeeping. One stream, so the
console and the report can never tell different stories.

Event statuses:

* step events: ``start``, ``progress`` (``progress`` 0.0..1.0), then one of ``ok``, ``fail``,
  ``error``, ``aborted``, ``skipped``;
* ``step == "unit"``: ``start`` when an attempt begins, then the attempt's outcome ``PASS``,
  ``FAIL``, ``ERROR`` or ``ABORTED``;
* ``step == "wait"`` (loop mode): ``start`` while the port waits for the next unit, ``ok`` when
  one is there;
* ``step == "report"``: the attempt is over, its report sealed and its ledger row ended; the
  status is the attempt's final outcome (ERROR when the report could not be sealed), ``data``
  holds ``report`` (the path, or None), ``serial`` and ``mac``;
* ``step == "pause"``: the operator paused the slot (``start``: it starts no new unit) or
  resumed it (``ok``);
* station-wide events have ``port == ""`` (:data:`STATION`): ``step == "run"`` with status
  ``finishing`` (stop after the current units) or ``aborting`` (stop now), ``step == "page"``
  with status ``ok`` and the live station page's URL as ``detail``.

``data`` carries structured facts for subscribers (the chip, the serial, certificate
fingerprints, image hashes, measurements). It never carries key material: :meth:`EventBus.emit`
refuses (raises :class:`SecretInEvent`) any non-progress event whose text holds private-key armor (:mod:`atfab.core.keyguard`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..core.errors import OUTCOMES, DeviceError
from ..core.keyguard import find_private_key
from ..core.measurement import Measurement

#: The steps of one unit, in the order the runner takes them (step events carry these names).
STEPS = ("connect", "chip", "identity", "certificate", "build", "flash", "boot", "configure", "verify")

#: The ``port`` of station-wide events (not about one slot).
STATION = ""
#: How a step ends (the ``status`` of its last event, the ``outcome`` of its report entry).
STEP_OUTCOMES = ("ok", "fail", "error", "skipped", "aborted")


class CertificateFacts(TypedDict, total=False):
    """One issued certificate as a step reports it (public facts only)."""

    slot: str
    serial: str
    issuer: str
    subject: str
    fingerprint: str
    key_fingerprint: str | None
    not_after: str | None


class FlashFacts(TypedDict):
    """What the flash step wrote."""

    written: list[str]
    skipped: list[str]
    bytes_written: int
    baud: int


class StepData(TypedDict, total=False):
    """The facts an event carries from the runner to its subscribers (the recorder puts them in
    the unit report). Every key is optional; each step sends the ones it learned:

    ``unit`` start: ``firmware`` (version/source), ``retry_of``; ``chip``: ``chip``, ``mac``
    (``measurements`` when the MAC prefix is checked); ``identity``: ``serial``, ``mac``,
    ``attempt_id``, ``attempt``, ``retry_of``; ``certificate``: ``certificates``; ``build``:
    ``images`` (name → SHA-256); ``flash``: ``flash``; ``verify``: ``measurements``; the unit's
    outcome: ``transcript`` (and ``attempt_id``/``attempt`` when no identity step ran); ``report``:
    ``report`` (the sealed report's path), ``serial``, ``mac``.
    """

    firmware: dict[str, Any]
    retry_of: int | None
    chip: str
    mac: str | None
    serial: str
    attempt_id: int | None
    attempt: int
    images: dict[str, str]
    certificates: list[CertificateFacts]
    flash: FlashFacts
    measurements: list[Measurement]
    transcript: list[dict[str, Any]]
    report: str | None


class SecretInEvent(DeviceError):
    """An event about to be emitted held private key text (a bug; nothing was delivered)."""


@dataclass(frozen=True)
class Event:
    """One thing that happened on one port. ``time`` is wall-clock seconds (``time.time()``)."""

    port: str
    unit: str | None
    step: str
    status: str
    progress: float | None = None
    detail: str | None = None
    time: float = field(default_factory=time.time)
    data: StepData | None = None
    attempt_id: int | None = None

    @property
    def ended(self) -> bool:
        """True for the end of a step (or the outcome of an attempt)."""
        return self.status in STEP_OUTCOMES or self.status in OUTCOMES


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers, synchronously, in the emitting thread.

    Subscribers must be quick and thread-safe (ports emit from their own threads). A subscriber
    that raises does not stop delivery to the others; its exception is kept in :attr:`errors`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        self.errors: list[BaseException] = []

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        """Add a subscriber; returns it (for :meth:`unsubscribe`)."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a subscriber (no error if it is not subscribed)."""
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber (after the private-key guard)."""
        if event.status != "progress" and find_private_key([event.detail, event.data]):
            raise SecretInEvent(f"refusing to emit a {event.step}/{event.status} event holding private key text")
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # noqa: BLE001 - one broken subscriber must not stop a station
                with self._lock:
                    self.errors.append(exc)


__all__ = ["STEPS", "Event", "StepData", "STATION", "CertificateFacts", "FlashFacts", "EventBus", "Subscriber", "SecretInEvent", "STEP_OUTCOMES"]
