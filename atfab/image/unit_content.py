"""Assemble one unit's mfg_nvs content from files: params.toml, a PKI folder, a gatts_data.csv.

``params.toml``::

    [factory_param]            # overrides of the profile's default factory_param row
    module_name = "ACME-1"
    max_tx_power = 80

    [custom.my_ns]             # optional extra namespaces (type: u8..i64, string, blob)
    serial = { type = "string", value = "SN0001" }
    token = { type = "blob", hex = "00112233" }

The PKI folder is laid out like esp-at's ``raw_data`` (:mod:`atfab.image.raw_data`): one sub-folder
per PKI namespace (``client_cert``, ``client_key``, ``mqtt_ca``...), files ``*.crt``/``*.key``/``*.pem``
sorted by name (§8.2); certificates must be PEM certificates and keys unencrypted PEM private keys.
Its ``ble_data/gatts_data.csv`` is the GATT table and its ``factory_param/factory_param_data.csv``
gives the module's default row (instead of the profile's), as in esp-at's build; an explicit
``gatt`` replaces the folder's table (:attr:`Assembled.not_used` says so) and ``params.toml``
overrides values of the row.

What goes in follows the firmware's build configuration (``profile.build``): a PKI folder for a
namespace the firmware never reads, or a GATT table for a build without BLE, is refused
(``unread="error"``), left out as esp-at's build leaves it out (``"skip"``), or written anyway
(``"write"``); :class:`Assembled` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..core.errors import InputError
from ..core.tomlfile import read_toml
from . import factory_param as fp
from .gatt import GattRow, cfg_strings, load_gatts_csv, validate_rows
from .mfg_nvs import BLE_NAMESPACE, PkiFile, UnitContent
from .nvs import format as nvs_format
from .profiles import BUILTIN_DIR, ModuleProfile
from .raw_data import RawData, factory_row, read_raw_data

#: esp-at's default GATT table (verbatim copy of raw_data/ble_data/gatts_data.csv).
DEFAULT_GATT = BUILTIN_DIR / "gatts_data.csv"
_NOT_PKI = ("ble_data", "factory_param")
_NVS_TYPES = ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "string", "blob")
#: What to do with content the firmware never reads: refuse it, leave it out (esp-at), write it.
UNREAD_MODES = ("error", "skip", "write")
UNREAD_HINT = ("remove it, or --skip-unread (leave it out, as esp-at's build does) / --allow-unread (write it "
               "anyway)")


@dataclass
class Params:
    """The content of a params.toml."""

    factory_param: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, dict[str, tuple[str, int | str | bytes]]] = field(default_factory=dict)
    source: str = ""


def load_params(path: str | Path, *, check_factory: bool = True) -> Params:
    """Read a params.toml; errors name the file and the ``table.key`` field. ``check_factory=False``
    leaves the ``[factory_param]`` values to the caller (a legacy block checks them per release)."""
    path = Path(path)
    src = str(path)
    data = read_toml(path, "parameters")
    unknown = sorted(set(data) - {"factory_param", "custom"})
    if unknown:
        raise InputError("unknown table (known: factory_param, custom)", file=src, field=unknown[0])
    factory = data.get("factory_param", {})
    if not isinstance(factory, dict):
        raise InputError("must be a table", file=src, field="factory_param")
    for key, value in factory.items() if check_factory else ():
        try:
            fp.validate_value(key, value, file=src)
        except InputError as exc:
            raise InputError(exc.message, file=src, field=f"factory_param.{key}") from None
    custom: dict[str, dict[str, tuple[str, int | str | bytes]]] = {}
    for ns, table in (data.get("custom") or {}).items():
        if not isinstance(table, dict):
            raise InputError("must be a table of keys", file=src, field=f"custom.{ns}")
        if ns in _NOT_PKI:
            raise InputError("atfab writes this namespace itself (from [factory_param] / the GATT table); "
                             "use another namespace", file=src, field=f"custom.{ns}")
        _check_name(ns, "namespace", src, f"custom.{ns}")
        custom[ns] = {}
        for key, spec in table.items():
            _check_name(key, "key", src, f"custom.{ns}.{key}")
            custom[ns][key] = _custom_value(spec, src, f"custom.{ns}.{key}")
    return Params(factory_param=dict(factory), custom=custom, source=src)


def _check_name(name: str, what: str, src: str, where: str) -> None:
    try:
        nvs_format.encode_name(name, what=what)
    except InputError as exc:
        raise InputError(exc.message, file=src, field=where) from None


def _custom_value(spec: Any, src: str, where: str) -> tuple[str, int | str | bytes]:
    type_name, value = _custom_raw(spec, src, where)
    nvs_format.check_value(type_name, value, field=where, file=src)   # ranges, string length
    return type_name, value


def _custom_raw(spec: Any, src: str, where: str) -> tuple[str, int | str | bytes]:
    if not isinstance(spec, dict) or "type" not in spec:
        raise InputError('must be { type = "...", value = ... }', file=src, field=where)
    type_name = spec["type"]
    if type_name not in _NVS_TYPES:
        raise InputError(f"unknown type {type_name!r} (known: {', '.join(_NVS_TYPES)})", file=src, field=where)
    if type_name == "blob":
        if "hex" in spec:
            try:
                return type_name, bytes.fromhex(str(spec["hex"]))
            except ValueError:
                raise InputError("hex is not a hex string", file=src, field=where) from None
        value = spec.get("value")
        if not isinstance(value, str):
            raise InputError("blob needs hex = \"...\" or a text value", file=src, field=where)
        return type_name, value.encode()
    value = spec.get("value")
    if type_name == "string":
        if not isinstance(value, str):
            raise InputError("value must be a string", file=src, field=where)
        return type_name, value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("value must be an integer", file=src, field=where)
    return type_name, value


def check_pem(item: PkiFile, namespace: str) -> None:
    """A ``*_key`` file must be an unencrypted PEM private key, anything else PEM certificate(s)."""
    where = item.path or item.name
    if namespace.endswith("_key"):
        try:
            load_pem_private_key(item.data, password=None)
        except (ValueError, TypeError):
            raise InputError("not an unencrypted PEM private key", file=where, field=namespace) from None
        except Exception:  # noqa: BLE001 - cryptography raises UnsupportedAlgorithm etc.; never echo bytes
            raise InputError("unsupported private key", file=where, field=namespace) from None
        return
    try:
        x509.load_pem_x509_certificates(item.data)
    except ValueError:
        raise InputError("not a PEM certificate", file=where, field=namespace) from None


def load_pki(pki_dir: str | Path, profile: ModuleProfile, *, check: bool = True) -> dict[str, list[PkiFile]]:
    """PKI files per namespace (esp-at's order) from a raw_data-like folder (see :func:`read_raw_data`)."""
    return _checked_pki(read_raw_data(pki_dir, profile.firmware), check)


def _checked_pki(raw: RawData, check: bool) -> dict[str, list[PkiFile]]:
    if check:
        for ns, files in raw.pki.items():
            for item in files:
                check_pem(item, ns)
    return raw.pki


def gatt_rows(gatt: str | Path | None, profile: ModuleProfile) -> list[GattRow]:
    """Rows of ``gatt``; without it esp-at's default table on BLE builds, none otherwise."""
    if gatt is None:
        if not profile.build.ble_data:
            return []
        gatt = DEFAULT_GATT
    rows = load_gatts_csv(gatt)
    validate_rows(rows, source=str(gatt))
    return rows


@dataclass
class Assembled:
    """One unit's content and where each part came from."""

    content: UnitContent
    factory_param_source: str                  # the profile, or the raw_data row (+ params.toml)
    gatt_source: str | None                    # the GATT table used (None: no ble_data)
    skipped: dict[str, str] = field(default_factory=dict)   # left out (unread="skip"): namespace -> why
    unread: dict[str, str] = field(default_factory=dict)    # written although never read ("write")
    not_used: list[str] = field(default_factory=list)       # raw_data files an explicit option replaced

    def to_dict(self) -> dict[str, Any]:
        return {"factory_param": self.factory_param_source, "gatt": self.gatt_source,
                "skipped_unread": dict(self.skipped), "written_unread": dict(self.unread),
                "not_used": list(self.not_used)}


def assemble(profile: ModuleProfile, *, params: Params | str | Path | None = None, pki_dir: str | Path | None = None,
             gatt: str | Path | None = None, unread: str = "error") -> Assembled:
    """The :class:`UnitContent` of one unit: factory_param (profile or raw_data row, + params overrides),
    PKI files and GATT rows, the parts the firmware never reads handled by ``unread``."""
    if unread not in UNREAD_MODES:
        raise InputError(f"unknown mode {unread!r} (known: {', '.join(UNREAD_MODES)})", field="unread")
    if params is not None and not isinstance(params, Params):
        params = load_params(params)
    params = params or Params()
    raw = read_raw_data(pki_dir, profile.firmware) if pki_dir is not None else None
    build = profile.build
    base: dict[str, Any] = dict(profile.factory_param)
    factory_source = str(profile.source)
    if raw is not None and raw.factory_data is not None:
        base = factory_row(raw.factory_data, chip=profile.chip, module_name=profile.module_name)
        factory_source = str(raw.factory_data)
    if params.factory_param:
        factory_source += f" + {params.source or 'params'}"
    merged = {**base, **params.factory_param}
    values = fp.validate(merged, chip=profile.chip, file=params.source or factory_source)
    skipped: dict[str, str] = {}
    written: dict[str, str] = {}

    def unread_part(name: str, where: str, what: str) -> bool:
        """True when part ``name`` is to be written (it is read, or unread="write")."""
        if build.reads(name):
            return True
        why = build.why_unread(name)
        if unread == "error":
            raise InputError(f"the firmware never reads {what}: {why}; {UNREAD_HINT}", file=where, field=name)
        (written if unread == "write" else skipped)[name] = why
        return unread == "write"

    pki: dict[str, list[PkiFile]] = {}
    if raw is not None:
        for ns, files in _checked_pki(raw, True).items():
            if unread_part(ns, str(raw.folders[ns]), f"namespace {ns}"):
                pki[ns] = files
    overridden = [str(raw.gatt)] if gatt is not None and raw is not None and raw.gatt is not None else []
    table = gatt if gatt is not None else (raw.gatt if raw is not None else None)
    rows: list[GattRow] = []
    gatt_source: str | None = None
    if table is not None:
        if unread_part(BLE_NAMESPACE, str(table), "a GATT table (it has no BLE commands)"):
            rows = load_gatts_csv(table)
            validate_rows(rows, source=str(table))
            gatt_source = str(table)
    elif build.ble_data:
        rows = gatt_rows(None, profile)
        gatt_source = f"{DEFAULT_GATT} (esp-at's default table)"
    content = UnitContent(factory_param=values, pki=pki, ble_rows=cfg_strings(rows), custom=params.custom)
    return Assembled(content, factory_source, gatt_source, skipped, written, overridden)


def unit_content(profile: ModuleProfile, *, params: Params | str | Path | None = None,
                 pki_dir: str | Path | None = None, gatt: str | Path | None = None,
                 unread: str = "error") -> UnitContent:
    """The :class:`UnitContent` of :func:`assemble`."""
    return assemble(profile, params=params, pki_dir=pki_dir, gatt=gatt, unread=unread).content


__all__ = ["Params", "Assembled", "load_params", "load_pki", "check_pem", "gatt_rows", "assemble", "unit_content",
           "DEFAULT_GATT", "UNREAD_MODES"]
