"""One verification check and its result: ``Measurement(name, expected, measured, rule, outcome)``.

Kept apart from :mod:`atfab.station.report` so that :mod:`atfab.verify.unit` can build measurements without
pulling in the report writer. ``outcome`` is ``"pass"`` or ``"fail"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASS = "pass"
FAIL = "fail"
OUTCOMES = (PASS, FAIL)

#: Rules :func:`evaluate` knows. Other rule names are allowed in a Measurement (the caller then
#: decides the outcome itself); the rule is always recorded as text in the report.
RULES = ("equal", "range", "tolerance_pct", "one_of", "prefix", "contains", "present")

#: Names of the measurements that more than one operation makes of the same thing (``atfab
#: verify`` / the station's verify step and ``atfab customize --port``), so reports agree.
GMR_MODULE_NAME = "gmr.module_name"      # AT+GMR Bin version module name
UART_DEF = "uart_def"                    # AT+UART_DEF? [baud, databits, stopbits, parity, flow]
RF_POWER_WIFI = "rf_power.wifi"          # AT+RFPOWER? Wi-Fi value as this firmware reads it back
COUNTRY = "country"                      # AT+CWCOUNTRY? [code, start channel, channel count]
MFG_NVS_NAMESPACES = "mfg_nvs.namespaces"  # AT+SYSMFG? namespaces (sorted), exactly the built ones


def nvs_value_name(namespace: str, key: str) -> str:
    """``<namespace>.<key>``: the measurement of one mfg_nvs value read back with AT+SYSMFG."""
    return f"{namespace}.{key}"


@dataclass(frozen=True)
class Measurement:
    """The result of one check on a unit.

    ``expected``/``measured`` must be JSON-serialisable (str, int, float, bool, None, lists,
    dicts); ``rule`` says how they were compared (e.g. ``"equal"``, ``"range"``).
    """

    name: str
    expected: Any
    measured: Any
    rule: str
    outcome: str
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"measurement outcome must be one of {OUTCOMES}, not {self.outcome!r}")

    @property
    def passed(self) -> bool:
        """True when the check held."""
        return self.outcome == PASS

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in unit reports."""
        data: dict[str, Any] = {
            "name": self.name,
            "expected": self.expected,
            "measured": self.measured,
            "rule": self.rule,
            "outcome": self.outcome,
        }
        if self.detail is not None:
            data["detail"] = self.detail
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            expected=data.get("expected"),
            measured=data.get("measured"),
            rule=str(data.get("rule", "")),
            outcome=str(data["outcome"]),
            detail=data.get("detail"),
        )

    def describe(self) -> str:
        """One line for humans: ``name: expected X (rule), measured Y``."""
        return f"{self.name}: expected {self.expected!r} ({self.rule}), measured {self.measured!r}"


def _holds(expected: Any, measured: Any, rule: str) -> bool:
    if rule == "equal":
        return measured == expected
    if rule == "range":
        lo, hi = expected
        return measured is not None and lo <= measured <= hi
    if rule == "tolerance_pct":
        target, pct = expected
        return measured is not None and abs(measured - target) <= abs(target) * pct / 100.0
    if rule == "one_of":
        return measured in expected
    if rule == "prefix":
        if isinstance(expected, (list, tuple)):
            return isinstance(measured, str) and any(measured.startswith(p) for p in expected)
        return isinstance(measured, str) and measured.startswith(expected)
    if rule == "contains":
        return measured is not None and expected in measured
    if rule == "present":
        return measured is not None
    raise ValueError(f"unknown measurement rule {rule!r} (known: {', '.join(RULES)})")


def evaluate(name: str, expected: Any, measured: Any, rule: str = "equal", *, detail: str | None = None) -> Measurement:
    """Compare ``measured`` with ``expected`` under ``rule`` and return the Measurement.

    Rules: ``equal``; ``range`` (expected ``[lo, hi]`` inclusive); ``tolerance_pct`` (expected
    ``[target, percent]``); ``one_of`` (expected list); ``prefix`` (str or list of str);
    ``contains``; ``present`` (measured is not None). A comparison that raises ``TypeError``
    (e.g. ``None < 3``) counts as a failure.
    """
    try:
        ok = _holds(expected, measured, rule)
    except TypeError:
        ok = False
    if isinstance(expected, tuple):
        expected = list(expected)
    return Measurement(name, expected, measured, rule, PASS if ok else FAIL, detail)


__all__ = ["Measurement", "evaluate", "PASS", "FAIL", "OUTCOMES", "RULES"]
