"""Unit reports from the event stream, and the closing of attempts a killed station left open.

:class:`ReportRecorder` subscribes to the :class:`~atfab.station.events.EventBus` for one attempt on one
port and builds the report with :class:`~atfab.station.report.ReportBuilder` from what the events say;
the attempt's outcome event seals it. Nothing else writes to the report.

:func:`close_stale_attempt` ends an attempt that is still open in the ledger although no station
is running it (the process was killed): if its report was already sealed (the kill came between
sealing and the ledger update) that outcome stands; otherwise an ``ABORTED`` report is written
for it now and the attempt is ended ``ABORTED``. Either report is handed to ``publish`` (the MES
spool) *before* the ledger row is ended, the same order the runner keeps: an attempt still open
in the ledger is the mark of a report that may not have reached the spool yet.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from collections.abc import Callable
from pathlib import Path

from ..core.errors import OUTCOMES
from .events import STEP_OUTCOMES, Event, StepData
from .ledger import Attempt, Ledger, LedgerError, utc_now
from .report import ReportBuilder, UnitReport, read_report

#: Events that are bookkeeping, not steps of the unit's state machine.
NOT_STEPS = ("unit", "attempt", "wait", "report", "pause", "run", "page")

#: Hands a sealed report to the MES spool: ``publish(path, attempt_id=..., outcome=...)``
#: (:meth:`atfab.station.mes.publisher.ReportPublisher.publish_report`).
Publish = Callable[..., object]


def iso(t: float) -> str:
    """Wall-clock seconds as the ISO 8601 UTC text of reports and the ledger."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class ReportRecorder:
    """Builds the report of one attempt on ``port`` from events; seals it on the outcome event.

    ``path`` is the sealed report (None until then); ``error`` what went wrong while sealing
    (e.g. :class:`~atfab.station.report.ReportLeakError`), in which case nothing was written.
    """

    def __init__(self, out_dir: str | Path, *, port: str, recipe_name: str, recipe_hash: str,
                 recipe_path: str | Path | None, station_id: str, operator: str | None,
                 transcript: bool = True, usb_serial: str | None = None, usb_location: str | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.port = port
        self._new_builder = functools.partial(
            ReportBuilder, self.out_dir, recipe_name=recipe_name, recipe_hash=recipe_hash, recipe_path=recipe_path,
            station_id=station_id, port=port, operator=operator, usb_serial=usb_serial, usb_location=usb_location)
        self._transcript = transcript
        self._open: dict[str, float] = {}
        self.builder: ReportBuilder | None = None
        self.path: Path | None = None
        self.error: BaseException | None = None

    @property
    def report(self) -> UnitReport | None:
        return self.builder.report if self.builder is not None else None

    def __call__(self, ev: Event) -> None:
        if ev.port != self.port or self.path is not None:
            return
        if ev.step == "unit" and ev.status == "start":
            self.builder = self._new_builder(started=iso(ev.time))
            self._open.clear()
        if self.builder is None:
            return
        self._facts(ev.data or {})
        if ev.step == "unit" and ev.status in OUTCOMES:
            self._seal(ev)
        elif ev.step not in NOT_STEPS:
            if ev.status == "start":
                self._open[ev.step] = ev.time
            elif ev.status in STEP_OUTCOMES:
                started = self._open.pop(ev.step, ev.time)
                self.builder.add_step(ev.step, iso(started), iso(ev.time), ev.status, ev.detail)

    def _facts(self, data: StepData) -> None:
        b = self.builder
        assert b is not None
        r = b.report
        for key in ("attempt_id", "attempt", "retry_of"):
            if key in data:
                setattr(r, key, data[key])
        if any(k in data for k in ("chip", "mac", "serial")):
            b.set_unit(chip=data.get("chip"), mac=data.get("mac"), serial=data.get("serial"))
        if "firmware" in data:
            b.set_firmware(**data["firmware"])
        for name, digest in (data.get("images") or {}).items():
            b.add_image(name, digest)
        for cert in data.get("certificates") or []:
            b.add_certificate(cert["slot"], serial=cert["serial"], issuer=cert["issuer"],
                              fingerprint=cert["fingerprint"], key_fingerprint=cert.get("key_fingerprint"),
                              not_after=cert.get("not_after"), subject=cert.get("subject"))
        if "measurements" in data:
            b.add_measurements(data["measurements"])
        if "transcript" in data and self._transcript:
            b.set_transcript(data["transcript"])

    def _seal(self, ev: Event) -> None:
        assert self.builder is not None
        for step, started in list(self._open.items()):   # a step that never reported its end
            self.builder.add_step(step, iso(started), iso(ev.time), "aborted" if ev.status == "ABORTED" else "error",
                                  "did not finish")
        self._open.clear()
        try:
            self.path = self.builder.seal(ev.status, error=ev.detail, ended=iso(ev.time))
        except Exception as exc:  # noqa: BLE001 - the runner turns this into the attempt's error
            self.error = exc


def sealed_report(out_dir: str | Path, attempt_id: int) -> tuple[Path, UnitReport] | None:
    """The report already written for ``attempt_id`` in ``out_dir`` (recursively), if any."""

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    for path in out_dir.rglob(f"*_a{attempt_id}.json"):
        if path.name.startswith("."):
            continue
        try:
            rep = read_report(path)
        except Exception:  # noqa: BLE001 - a foreign or broken file is not this attempt's report
            continue
        if rep.attempt_id == attempt_id and rep.outcome in OUTCOMES:
            return path, rep
    return None


def close_stale_attempt(ledger: Ledger, attempt: Attempt, out_dir: str | Path | None, *, recipe_name: str,
                        recipe_hash: str, recipe_path: str | Path | None, detected_by: str,
                        publish: Publish | None = None) -> Attempt:
    """End an attempt a killed station left open (see the module docstring); returns it ended.

    The report goes to the folder the attempt was begun with (``attempt.report_dir``), else to
    ``out_dir``; ``publish`` gets it before the ledger row is ended.
    """
    if attempt.report_dir:
        out_dir = attempt.report_dir
    if out_dir is None:
        raise LedgerError(f"attempt {attempt.id}: no report folder recorded for it; give one (--reports)")
    found = sealed_report(out_dir, attempt.id)
    if found is not None:
        path, rep = found
        if publish is not None:
            publish(path, attempt_id=attempt.id, outcome=rep.outcome)
        return ledger.end_attempt(attempt.id, rep.outcome or "ABORTED", report_path=path, ended=rep.ended,
                                  detail=rep.error)
    detail = (f"interrupted: the station stopped (killed) before attempt {attempt.id} ended; "
              f"found open and closed by {detected_by}")
    builder = ReportBuilder(
        out_dir, recipe_name=attempt.recipe,
        recipe_hash=recipe_hash if attempt.recipe == recipe_name else "unknown",
        recipe_path=recipe_path if attempt.recipe == recipe_name else None,
        station_id=attempt.station, port=attempt.port, operator=attempt.operator, attempt_id=attempt.id,
        attempt=attempt.attempt, retry_of=attempt.retry_of, started=attempt.started,
    )
    if attempt.mac is not None:
        builder.set_unit(mac=attempt.mac, serial=attempt.serial)
        for cert in ledger.certificates_for(attempt.mac):
            if cert.attempt_id == attempt.id:
                builder.add_certificate(cert.slot, serial=cert.cert_serial, issuer=cert.issuer,
                                        fingerprint=cert.fingerprint, key_fingerprint=cert.key_fingerprint,
                                        not_after=cert.not_after)
    ended = utc_now()
    path = builder.seal("ABORTED", error=detail, ended=ended)
    if publish is not None:
        publish(path, attempt_id=attempt.id, outcome="ABORTED")
    return ledger.end_attempt(attempt.id, "ABORTED", report_path=path, detail=detail, ended=ended)


def close_stale(ledger: Ledger, *, reports_dir: str | Path | None, detected_by: str, station: str | None = None,
                exclude_owner: str | None = None, recipe_name: str = "", recipe_hash: str = "unknown",
                recipe_path: str | Path | None = None, publish: Publish | None = None) -> list[Attempt]:
    """Close every stale attempt (lease passed, or its process on this host is gone) of
    ``station`` (or all), each with its report (:func:`close_stale_attempt`; the recipe named
    describes attempts of that recipe). Live attempts — another station still renews their
    lease — are left alone. Each report is handed to ``publish`` (the MES spool) before its
    attempt ends. Returns the closed attempts."""
    closed = []
    for attempt in ledger.stale_attempts(station=station, exclude_owner=exclude_owner):
        try:
            closed.append(close_stale_attempt(ledger, attempt, reports_dir, recipe_name=recipe_name,
                                              recipe_hash=recipe_hash, recipe_path=recipe_path,
                                              detected_by=detected_by, publish=publish))
        except LedgerError as exc:
            if "already ended" not in str(exc):    # another station closed it first
                raise
    return closed


__all__ = ["ReportRecorder", "close_stale_attempt", "close_stale", "sealed_report", "iso", "NOT_STEPS"]
