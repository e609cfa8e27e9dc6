"""One unit's content for a legacy (G1/G2) module, from files: params.toml, a raw_data-like folder,
a GATT CSV (the legacy counterpart of :mod:`atfab.image.unit_content`).

The folder is read as the build of the release read esp-at's ``raw_data`` (notes §2.1-§2.3):

* ``<partition>/`` for each PKI partition of the layout (``client_cert``, ``client_key``,
  ``wpa2_ca`` ...): certificates and CAs are the ``*.pem *.der *.cer *.crt`` files, keys the
  ``*.pem *.der *.key`` files, sorted by name (byte order), one item each; PEM or DER. Anything
  else in the folder is refused (esp-at would silently skip it).
* ``ble_data/`` holds exactly one ``*.csv`` (the legacy ``example.csv`` format, or a G3 gatts_data.csv).
* ``factory_param/factory_param_data.csv``: the module's row (selected as the release's generator
  selects it) gives the factory defaults instead of the profile's.

What the firmware never reads (a PKI folder whose ``CONFIG_AT_*`` option is off, a GATT table
for a build without BLE) is refused, skipped or written as in :mod:`atfab.image.unit_content`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

from ..core.errors import InputError
from ..core.inputs import read_bytes
from ..core.shipped import shipped_dir
from . import legacy_factory as lf
from .gatt import GattRow, cfg_strings
from .legacy_ble import parse_legacy_csv
from .legacy_layout import PKI_PARTITIONS, tx_power_range
from .mfg_nvs import PkiFile, UnitContent
from .profiles import ModuleProfile
from .unit_content import UNREAD_HINT, UNREAD_MODES, Assembled, Params, load_params

CERT_SUFFIXES = (".pem", ".der", ".cer", ".crt")
KEY_SUFFIXES = (".pem", ".der", ".key")
LEGACY_GATT_DIR = shipped_dir("partitions") / "legacy-gatt"
#: Largest certificate/key/CSV file read from a raw_data folder.
FILE_MAX = 64 * 1024


def _read(path: Path, field: str) -> bytes:
    return read_bytes(path, "raw_data file", limit=FILE_MAX, field=field)


def check_pki_file(data: bytes, partition: str, where: str) -> None:
    """A key partition's file must be a private key, any other a certificate (PEM or DER)."""
    try:
        if partition.endswith("_key"):
            (load_pem_private_key if b"-----BEGIN" in data else load_der_private_key)(data, password=None)
        elif b"-----BEGIN" in data:
            x509.load_pem_x509_certificates(data)
        else:
            x509.load_der_x509_certificate(data)
    except Exception:  # noqa: BLE001 - any parse failure: say what it should be, never echo the bytes
        what = "an unencrypted private key (PEM or DER)" if partition.endswith("_key") else "a certificate (PEM or DER)"
        raise InputError(f"not {what}", file=where, field=partition) from None


def pki_files(folder: Path, partition: str) -> list[PkiFile]:
    """The files of one PKI folder in the order the build passed them to AtPKI (see module doc)."""
    suffixes = KEY_SUFFIXES if partition.endswith("_key") else CERT_SUFFIXES
    entries = sorted(folder.iterdir(), key=lambda p: p.name.encode("utf-8", "surrogateescape"))
    out = []
    for entry in entries:
        if not entry.is_file() or entry.suffix not in suffixes:
            raise InputError(f"{partition}/ may hold only {' '.join('*' + s for s in suffixes)} files (esp-at's build "
                             "would skip this one); remove it", file=str(entry), field=partition)
        data = _read(entry, partition)
        check_pki_file(data, partition, str(entry))
        out.append(PkiFile(entry.name, data, str(entry)))
    return out


def _gatt_file(folder: Path) -> Path | None:
    csvs = sorted(p for p in folder.iterdir())
    bad = [p for p in csvs if not p.is_file() or p.suffix != ".csv"]
    if bad or len(csvs) > 1:
        raise InputError("ble_data/ must hold one .csv file (BLEService.py takes one source file)",
                         file=str(bad[0] if bad else folder), field="ble_data")
    return csvs[0] if csvs else None


def gatt_rows_of(path: str | Path) -> list[GattRow]:
    """Rows of a GATT CSV for a legacy build (legacy example.csv or G3 gatts_data.csv format)."""
    data = _read(Path(path), "gatt")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path), field="gatt") from None
    return parse_legacy_csv(text, source=str(path))


def default_gatt(profile: ModuleProfile) -> Path | None:
    """The GATT table esp-at's build of the release writes when none is given (None: no BLE)."""
    name = profile.firmware.ble_data_default
    if not profile.build.ble_data or not name:
        return None
    return LEGACY_GATT_DIR / name


def factory_layout(profile: ModuleProfile) -> lf.BlockLayout | None:
    name = profile.firmware.factory_param_layout
    return lf.layout(name) if name else None


def check_overrides(profile: ModuleProfile, values: dict[str, Any], *, file: str | None,
                    field_prefix: str = "factory_param.") -> dict[str, int | str]:
    """factory_param values a user gives for a legacy module, checked against its release's block."""
    lay = factory_layout(profile)
    if lay is None:
        if values:
            key = next(iter(values))
            raise InputError(f"esp-at {profile.firmware.release} has no factory_param partition: the firmware uses its "
                             "built-in defaults (set UART and RF over AT instead)", file=file, field=f"{field_prefix}{key}")
        return {}
    return lf.check_values(values, lay, chip=profile.chip, tx_power=tx_power_range(profile.firmware), file=file,
                           field_prefix=field_prefix)


def assemble_legacy(profile: ModuleProfile, *, params: Params | str | Path | None = None,
                    pki_dir: str | Path | None = None, gatt: str | Path | None = None,
                    unread: str = "error") -> Assembled:
    """The :class:`UnitContent` of one legacy unit: ``factory_param`` = the block's values (profile
    or raw_data row, + params.toml), ``pki`` = files per PKI partition, ``ble_rows`` = GATT rows."""
    if unread not in UNREAD_MODES:
        raise InputError(f"unknown mode {unread!r} (known: {', '.join(UNREAD_MODES)})", field="unread")
    if params is not None and not isinstance(params, Params):
        params = load_params(params, check_factory=False)
    params = params or Params()
    if params.custom:
        raise InputError(f"a {profile.firmware.generation} module has no NVS namespaces for [custom] (per-item "
                         "partitions only)", file=params.source or None, field=f"custom.{next(iter(params.custom))}")
    build = profile.build
    root = Path(pki_dir) if pki_dir is not None else None
    if root is not None and not root.is_dir():
        raise InputError("PKI folder not found", file=str(root), field="pki_dir")
    base: dict[str, Any] = dict(profile.factory_param)
    factory_source = str(profile.source)
    lay = factory_layout(profile)
    data_csv = root / "factory_param" / "factory_param_data.csv" if root is not None else None
    if lay is not None and data_csv is not None and data_csv.is_file():
        platform = str(base.get("platform", f"PLATFORM_{profile.chip.upper()}"))
        row = lf.read_data_row(data_csv, lay, platform=platform, module=profile.module_name)
        base.update(lf.values_of_row(row, lay, file=str(data_csv)))
        factory_source = str(data_csv)
    overrides = check_overrides(profile, params.factory_param, file=params.source or None)
    if overrides:
        factory_source += f" + {params.source or 'params'}"
    values = {**base, **overrides}
    skipped: dict[str, str] = {}
    written: dict[str, str] = {}

    def wanted(name: str, where: str, what: str) -> bool:
        if build.reads(name):
            return True
        why = build.why_unread(name)
        if unread == "error":
            raise InputError(f"the firmware never reads {what}: {why}; {UNREAD_HINT}", file=where, field=name)
        (written if unread == "write" else skipped)[name] = why
        return unread == "write"

    pki: dict[str, list[PkiFile]] = {}
    raw_gatt: Path | None = None
    if root is not None:
        for sub in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name):
            if sub.name == "factory_param":
                continue
            if sub.name == "ble_data":
                raw_gatt = _gatt_file(sub)
                continue
            if sub.name not in PKI_PARTITIONS:
                raise InputError(f"unknown PKI partition folder {sub.name!r} (known: {', '.join(PKI_PARTITIONS)})",
                                 file=str(sub), field="partition")
            if profile.at_customize.find(sub.name) is None:
                raise InputError(f"module {profile.name} has no {sub.name} partition", file=str(sub), field=sub.name)
            files = pki_files(sub, sub.name)
            if files and wanted(sub.name, str(sub), f"partition {sub.name}"):
                pki[sub.name] = files
    pki = {p.name: pki[p.name] for p in profile.at_customize.entries if p.name in pki}
    table = Path(gatt) if gatt is not None else raw_gatt
    not_used = [str(raw_gatt)] if gatt is not None and raw_gatt is not None else []
    rows: list[GattRow] = []
    gatt_source = None
    if table is not None:
        if profile.at_customize.find("ble_data") is None:
            raise InputError(f"module {profile.name} has no ble_data partition", file=str(table), field="ble_data")
        if wanted("ble_data", str(table), "a GATT table (it has no BLE commands)"):
            rows = gatt_rows_of(table)
            gatt_source = str(table)
    else:
        default = default_gatt(profile)
        if default is not None and profile.at_customize.find("ble_data") is not None:
            rows = gatt_rows_of(default)
            gatt_source = f"{default} (esp-at {profile.firmware.release}'s default table)"
    content = UnitContent(factory_param=values, pki=pki, ble_rows=cfg_strings(rows))
    return Assembled(content, factory_source, gatt_source, skipped, written, not_used)


__all__ = ["assemble_legacy", "check_overrides", "check_pki_file", "pki_files", "gatt_rows_of", "default_gatt",
           "factory_layout", "LEGACY_GATT_DIR", "CERT_SUFFIXES", "KEY_SUFFIXES"]
