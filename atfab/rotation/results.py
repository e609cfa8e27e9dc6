"""Results of ``atfab rotate``: per slot, per module and for the fleet (plain data, ``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ERROR, FAIL, PASS, exit_code_for_outcomes
from .device import PairState

#: Outcomes used here (the report outcomes): PASS, FAIL (unit refused; old pair kept), ERROR.


@dataclass
class SlotResult:
    """What happened to one slot of one unit (a line of the rotation report's ``rotations``).

    ``action``: ``rotate`` (a new rotation), ``resume`` (a pending one resolved), ``plan``
    (dry run). ``state``: the journal state at the end (None when nothing was journalled).
    """

    slot: str
    action: str
    outcome: str
    state: str | None = None
    rotation_id: int | None = None
    mode: str | None = None
    before: PairState | None = None
    after: PairState | None = None
    new_cert_fp: str | None = None
    new_key_fp: str | None = None
    certificate: dict[str, Any] | None = None
    message: str = ""
    #: For ``resume``: what the unit held (``new_pair``, ``old_pair``, ``new_key_old_cert``, ``unknown``).
    unit_holds: str | None = None
    #: For ``resume``: what was put back on the unit before it was classified (a cut AT+SYSFLASH rewrite).
    repaired: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "action": self.action, "outcome": self.outcome, "state": self.state,
                "rotation_id": self.rotation_id, "mode": self.mode,
                "before": self.before.to_json() if self.before else None,
                "after": self.after.to_json() if self.after else None,
                "new_cert_sha256": self.new_cert_fp, "new_key_spki_sha256": self.new_key_fp,
                "certificate": self.certificate, "message": self.message, "unit_holds": self.unit_holds,
                "repaired": self.repaired}


@dataclass
class ModuleResult:
    """The outcome of one module: PASS (every slot holds its new pair), FAIL, ERROR."""

    port: str
    name: str | None
    outcome: str = ERROR
    mac: str | None = None
    serial: str | None = None
    error: str | None = None
    slots: list[SlotResult] = field(default_factory=list)
    report_path: str | None = None
    duration_s: float | None = None

    def line(self) -> str:
        """One summary line: label, outcome, unit, then each slot."""
        parts = [f"{self.name or self.port}: {self.outcome}", self.mac or "-", self.serial or "-"]
        for s in self.slots:
            old = s.before.cert_fp[:12] if s.before and s.before.cert_fp else "?"
            fps = f" {old}->{s.new_cert_fp[:12]}" if s.new_cert_fp else f" cert {old}"
            show = s.outcome != PASS or s.action == "plan"
            parts.append(f"{s.slot} {s.action} {s.state or '-'}{fps}" + (f" ({s.message})" if show else ""))
        if self.error:
            parts.append(f"error: {self.error}")
        return "  ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "name": self.name, "outcome": self.outcome, "mac": self.mac,
                "serial": self.serial, "error": self.error, "slots": [s.to_json() for s in self.slots],
                "report": self.report_path, "duration_s": self.duration_s}


@dataclass
class FleetResult:
    """Every module's result; ``exit_code`` from the counts (:func:`atfab.core.errors.exit_code_for_outcomes`)."""

    recipe: str
    mode: str
    dry_run: bool
    modules: list[ModuleResult]
    escrow: str | None = None           # the escrow file the new keys were appended to ([pki] escrow)

    @property
    def counts(self) -> dict[str, int]:
        return {o: sum(m.outcome == o for m in self.modules) for o in (PASS, FAIL, ERROR)}

    @property
    def exit_code(self) -> int:
        return exit_code_for_outcomes(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "mode": self.mode, "dry_run": self.dry_run, "counts": self.counts,
                "escrow": self.escrow, "modules": [m.to_json() for m in self.modules]}


__all__ = ["PASS", "FAIL", "ERROR", "SlotResult", "ModuleResult", "FleetResult"]
