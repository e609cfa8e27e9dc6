"""What a loaded recipe holds: the frozen specs :func:`atfab.station.recipe.load_recipe` returns.

Reading and checking the TOML lives in :mod:`atfab.station.recipe`; these are the values the station,
the verifier and the rotation work from.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..image.gatt import GattRow, load_gatts_csv, validate_rows
from ..image.gatt_desc import load_description
from ..image.profiles import ModuleProfile
from ..pki.issue import IdentityTemplate, identity_values
from ..pki.slots import FACTORY_CA, UNIT, SlotSpec
from .serials import SerialScheme

FIRMWARE_KINDS = ("synthetic", "build_dir", "factory_image")
#: Placeholders the identity template (subject, SANs) may use (:meth:`Recipe.identity_values`).
SUBJECT_FIELDS = ("serial", "mac", "mac_hex", "module", "recipe")
#: Rotation modes of ``[rotate]``: a new key pair, or a new certificate for the key on the unit.
ROTATE_MODES = ("new-key", "recertify")


@dataclass(frozen=True)
class FirmwareSource:
    """Where the AT firmware comes from: ``synthetic`` (version), ``build_dir`` or ``factory_image`` (path).

    ``allow_unread``: write PKI slots / a GATT table this firmware never reads (its build configuration
    has the option off) instead of refusing the recipe."""

    kind: str
    version: str | None = None
    path: Path | None = None
    allow_unread: bool = False


@dataclass(frozen=True)
class EscrowSpec:
    """``[pki] escrow``: keep each unit key, encrypted to the operator's public key ``recipient``.

    ``file`` is an absolute path template: ``{recipe}`` is filled at load time, ``{station}`` and
    ``{date}`` (UTC ``YYYYMMDD`` of the run's start) by the station (:meth:`path`).
    """

    recipient: Path
    file: str

    def path(self, *, station: str, date: str) -> Path:
        """The escrow file of one station run."""
        return Path(self.file.replace("{station}", station).replace("{date}", date))


@dataclass(frozen=True)
class PkiSpec:
    """The factory CA, the unit identity template and the TLS slots to fill on every unit.

    ``slots`` hold absolute file paths. Build a unit's PKI files with
    ``plan_slots(slots, firmware=..., factory_ca=...)`` and ``issue_unit(ca, identity, values)``.
    """

    ca_dir: Path | None
    identity: IdentityTemplate
    slots: tuple[SlotSpec, ...]
    demo_ca: bool = False           # the CA may be missing: `atfab demo` creates a throwaway one
    escrow: EscrowSpec | None = None  # keep unit keys, encrypted to an operator key (else memory only)

    @property
    def needs_ca(self) -> bool:
        """True when a slot uses the unit identity or ``factory_ca`` (so the CA must be loaded)."""

        return any(s.cert == UNIT or FACTORY_CA in s.ca or s.issuer == FACTORY_CA for s in self.slots)

    @property
    def needs_identity(self) -> bool:
        """True when a slot installs the identity issued for the unit."""

        return any(s.cert == UNIT for s in self.slots)


def slot_name(slot: SlotSpec) -> str:
    """``client.0``: how reports, the ledger and the rotation journal name a slot."""
    return f"{slot.family}.{slot.index}"


@dataclass(frozen=True)
class GattSpec:
    """The GATT table: a TOML description (``.toml``) or an esp-at gatts_data CSV (``.csv``)."""

    file: Path
    default: bool = False           # esp-at's default table (BLE module without a [gatt] table)

    def rows(self) -> list[GattRow]:
        """The validated gatts_data rows."""

        if self.file.suffix == ".toml":
            rows = load_description(self.file)
        else:
            rows = load_gatts_csv(self.file)
        validate_rows(rows, source=str(self.file))
        return rows


@dataclass(frozen=True)
class VerifySpec:
    """What the station checks on each unit after provisioning."""

    checks: tuple[str, ...]
    at_version: str | None = None           # expected AT version (prefix match), e.g. "v4.1.0.0"
    mac_prefixes: tuple[str, ...] = ()      # allowed OUIs, "aa:bb:cc" form; empty = any
    baud_tolerance_pct: float = 2.0
    boot_timeout_s: float = 10.0
    command_timeout_s: float = 5.0


@dataclass(frozen=True)
class ReportSpec:
    """Where per-unit reports and batch outputs go (absolute paths)."""

    dir: Path
    junit: Path | None
    csv: Path | None
    transcript: bool = True
    #: MES addresses every sealed report is published to (``mqtt://…/topic``, ``http(s)://…``).
    publish: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    """How often a unit is tried and after which outcomes."""

    attempts: int = 2
    retry_on: tuple[str, ...] = ("ERROR",)
    delay_s: float = 0.0

    def should_retry(self, outcome: str, attempt: int) -> bool:
        """True when attempt number ``attempt`` (1-based) ended with ``outcome`` and may be retried."""
        return outcome in self.retry_on and attempt < self.attempts


@dataclass(frozen=True)
class RotateSpec:
    """``[rotate]``: how ``atfab rotate`` renews unit identities (docs/rotation.md).

    ``slots`` empty = every slot with ``cert = "unit"``; ``restart`` = ``AT+RST`` after a
    unit's slots were rotated so the firmware uses the new pair.
    """

    mode: str = "new-key"
    slots: tuple[str, ...] = ()
    restart: bool = True


@dataclass(frozen=True)
class LabelSpec:
    """``[label]``: the label of every unit that PASSes (:mod:`atfab.station.label`)."""

    formats: tuple[str, ...] = ("png",)          # png, svg, zpl
    qr: str = "S/N:{serial};MAC:{mac}"          # the QR code's text
    lines: tuple[str, ...] = ("{module}", "S/N {serial}", "MAC {mac}")
    width_mm: float = 50.0
    height_mm: float = 25.0
    dpi: int = 203


@dataclass(frozen=True)
class Recipe:
    """A loaded, checked recipe. Paths are absolute; ``factory_param`` is the full merged set."""

    name: str
    description: str
    path: Path
    hash: str                               # "sha256:<hex>" of the recipe and the files it names
    module: str
    profile: ModuleProfile
    firmware: FirmwareSource
    factory_param: dict[str, int | str]
    pki: PkiSpec | None
    gatt: GattSpec | None
    serial: SerialScheme
    verify: VerifySpec
    report: ReportSpec
    retry: RetryPolicy
    ledger: Path | str               # a SQLite file, or a postgresql:// URL ([ledger] url)
    rotate: RotateSpec = field(default_factory=RotateSpec)
    label: LabelSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def identity_values(self, *, serial: str, mac: str | bytes) -> dict[str, str]:
        """Placeholder values for the identity template: serial, mac, mac_hex, module, recipe."""

        return identity_values(serial=serial, mac=mac, module=str(self.factory_param.get("module_name", "")),
                               recipe=self.name)


_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\.(\d+)$")


def version_tuple(text: str) -> tuple[int, ...] | None:
    """``v4.1.0.0`` → ``(4, 1, 0, 0)``; None when it is not an esp-at version."""
    m = _VERSION.match(text)
    return tuple(int(g) for g in m.groups()) if m else None


__all__ = ["Recipe", "LabelSpec", "FirmwareSource", "PkiSpec", "EscrowSpec", "slot_name", "GattSpec", "VerifySpec", "ReportSpec",
           "RetryPolicy", "RotateSpec", "ROTATE_MODES", "FIRMWARE_KINDS",
           "SUBJECT_FIELDS", "version_tuple"]
