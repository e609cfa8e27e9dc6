"""Recipes: what one product line provisions (TOML files under ``recipes/``; docs/recipes.md).

:func:`load_recipe` returns a :class:`Recipe` with every path resolved to an absolute path, or
raises :class:`RecipeError` carrying *all* problems found (``.problems``, one
:class:`InputError` each, ``file: field: what is wrong``). :func:`check_recipe` returns the
problem list instead. Structural checks live here; checks against the module profile, the
firmware files, the GATT table and the PKI live in :mod:`atfab.recipe_checks`.

Input paths (firmware, CA, GATT) are relative to the recipe file; output paths (reports,
ledger) are relative to ``workdir`` (default: the current directory when the recipe is loaded).
"""

from __future__ import annotations

import hashlib
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .serials import SCHEMES, SerialScheme

if TYPE_CHECKING:
    from .gatt import GattRow
    from .profiles import ModuleProfile

FIRMWARE_KINDS = ("synthetic", "build_dir", "factory_image")
OUTCOMES = ("PASS", "FAIL", "ERROR", "ABORTED")
#: Verification checks a recipe can ask for (what each does: docs/recipes.md, ``[verify]``).
CHECKS = ("boot", "gmr", "mac", "factory_param", "uart", "rf_power", "country", "sysflash", "pki", "gatt")
#: Checks that need Wi-Fi / BLE commands in the firmware, or a recipe section.
WIFI_CHECKS = ("rf_power", "country")
#: Placeholders a certificate subject template may use.
SUBJECT_FIELDS = ("serial", "mac", "mac_hex", "module_name", "recipe")
#: PKI sets and the namespaces they fill (reference §8.2); "wpa_ent" follows the firmware naming.
PKI_SETS = ("client", "server", "mqtt", "wpa_ent", "https", "wss")
_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\.(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOP_KEYS = ("name", "description", "module", "firmware", "factory_param", "pki", "gatt", "serial",
             "verify", "report", "retry", "ledger")


class RecipeError(InputError):
    """A recipe has problems. ``str()`` is the first one; ``.problems`` holds them all."""

    def __init__(self, problems: list[InputError]) -> None:
        first = problems[0]
        super().__init__(first.message, file=first.file, field=first.field, line=first.line)
        self.problems = list(problems)


@dataclass(frozen=True)
class FirmwareSource:
    """Where the AT firmware comes from: ``synthetic`` (version), ``build_dir`` or ``factory_image`` (path)."""

    kind: str
    version: str | None = None
    path: Path | None = None


@dataclass(frozen=True)
class PkiSlot:
    """One certificate set on the unit: ``<set>_cert``/``<set>_key``/``<set>_ca``, file index ``index``."""

    set: str
    index: int
    subject: str
    key_type: str
    validity_days: int
    trust: Path | None = None       # PEM file(s) for <set>_ca; None = the factory CA (and its chain)

    @property
    def name(self) -> str:
        """``client.0``: how reports, the ledger and the rotation journal name the slot."""
        return f"{self.set}.{self.index}"

    def namespaces(self, enterprise: str = "wpa_ent") -> tuple[str, str, str]:
        """The (cert, key, ca) mfg_nvs namespaces of this slot (``enterprise``: the firmware's
        name for the wpa_ent set, ``FirmwareProfile.enterprise_namespace``)."""
        prefix = enterprise if self.set == "wpa_ent" else self.set
        return f"{prefix}_cert", f"{prefix}_key", f"{prefix}_ca"


@dataclass(frozen=True)
class PkiSpec:
    """The factory CA and the slots to fill on every unit."""

    ca_dir: Path
    slots: tuple[PkiSlot, ...]
    key_type: str = "ec-p256"       # default of the slots
    demo_ca: bool = False           # the CA may be missing: `atfab demo` creates a throwaway one


@dataclass(frozen=True)
class GattSpec:
    """The GATT table: a TOML description (``.toml``) or an esp-at gatts_data CSV (``.csv``)."""

    file: Path
    default: bool = False           # esp-at's default table (BLE module without a [gatt] table)

    def rows(self) -> "list[GattRow]":
        """The validated gatts_data rows."""
        from .gatt import load_gatts_csv, validate_rows

        if self.file.suffix == ".toml":
            from .gatt_desc import load_description

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
class Recipe:
    """A loaded, checked recipe. Paths are absolute; ``factory_param`` is the full merged set."""

    name: str
    description: str
    path: Path
    hash: str                               # "sha256:<hex>" of the recipe and the files it names
    module: str
    profile: "ModuleProfile"
    firmware: FirmwareSource
    factory_param: dict[str, int | str]
    pki: PkiSpec | None
    gatt: GattSpec | None
    serial: SerialScheme
    verify: VerifySpec
    report: ReportSpec
    retry: RetryPolicy
    ledger: Path
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def subject_for(self, slot: PkiSlot, *, serial: str, mac: str) -> str:
        """The certificate subject of ``slot`` for one unit."""
        hexmac = mac.replace(":", "").upper()
        return slot.subject.format(serial=serial, mac=mac, mac_hex=hexmac, recipe=self.name,
                                   module_name=self.factory_param.get("module_name", ""))


class _Reader:
    """Typed access to TOML tables that records problems instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[InputError] = []

    def bad(self, field_name: str, message: str, line: int | None = None) -> None:
        self.problems.append(InputError(message, file=self.source, field=field_name, line=line))

    def table(self, data: dict, key: str, known: tuple[str, ...] | None = None, prefix: str = "") -> dict:
        value = data.get(key, {})
        where = f"{prefix}{key}"
        if not isinstance(value, dict):
            self.bad(where, "must be a table")
            return {}
        if known is not None:
            for k in value:
                if k not in known:
                    self.bad(f"{where}.{k}", f"unknown field (known: {', '.join(known)})")
        return value

    def get(self, data: dict, key: str, where: str, kind: type | tuple[type, ...], default: Any = None,
            *, required: bool = False) -> Any:
        if key not in data:
            if required:
                self.bad(where, "required field is missing")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join({str: "text", int: "an integer", float: "a number", bool: "true/false",
                                 list: "a list", dict: "a table"}[k] for k in kinds)
            self.bad(where, f"must be {names}, not {value!r}")
            return default
        return value

    def number(self, data: dict, key: str, where: str, default: Any, lo: float, hi: float,
               kind: type = int) -> Any:
        value = self.get(data, key, where, kind, None)
        if value is None:
            return default
        if not lo <= value <= hi:
            self.bad(where, f"{value} is out of range {lo}..{hi}")
            return default
        return value

    def str_list(self, data: dict, key: str, where: str, default: tuple[str, ...],
                 allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self.get(data, key, where, list, None)
        if value is None:
            return default
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.bad(f"{where}[{i}]", f"must be text, not {item!r}")
            elif allowed is not None and item not in allowed:
                self.bad(f"{where}[{i}]", f"{item!r} is not one of {', '.join(allowed)}")
            else:
                out.append(item)
        return tuple(out)

    def path(self, base: Path, value: str) -> Path:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else base / p).resolve()


def _toml_line(exc: tomllib.TOMLDecodeError) -> int | None:
    m = re.search(r"at line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def version_tuple(text: str) -> tuple[int, ...] | None:
    """``v4.1.0.0`` → ``(4, 1, 0, 0)``; None when it is not an esp-at version."""
    m = _VERSION.match(text)
    return tuple(int(g) for g in m.groups()) if m else None


def _firmware(r: _Reader, data: dict, base: Path) -> FirmwareSource | None:
    if "firmware" not in data:
        r.bad("firmware", "required table is missing (synthetic, build_dir or factory_image)")
        return None
    fw = r.table(data, "firmware", FIRMWARE_KINDS)
    given = [k for k in FIRMWARE_KINDS if k in fw]
    if len(given) != 1:
        r.bad("firmware", f"give exactly one of {', '.join(FIRMWARE_KINDS)} (got {len(given)})")
        return None
    kind = given[0]
    value = r.get(fw, kind, f"firmware.{kind}", str, required=True)
    if value is None:
        return None
    if kind == "synthetic":
        version = version_tuple(value)
        if version is None:
            r.bad("firmware.synthetic", f"{value!r} is not an esp-at version like v4.1.0.0")
            return None
        if version < (3, 1, 0, 0):
            r.bad("firmware.synthetic", f"{value}: atfab provisions mfg_nvs firmware (v3.1.0.0 or later)")
            return None
        return FirmwareSource("synthetic", version=value)
    return FirmwareSource(kind, path=r.path(base, value))


def _subject(r: _Reader, value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        r.bad(where, f"bad template: {exc}")
        return None
    unknown = [n for n in names if n not in SUBJECT_FIELDS]
    if unknown:
        r.bad(where, f"unknown placeholder {{{unknown[0]}}} (known: {', '.join(SUBJECT_FIELDS)})")
        return None
    if not value.strip():
        r.bad(where, "subject must not be empty")
        return None
    return value


def _pki(r: _Reader, data: dict, base: Path) -> PkiSpec | None:
    if "pki" not in data:
        return None
    known = ("ca", "demo_ca", "key_type", "subject", "validity_days", "slot")
    t = r.table(data, "pki", known)
    ca = r.get(t, "ca", "pki.ca", str, required=True)
    key_type = r.get(t, "key_type", "pki.key_type", str, "ec-p256")
    subject = _subject(r, r.get(t, "subject", "pki.subject", str, "CN={serial}"), "pki.subject") or "CN={serial}"
    days = r.number(t, "validity_days", "pki.validity_days", 3650, 1, 36500)
    demo = r.get(t, "demo_ca", "pki.demo_ca", bool, False)
    raw_slots = r.get(t, "slot", "pki.slot", list, [])
    if not raw_slots:
        r.bad("pki.slot", "at least one [[pki.slot]] is needed")
    slots: list[PkiSlot] = []
    seen: set[str] = set()
    for i, s in enumerate(raw_slots):
        w = f"pki.slot[{i}]"
        if not isinstance(s, dict):
            r.bad(w, "must be a table")
            continue
        for k in s:
            if k not in ("set", "index", "subject", "key_type", "validity_days", "trust"):
                r.bad(f"{w}.{k}", "unknown field (known: set, index, subject, key_type, validity_days, trust)")
        set_name = r.get(s, "set", f"{w}.set", str, required=True)
        if set_name is not None and set_name not in PKI_SETS:
            r.bad(f"{w}.set", f"{set_name!r} is not one of {', '.join(PKI_SETS)}")
            set_name = None
        index = r.number(s, "index", f"{w}.index", 0, 0, 7)
        trust = r.get(s, "trust", f"{w}.trust", str)
        slot = PkiSlot(
            set=set_name or "?", index=index,
            subject=_subject(r, r.get(s, "subject", f"{w}.subject", str), f"{w}.subject") or subject,
            key_type=r.get(s, "key_type", f"{w}.key_type", str, key_type),
            validity_days=r.number(s, "validity_days", f"{w}.validity_days", days, 1, 36500),
            trust=r.path(base, trust) if trust else None,
        )
        if set_name is not None:
            if slot.name in seen:
                r.bad(w, f"slot {slot.name} is given twice")
            seen.add(slot.name)
            slots.append(slot)
    if ca is None:
        return None
    return PkiSpec(ca_dir=r.path(base, ca), slots=tuple(slots), key_type=key_type, demo_ca=bool(demo))


def _serial(r: _Reader, data: dict) -> SerialScheme:
    t = r.table(data, "serial", ("scheme", "prefix", "width", "start", "counter"))
    scheme = r.get(t, "scheme", "serial.scheme", str, "counter")
    if scheme not in SCHEMES:
        r.bad("serial.scheme", f"must be one of {', '.join(SCHEMES)}, not {scheme!r}")
        scheme = "counter"
    s = SerialScheme(
        scheme=scheme,
        prefix=r.get(t, "prefix", "serial.prefix", str, ""),
        width=r.get(t, "width", "serial.width", int, 6),
        start=r.get(t, "start", "serial.start", int, 1),
        counter=r.get(t, "counter", "serial.counter", str),
    )
    r.problems.extend(s.problems(source=r.source))
    return s


def _verify(r: _Reader, data: dict) -> VerifySpec:
    known = ("checks", "at_version", "mac_prefixes", "baud_tolerance_pct", "boot_timeout_s", "command_timeout_s")
    t = r.table(data, "verify", known)
    at_version = r.get(t, "at_version", "verify.at_version", str)
    if at_version is not None and version_tuple(at_version) is None:
        r.bad("verify.at_version", f"{at_version!r} is not an esp-at version like v4.1.0.0")
    prefixes = []
    for i, p in enumerate(r.str_list(t, "mac_prefixes", "verify.mac_prefixes", ())):
        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){0,5}", p):
            r.bad(f"verify.mac_prefixes[{i}]", f"{p!r} is not a MAC prefix like \"24:0a:c4\"")
        else:
            prefixes.append(p.lower())
    return VerifySpec(
        checks=r.str_list(t, "checks", "verify.checks", (), CHECKS),   # () = chosen by recipe_checks
        at_version=at_version,
        mac_prefixes=tuple(prefixes),
        baud_tolerance_pct=r.number(t, "baud_tolerance_pct", "verify.baud_tolerance_pct", 2.0, 0.0, 10.0, float),
        boot_timeout_s=r.number(t, "boot_timeout_s", "verify.boot_timeout_s", 10.0, 0.1, 600.0, float),
        command_timeout_s=r.number(t, "command_timeout_s", "verify.command_timeout_s", 5.0, 0.1, 600.0, float),
    )


def _outputs(r: _Reader, data: dict, workdir: Path) -> tuple[ReportSpec, Path]:
    t = r.table(data, "report", ("dir", "junit", "csv", "transcript"))
    out_dir = r.path(workdir, r.get(t, "dir", "report.dir", str, "reports"))
    junit = r.get(t, "junit", "report.junit", (str, bool), True)
    csv_out = r.get(t, "csv", "report.csv", (str, bool), True)

    def where(value: Any, default: str) -> Path | None:
        if value is False:
            return None
        return out_dir / default if value is True else r.path(workdir, value)

    spec = ReportSpec(dir=out_dir, junit=where(junit, "junit.xml"), csv=where(csv_out, "summary.csv"),
                      transcript=r.get(t, "transcript", "report.transcript", bool, True))
    lt = r.table(data, "ledger", ("path",))
    ledger = r.path(workdir, r.get(lt, "path", "ledger.path", str, "ledger.sqlite"))
    return spec, ledger


def _retry(r: _Reader, data: dict) -> RetryPolicy:
    t = r.table(data, "retry", ("attempts", "on", "delay_s"))
    on = r.str_list(t, "on", "retry.on", ("ERROR",), OUTCOMES)
    if "PASS" in on:
        r.bad("retry.on", "a PASS is never retried")
        on = tuple(o for o in on if o != "PASS")
    return RetryPolicy(attempts=r.number(t, "attempts", "retry.attempts", 2, 1, 20), retry_on=on,
                       delay_s=r.number(t, "delay_s", "retry.delay_s", 0.0, 0.0, 3600.0, float))


def recipe_hash(path: Path, extra: list[Path]) -> str:
    """``sha256:<hex>`` over the recipe file and the input files it names (those that exist)."""
    h = hashlib.sha256()
    for p in [path, *extra]:
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def _parse(path: str | Path, workdir: Path | None) -> tuple[Recipe | None, list[InputError]]:
    from . import recipe_checks

    source = str(path)
    r = _Reader(source)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [InputError("no such recipe file", file=source)]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [InputError(f"cannot read recipe: {exc}", file=source)]
    except tomllib.TOMLDecodeError as exc:
        return None, [InputError(f"not valid TOML: {exc}", file=source, line=_toml_line(exc))]
    base = p.resolve().parent
    workdir = (workdir or Path.cwd()).resolve()
    for key in data:
        if key not in _TOP_KEYS:
            r.bad(key, f"unknown field (known: {', '.join(_TOP_KEYS)})")
    name = r.get(data, "name", "name", str, p.stem)
    if not _NAME.match(name):
        r.bad("name", f"{name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    module = r.get(data, "module", "module", str, required=True)
    firmware = _firmware(r, data, base)
    overrides = r.table(data, "factory_param")
    pki = _pki(r, data, base)
    gatt_t = r.table(data, "gatt", ("file",))
    gatt_file = r.get(gatt_t, "file", "gatt.file", str, required="gatt" in data)
    gatt = GattSpec(file=r.path(base, gatt_file)) if gatt_file else None
    serial = _serial(r, data)
    verify = _verify(r, data)
    report, ledger = _outputs(r, data, workdir)
    retry = _retry(r, data)
    ctx = recipe_checks.Context(source=source, base=base, problems=r.problems)
    profile = recipe_checks.module_profile(ctx, module, base) if module else None
    factory = recipe_checks.factory_params(ctx, profile, overrides)
    if profile is not None:
        gatt = recipe_checks.gatt_table(ctx, profile, gatt)
        verify = recipe_checks.verify_checks(ctx, profile, verify, pki, gatt, firmware)
        if firmware is not None:
            recipe_checks.firmware_files(ctx, profile, firmware)
        if pki is not None:
            recipe_checks.pki_material(ctx, profile, pki)
        if factory is not None:
            recipe_checks.mfg_nvs_fits(ctx, profile, factory, pki, gatt)
    if r.problems or profile is None or firmware is None or factory is None:
        return None, r.problems
    extra = [x for x in (gatt.file if gatt else None, pki.ca_dir / "ca.crt" if pki else None) if x is not None]
    extra += [s.trust for s in (pki.slots if pki else ()) if s.trust is not None]
    recipe = Recipe(
        name=name, description=r.get(data, "description", "description", str, ""), path=p.resolve(),
        hash=recipe_hash(p, extra), module=module, profile=profile, firmware=firmware, factory_param=factory,
        pki=pki, gatt=gatt, serial=serial, verify=verify, report=report, retry=retry, ledger=ledger, raw=data,
    )
    return recipe, []


def check_recipe(path: str | Path, *, workdir: str | Path | None = None) -> list[InputError]:
    """Every problem of a recipe (empty when it is ready to run)."""
    return _parse(path, Path(workdir) if workdir is not None else None)[1]


def load_recipe(path: str | Path, *, workdir: str | Path | None = None) -> Recipe:
    """Load and fully check a recipe; :class:`RecipeError` lists every problem."""
    recipe, problems = _parse(path, Path(workdir) if workdir is not None else None)
    if problems or recipe is None:
        raise RecipeError(problems or [InputError("recipe could not be loaded", file=str(path))])
    return recipe


__all__ = [
    "Recipe", "RecipeError", "FirmwareSource", "PkiSpec", "PkiSlot", "GattSpec", "VerifySpec", "ReportSpec",
    "RetryPolicy", "SerialScheme", "load_recipe", "check_recipe", "recipe_hash", "version_tuple",
    "CHECKS", "PKI_SETS", "SUBJECT_FIELDS",
]
