"""An esp-at ``raw_data``-like folder, read as esp-at's generator reads it (reference §8.1-§8.5).

``components/customized_partitions/raw_data/`` holds one sub-folder per PKI namespace
(``server_cert`` ... ``wss_ca``, the enterprise ones as ``wpa_ent_*`` or, as in esp-at up to
v5.0, ``wpa2_*``), ``ble_data/gatts_data.csv`` (the GATT table) and
``factory_param/factory_param_data.csv`` (+ ``factory_param_type.csv``: one row of values per
platform and module). :func:`read_raw_data` returns what each part holds; where esp-at's build
would silently do something surprising, it is refused instead:

* a PKI folder holding anything but ``*.crt``/``*.key``/``*.pem`` files (esp-at ignores the entry
  but counts it, so a lone ``server_ca`` key becomes ``server_ca.0``);
* ``ble_data/`` or ``factory_param/`` holding anything but their CSV files (a ``.pem`` there
  becomes a blob in esp-at's namespace loop);
* a ``factory_param_type.csv`` whose keys or types differ from the table atfab writes;
* both ``wpa_ent_X`` and ``wpa2_X`` (two folders for one namespace), an unknown sub-folder.
Top-level files and hidden top-level folders are ignored, as esp-at does.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..core.inputs import read_bytes
from ..core.firmware import FirmwareProfile
from . import factory_param as fp
from .build_config import LEGACY_EAP_NAMES, PKI_FOLDERS
from .mfg_nvs import BLE_NAMESPACE, FACTORY_NAMESPACE, PkiFile, load_pki_dir, pki_namespaces

GATT_FILE = "gatts_data.csv"
FACTORY_DATA_FILE = "factory_param_data.csv"
FACTORY_TYPE_FILE = "factory_param_type.csv"
#: Largest factory_param_data.csv read (esp-at's has 23 rows, ~2.5 KB).
FACTORY_DATA_MAX = 1 << 20
#: Folder name -> (enterprise set member) for both spellings of the enterprise folders.
_ENTERPRISE = {**{f: f.removeprefix("wpa_ent_") for f in LEGACY_EAP_NAMES},
               **{v: v.removeprefix("wpa2_") for v in LEGACY_EAP_NAMES.values()}}
KNOWN_FOLDERS = PKI_FOLDERS + tuple(LEGACY_EAP_NAMES.values()) + (BLE_NAMESPACE, FACTORY_NAMESPACE)


@dataclass
class RawData:
    """What a raw_data-like folder holds (paths are inside ``root``)."""

    root: Path
    pki: dict[str, list[PkiFile]] = field(default_factory=dict)   # namespace (firmware's name) -> files
    folders: dict[str, Path] = field(default_factory=dict)        # namespace -> the folder it came from
    gatt: Path | None = None                                      # ble_data/gatts_data.csv
    factory_data: Path | None = None                              # factory_param/factory_param_data.csv


def namespace_of(folder: str, firmware: FirmwareProfile) -> str:
    """The namespace a PKI folder is written as: the folder name, the enterprise folders under the
    firmware's names (``wpa_ent_ca`` and ``wpa2_ca`` both -> ``wpa2_ca`` on a wpa2 firmware)."""
    member = _ENTERPRISE.get(folder)
    if member is None:
        return folder
    return f"{'wpa2' if firmware.enterprise_namespace == 'wpa2' else 'wpa_ent'}_{member}"


def _only(folder: Path, allowed: tuple[str, ...]) -> None:
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name not in allowed or not entry.is_file():
            raise InputError(f"{folder.name}/ may hold only {' and '.join(allowed)} (esp-at's build would read a "
                             f".crt/.key/.pem here as a blob of namespace {folder.name}); remove it",
                             file=str(entry), field=folder.name)


def read_raw_data(root: str | Path, firmware: FirmwareProfile, *, field_name: str = "pki_dir") -> RawData:
    """The parts of the raw_data-like folder ``root`` (see the module docstring for what is refused)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("PKI folder not found", file=str(root), field=field_name)
    out = RawData(root)
    for sub in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name):
        name = sub.name
        if name == BLE_NAMESPACE:
            _only(sub, (GATT_FILE,))
            out.gatt = sub / GATT_FILE if (sub / GATT_FILE).is_file() else None
            continue
        if name == FACTORY_NAMESPACE:
            _only(sub, (FACTORY_DATA_FILE, FACTORY_TYPE_FILE))
            if (sub / FACTORY_TYPE_FILE).is_file():
                check_type_table(sub / FACTORY_TYPE_FILE)
            out.factory_data = sub / FACTORY_DATA_FILE if (sub / FACTORY_DATA_FILE).is_file() else None
            continue
        if name not in KNOWN_FOLDERS:
            raise InputError(f"unknown PKI namespace {name!r} (known: {', '.join(KNOWN_FOLDERS)})",
                             file=str(sub), field="namespace")
        ns = namespace_of(name, firmware)
        if ns in out.folders:
            raise InputError(f"two folders for namespace {ns}: {out.folders[ns].name}/ and {name}/",
                             file=str(sub), field=ns)
        files = load_pki_dir(sub, namespace=ns)
        if files:
            out.pki[ns] = files
            out.folders[ns] = sub
    order = pki_namespaces(firmware)
    out.pki = {ns: out.pki[ns] for ns in order if ns in out.pki}
    return out


def check_type_table(path: Path) -> None:
    """A raw_data ``factory_param_type.csv`` must list the keys and types atfab writes (§8.1)."""
    keys = fp.load_key_table(path)
    if keys != fp.FACTORY_KEYS:
        mine = [f"{k.name}:{k.type}" for k in fp.FACTORY_KEYS]
        theirs = [f"{k.name}:{k.type}" for k in keys]
        diff = next((f"{a} where atfab has {b}" for a, b in zip(theirs, mine) if a != b),
                    f"{len(theirs)} keys where atfab has {len(mine)}")
        raise InputError(f"differs from the factory_param key table atfab writes ({diff})", file=str(path),
                         field=FACTORY_NAMESPACE)


def factory_row(path: Path, *, chip: str, module_name: str) -> dict[str, int | str]:
    """The factory_param values of ``factory_param_data.csv`` for one module, selected as esp-at's
    build selects them: the first row whose ``platform`` is ``PLATFORM_<CHIP>`` and whose
    ``module_name`` is the module's (exact); the columns of the key table (``platform`` and
    ``description`` are not written). Values are checked for ``chip``."""
    src = str(path)
    raw = read_bytes(path, "factory_param data", limit=FACTORY_DATA_MAX, field=FACTORY_NAMESPACE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=src, field=FACTORY_NAMESPACE) from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputError(f"not valid CSV: {exc}", file=src, field=FACTORY_NAMESPACE) from None
    header = next((r for r in rows if r and r[0] == "platform"), None)
    if header is None or len(header) < 2 or header[1] != "module_name":
        raise InputError("no header row starting platform,module_name", file=src, field=FACTORY_NAMESPACE)
    platform = f"PLATFORM_{chip.upper()}"
    found = next(((n, r) for n, r in enumerate(rows, 1) if len(r) >= 2 and r[0] == platform and r[1] == module_name),
                 None)
    if found is None:
        raise InputError(f"no row for {platform},{module_name} (the platform and module_name of this module)",
                         file=src, field=FACTORY_NAMESPACE)
    line, row = found
    values: dict[str, int | str] = {}
    for key in fp.FACTORY_KEYS:
        if key.name not in header:
            raise InputError(f"no {key.name} column", file=src, field=f"{FACTORY_NAMESPACE}.{key.name}")
        pos = header.index(key.name)
        if pos >= len(row):
            raise InputError(f"row has {len(row)} fields, the header {len(header)}", file=src, line=line,
                             field=f"{FACTORY_NAMESPACE}.{key.name}")
        values[key.name] = row[pos]
    try:
        return fp.validate(values, chip=chip, file=src)
    except InputError as exc:
        raise InputError(exc.message, file=src, line=line, field=f"{FACTORY_NAMESPACE}.{exc.field}") from None


__all__ = ["RawData", "read_raw_data", "namespace_of", "factory_row", "check_type_table", "KNOWN_FOLDERS",
           "GATT_FILE", "FACTORY_DATA_FILE", "FACTORY_TYPE_FILE"]
