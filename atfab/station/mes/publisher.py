"""Publish every sealed unit report to the MES targets through an on-disk spool.

The runner hands :meth:`ReportPublisher.publish_report` each report right after sealing it and
*before* the ledger ends the attempt; the publisher reads the sealed report, wraps it in an
``atfab.mes-message/1`` envelope and writes it into every target's spool — a local file write,
so the unit's runner never waits on the network. A station killed between sealing and spooling
leaves the attempt open in the ledger, and whoever closes it (the station's next start, another
station meeting the unit, ``atfab ledger close-stale``) finds the sealed report and spools it
then (:func:`atfab.station.recorder.close_stale_attempt`): no sealed report goes unpublished.
Delivery is at least once; the message ``id`` is the same whoever spools the report, so the MES
drops a repeat. One background thread per station drains the
spools, each oldest first, and retries a target that is down with a growing pause (up to
``max_backoff_s``). Messages left when the station stops stay in the spool and go out on the
next start, before new ones.

Envelope::

    {"schema": "atfab.mes-message/1", "id": "<report's station>:<attempt id>", "station": "…",
     "outcome": "PASS", "report_file": "….json", "report": {…the sealed unit report…}}

The report never holds private keys (the report writer refuses them); the publisher checks the
envelope again and refuses to spool one that holds private-key armor.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.keyguard import find_private_key
from .senders import DeliveryFailed, Rejected, Sender, sender_for
from .spool import Spool
from .targets import Target

SCHEMA = "atfab.mes-message/1"
SenderFactory = Callable[[Target], Sender]


def spool_root(reports_dir: str | Path, station_id: str) -> Path:
    """Where a station's spools live: ``<reports dir>/spool/<station id>/``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in station_id) or "station"
    return Path(reports_dir) / "spool" / safe


@dataclass
class TargetState:
    """One target's spool and delivery state (read it for status; the drain thread updates it)."""

    target: Target
    spool: Spool
    delivered: int = 0
    rejected: int = 0
    failures: int = 0                   # consecutive failed deliveries
    last_error: str | None = None
    retry_at: float = 0.0               # monotonic time of the next try

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target.shown, "spool": str(self.spool.dir), "delivered": self.delivered,
                "pending": len(self.spool), "rejected": self.rejected, "last_error": self.last_error}


class ReportPublisher:
    """Spools sealed reports for ``targets`` and delivers them from one background thread.

    :meth:`publish_report` spools one report (between :meth:`start` and :meth:`stop`, or
    before: the thread delivers what it finds when it starts).
    """

    def __init__(self, targets: tuple[Target, ...], root: str | Path, *, station_id: str,
                 timeout: float = 10.0, min_backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 sender_factory: SenderFactory | None = None) -> None:
        self.station_id = station_id
        self.root = Path(root)
        self.timeout = timeout
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.states = [TargetState(t, Spool(self.root / t.key, label=t.shown)) for t in targets]
        self._factory = sender_factory or (lambda t: sender_for(t, client_id=f"atfab-{station_id}-{t.key}"[:64],
                                                                 timeout=timeout))
        self._senders: dict[str, Sender] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []          # reports that could not be spooled
        self.last_status: dict[str, Any] | None = None   # the status :meth:`stop` returned

    # -- producer side (port threads) -----------------------------------------------------------
    def publish_report(self, path: Path, *, attempt_id: int | None = None, outcome: str | None = None) -> bool:
        """Spool the sealed report at ``path`` for every target; False (and :attr:`errors`) if not.

        The message id is ``<station id of the report>:<attempt id>`` (this publisher's station
        when the report names none), whoever spools it."""
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            station = report_station(report) or self.station_id
            if attempt_id is None and isinstance(report.get("attempt_id"), int):
                attempt_id = report["attempt_id"]
            message = {"schema": SCHEMA, "id": f"{station}:{attempt_id if attempt_id is not None else path.stem}",
                       "station": station, "outcome": outcome or report.get("outcome"),
                       "report_file": path.name, "report": report}
            where = find_private_key(message)
            if where is not None:
                raise ValueError(f"private key text at {where}")
            body = json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
            for state in self.states:
                state.spool.put(body)
        except (OSError, ValueError) as exc:
            self.errors.append(f"{path}: not published: {exc}")
            return False
        with self._wake:
            self._wake.notify_all()
        return True

    # -- the drain thread -----------------------------------------------------------------------
    def start(self) -> "ReportPublisher":
        """Start the drain thread (messages already in the spools go first)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"atfab-publish-{self.station_id}", daemon=True)
            self._thread.start()
        return self

    def pending(self) -> int:
        """Messages not yet delivered, over all targets."""
        return sum(len(s.spool) for s in self.states)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every spool is empty (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._wake:
                self._wake.notify_all()
                self._wake.wait(min(left, 0.05))
        return True

    def stop(self, *, drain_s: float = 0.0) -> dict[str, Any]:
        """Give the spools up to ``drain_s`` seconds to empty, stop the thread; the status."""
        if drain_s > 0:
            self.wait_drained(drain_s)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout + 5.0)
            self._thread = None
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
        self.last_status = self.status()
        return self.last_status

    def status(self) -> dict[str, Any]:
        """Per target: delivered, pending, rejected, the last error; plus spooling errors."""
        return {"targets": [s.to_json() for s in self.states], "pending": self.pending(), "errors": list(self.errors)}

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
            progressed = False
            now = time.monotonic()
            for state in self.states:
                if state.retry_at <= now and self._deliver_one(state):
                    progressed = True
            if progressed:
                continue
            with self._wake:
                if self._stopping:
                    return
                waits = [s.retry_at - time.monotonic() for s in self.states if len(s.spool)]
                self._wake.wait(max(0.01, min(waits)) if waits else 1.0)

    def _deliver_one(self, state: TargetState) -> bool:
        """Deliver the oldest message of one target; True when one left the spool."""
        pending = state.spool.pending()
        if not pending:
            return False
        path = pending[0]
        try:
            body = path.read_bytes()
            message_id = str(json.loads(body).get("id", path.stem))
        except FileNotFoundError:           # another process draining this spool took it
            return True
        except (OSError, ValueError) as exc:
            state.spool.reject(path, f"unreadable message: {exc}")
            state.rejected += 1
            return True
        sender = self._senders.get(state.target.key)
        if sender is None:
            sender = self._senders[state.target.key] = self._factory(state.target)
        try:
            sender.send(body, message_id)
        except Rejected as exc:
            with contextlib.suppress(FileNotFoundError):
                state.spool.reject(path, str(exc))
            state.rejected, state.last_error = state.rejected + 1, str(exc)
            return True
        except DeliveryFailed as exc:
            state.failures += 1
            state.last_error = str(exc)
            pause = min(self.max_backoff_s, self.min_backoff_s * 2 ** min(state.failures - 1, 16))
            state.retry_at = time.monotonic() + pause
            return False
        state.spool.delivered(path)
        state.delivered += 1
        state.failures, state.retry_at, state.last_error = 0, 0.0, None
        return True


def report_station(report: Any) -> str | None:
    """The station id a unit report names (``station.id``), if any."""
    station = report.get("station") if isinstance(report, dict) else None
    sid = station.get("id") if isinstance(station, dict) else None
    return sid if isinstance(sid, str) and sid else None


class StationSpools:
    """Reports of any station spooled where that station keeps its own:
    ``<the report's folder>/spool/<its station id>/`` (``atfab ledger close-stale``: a message
    not delivered before the command ends goes out with the station's next start). One
    :class:`ReportPublisher` per such spool, started on first use."""

    def __init__(self, targets: tuple[Target, ...], **options: Any) -> None:
        self.targets = targets
        self.options = options
        self.publishers: dict[Path, ReportPublisher] = {}
        self.errors: list[str] = []

    def publish_report(self, path: Path, *, attempt_id: int | None = None, outcome: str | None = None) -> bool:
        """Spool the sealed report at ``path`` in its station's spool (see the class)."""
        try:
            station = report_station(json.loads(path.read_text(encoding="utf-8"))) or "station"
        except (OSError, ValueError) as exc:
            self.errors.append(f"{path}: not published: {exc}")
            return False
        root = spool_root(path.parent, station)
        publisher = self.publishers.get(root)
        if publisher is None:
            publisher = self.publishers[root] = ReportPublisher(self.targets, root, station_id=station,
                                                                **self.options).start()
        return publisher.publish_report(path, attempt_id=attempt_id, outcome=outcome)

    def stop(self, *, drain_s: float = 0.0) -> dict[str, Any]:
        """Give every spool up to ``drain_s`` seconds (together) to empty, stop; the status of all."""
        deadline = time.monotonic() + drain_s
        for publisher in self.publishers.values():
            publisher.wait_drained(max(0.0, deadline - time.monotonic()))
        states = [publisher.stop() for publisher in self.publishers.values()]
        return {"targets": [t for s in states for t in s["targets"]], "pending": sum(s["pending"] for s in states),
                "errors": self.errors + [e for s in states for e in s["errors"]]}


__all__ = ["ReportPublisher", "StationSpools", "TargetState", "SCHEMA", "spool_root", "report_station"]
