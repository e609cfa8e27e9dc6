"""Recipe slots → ESP-AT PKI namespaces (``{namespace: [PkiFile]}`` for the mfg_nvs builder).

A recipe names TLS *sets* ("slots") instead of namespaces::

    [[pki.slot]]
    set = "client"          # client, https, wss (index 0-1); server, mqtt, wpa_ent (index 0)
    index = 0
    cert = "unit"           # "unit" = the identity issued for this unit, or a PEM file path
    key = "unit"            # "unit" or a PEM file path (cert and key come together)
    ca = ["certs/cloud_ca.pem"]   # file paths and/or "factory_ca"; concatenated into one CA file
    usage = ["clientAuth"]  # EKU of the unit certificate (default by set: server → serverAuth)
    issuer = "certs/vendor_ca.pem"  # for a file cert: the CA it must chain to ("factory_ca" allowed)

``client slot 0 gets the unit identity and the cloud CA`` is the example above. The enterprise
set is written ``wpa_ent`` (``wpa2`` and ``enterprise`` are aliases); its namespaces are named by
:attr:`FirmwareProfile.enterprise_namespace` (``wpa_ent_*`` or the legacy ``wpa2_*``). Files
of one namespace are numbered from 0 without gaps; key names inside mfg_nvs follow
:func:`atfab.image.mfg_nvs.pki_key_names` (§8.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..core.errors import InputError
from ..core.inputs import PEM_LIMIT, read_bytes
from ..core.firmware import FirmwareProfile
from ..core.tomlfile import check_fields
from ..image.mfg_nvs import PkiFile, pki_key_names, pki_namespaces
from .ca import utcnow
from .checks import (
    check_cert_file, check_chain, check_key_file, check_key_supported, check_pair, check_validity, parse_pem_certs,
)
from .issue import USAGES, UnitIdentity

UNIT = "unit"
FACTORY_CA = "factory_ca"
#: set name → (number of sets the firmware offers, default extended key usage of a unit cert).
#: client/https/wss have two sets (cert_key_ID / CA_ID 0-1 in AT+CIPSSLCCONF and friends,
#: esp-at ships two files each); server, mqtt and the enterprise set have one.
FAMILIES: dict[str, tuple[int, str]] = {
    "server": (1, "serverAuth"), "client": (2, "clientAuth"), "wpa_ent": (1, "clientAuth"),
    "mqtt": (1, "clientAuth"), "https": (2, "clientAuth"), "wss": (2, "clientAuth"),
}
ALIASES = {"wpa2": "wpa_ent", "enterprise": "wpa_ent"}
KINDS = ("cert", "key", "ca")


def namespace_for(family: str, kind: str, firmware: FirmwareProfile) -> str:
    """``("client", "cert")`` → ``client_cert``; the enterprise set follows the firmware's naming."""
    family = ALIASES.get(family, family)
    if family == "wpa_ent":
        family = "wpa2" if firmware.enterprise_namespace == "wpa2" else "wpa_ent"
    return f"{family}_{kind}"


@dataclass(frozen=True)
class SlotSpec:
    """One TLS set of a recipe."""

    family: str
    index: int = 0
    cert: str | None = None
    key: str | None = None
    ca: tuple[str, ...] = ()
    usage: tuple[str, ...] | None = None
    issuer: str | None = None
    field: str = "pki.slot"


def _path(value: str, base_dir: Path | None) -> str:
    if value in (UNIT, FACTORY_CA):
        return value
    p = Path(value)
    return str(p if p.is_absolute() or base_dir is None else base_dir / p)


def parse_slots(tables: list[Mapping], *, source: str | None = None, base_dir: str | Path | None = None,
                field: str = "pki.slot") -> list[SlotSpec]:
    """Slot specs from the recipe's ``[[pki.slot]]`` tables; relative paths resolve from ``base_dir``."""
    base = Path(base_dir) if base_dir is not None else None
    if not isinstance(tables, list):
        raise InputError("must be an array of tables [[pki.slot]]", file=source, field=field)
    slots: list[SlotSpec] = []
    seen: set[tuple[str, int]] = set()
    known = {"set", "index", "cert", "key", "ca", "usage", "issuer"}
    for n, t in enumerate(tables):
        where = f"{field}[{n}]"
        if not isinstance(t, Mapping):
            raise InputError("must be a table", file=source, field=where)
        check_fields(t, sorted(known), file=source, where=where)
        raw_set = t.get("set", "")
        fam = ALIASES.get(raw_set, raw_set) if isinstance(raw_set, str) else None
        if fam not in FAMILIES:
            raise InputError(f"unknown set {t.get('set')!r} (known: {', '.join(FAMILIES)}, wpa2)", file=source,
                             field=f"{where}.set")
        index = t.get("index", 0)
        limit = FAMILIES[fam][0]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < limit:
            raise InputError(f"index must be 0..{limit - 1} for the {fam} set", file=source, field=f"{where}.index")
        if (fam, index) in seen:
            raise InputError(f"{fam} slot {index} given twice", file=source, field=where)
        seen.add((fam, index))
        cert, key = t.get("cert"), t.get("key")
        for name, value in (("cert", cert), ("key", key), ("issuer", t.get("issuer"))):
            if value is not None and (not isinstance(value, str) or not value):
                raise InputError("must be \"unit\" or a file path", file=source, field=f"{where}.{name}")
        if (cert is None) != (key is None):
            raise InputError("cert and key come together (give both or neither)", file=source,
                             field=f"{where}.{'key' if key is None else 'cert'}")
        if (cert == UNIT) != (key == UNIT):
            raise InputError('a unit certificate needs the unit key (cert = "unit" and key = "unit")', file=source,
                             field=f"{where}.key")
        if key == FACTORY_CA or cert == FACTORY_CA:
            raise InputError("factory_ca can only be used for ca/issuer", file=source, field=where)
        ca = t.get("ca", [])
        ca = [ca] if isinstance(ca, str) else ca
        if not isinstance(ca, list) or not all(isinstance(x, str) and x and x != UNIT for x in ca):
            raise InputError("must be a file path, \"factory_ca\", or a list of them", file=source,
                             field=f"{where}.ca")
        usage = t.get("usage")
        if usage is not None:
            if not isinstance(usage, list) or not usage or any(not isinstance(u, str) or u not in USAGES for u in usage):
                raise InputError(f"must be a list of {', '.join(USAGES)}", file=source, field=f"{where}.usage")
            usage = tuple(usage)
        if cert is None and not ca:
            raise InputError("slot has neither cert/key nor ca", file=source, field=where)
        issuer = t.get("issuer")
        slots.append(SlotSpec(fam, index, _path(cert, base) if cert else None, _path(key, base) if key else None,
                              tuple(_path(x, base) for x in ca), usage,
                              _path(issuer, base) if issuer else None, where))
    return slots


@dataclass(frozen=True)
class SlotLocation:
    """Where one item of a slot lives in mfg_nvs."""

    family: str
    index: int
    kind: str          # cert / key / ca
    namespace: str
    key: str           # NVS key name
    source: str        # "unit" or the file(s) it came from


@dataclass
class SlotPlan:
    """Slots resolved for one batch: static files read and checked once, unit items per unit."""

    slots: list[SlotSpec]
    firmware: FirmwareProfile
    static: dict[tuple[str, int], PkiFile] = field(default_factory=dict)
    unit_items: list[tuple[str, int, str]] = field(default_factory=list)   # (namespace, index, kind)
    origins: dict[tuple[str, int], str] = field(default_factory=dict)
    usages: tuple[str, ...] = ()
    factory_ca: list[x509.Certificate] = field(default_factory=list)

    @property
    def needs_identity(self) -> bool:
        return bool(self.unit_items)

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ns, i in [*self.static, *((ns, i) for ns, i, _ in self.unit_items)]:
            counts[ns] = max(counts.get(ns, 0), i + 1)
        return counts

    def pki_for(self, identity: UnitIdentity | None) -> dict[str, list[PkiFile]]:
        """The ``pki`` mapping of :class:`atfab.image.mfg_nvs.UnitContent` for one unit."""
        if self.unit_items and identity is None:
            raise InputError("the recipe's slots use the unit identity but none was issued", field="pki.slot")
        items: dict[tuple[str, int], PkiFile] = dict(self.static)
        for ns, i, kind in self.unit_items:
            data = identity.cert_file_pem() if kind == "cert" else identity.private_key_pem_for_mfg()
            items[(ns, i)] = PkiFile(_file_name(ns, i, kind), data)
        counts = self._counts()
        return {ns: [items[(ns, i)] for i in range(counts[ns])] for ns in pki_namespaces(self.firmware)
                if ns in counts}

    def locations(self) -> list[SlotLocation]:
        """Every slot item with its namespace and NVS key name (for verification and rotation)."""
        counts = self._counts()
        names = {ns: pki_key_names(ns, n, self.firmware) for ns, n in counts.items()}
        unit = {(ns, i) for ns, i, _ in self.unit_items}
        out = []
        for s in self.slots:
            for kind in KINDS:
                ns = namespace_for(s.family, kind, self.firmware)
                if (ns, s.index) in unit or (ns, s.index) in self.static:
                    out.append(SlotLocation(s.family, s.index, kind, ns, names[ns][s.index],
                                            UNIT if (ns, s.index) in unit else self.origins[(ns, s.index)]))
        return out

    def check_identity(self, identity: UnitIdentity, *, at: dt.datetime | None = None) -> None:
        """A unit identity is usable: supported key, valid at ``at``, chains to the factory CA."""
        at = at or utcnow()
        where = f"unit {identity.cert.subject.rfc4514_string()}"
        check_key_supported(identity.public_key, file=where, field="key")
        check_pair(identity.cert, identity.public_key, file=where, field="key")
        if self.factory_ca:
            chain = parse_pem_certs(identity.chain_pem, file=where, field="chain") if identity.chain_pem else []
            check_chain(identity.cert, self.factory_ca[-1:], chain + self.factory_ca[:-1], at=at, file=where,
                        field="certificate")
        else:
            check_validity(identity.cert, at, file=where, field="certificate")


def _file_name(ns: str, index: int, kind: str) -> str:
    return f"{ns}_{index:02d}.{'key' if kind == 'key' else 'crt'}"


def _read(path: str, where: str) -> bytes:
    return read_bytes(path, "PEM file", limit=PEM_LIMIT, field=where)


def plan_slots(slots: list[SlotSpec], *, firmware: FirmwareProfile,
               factory_ca: list[x509.Certificate] | None = None, at: dt.datetime | None = None,
               source: str | None = None) -> SlotPlan:
    """Read and check the slots' files once (PEM, key types, validity at ``at``, pairs, issuers).

    ``factory_ca`` is the factory CA's certificate chain (CA first, root last) — what
    ``"factory_ca"`` in ``ca``/``issuer`` stands for.
    """
    at = at or utcnow()
    factory_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in factory_ca or [])
    plan = SlotPlan(list(slots), firmware, factory_ca=list(factory_ca or []))
    usages: list[str] = []
    for s in slots:
        ns = {kind: namespace_for(s.family, kind, firmware) for kind in KINDS}
        if s.cert == UNIT:
            plan.unit_items += [(ns["cert"], s.index, "cert"), (ns["key"], s.index, "key")]
            for u in s.usage or (FAMILIES[s.family][1],):
                if u not in usages:
                    usages.append(u)
        elif s.cert is not None:
            cert_data, key_data = _read(s.cert, f"{s.field}.cert"), _read(s.key, f"{s.field}.key")
            certs = check_cert_file(cert_data, at=at, file=s.cert, field=f"{s.field}.cert")
            key = check_key_file(key_data, file=s.key, field=f"{s.field}.key")
            check_pair(certs[0], key, file=s.key, field=f"{s.field}.key")
            if s.issuer is not None:
                if s.issuer == FACTORY_CA:
                    if not factory_ca:
                        raise InputError("issuer = \"factory_ca\" but no factory CA is configured", file=source,
                                         field=f"{s.field}.issuer")
                    anchors = list(factory_ca)
                else:
                    anchors = parse_pem_certs(_read(s.issuer, f"{s.field}.issuer"), file=s.issuer,
                                              field=f"{s.field}.issuer")
                check_chain(certs[0], anchors, certs[1:], at=at, file=s.cert, field=f"{s.field}.cert")
            plan.static[(ns["cert"], s.index)] = PkiFile(_file_name(ns["cert"], s.index, "cert"), cert_data)
            plan.static[(ns["key"], s.index)] = PkiFile(_file_name(ns["key"], s.index, "key"), key_data)
            plan.origins[(ns["cert"], s.index)] = s.cert
            plan.origins[(ns["key"], s.index)] = s.key
        if s.ca:
            parts = []
            for item in s.ca:
                if item == FACTORY_CA:
                    if not factory_pem:
                        raise InputError("ca = \"factory_ca\" but no factory CA is configured", file=source,
                                         field=f"{s.field}.ca")
                    parts.append(factory_pem)
                else:
                    data = _read(item, f"{s.field}.ca")
                    check_cert_file(data, at=at, file=item, field=f"{s.field}.ca")
                    parts.append(data if data.endswith(b"\n") else data + b"\n")
            plan.static[(ns["ca"], s.index)] = PkiFile(_file_name(ns["ca"], s.index, "ca"), b"".join(parts))
            plan.origins[(ns["ca"], s.index)] = ", ".join(s.ca)
    plan.usages = tuple(usages)
    _check_contiguous(plan, source)
    return plan


def _check_contiguous(plan: SlotPlan, source: str | None) -> None:
    present: dict[str, set[int]] = {}
    for ns, i in [*plan.static, *((ns, i) for ns, i, _ in plan.unit_items)]:
        present.setdefault(ns, set()).add(i)
    for ns, idx in present.items():
        missing = [i for i in range(max(idx) + 1) if i not in idx]
        if missing:
            raise InputError(f"{ns} has a file for slot {max(idx)} but none for slot {missing[0]}: ESP-AT numbers "
                             f"the files of a namespace from 0 without gaps", file=source, field="pki.slot")


__all__ = ["UNIT", "FACTORY_CA", "FAMILIES", "ALIASES", "namespace_for", "SlotSpec", "parse_slots",
           "SlotLocation", "SlotPlan", "plan_slots"]
