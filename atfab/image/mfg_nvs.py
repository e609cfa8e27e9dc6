"""Unit content -> mfg_nvs.bin + mfg_nvs.csv, built in-process by esp-idf-nvs-partition-gen (§8).

The result matches what esp-at's build produces (§8.5): PKI namespaces in the order of esp-at's
``at_customized_config_dependency.txt`` (only those with files), then ``factory_param`` (keys
in factory_param_type.csv order), then ``ble_data`` (``cfg0..cfgN`` strings, when rows are
given), then custom namespaces. The binary is byte-identical to running
``python -m esp_idf_nvs_partition_gen generate mfg_nvs.csv mfg_nvs.bin <size>`` on the csv.
Given the firmware's :class:`~atfab.image.build_config.BuildConfig`, a PKI namespace or ``ble_data``
the firmware never reads is refused (esp-at's build leaves such folders out) unless ``allow_unread``.

Entries are written with the generator's ``NVS.write_entry`` method rather than the module-level
``write_entry`` wrapper, which silently adds hard-coded Wi-Fi entries for keys named
``ap.ssid``/``sta.ssid``/... (a custom key with such a name therefore differs from the CLI).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

from ..core.errors import InputError
from ..core.inputs import PEM_LIMIT, read_bytes
from ..core.firmware import FirmwareProfile
from . import factory_param as fp
from .build_config import PKI_FOLDERS, BuildConfig
from .nvs import format as nf

#: PKI namespaces in esp-at's dependency-file order; "{ent}" is "wpa_ent" or "wpa2" (§8.2, §14.14).
PKI_NAMESPACE_ORDER = tuple(f.replace("wpa_ent_", "{ent}_") for f in PKI_FOLDERS)
PKI_FILE_SUFFIXES = (".crt", ".key", ".pem")
FACTORY_NAMESPACE = "factory_param"
BLE_NAMESPACE = "ble_data"
RESERVED_PAGES = 1          # the generator leaves the last page empty for garbage collection
MIN_SIZE = 3 * nf.PAGE_SIZE
#: Longest string (bytes incl. NUL) the generator accepts: it needs the whole entry run plus one
#: spare entry on a fresh page (``entry_num + span >= 126`` is "page full"), below NVS's 4000.
GEN_STRING_MAX = (nf.ENTRY_COUNT - 2) * nf.ENTRY_SIZE


@dataclass(frozen=True)
class PkiFile:
    """One certificate/key file: ``name`` (shown in the csv unless ``path`` is given) and its bytes."""

    name: str
    data: bytes = field(repr=False)
    path: str | None = None


@dataclass
class UnitContent:
    """What goes into one unit's mfg_nvs."""

    factory_param: dict[str, int | str]                 # every key of factory_param_type.csv
    pki: dict[str, list[PkiFile]] = field(default_factory=dict)   # namespace -> files in key order
    ble_rows: list[str] = field(default_factory=list)   # ble_data cfgN strings, in order
    custom: dict[str, dict[str, tuple[str, int | str | bytes]]] = field(default_factory=dict)


@dataclass
class MfgNvs:
    """A built mfg_nvs partition."""

    image: bytes                                        # exactly the partition size
    csv: str                                            # mfg_nvs.csv text (files referenced by name)
    keys: list[tuple[str, str, str]]                    # (namespace, key, type) in write order


def pki_namespaces(firmware: FirmwareProfile) -> tuple[str, ...]:
    """The PKI namespace names of ``firmware`` in esp-at's order."""
    ent = "wpa2" if firmware.enterprise_namespace == "wpa2" else "wpa_ent"
    return tuple(ns.format(ent=ent) for ns in PKI_NAMESPACE_ORDER)


def place_namespace(namespaces: list[str], new: str, firmware: FirmwareProfile) -> list[str]:
    """``namespaces`` with ``new`` where esp-at's build would put it: right after the last namespace
    that comes before it in esp-at's order (PKI namespaces, ``factory_param``, ``ble_data``), so an
    added ``wpa_ent_ca`` lands between ``client_ca`` and ``mqtt_cert``; a namespace esp-at does not
    know goes last."""
    order = (*pki_namespaces(firmware), FACTORY_NAMESPACE, BLE_NAMESPACE)
    if new in namespaces:
        return list(namespaces)
    if new not in order:
        return [*namespaces, new]
    rank = order.index(new)
    at = 0
    for i, ns in enumerate(namespaces):
        if ns in order and order.index(ns) < rank:
            at = i + 1
    return [*namespaces[:at], new, *namespaces[at:]]


def pki_key_names(namespace: str, count: int, firmware: FirmwareProfile) -> list[str]:
    """Key names of ``count`` files in ``namespace``: "by_count" -> bare name for one file,
    else ``ns.0``, ``ns.1``...; "indexed" -> always ``ns.i`` (§8.2, §14 item 13)."""
    if count == 1 and firmware.pki_key_naming == "by_count":
        return [namespace]
    return [f"{namespace}.{i}" for i in range(count)]


def load_pki_dir(path: str | Path, *, namespace: str | None = None) -> list[PkiFile]:
    """The files of a raw_data PKI folder: ``*.crt``, ``*.key``, ``*.pem`` sorted by file name (read now;
    the csv shows their path). Anything else in the folder (another file, a hidden file, a sub-folder)
    is an :class:`InputError`: esp-at's build ignores it but counts it, turning a lone ``server_ca``
    key into ``server_ca.0`` (§8.2)."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("PKI folder not found", file=str(folder))
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    for entry in entries:
        if not entry.name.endswith(PKI_FILE_SUFFIXES) or not entry.is_file():
            kind = "folder" if entry.is_dir() else "file"
            raise InputError(f"stray {kind} in a PKI folder: only {'/'.join(PKI_FILE_SUFFIXES)} files belong here "
                             "(when it reads the folder, esp-at's build ignores it but counts it, renaming the keys "
                             f"{namespace or folder.name}.0, ...); remove it", file=str(entry),
                             field=namespace or folder.name)
    return [PkiFile(p.name, read_bytes(p, "PKI file", limit=PEM_LIMIT, field=namespace or folder.name), str(p))
            for p in entries]


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


#: Namespaces one NVS partition can hold: the index is one byte, 0 and 0xFF are reserved.
NVS_MAX_NAMESPACES = 254


class _Plan:
    """Validated rows per namespace: (key, nvs type, generator encoding, value, csv columns 2..4)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.blocks: dict[str, list[tuple[str, str, str, object, str]]] = {}
        self._seen: dict[str, set[str]] = {}

    def namespace(self, ns: str) -> list:
        block = self.blocks.get(ns)
        if block is None:
            nf.encode_name(ns, what="namespace", file=self.source)
            if len(self.blocks) >= NVS_MAX_NAMESPACES:
                raise InputError(f"too many namespaces: NVS numbers them in one byte, at most {NVS_MAX_NAMESPACES} "
                                 "per partition", file=self.source, field=ns)
            block = self.blocks[ns] = []
            self._seen[ns] = set()
        return block

    def add(self, ns: str, key: str, type_name: str, value: object, *, file_ref: str | None = None) -> None:
        block = self.namespace(ns)
        seen = self._seen[ns]
        if key in seen or not (isinstance(key, str) and key.isascii() and 0 < len(key) <= nf.KEY_MAX):
            nf.encode_name(key, file=self.source)          # raises for a bad name
            if key in seen:
                raise InputError("duplicate key", file=self.source, field=f"{ns}/{key}")
        seen.add(key)
        if type_name == "string":
            block.append((key, type_name, "string", value, "data,string," + self._string(ns, key, value)))
        elif type_name == "blob":
            checked = nf.check_value(type_name, value, field=f"{ns}/{key}", file=self.source)
            if file_ref is not None:
                shown = "file,binary," + (_quote(file_ref) if "," in file_ref or '"' in file_ref else file_ref)
            elif "_key" in ns:   # key material never goes into the csv
                shown = "data,hex2bin,<redacted>"
            else:
                shown = "data,hex2bin," + bytes(checked).hex()  # type: ignore[arg-type]
            block.append((key, type_name, "binary", checked, shown))
        else:
            checked = nf.check_value(type_name, value, field=f"{ns}/{key}", file=self.source)
            block.append((key, type_name, type_name, checked, f"data,{type_name},{checked}"))

    def _string(self, ns: str, key: str, value: object) -> str:
        """Check a string for the generator; its quoted csv form."""
        where = f"{ns}/{key}"
        if not isinstance(value, str):
            raise InputError(f"string value must be text, got {type(value).__name__}", file=self.source, field=where)
        try:
            size = len(value.encode("utf-8")) + 1
        except UnicodeEncodeError:
            raise InputError("string value is not valid UTF-8", file=self.source, field=where) from None
        if "\x00" in value:
            raise InputError("string value contains a NUL byte", file=self.source, field=where)
        if size > GEN_STRING_MAX:
            raise InputError(f"string of {size - 1} bytes is longer than the NVS generator's limit of "
                             f"{GEN_STRING_MAX - 1}", file=self.source, field=where)
        return '"' + value.replace('"', '""') + '"' if '"' in value else '"' + value + '"'


def check_reads(content: UnitContent, build: BuildConfig, *, source: str) -> None:
    """Refuse a PKI namespace with files, or ``ble_data`` rows, that a firmware built with ``build`` never reads."""
    for ns, files in content.pki.items():
        if files and not build.reads(ns):
            where = Path(files[0].path).parent if files[0].path else source
            raise InputError(f"the firmware never reads this namespace: {build.why_unread(ns)}; "
                             "allow unread namespaces to write it anyway", file=str(where), field=ns)
    if content.ble_rows and not build.ble_data:
        raise InputError(f"the firmware has no BLE commands and never reads a GATT table: "
                         f"{build.why_unread(BLE_NAMESPACE)}; allow unread namespaces to write it anyway",
                         file=source, field=BLE_NAMESPACE)


def _plan(content: UnitContent, firmware: FirmwareProfile, source: str) -> _Plan:
    plan = _Plan(source)
    order = pki_namespaces(firmware)
    unknown = [ns for ns in content.pki if ns not in order]
    if unknown:
        raise InputError(f"unknown PKI namespace for this firmware (known: {', '.join(order)})",
                         file=source, field=unknown[0])
    for ns in order:
        files = content.pki.get(ns) or []
        if not files:
            continue
        for key, item in zip(pki_key_names(ns, len(files), firmware), files):
            plan.add(ns, key, "blob", item.data, file_ref=item.path or item.name)
    chip = firmware.gmr_chip.lower() if firmware.gmr_chip else None
    values = fp.validate(content.factory_param, chip=chip, file=source)
    for key in fp.FACTORY_KEYS:
        plan.add(FACTORY_NAMESPACE, key.name, key.type, values[key.name])
    for i, row in enumerate(content.ble_rows):
        if not isinstance(row, str):
            raise InputError("ble_data row must be text", file=source, field=f"{BLE_NAMESPACE}/cfg{i}")
        plan.add(BLE_NAMESPACE, f"cfg{i}", "string", row)
    for ns, keys in content.custom.items():
        plan.namespace(ns)
        for key, spec in keys.items():
            if not isinstance(spec, tuple) or len(spec) != 2:
                raise InputError("custom value must be (type, value)", file=source, field=f"{ns}/{key}")
            plan.add(ns, key, spec[0], spec[1])
    return plan


def _generate(plan: _Plan, out: io.BytesIO, input_size: int, where: list[str]) -> gen.NVS:
    """Feed the plan to the generator (not closed); ``where[0]`` tracks the row being written."""
    nvs = gen.nvs_open(out, input_size, gen.Page.VERSION2)
    for ns, rows in plan.blocks.items():
        where[0] = ns
        gen.write_entry(nvs, ns, "namespace", "", "")
        for key, _type, encoding, value, _csv in rows:
            where[0] = f"{ns}/{key}"
            nvs.write_entry(key, value, encoding)
    where[0] = ""
    return nvs


def _pages_needed(plan: _Plan) -> int:
    try:
        nvs = _generate(plan, io.BytesIO(), 1 << 40, [""])
    except Exception:   # noqa: BLE001 - only used to word an error message
        return 0
    return nvs.page_num + 1 + RESERVED_PAGES


def build_mfg_nvs(content: UnitContent, size: int, *, firmware: FirmwareProfile, build: BuildConfig | None = None,
                  allow_unread: bool = False, source: str = "") -> MfgNvs:
    """Build the mfg_nvs partition image (exactly ``size`` bytes, last page reserved) and its csv.

    With ``build`` (the firmware's build configuration) content the firmware never reads is refused
    (:func:`check_reads`) unless ``allow_unread``."""
    source = source or "mfg_nvs"
    _check_size(size, source)
    if build is not None and not allow_unread:
        check_reads(content, build, source=source)
    return _build(_plan(content, firmware, source), size, source)


def build_nvs_from_entries(entries: Iterable[Any], size: int, *, namespaces: Iterable[str] = (),
                           source: str = "") -> MfgNvs:
    """An NVS image of ``entries`` (anything with ``namespace``/``key``/``type``/``value``, e.g.
    :class:`atfab.image.nvs.reader.NvsEntry`) in their order, grouped by namespace: ``namespaces``
    (declared first, in that order, even without keys), then the others by first appearance.
    Used to rebuild an existing mfg_nvs with a few keys changed (``atfab customize``)."""
    source = source or "nvs"
    _check_size(size, source)
    plan = _Plan(source)
    for ns in namespaces:
        plan.namespace(ns)
    for e in entries:
        plan.add(e.namespace, e.key, e.type, e.value)
    return _build(plan, size, source)


def _check_size(size: int, source: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size % nf.PAGE_SIZE or size < MIN_SIZE:
        raise InputError(f"partition size {size!r} must be a multiple of 0x1000 and at least {MIN_SIZE:#x}",
                         file=source, field="size")


def _build(plan: _Plan, size: int, source: str) -> MfgNvs:
    """Generate the image of ``plan`` (exactly ``size`` bytes, last page reserved) and its csv."""
    out = io.BytesIO()
    where = [""]
    try:
        gen.nvs_close(_generate(plan, out, size - RESERVED_PAGES * nf.PAGE_SIZE, where))
    except gen.InsufficientSizeError:
        need = _pages_needed(plan) * nf.PAGE_SIZE
        raise InputError(f"content needs {need:#x} bytes, partition is {size:#x}" if need else
                         f"content does not fit the partition of {size:#x} bytes", file=source,
                         field=where[0] or None) from None
    except (gen.InputError, gen.PageFullError, ValueError, TypeError, OverflowError, KeyError) as exc:
        raise InputError(f"NVS generator rejected the value: {exc or type(exc).__name__}",
                         file=source, field=where[0] or None) from None
    except SystemExit as exc:
        raise InputError(f"NVS generator stopped (exit {exc.code})", file=source, field=where[0] or None) from None
    image = out.getvalue()
    if len(image) != size:
        raise InputError(f"NVS generator produced {len(image):#x} bytes, expected {size:#x}", file=source)
    lines = ["key,type,encoding,value"]
    keys: list[tuple[str, str, str]] = []
    for ns, rows in plan.blocks.items():
        lines.append(f"{ns},namespace,,")
        for key, type_name, _enc, _value, shown in rows:
            lines.append(f"{key},{shown}")
            keys.append((ns, key, type_name))
    return MfgNvs(image, "\n".join(lines) + "\n", keys)


__all__ = ["PkiFile", "UnitContent", "MfgNvs", "build_mfg_nvs", "build_nvs_from_entries", "pki_key_names",
           "pki_namespaces", "place_namespace", "load_pki_dir", "check_reads", "PKI_NAMESPACE_ORDER"]
