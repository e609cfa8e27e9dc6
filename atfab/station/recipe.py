"""Recipes: what one product line provisions (TOML files under ``recipes/``; docs/recipes.md).

:func:`load_recipe` returns a :class:`Recipe` with every path resolved to an absolute path, or
raises :class:`RecipeError` carrying *all* problems found (``.problems``, one
:class:`InputError` each, ``file: field: what is wrong``). :func:`check_recipe` returns the
problem list instead. Structural checks live here; checks against the module profile, the
firmware files, the GATT table and the PKI live in :mod:`atfab.station.recipe_checks`.

Input paths (firmware, CA, GATT) are relative to the recipe file; output paths (reports,
ledger) are relative to ``workdir`` (default: the current directory when the recipe is loaded).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import OUTCOMES, InputError
from ..core import inputs
from ..core.firmware.catalog import is_release_name, releases as firmware_releases
from ..core.outputs import check_output
from ..core.tomlfile import unknown_fields
from ..pki.issue import IdentityTemplate
from ..pki.slots import parse_slots, UNIT
from . import recipe_checks, recipe_limits
from .label_template import DPIS, LABEL_FIELDS, LABEL_FORMATS, template_fields
from .mes.targets import parse_targets
from .recipe_spec import version_tuple
from .recipe_spec import (
    FIRMWARE_KINDS, ROTATE_MODES, SUBJECT_FIELDS, EscrowSpec, FirmwareSource,
    GattSpec, LabelSpec, PkiSpec, Recipe, ReportSpec, RetryPolicy, RotateSpec, VerifySpec, slot_name,
)
from .ledger_db import is_database_url
from .serials import SCHEMES, SerialScheme
from ..verify.checks import CHECKS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOP_KEYS = ("name", "description", "module", "firmware", "factory_param", "pki", "gatt", "serial",
             "verify", "report", "retry", "ledger", "rotate", "label")


class RecipeError(InputError):
    """A recipe has problems. ``str()`` is the first one; ``.problems`` holds them all."""

    def __init__(self, problems: list[InputError]) -> None:
        first = problems[0]
        super().__init__(first.message, file=first.file, field=first.field, line=first.line)
        self.problems = list(problems)


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
            self.problems += unknown_fields(value, known, file=self.source, where=where)
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
        return inputs.resolved(p if p.is_absolute() else base / p)


def _firmware(r: _Reader, data: dict, base: Path) -> FirmwareSource | None:
    if "firmware" not in data:
        r.bad("firmware", "required table is missing (synthetic, build_dir or factory_image)")
        return None
    if not isinstance(data["firmware"], dict):
        r.bad("firmware", "must be a table")
        return None
    fw = r.table(data, "firmware", (*FIRMWARE_KINDS, "allow_unread"))
    allow_unread = bool(r.get(fw, "allow_unread", "firmware.allow_unread", bool, False))
    given = [k for k in FIRMWARE_KINDS if k in fw]
    if len(given) != 1:
        r.bad("firmware", f"give exactly one of {', '.join(FIRMWARE_KINDS)} (got {len(given)})")
        return None
    kind = given[0]
    value = r.get(fw, kind, f"firmware.{kind}", str, required=True)
    if value is None:
        return None
    if kind == "synthetic":
        if version_tuple(value) is None and not (value in firmware_releases() and is_release_name(value)):
            r.bad("firmware.synthetic", f"{value!r} is not an esp-at version like v4.1.0.0 "
                                        "(or a NONOS AT release like nonos-v1.7.6.0)")
            return None
        known = [v for v in firmware_releases() if is_release_name(v)]
        if value not in known:
            r.bad("firmware.synthetic", f"{value} is not an esp-at release atfab knows (known: {', '.join(known)})")
            return None
        # an older release is only for a module whose profile says so (a NONOS AT module:
        # recipe_checks.firmware_release, once the module is known)
        return FirmwareSource("synthetic", version=value, allow_unread=allow_unread)
    return FirmwareSource(kind, path=r.path(base, value), allow_unread=allow_unread)


def _pki(r: _Reader, data: dict, base: Path) -> PkiSpec | None:
    if "pki" not in data:
        return None

    if not isinstance(data["pki"], dict):
        r.bad("pki", "must be a table")
        return None
    t = r.table(data, "pki", ("ca", "demo_ca", "identity", "slot", "escrow"))
    ca = r.get(t, "ca", "pki.ca", str)
    demo = r.get(t, "demo_ca", "pki.demo_ca", bool, False)
    identity = IdentityTemplate(source=r.source)
    table = r.get(t, "identity", "pki.identity", dict, {})
    try:
        identity = IdentityTemplate.from_table(table, source=r.source, field="pki.identity")
    except InputError as exc:
        r.problems.append(exc)
    raw_slots = r.get(t, "slot", "pki.slot", list, [])
    if not raw_slots and isinstance(t.get("slot"), list):
        r.bad("pki.slot", "at least one [[pki.slot]] is needed")
    elif "slot" not in t:
        r.bad("pki.slot", "required: at least one [[pki.slot]]")
    slots: list[Any] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(raw_slots):
        where = f"pki.slot[{i}]"
        try:
            (slot,) = parse_slots([table], source=r.source, base_dir=base, field="pki.slot")
        except InputError as exc:
            field_name = (exc.field or "pki.slot").replace("pki.slot[0]", where, 1)
            r.problems.append(InputError(exc.message, file=exc.file, field=field_name, line=exc.line))
            continue
        name = slot_name(slot)
        if name in seen:
            r.bad(where, f"slot {name} is also pki.slot[{seen[name]}]")
            continue
        seen[name] = i
        slots.append(replace(slot, field=where))
    return PkiSpec(ca_dir=r.path(base, ca) if ca else None, identity=identity, slots=tuple(slots),
                   demo_ca=bool(demo))


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
    t = r.table(data, "report", ("dir", "junit", "csv", "transcript", "publish"))
    out_dir = r.path(workdir, r.get(t, "dir", "report.dir", str, "reports"))
    junit = r.get(t, "junit", "report.junit", (str, bool), True)
    csv_out = r.get(t, "csv", "report.csv", (str, bool), True)

    def where(value: Any, default: str) -> Path | None:
        if value is False:
            return None
        return out_dir / default if value is True else r.path(workdir, value)

    publish = r.str_list(t, "publish", "report.publish", ())
    try:
        parse_targets(publish, file=r.source)
    except InputError as exc:
        r.problems.append(exc)
    spec = ReportSpec(dir=out_dir, junit=where(junit, "junit.xml"), csv=where(csv_out, "summary.csv"),
                      transcript=r.get(t, "transcript", "report.transcript", bool, True), publish=publish)
    lt = r.table(data, "ledger", ("path", "url"))
    url = r.get(lt, "url", "ledger.url", str, None)
    if url is not None:
        if not is_database_url(url):
            r.bad("ledger.url", f"{url!r} is not a postgresql:// URL (a SQLite ledger is ledger.path)")
        elif "path" in lt:
            r.bad("ledger.url", "give ledger.path (SQLite) or ledger.url (PostgreSQL), not both")
        else:
            return spec, url
    ledger = r.path(workdir, r.get(lt, "path", "ledger.path", str, "ledger.sqlite"))
    # a run must be able to write every output; `atfab check` says so before a unit is touched
    for field, path, what, kind in (("report.dir", spec.dir, "reports folder", "dir"),
                                    ("report.junit", spec.junit, "JUnit file", "file"),
                                    ("report.csv", spec.csv, "CSV summary", "file"),
                                    ("ledger.path", ledger, "ledger", "file")):
        if path is not None:
            try:
                check_output(path, what, kind=kind)
            except InputError as exc:
                r.bad(field, f"{exc.message}: {path}")
                break                       # the files inside a bad reports folder say the same again
    return spec, ledger


def _retry(r: _Reader, data: dict) -> RetryPolicy:
    t = r.table(data, "retry", ("attempts", "on", "delay_s"))
    on = r.str_list(t, "on", "retry.on", ("ERROR",), OUTCOMES)
    if "PASS" in on:
        r.bad("retry.on", "a PASS is never retried")
        on = tuple(o for o in on if o != "PASS")
    return RetryPolicy(attempts=r.number(t, "attempts", "retry.attempts", 2, 1, 20), retry_on=on,
                       delay_s=r.number(t, "delay_s", "retry.delay_s", 0.0, 0.0, 3600.0, float))


def _rotate(r: _Reader, data: dict, pki: PkiSpec | None) -> RotateSpec:
    if "rotate" not in data:
        return RotateSpec()
    t = r.table(data, "rotate", ("mode", "slots", "restart"))
    mode = r.get(t, "mode", "rotate.mode", str, "new-key")
    if mode not in ROTATE_MODES:
        r.bad("rotate.mode", f"must be one of {', '.join(ROTATE_MODES)}, not {mode!r}")
        mode = "new-key"
    slots = r.str_list(t, "slots", "rotate.slots", ())
    if pki is None:
        r.bad("rotate", "needs a [pki] table with a unit identity slot")
    else:
        unit_slots = [slot_name(s) for s in pki.slots if s.cert == UNIT]
        if not unit_slots:
            r.bad("rotate", 'no [[pki.slot]] with cert = "unit" to rotate')
        for i, name in enumerate(slots):
            if name not in unit_slots:
                r.bad(f"rotate.slots[{i}]", f"{name!r} is not a unit identity slot (those are: "
                      f"{', '.join(unit_slots) or 'none'})")
    return RotateSpec(mode=mode, slots=slots, restart=r.get(t, "restart", "rotate.restart", bool, True))


def _label(r: _Reader, data: dict) -> LabelSpec | None:
    if "label" not in data:
        return None
    t = r.table(data, "label", ("formats", "qr", "lines", "width_mm", "height_mm", "dpi"))
    d = LabelSpec()
    formats = r.str_list(t, "formats", "label.formats", d.formats, LABEL_FORMATS)
    if not formats:
        r.bad("label.formats", f"give at least one of {', '.join(LABEL_FORMATS)}")
    dpi = r.get(t, "dpi", "label.dpi", int, d.dpi)
    if dpi not in DPIS:
        r.bad("label.dpi", f"{dpi} is not a label printer resolution ({', '.join(map(str, DPIS))})")
        dpi = d.dpi
    qr = r.get(t, "qr", "label.qr", str, d.qr)
    lines = r.str_list(t, "lines", "label.lines", d.lines)
    if len(lines) > 6:
        r.bad("label.lines", f"at most 6 text lines fit a label, not {len(lines)}")
    for where, template in (("label.qr", qr), *((f"label.lines[{i}]", s) for i, s in enumerate(lines))):
        try:
            unknown = [n for n in template_fields(template) if n not in LABEL_FIELDS]
        except ValueError as exc:
            r.bad(where, f"{template!r}: {exc}")
            continue
        if unknown:
            r.bad(where, f"unknown placeholder {{{unknown[0]}}} (known: {', '.join(LABEL_FIELDS)})")
    if not qr.strip():
        r.bad("label.qr", "the QR code needs some text, e.g. \"S/N:{serial};MAC:{mac}\"")
    elif len(qr) > 300:
        r.bad("label.qr", f"{len(qr)} characters is too much for a small label's QR code (at most 300)")
    return LabelSpec(formats=formats, qr=qr, lines=lines, dpi=dpi,
                     width_mm=r.number(t, "width_mm", "label.width_mm", d.width_mm, 15.0, 200.0, float),
                     height_mm=r.number(t, "height_mm", "label.height_mm", d.height_mm, 8.0, 200.0, float))


def recipe_hash(path: Path, extra: list[Path]) -> str:
    """``sha256:<hex>`` over the recipe file and the input files it names (those that exist)."""
    h = hashlib.sha256()
    for p in [path, *extra]:
        if p.is_file():
            h.update(p.name.encode() + b"\0" + inputs.read_bytes(p, "recipe input", limit=inputs.IMAGE_LIMIT) + b"\0")
    return "sha256:" + h.hexdigest()


def _parse(path: str | Path, workdir: Path | None, passphrase: bytes | None = None,
           integrity: bool = False) -> tuple[Recipe | None, list[InputError]]:
    source = str(path)
    r = _Reader(source)
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return None, [InputError("no such recipe file", file=source)]
    try:
        data = inputs.parse_toml(inputs.read_text(p, "recipe", limit=inputs.TOML_LIMIT, field=""), file=source, field="")
    except InputError as exc:
        return None, [exc]
    base = inputs.resolved(p).parent
    workdir = (workdir or Path.cwd()).resolve()
    r.problems += unknown_fields(data, _TOP_KEYS, file=source)
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
    if pki is not None and isinstance(data["pki"], dict) and "escrow" in data["pki"]:
        pki = replace(pki, escrow=recipe_checks.escrow_spec(r, data["pki"]["escrow"], base, workdir, pki, name))
    retry = _retry(r, data)
    rotate = _rotate(r, data, pki)
    label = _label(r, data)
    description = r.get(data, "description", "description", str, "")
    ctx = recipe_checks.Context(source=source, base=base, problems=r.problems, passphrase=passphrase)
    profile = recipe_checks.module_profile(ctx, module, base) if module else None
    if firmware is not None and not recipe_checks.firmware_release(ctx, profile, firmware):
        firmware = None
    if profile is not None and firmware is not None:
        profile = recipe_checks.build_config(ctx, profile, firmware)
        profile = recipe_checks.legacy_release(ctx, profile, firmware)
    factory = recipe_checks.factory_params(ctx, profile, overrides)
    if profile is not None and profile.nonos is not None:
        for table in ("pki", "gatt"):
            if table in data:
                ctx.bad(table, f"module {profile.name} runs NONOS AT: no certificates, no BLE (remove [{table}])")
    if profile is not None:
        allow_unread = firmware is not None and firmware.allow_unread
        gatt = recipe_checks.gatt_table(ctx, profile, gatt, allow_unread=allow_unread)
        verify = recipe_checks.verify_checks(ctx, profile, verify, pki, gatt, firmware)
        if firmware is not None:
            recipe_checks.firmware_files(ctx, profile, firmware)
        plan = (recipe_checks.pki_material(ctx, profile, pki, recipe=name, allow_unread=allow_unread, serial=serial,
                                           module_name=str(factory["module_name"]) if factory and
                                           "module_name" in factory else None)
                if pki is not None else None)
        if factory is not None:
            recipe_checks.mfg_nvs_fits(ctx, profile, factory, pki, plan, gatt)
        if pki is not None and plan is not None:
            recipe_limits.sysmfg_sizes(ctx, profile, pki, plan)
    if integrity:
        recipe_checks.ledger_integrity(ctx, ledger)
    if r.problems or profile is None or firmware is None or factory is None:
        return None, r.problems
    extra = [gatt.file] if gatt is not None else []
    if pki is not None:
        if pki.ca_dir is not None:
            extra += [pki.ca_dir / "ca.crt", pki.ca_dir / "chain.pem"]
        if pki.escrow is not None:
            extra.append(pki.escrow.recipient)
        for slot in pki.slots:
            extra += [Path(f) for f in (slot.cert, *slot.ca, slot.issuer) if f and Path(f).is_absolute()]
    recipe = Recipe(
        name=name, description=description, path=inputs.resolved(p),
        hash=recipe_hash(p, extra), module=module, profile=profile, firmware=firmware, factory_param=factory,
        pki=pki, gatt=gatt, serial=serial, verify=verify, report=report, retry=retry, ledger=ledger, rotate=rotate,
        label=label, raw=data,
    )
    return recipe, []


def check_recipe(path: str | Path, *, workdir: str | Path | None = None,
                 passphrase: bytes | None = None) -> list[InputError]:
    """Every problem of a recipe (empty when it is ready to run); with the CA key ``passphrase``
    it also proves the CA key decrypts and matches the CA certificate."""
    return _parse(path, Path(workdir) if workdir is not None else None, passphrase, integrity=True)[1]


def load_recipe(path: str | Path, *, workdir: str | Path | None = None) -> Recipe:
    """Load and fully check a recipe; :class:`RecipeError` lists every problem."""
    recipe, problems = _parse(path, Path(workdir) if workdir is not None else None)
    if problems or recipe is None:
        raise RecipeError(problems or [InputError("recipe could not be loaded", file=str(path))])
    return recipe


__all__ = [
    "Recipe", "RecipeError", "FirmwareSource", "PkiSpec", "EscrowSpec", "slot_name", "GattSpec", "VerifySpec", "ReportSpec",
    "RetryPolicy", "RotateSpec", "ROTATE_MODES", "SerialScheme", "load_recipe", "check_recipe", "recipe_hash", "version_tuple",
    "SUBJECT_FIELDS",
]
