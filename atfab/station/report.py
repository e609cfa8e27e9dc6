"""Per-unit reports: one JSON file per unit attempt, schema ``atfab.unit-report/1``.

:class:`ReportBuilder` collects what happened during one attempt (steps, measurements, images,
certificates, the redacted AT transcript) and :meth:`ReportBuilder.seal` writes the report
atomically. The writer refuses any report holding private-key armor (:mod:`atfab.core.keyguard`).
Batch outputs (JUnit XML, CSV summary) live in :mod:`atfab.station.report_export`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core.errors import OUTCOMES, Aborted, DeviceError, InputError, UnitFailed
from ..core import inputs
from ..core.fsutil import atomic_write
from ..core.keyguard import find_private_key
from ..core.mac import normalize_mac
from ..core.measurement import Measurement
from .events import STEP_OUTCOMES

SCHEMA = "atfab.unit-report/1"
#: Distributions whose versions go into every report.
TOOLS = ("atfab", "esptool", "esp-idf-nvs-partition-gen", "cryptography", "pyserial")


class ReportLeakError(DeviceError):
    """A report was about to contain private key material; nothing was written (exit 3)."""


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the tools in :data:`TOOLS` (None when one is not installed)."""
    out: dict[str, str | None] = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (dataclasses, enums, bytes, paths, datetimes converted)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Path):
        return str(value)
    for method in ("to_dict", "to_json"):
        if callable(getattr(value, method, None)):
            return jsonable(getattr(value, method)())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def find_private_key_text(data: Any, where: str = "$") -> str | None:
    """The JSON path of the first string (key or value) holding private-key armor, else None."""
    return find_private_key(data, where)


@dataclass
class Step:
    """One step of the unit's state machine with its timing and outcome."""

    name: str
    started: str
    ended: str
    outcome: str
    detail: Any = None

    @property
    def duration_s(self) -> float | None:
        return _seconds(self.started, self.ended)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "started": self.started, "ended": self.ended,
                "duration_s": self.duration_s, "outcome": self.outcome, "detail": jsonable(self.detail)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Step":
        return cls(d["name"], d["started"], d["ended"], d["outcome"], d.get("detail"))


@dataclass
class UnitReport:
    """Everything about one attempt at one unit (the data of one report file)."""

    recipe_name: str
    recipe_hash: str
    station_id: str
    port: str
    started: str
    recipe_path: str | None = None
    operator: str | None = None
    usb_serial: str | None = None
    usb_location: str | None = None
    attempt_id: int | None = None
    attempt: int = 1
    retry_of: int | None = None
    chip: str | None = None
    mac: str | None = None
    serial: str | None = None
    firmware: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    tools: dict[str, str | None] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    transcript: list[Any] = field(default_factory=list)
    ended: str | None = None
    outcome: str | None = None
    error: str | None = None
    schema: str = SCHEMA
    #: Extra top-level sections of report kinds built on this one (e.g. ``rotations`` in an
    #: ``atfab.rotation-report/1``); written after ``transcript``.
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        return _seconds(self.started, self.ended)

    @property
    def failed_measurements(self) -> list[Measurement]:
        return [m for m in self.measurements if not m.passed]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see docs/recipes.md, "Unit reports")."""
        return {
            "schema": self.schema,
            "outcome": self.outcome,
            "error": self.error,
            "attempt_id": self.attempt_id,
            "attempt": self.attempt,
            "retry_of": self.retry_of,
            "started": self.started,
            "ended": self.ended,
            "duration_s": self.duration_s,
            "recipe": {"name": self.recipe_name, "hash": self.recipe_hash, "path": self.recipe_path},
            "station": {"id": self.station_id, "operator": self.operator, "port": self.port,
                        "usb_serial": self.usb_serial, "location": self.usb_location},
            "unit": {"chip": self.chip, "mac": self.mac, "serial": self.serial},
            "firmware": jsonable(self.firmware),
            "images": dict(self.images),
            "certificates": jsonable(self.certificates),
            "tools": dict(self.tools),
            "steps": [s.to_dict() for s in self.steps],
            "measurements": [m.to_dict() for m in self.measurements],
            "transcript": jsonable(self.transcript),
            **{k: jsonable(v) for k, v in self.sections.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | Path = "<report>") -> "UnitReport":
        """Parse a report document; :class:`InputError` when it is not a unit report."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise InputError(f"not an {SCHEMA} document (schema {got!r})", file=source, field="schema")
        try:
            recipe, station, unit = d["recipe"], d["station"], d["unit"]
            return cls(
                recipe_name=recipe["name"], recipe_hash=recipe["hash"], recipe_path=recipe.get("path"),
                station_id=station["id"], operator=station.get("operator"), port=station["port"],
                usb_serial=station.get("usb_serial"), usb_location=station.get("location"),
                attempt_id=d.get("attempt_id"), attempt=d.get("attempt", 1), retry_of=d.get("retry_of"),
                chip=unit.get("chip"), mac=unit.get("mac"), serial=unit.get("serial"),
                firmware=d.get("firmware") or {}, images=d.get("images") or {},
                certificates=d.get("certificates") or [], tools=d.get("tools") or {},
                steps=[Step.from_dict(s) for s in d.get("steps") or []],
                measurements=[Measurement.from_dict(m) for m in d.get("measurements") or []],
                transcript=d.get("transcript") or [], started=d["started"], ended=d.get("ended"),
                outcome=d.get("outcome"), error=d.get("error"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed unit report: {exc}", file=source) from None


def encode(data: dict[str, Any]) -> bytes:
    """Serialise a report document (refuses private key text first)."""
    hit = find_private_key_text(data)
    if hit is not None:
        raise ReportLeakError(f"refusing to write a report with private key material at {hit}")
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


class StepHandle:
    """What the body of :meth:`ReportBuilder.step` may set: ``detail`` and a non-ok ``outcome``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.detail: Any = None
        self.outcome: str | None = None


class ReportBuilder:
    """Collects one attempt's report; :meth:`seal` writes it into ``out_dir``.

    ``clock`` returns the current time (tests inject one); ``tools`` defaults to
    :func:`tool_versions`.
    """

    def __init__(self, out_dir: str | Path, *, recipe_name: str, recipe_hash: str, station_id: str,
                 port: str, recipe_path: str | Path | None = None, operator: str | None = None,
                 usb_serial: str | None = None, usb_location: str | None = None,
                 attempt_id: int | None = None, attempt: int = 1, retry_of: int | None = None,
                 started: datetime | str | None = None, tools: dict[str, str | None] | None = None,
                 clock: Callable[[], datetime] | None = None, schema: str = SCHEMA) -> None:
        self.out_dir = Path(out_dir)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.report = UnitReport(
            recipe_name=recipe_name, recipe_hash=recipe_hash,
            recipe_path=str(recipe_path) if recipe_path is not None else None,
            station_id=station_id, port=port, operator=operator, usb_serial=usb_serial,
            usb_location=usb_location, attempt_id=attempt_id, attempt=attempt, retry_of=retry_of,
            started=_iso(started) or self.now(), tools=tool_versions() if tools is None else dict(tools),
            schema=schema,
        )
        self.path: Path | None = None

    def now(self) -> str:
        """The builder clock's current time as ISO text."""
        return _iso(self._clock())  # type: ignore[return-value]

    # -- collecting -----------------------------------------------------------------------------

    def set_unit(self, *, chip: str | None = None, mac: str | None = None, serial: str | None = None) -> None:
        """Record what the unit is (fields left None keep their value)."""

        r = self.report
        r.chip = chip if chip is not None else r.chip
        if mac is not None:
            try:
                r.mac = normalize_mac(mac)
            except InputError:
                r.mac = str(mac)
        r.serial = serial if serial is not None else r.serial

    def set_firmware(self, **info: Any) -> None:
        """Firmware facts (e.g. ``version``, ``source``, ``sha256``)."""
        self.report.firmware.update(info)

    def add_image(self, name: str, sha256: str) -> None:
        """SHA-256 (hex) of an image written to the unit (``esp-at.bin``, ``mfg_nvs.bin``, ...)."""
        self.report.images[name] = sha256

    def add_certificate(self, slot: str, *, serial: str | int, issuer: str, fingerprint: str,
                        key_fingerprint: str | None = None, not_after: datetime | str | None = None,
                        subject: str | None = None) -> None:
        """A certificate installed on the unit (fingerprints are SHA-256 hex)."""
        self.report.certificates.append({
            "slot": slot, "serial": format(serial, "x") if isinstance(serial, int) else serial,
            "issuer": issuer, "subject": subject, "fingerprint_sha256": fingerprint,
            "key_fingerprint_sha256": key_fingerprint, "not_after": _iso(not_after),
        })

    def add_step(self, name: str, started: datetime | str, ended: datetime | str, outcome: str,
                 detail: Any = None) -> Step:
        """Record a finished step; ``outcome`` is one of :data:`STEP_OUTCOMES`."""
        if outcome not in STEP_OUTCOMES:
            raise ValueError(f"step outcome must be one of {STEP_OUTCOMES}, not {outcome!r}")
        step = Step(name, _iso(started), _iso(ended), outcome, jsonable(detail))  # type: ignore[arg-type]
        self.report.steps.append(step)
        return step

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[StepHandle]:
        """Time a step: ok on success, fail on UnitFailed, aborted on Aborted/^C, error otherwise.

        The exception is re-raised after the step is recorded.
        """
        handle = StepHandle(name)
        started = self.now()
        outcome = "error"
        try:
            yield handle
            outcome = handle.outcome or "ok"
        except UnitFailed as exc:
            outcome, handle.detail = "fail", handle.detail if handle.detail is not None else str(exc)
            raise
        except (Aborted, KeyboardInterrupt) as exc:
            outcome, handle.detail = "aborted", handle.detail if handle.detail is not None else str(exc) or "aborted"
            raise
        except BaseException as exc:
            handle.detail = handle.detail if handle.detail is not None else f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.add_step(name, started, self.now(), outcome, handle.detail)

    def add_measurement(self, measurement: Measurement) -> None:
        self.report.measurements.append(measurement)

    def add_measurements(self, measurements: Iterable[Measurement]) -> None:
        self.report.measurements.extend(measurements)

    def set_section(self, name: str, value: Any) -> None:
        """An extra top-level section (for report kinds with their own ``schema``)."""
        self.report.sections[name] = value

    def set_transcript(self, entries: Iterable[Any]) -> None:
        """The (already redacted) AT transcript; entries are converted with :func:`jsonable`."""
        self.report.transcript = [jsonable(e) for e in entries]

    # -- writing --------------------------------------------------------------------------------

    def derive_outcome(self) -> str:
        """FAIL if a measurement failed, ERROR/ABORTED if a step did, else PASS."""
        r = self.report
        if any(s.outcome == "aborted" for s in r.steps):
            return "ABORTED"
        if any(s.outcome == "error" for s in r.steps):
            return "ERROR"
        if r.failed_measurements or any(s.outcome == "fail" for s in r.steps):
            return "FAIL"
        return "PASS"

    def file_name(self) -> str:
        """``<start>_<serial|mac|unknown>_a<attempt id>.json`` (random tag without an attempt id)."""
        r = self.report
        stamp = r.started.replace("-", "").replace(":", "").split(".")[0].split("+")[0]
        who = r.serial or (r.mac.replace(":", "") if r.mac else "unknown")
        who = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in who)
        tag = f"a{r.attempt_id}" if r.attempt_id is not None else f"x{secrets.token_hex(4)}"
        return f"{stamp}Z_{who}_{tag}.json"

    def seal(self, outcome: str | None = None, *, error: str | None = None,
             ended: datetime | str | None = None) -> Path:
        """Finish the report and write it atomically; returns its path.

        ``outcome`` defaults to :meth:`derive_outcome`. PASS is refused while a measurement
        failed. Raises :class:`ReportLeakError` (and writes nothing) if any string holds
        private-key armor (:mod:`atfab.core.keyguard`). A report is sealed once.
        """
        if self.path is not None:
            raise ValueError(f"report already sealed as {self.path}")
        outcome = outcome or self.derive_outcome()
        if outcome not in OUTCOMES:
            raise ValueError(f"report outcome must be one of {OUTCOMES}, not {outcome!r}")
        if outcome == "PASS" and self.report.failed_measurements:
            raise ValueError("a report with failed measurements cannot PASS")
        self.report.outcome, self.report.error = outcome, error
        self.report.ended = _iso(ended) or self.now()
        data = encode(self.report.to_dict())
        path = atomic_write(self.out_dir / self.file_name(), data)
        self.path = path
        return path


def _load_report_json(path: Path) -> Any:
    """A report file's JSON, bounded (size, regular file, nesting); "unreadable report: …" otherwise."""
    try:
        return inputs.load_json(path, "report", field="")
    except InputError as exc:
        raise InputError(f"unreadable report: {exc.message}", file=path) from None


def read_report(path: str | Path) -> UnitReport:
    """Load one report file (:class:`InputError` if it is missing or not a unit report)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError("no such report", file=path)
    data = _load_report_json(path)
    return UnitReport.from_dict(data, source=path)


@dataclass(frozen=True)
class ReportEntry:
    """A report file and its content."""

    path: Path
    report: UnitReport


def list_reports(directory: str | Path, *, outcome: str | None = None, serial: str | None = None,
                 mac: str | None = None, recipe: str | None = None) -> list[ReportEntry]:
    """Unit reports under ``directory`` (recursive), oldest first, filtered.

    JSON files of another schema are skipped; a broken ``.json`` file is an :class:`InputError`.
    ``mac`` matches in any notation; ``outcome`` is case-insensitive.
    """

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("no such reports folder", file=directory)
    want_mac = normalize_mac(mac, field="--mac") if mac is not None else None
    out: list[ReportEntry] = []
    for path in sorted(directory.rglob("*.json")):
        if path.name.startswith("."):
            continue  # an atomic write in progress
        data = _load_report_json(path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            continue
        rep = UnitReport.from_dict(data, source=path)
        if outcome is not None and (rep.outcome or "").upper() != outcome.upper():
            continue
        if serial is not None and rep.serial != serial:
            continue
        if want_mac is not None and rep.mac != want_mac:
            continue
        if recipe is not None and rep.recipe_name != recipe:
            continue
        out.append(ReportEntry(path, rep))
    out.sort(key=lambda e: (e.report.started, e.report.attempt_id or 0, str(e.path)))
    return out


__all__ = [
    "SCHEMA", "OUTCOMES", "TOOLS", "ReportBuilder", "UnitReport", "Step", "StepHandle",
    "ReportEntry", "ReportLeakError", "Measurement", "read_report", "list_reports", "tool_versions",
    "jsonable", "encode", "find_private_key_text",
]
