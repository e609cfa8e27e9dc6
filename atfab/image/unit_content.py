"""Assemble one unit's mfg_nvs content from files: params.toml, a PKI folder, a gatts_data.csv.

``params.toml``::

    [factory_param]            # overrides of the profile's default factory_param row
    module_name = "ACME-1"
    max_tx_power = 80

    [custom.my_ns]             # optional extra namespaces (type: u8..i64, string, blob)
    serial = { type = "string", value = "SN0001" }
    token = { type = "blob", hex = "00112233" }

The PKI folder is laid out like esp-at's ``raw_data``: one sub-folder per PKI namespace
(``client_cert``, ``client_key``, ``mqtt_ca``...; ``ble_data``/``factory_param`` are skipped), files ``*.crt``/``*.key``/``*.pem`` sorted by name
(§8.2). Certificates must be PEM certificates and keys unencrypted PEM private keys.
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
from .mfg_nvs import PkiFile, UnitContent, load_pki_dir, pki_namespaces
from .nvs import format as nvs_format
from .profiles import BUILTIN_DIR, ModuleProfile

#: esp-at's default GATT table (verbatim copy of raw_data/ble_data/gatts_data.csv).
DEFAULT_GATT = BUILTIN_DIR / "gatts_data.csv"
_NOT_PKI = ("ble_data", "factory_param")
_NVS_TYPES = ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "string", "blob")


@dataclass
class Params:
    """The content of a params.toml."""

    factory_param: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, dict[str, tuple[str, int | str | bytes]]] = field(default_factory=dict)
    source: str = ""


def load_params(path: str | Path) -> Params:
    """Read a params.toml; errors name the file and the ``table.key`` field."""
    path = Path(path)
    src = str(path)
    data = read_toml(path, "parameters")
    unknown = sorted(set(data) - {"factory_param", "custom"})
    if unknown:
        raise InputError("unknown table (known: factory_param, custom)", file=src, field=unknown[0])
    factory = data.get("factory_param", {})
    if not isinstance(factory, dict):
        raise InputError("must be a table", file=src, field="factory_param")
    for key, value in factory.items():
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
    """PKI files per namespace from a raw_data-like folder (unknown sub-folders are errors)."""
    root = Path(pki_dir)
    if not root.is_dir():
        raise InputError("PKI folder not found", file=str(root), field="pki_dir")
    known = pki_namespaces(profile.firmware)
    out: dict[str, list[PkiFile]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name in _NOT_PKI:
            continue  # esp-at's raw_data also holds these; they come from params.toml / --gatt
        if sub.name not in known:
            raise InputError(f"unknown PKI namespace {sub.name!r} (known: {', '.join(known)})",
                             file=str(sub), field="namespace")
        files = load_pki_dir(sub)
        if check:
            for item in files:
                check_pem(item, sub.name)
        if files:
            out[sub.name] = files
    return {ns: out[ns] for ns in known if ns in out}


def gatt_rows(gatt: str | Path | None, profile: ModuleProfile) -> list[GattRow]:
    """Rows of ``gatt``; without it esp-at's default table on BLE builds, none otherwise."""
    if gatt is None:
        if not profile.firmware.ble:
            return []
        gatt = DEFAULT_GATT
    rows = load_gatts_csv(gatt)
    validate_rows(rows, source=str(gatt))
    return rows


def unit_content(profile: ModuleProfile, *, params: Params | str | Path | None = None,
                 pki_dir: str | Path | None = None, gatt: str | Path | None = None) -> UnitContent:
    """The :class:`UnitContent` of one unit: profile defaults + params overrides, PKI files, GATT rows."""
    if params is not None and not isinstance(params, Params):
        params = load_params(params)
    params = params or Params()
    merged = {**profile.factory_param, **params.factory_param}
    values = fp.validate(merged, chip=profile.chip, file=params.source or str(profile.source))
    return UnitContent(
        factory_param=values,
        pki=load_pki(pki_dir, profile) if pki_dir is not None else {},
        ble_rows=cfg_strings(gatt_rows(gatt, profile)),
        custom=params.custom,
    )


__all__ = ["Params", "load_params", "load_pki", "check_pem", "gatt_rows", "unit_content", "DEFAULT_GATT"]
