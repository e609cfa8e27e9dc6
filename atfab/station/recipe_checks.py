"""Recipe checks against the module profile, firmware files, GATT table, PKI material and mfg_nvs size.

Each function appends :class:`InputError` lines to ``ctx.problems`` and carries on, so one
``atfab check`` shows everything that is wrong.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..core.errors import InputError
from ..core.outputs import check_output
from ..core.inputs import IMAGE_LIMIT, PEM_LIMIT, not_a_regular_file, read_bytes, resolved
from ..image import appimage, factory_param as fp, partition_table as pt
from ..image.build import load_firmware, release_of_app
from ..image.legacy_build import build_legacy_images
from ..image.legacy_content import default_gatt, gatt_rows_of
from ..image.legacy_layout import tx_power_range
from ..image.build_config import find_sdkconfig, read_sdkconfig
from ..image.gatt import cfg_strings
from ..image.legacy_content import check_overrides as check_legacy_overrides
from ..image.mfg_nvs import PkiFile, UnitContent, build_mfg_nvs
from ..image.profiles import BUILTIN_DIR, ModuleProfile, load_profile
from ..pki.ca import ca_problems
from ..pki.checks import check_cert_file, parse_pem_certs
from ..pki.escrow import load_recipient
from ..pki.issue import identity_values, render
from ..verify.nonos import NONOS_CHECKS
from ..pki.slots import KINDS, SlotPlan, namespace_for, plan_slots
from .serials import SerialScheme
from .recipe_spec import EscrowSpec, FirmwareSource, GattSpec, PkiSpec, VerifySpec, version_tuple
from ..verify.checks import CHECKS, WIFI_CHECKS

#: How a recipe says "write it anyway" (in the messages for content the firmware never reads).
ALLOW_UNREAD = "set [firmware] allow_unread = true to write it anyway"
#: Bytes assumed per generated certificate / key when estimating the mfg_nvs size (generous).
PKI_SIZE_ESTIMATE = {
    "ec-p256": (900, 300), "ec-p384": (1000, 400),
    "rsa-2048": (1400, 1800), "rsa-3072": (1800, 2600), "rsa-4096": (2300, 3400),
}


@dataclass
class Context:
    source: str
    base: Path
    problems: list[InputError]
    #: The CA key passphrase when the caller knows it (``atfab check`` with $ATFAB_CA_PASSPHRASE):
    #: then the check proves the key decrypts and matches ca.crt.
    passphrase: bytes | None = None

    def bad(self, field: str | None, message: str, *, file: str | Path | None = None) -> None:
        self.problems.append(InputError(message, file=str(file) if file is not None else self.source, field=field))

    def add(self, exc: InputError, field: str | None = None) -> None:
        """Record an error raised by another module; it keeps its own file/field when it has them."""
        self.problems.append(exc.located(file=self.source, field=field))



def module_profile(ctx: Context, module: str, base: Path) -> "ModuleProfile | None":
    name = module
    if "/" in module or module.endswith(".toml"):
        name = str(resolved(base / module))
    try:
        return load_profile(name)
    except InputError as exc:
        ctx.problems.append(InputError(exc.message, file=exc.file or ctx.source,
                                       field=exc.field if exc.file else "module", line=exc.line))
        return None


def build_config(ctx: Context, profile: ModuleProfile, firmware: "FirmwareSource") -> ModuleProfile:
    """The profile for the recipe's firmware: a ``build_dir`` with an ``sdkconfig`` (or
    ``config/sdkconfig.json``) decides which namespaces it reads; otherwise the profile's ``[build]``."""
    if firmware.kind != "build_dir" or firmware.path is None or not firmware.path.is_dir():
        return profile
    found = find_sdkconfig(firmware.path)
    if found is None:
        return profile
    try:
        return profile.with_build(read_sdkconfig(found))
    except InputError as exc:
        ctx.add(exc, "firmware.build_dir")
        return profile


#: What a recipe may set for a NONOS AT (G0) module: the baud its configure step sets with AT+UART=.
NONOS_PARAMS = ("uart_baudrate",)


def firmware_release(ctx: Context, profile: "ModuleProfile | None", firmware: "FirmwareSource") -> bool:
    """A synthetic firmware's release suits the module: v3.1.0.0 or later (mfg_nvs) for an ESP-IDF
    layout, one of the profile's releases for a legacy (G1/G2) or a G0 module. False (and a problem) otherwise."""
    if firmware.kind != "synthetic" or firmware.version is None:
        return True
    version = version_tuple(firmware.version)
    if profile is not None and profile.nonos is not None:
        if firmware.version not in profile.releases:
            ctx.bad("firmware.synthetic", f"{firmware.version}: module {profile.name} runs NONOS AT "
                                          f"{', '.join(profile.releases)}")
            return False
        return True
    if profile is not None and profile.legacy:
        if firmware.version not in profile.releases:
            ctx.bad("firmware.synthetic", f"{firmware.version}: module {profile.name} ({profile.firmware.generation} "
                                          f"layout) is built by esp-at {', '.join(profile.releases)}")
            return False
        return True
    if version is not None and version < (3, 1, 0, 0):
        ctx.bad("firmware.synthetic", f"{firmware.version}: module {profile.name if profile else '?'} has an mfg_nvs "
                                      "layout (esp-at v3.1.0.0 or later; the legacy layouts have their own profiles, "
                                      "partitions/README.md)")
        return False
    return True


def legacy_release(ctx: Context, profile: ModuleProfile, firmware: "FirmwareSource") -> ModuleProfile:
    """A G1/G2 module built from the recipe's firmware: the synthetic release, or the release the
    app of a build folder / factory image names (its AT core commit). Unchanged for other layouts,
    and when the firmware cannot be read (:func:`firmware_files` says why)."""
    if not profile.legacy:
        return profile
    where = f"firmware.{firmware.kind}"
    try:
        if firmware.kind == "synthetic" and firmware.version is not None:
            return profile.for_release(firmware.version)
        assert firmware.path is not None
        if firmware.kind == "build_dir":
            if not firmware.path.is_dir():
                return profile
            fw = load_firmware(firmware.path, profile)
            app, source = fw.app, fw.origin.get("app", str(firmware.path))
        else:
            if not_a_regular_file(firmware.path):
                return profile
            data = read_bytes(firmware.path, "factory image", limit=IMAGE_LIMIT)
            app, source = appimage.read_app_info(data[profile.app_offset:], source=str(firmware.path)), str(firmware.path)
        return profile.for_release(release_of_app(profile, app, source=source))
    except InputError as exc:
        ctx.add(exc, where)
        return profile


def factory_params(ctx: Context, profile: "ModuleProfile | None", overrides: dict[str, Any]) -> dict[str, int | str] | None:
    """The merged factory_param set (profile defaults + recipe values), checked for the chip."""
    if profile is not None and profile.nonos is not None:
        return _nonos_params(ctx, profile, overrides)
    if profile is not None and profile.legacy:
        return _legacy_params(ctx, profile, overrides)
    chip = profile.chip if profile is not None else None
    bad_keys: set[str] = set()
    for key, value in overrides.items():
        declared = fp.KEY_TYPES.get(key)
        if declared is not None and declared != "string" and (isinstance(value, bool) or not isinstance(value, int)):
            bad_keys.add(key)    # TOML has integers: "78" (a string) is a mistake, not a number
            ctx.bad(f"factory_param.{key}", f"must be a TOML integer ({declared}), not {type(value).__name__} {value!r}")
            continue
        try:
            fp.validate_value(key, value, chip=chip, file=ctx.source)
        except InputError as exc:
            bad_keys.add(key)
            ctx.bad(f"factory_param.{key}", exc.message)
    if profile is None or bad_keys:
        return None
    merged = {**profile.factory_param, **overrides}
    try:
        return fp.validate(merged, chip=chip, file=ctx.source)
    except InputError as exc:
        ctx.bad(f"factory_param.{exc.field}" if exc.field else "factory_param", exc.message)
        return None


def _legacy_params(ctx: Context, profile: "ModuleProfile", overrides: dict[str, Any]) -> dict[str, int | str] | None:
    """A G1/G2 module: the values its release's 0xFCFC block stores (the profile's row, checked when
    the profile was loaded, plus the recipe's, checked against the block)."""
    if not profile.firmware.factory_param_layout:
        return _over_at_params(ctx, profile, overrides)
    try:
        checked = check_legacy_overrides(profile, overrides, file=ctx.source)
    except InputError as exc:
        ctx.bad(exc.field or "factory_param", exc.message)
        return None
    return {**profile.factory_param, **checked}


#: What a recipe may set on a legacy release without a factory_param block (esp32-at v1.0/v1.1): the
#: station sets them over AT (AT+UART_DEF, AT+RFPOWER) in the configure step.
OVER_AT_PARAMS = ("uart_baudrate", "max_tx_power")


def _over_at_params(ctx: Context, profile: "ModuleProfile", overrides: dict[str, Any]) -> dict[str, int | str] | None:
    """esp32-at v1.0/v1.1 read no factory_param partition: a recipe's UART baud and Wi-Fi power level
    are set over AT by the configure step (and verified); any other key is refused."""
    fw = profile.firmware
    out = dict(profile.factory_param)
    for key, value in overrides.items():
        where = f"factory_param.{key}"
        if key not in OVER_AT_PARAMS:
            ctx.bad(where, f"esp-at {fw.release} has no factory_param partition: the firmware uses its built-in "
                           f"defaults; a recipe sets only {', '.join(OVER_AT_PARAMS)} (over AT)")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.bad(where, f"must be a TOML integer, not {type(value).__name__} {value!r}")
            return None
        if key == "max_tx_power":
            lo, hi = tx_power_range(fw)
            if not lo <= value <= hi:
                unit = "a power level (AT+RFPOWER=<level>)" if fw.rfpower_levels else "0.25 dBm"
                ctx.bad(where, f"{value} is out of range {lo}..{hi} ({unit})")
                return None
        else:
            try:
                fp.validate_value(key, value, chip=profile.chip, file=ctx.source)
            except InputError as exc:
                ctx.bad(where, exc.message)
                return None
        out[key] = value
    return out


def _nonos_params(ctx: Context, profile: "ModuleProfile", overrides: dict[str, Any]) -> dict[str, int | str] | None:
    """A G0 module has no factory_param partition: only the UART baud the configure step sets."""
    merged = dict(profile.factory_param)
    for key, value in overrides.items():
        if key not in NONOS_PARAMS:
            ctx.bad(f"factory_param.{key}", f"module {profile.name} (NONOS AT) has no factory parameters; "
                                            f"a recipe sets only {', '.join(NONOS_PARAMS)}")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 110 <= value <= 4_608_000:
            ctx.bad(f"factory_param.{key}", "must be an integer baud rate 110..4608000 (AT+UART= of v0.21)")
            return None
        merged[key] = value
    return merged


def gatt_table(ctx: Context, profile: "ModuleProfile", gatt: "GattSpec | None", *,
               allow_unread: bool = False) -> "GattSpec | None":
    """The GATT table to use (esp-at's default on BLE modules without one), validated."""

    if gatt is None:
        if not profile.build.ble_data:
            return None
        default = default_gatt(profile) if profile.legacy else BUILTIN_DIR / "gatts_data.csv"
        if default is None or (profile.legacy and profile.at_customize.find("ble_data") is None):
            return None
        gatt = GattSpec(file=default, default=True)
    elif not profile.build.ble_data and not allow_unread:
        ctx.bad("gatt", f"module {profile.name} has no BLE commands, its firmware never reads a GATT table: "
                        f"{profile.build.why_unread('ble_data')}; {ALLOW_UNREAD}")
        return None
    why = not_a_regular_file(gatt.file)
    if why:
        ctx.bad("gatt.file", f"{why}: {gatt.file}")
        return None
    if gatt.file.suffix not in (".toml", ".csv"):
        ctx.bad("gatt.file", "must be a .toml description or a gatts_data .csv")
        return None
    if profile.legacy and profile.at_customize.find("ble_data") is None:
        ctx.bad("gatt", f"module {profile.name} has no ble_data partition")
        return None
    try:
        gatt_rows(profile, gatt)
    except InputError as exc:
        ctx.add(exc, "gatt.file")
        return None
    return gatt


def gatt_rows(profile: ModuleProfile, gatt: "GattSpec") -> list[Any]:
    """The GATT rows of ``gatt`` as the module's build reads them: a legacy build takes its
    release's example.csv format (or a G3 gatts_data.csv); TOML descriptions everywhere."""
    if profile.legacy and gatt.file.suffix == ".csv":
        return gatt_rows_of(gatt.file)
    return gatt.rows()


def default_checks(profile: "ModuleProfile", pki: "PkiSpec | None", gatt: "GattSpec | None") -> tuple[str, ...]:
    """The checks run when a recipe's ``[verify] checks`` is not given."""

    if profile.nonos is not None:
        return NONOS_CHECKS
    out = []
    for name in CHECKS:
        if name in WIFI_CHECKS and not profile.firmware.wifi:
            continue
        if (name == "pki" and pki is None) or (name == "gatt" and gatt is None):
            continue
        out.append(name)
    return tuple(out)


def verify_checks(ctx: Context, profile: "ModuleProfile", verify: "VerifySpec", pki: "PkiSpec | None",
                  gatt: "GattSpec | None", firmware: "FirmwareSource | None") -> "VerifySpec":
    checks = verify.checks
    if not checks:
        checks = default_checks(profile, pki, gatt)
    for name in verify.checks:
        if profile.nonos is not None and name not in NONOS_CHECKS:
            ctx.bad("verify.checks", f"{name}: module {profile.name} (NONOS AT) has only {', '.join(NONOS_CHECKS)}")
        elif name in WIFI_CHECKS and not profile.firmware.wifi:
            ctx.bad("verify.checks", f"{name}: module {profile.name} has no Wi-Fi commands")
        elif name == "gatt" and gatt is None:
            ctx.bad("verify.checks", f"gatt: module {profile.name} serves no GATT table")
        elif name == "pki" and pki is None:
            ctx.bad("verify.checks", "pki: the recipe has no [pki] table")
    if len(set(verify.checks)) != len(verify.checks):
        ctx.bad("verify.checks", "a check is listed twice")
    at_version = verify.at_version
    if at_version is None and firmware is not None and firmware.kind == "synthetic":
        at_version = firmware.version
    return replace(verify, checks=tuple(dict.fromkeys(checks)), at_version=at_version)


def _app_partition_size(profile: "ModuleProfile") -> int | None:
    for p in profile.primary.entries:
        if p.offset == profile.app_offset:
            return p.size
    return None


def firmware_files(ctx: Context, profile: "ModuleProfile", firmware: "FirmwareSource") -> None:
    """The firmware files exist, are for this chip and layout, and fit their partitions."""
    if firmware.kind == "synthetic" or profile.nonos is not None:
        return          # a NONOS AT download map is read when the station starts (firmware_images.nonos_firmware_images)
    where = f"firmware.{firmware.kind}"
    path = firmware.path
    assert path is not None
    app_size = _app_partition_size(profile)
    if firmware.kind == "build_dir":
        if not path.is_dir():
            ctx.bad(where, f"no such folder: {path}")
            return
        try:
            fw = load_firmware(path, profile)
        except InputError as exc:
            ctx.add(exc, where)
            return
        app = fw.files["app"][1]
        if app_size is not None and len(app) > app_size:
            ctx.bad(where, f"esp-at.bin is {len(app):#x} bytes, the app partition holds {app_size:#x}")
        boot = fw.files["bootloader"][1]
        room = profile.partition_table_offset - profile.bootloader_offset
        if len(boot) > room:
            ctx.bad(where, f"bootloader.bin is {len(boot):#x} bytes, only {room:#x} fit before the partition table")
        return
    why = not_a_regular_file(path)
    if why:
        ctx.bad(where, f"{why}: {path}")
        return
    try:
        data = read_bytes(path, "factory image", limit=IMAGE_LIMIT)
    except InputError as exc:
        ctx.problems.append(exc.located(field=where))
        return
    # problems inside the image name the image file (the recipe line names only the field)
    if len(data) > profile.flash_size:
        ctx.bad(where, f"image is {len(data):#x} bytes, the module's flash is {profile.flash_size:#x}", file=path)
        return
    off = profile.partition_table_offset
    try:
        table = pt.decode(data[off: off + 0xC00], source=f"{path}@{off:#x}")
    except InputError as exc:
        ctx.bad(where, f"no partition table at {off:#x}: {exc.message}", file=path)
        return
    if table.entries != profile.primary.entries:
        ctx.bad(where, f"partition table does not match module profile {profile.name}", file=path)
    for what, off in (("bootloader", profile.bootloader_offset), ("app", profile.app_offset)):
        chip = appimage.image_chip(data[off:])
        if chip != profile.chip:
            ctx.bad(where, f"{what} at {off:#x} is {'no ESP image' if chip is None else chip + ' code'}, "
                           f"module {profile.name} is {profile.chip}", file=path)
            continue
        try:   # a cut-off or corrupted image (the chip id alone says nothing about the rest)
            info = appimage.read_image_summary(data[off:])
        except InputError as exc:
            ctx.bad(where, f"{what} at {off:#x}: {exc.message}", file=path)
            continue
        if not info.checksum_ok or info.digest_ok is False:
            ctx.bad(where, f"{what} at {off:#x}: image checksum or SHA-256 digest is wrong", file=path)

def _stand_in_ca() -> list[Any]:
    """A throwaway CA certificate standing in for a demo CA that does not exist yet (check only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "atfab check stand-in CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return [cert]


def _factory_ca(ctx: Context, pki: "PkiSpec") -> list[Any] | None:
    """The factory CA chain (CA first, root last); None after recording a problem."""

    ca = pki.ca_dir
    if ca is None:
        if pki.needs_ca:
            ctx.bad("pki.ca", "required: a slot uses the unit identity or factory_ca")
            return None
        return []
    if not ca.is_dir():
        if pki.demo_ca:
            return _stand_in_ca()
        ctx.bad("pki.ca", f"no CA folder {ca} (create one with `atfab ca init`, or set demo_ca = true "
                          f"for a throwaway demo CA)")
        return None
    now = dt.datetime.now(dt.timezone.utc)
    try:
        if not (ca / "ca.crt").exists():
            ctx.bad("pki.ca", f"no CA certificate {ca / 'ca.crt'}")
            return None
        certs = check_cert_file(read_bytes(ca / "ca.crt", "CA certificate", limit=PEM_LIMIT, field="pki.ca"),
                                at=now, file=str(ca / "ca.crt"), field="pki.ca")
        if (ca / "chain.pem").is_file():
            certs += parse_pem_certs(read_bytes(ca / "chain.pem", "CA chain", limit=PEM_LIMIT, field="pki.ca"),
                                     file=str(ca / "chain.pem"), field="pki.ca")
    except InputError as exc:
        ctx.add(exc, "pki.ca")
        return None
    key_path = ca / "ca.key"
    if not key_path.exists() and not key_path.is_symlink():
        if not pki.demo_ca and pki.needs_identity:
            ctx.bad("pki.ca", f"{key_path} is missing: the station cannot issue certificates")
            return None
        return certs
    problems = ca_problems(certs[0], key_path, passphrase=ctx.passphrase, cert_path=ca / "ca.crt")
    if problems:
        ctx.problems.extend(problems)
        return None
    return certs


def longest_serial(serial: "SerialScheme | None") -> str:
    """The longest serial ``serial`` can hand out (what a subject template must still hold)."""
    if serial is None:
        return "SN-000001"
    if serial.scheme == "mac":
        return serial.prefix + "F" * 12
    return serial.prefix + "9" * max(serial.width, len(str(serial.start)))


def pki_material(ctx: Context, profile: ModuleProfile, pki: PkiSpec, *, recipe: str = "recipe",
                 allow_unread: bool = False, serial: "SerialScheme | None" = None,
                 module_name: str | None = None) -> SlotPlan | None:
    """The CA folder, the identity template and the slots' files; returns the slot plan (or None)."""

    for slot in pki.slots:
        if slot.family == "wpa_ent" and not profile.firmware.wifi:
            ctx.bad(f"{slot.field}.set", f"module {profile.name} has no Wi-Fi (no enterprise namespaces)")
            continue
        given = {"cert": slot.cert, "key": slot.key, "ca": slot.ca}
        unread = [ns for ns in (namespace_for(slot.family, kind, profile.firmware) for kind in KINDS if given[kind])
                  if not profile.build.reads(ns)]
        if unread and not allow_unread:
            ctx.bad(f"{slot.field}.set", f"the firmware never reads {', '.join(unread)}: "
                                         f"{profile.build.why_unread(unread[0])}; {ALLOW_UNREAD}")
    if pki.needs_identity:
        # rendered as the longest unit will be: the longest serial the scheme makes, the real module name
        module = module_name if module_name is not None else str(profile.factory_param.get("module_name", ""))
        values = identity_values(serial=longest_serial(serial), mac="24:0a:c4:ff:ff:ff", module=module, recipe=recipe)
        try:
            pki.identity.subject_name(values)
            pki.identity.san(values)
        except InputError as exc:
            ctx.add(exc, "pki.identity")
    factory_ca = _factory_ca(ctx, pki)
    try:   # check the slots even when the CA has a problem (against a stand-in CA then)
        plan = plan_slots(list(pki.slots), firmware=profile.firmware,
                          factory_ca=(factory_ca if factory_ca is not None else _stand_in_ca()) or None,
                          source=ctx.source)
    except InputError as exc:
        ctx.add(exc, "pki.slot")
        return None
    return plan if factory_ca is not None else None


#: Placeholders of ``[pki] escrow.file``.
ESCROW_FIELDS = ("recipe", "station", "date")


def escrow_spec(r: Any, raw: Any, base: Path, workdir: Path, pki: "PkiSpec", recipe: str) -> "EscrowSpec | None":
    """``[pki] escrow = { recipient = "op.pub.pem", file = "escrow/{recipe}.escrow" }`` (``r``: the
    recipe reader). The recipient must be an RSA (>= 2048) or EC P-256/P-384 public key (PEM key
    or certificate); the file is an output path (relative to ``workdir``)."""

    if not isinstance(raw, dict):
        r.bad("pki.escrow", 'must be a table: { recipient = "operator.pub.pem", file = "escrow/{recipe}.escrow" }')
        return None
    for key in raw:
        if key not in ("recipient", "file"):
            r.bad(f"pki.escrow.{key}", "unknown field (known: recipient, file)")
    recipient = r.get(raw, "recipient", "pki.escrow.recipient", str, required=True)
    template = r.get(raw, "file", "pki.escrow.file", str, "escrow/{recipe}.escrow")
    if not pki.needs_identity:
        r.bad("pki.escrow", 'no [[pki.slot]] with cert = "unit": the station generates no key to escrow')
    try:
        rendered = render(template, {"recipe": recipe, "station": "{station}", "date": "{date}"},
                          source=r.source, field="pki.escrow.file")
    except InputError as exc:
        r.problems.append(exc)
        rendered = None
    if recipient is None:
        return None
    path = r.path(base, recipient)
    try:
        load_recipient(path)
    except InputError as exc:
        r.bad("pki.escrow.recipient", f"{path}: {exc.message}")
        return None
    if rendered is None:
        return None
    out = r.path(workdir, rendered)
    try:
        check_output(out, "escrow file")
    except InputError as exc:
        r.bad("pki.escrow.file", f"{exc.message}: {out}")
        return None
    return EscrowSpec(recipient=path, file=str(out))


def ledger_integrity(ctx: Context, path: Path) -> None:
    """An existing SQLite ledger must pass ``PRAGMA integrity_check`` (opened read-only, never changed)."""
    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as db:
            rows = [str(r[0]) for r in db.execute("PRAGMA integrity_check(5)").fetchall()]
    except sqlite3.Error as exc:
        ctx.bad("ledger.path", f"ledger {path} cannot be read: {exc}")
        return
    if rows != ["ok"]:
        ctx.bad("ledger.path", f"ledger {path} fails PRAGMA integrity_check: {'; '.join(rows)[:200]}")


def mfg_nvs_fits(ctx: Context, profile: "ModuleProfile", factory: dict[str, int | str], pki: "PkiSpec | None",
                 plan: SlotPlan | None, gatt: "GattSpec | None") -> None:
    """Build a stand-in mfg_nvs (unit certificate and key of the expected sizes) to prove the content
    fits; on a G1/G2 layout the stand-in per-item partitions (each must fit its partition)."""
    if profile.nonos is not None:
        return          # a NONOS AT module has no per-unit images
    if pki is not None and plan is None:
        return
    rows: list[str] = []
    if gatt is not None:
        try:
            rows = cfg_strings(gatt_rows(profile, gatt))
        except InputError:
            return  # already reported by gatt_table
    content_pki: dict[str, list[Any]] = {}
    if plan is not None:
        items = dict(plan.static)
        cert_n, key_n = PKI_SIZE_ESTIMATE.get(pki.identity.key_type, PKI_SIZE_ESTIMATE["rsa-4096"])
        for ns, index, kind in plan.unit_items:
            items[(ns, index)] = PkiFile(f"{ns}_{index}.pem", b"A" * (cert_n if kind == "cert" else key_n))
        for (ns, index) in sorted(items, key=lambda k: k[1]):
            content_pki.setdefault(ns, []).append(items[(ns, index)])
    content = UnitContent(factory_param=dict(factory), pki=content_pki, ble_rows=rows)
    if profile.mfg_nvs is None:     # G1/G2: one image per item partition
        try:
            build_legacy_images(profile, content, source=ctx.source)
        except InputError as exc:
            ctx.bad(exc.field if exc.field and exc.field.startswith("factory_param") else
                    ("pki" if pki is not None else "gatt"),
                    f"the unit's partitions do not fit module {profile.name}: {exc.message}")
        return
    try:
        # size only: what the firmware never reads was reported by pki_material / gatt_table
        build_mfg_nvs(content, profile.mfg_nvs.size, firmware=profile.firmware, source=ctx.source)
    except InputError as exc:
        ctx.bad("pki" if pki is not None else "gatt",
                f"mfg_nvs content does not fit module {profile.name}: {exc.message}")


__all__ = ["Context", "module_profile", "build_config", "factory_params", "gatt_table", "verify_checks", "default_checks",
           "firmware_files", "pki_material", "mfg_nvs_fits",
           "escrow_spec", "ESCROW_FIELDS", "ledger_integrity", "longest_serial"]
