"""What ``atfab customize`` is asked to change and which keys of a target that means.

:class:`CustomizeRequest` holds validated option values (PEM files checked, GATT rows compiled);
:func:`plan_edits` turns it into key edits for one target - an mfg_nvs image or a live module,
both seen through a :class:`KeyView` - refusing (:class:`InputError` naming the option and the
target) a value that is wrong for the chip or a key the target does not have, unless
``add_missing`` (§5, §8). A namespace added to a target whose firmware (its build configuration,
when known) never reads it is refused unless ``allow_unread``.

The options follow esp-at's ``tools/at.py modify_bin`` where it has them: ``--uart-num``
(``factory_param/uart_port``, at.py ``--uart_num``) and ``--gatts-cfgN`` (one ``ble_data/cfgN``
row, at.py ``--gatts_cfgN``) besides the whole table (``--gatt``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import InputError
from ..core.inputs import PEM_LIMIT, read_bytes
from ..core.firmware import FirmwareProfile
from ..image import factory_param as fp
from ..image.build_config import BuildConfig
from ..image.gatt import GATTS_MAX_ROWS, cfg_strings, load_gatts_csv, parse_cfg_string, rows_from_cfg_strings, \
    validate_rows
from ..image.gatt_desc import load_description
from ..image.mfg_nvs import pki_key_names
from ..image.nvs import format as nf
from ..image.nvs.reader import NvsImage
from ..link.at.limits import sysmfg_length_problem
from ..pki.checks import check_cert_file, check_key_file, check_pair, parse_pem_certs, parse_private_key

FACTORY_NS = "factory_param"
BLE_NS = "ble_data"
#: factory_param key -> the CLI option that changes it.
OPTION_KEYS: dict[str, str] = {
    "module_name": "--module-name", "max_tx_power": "--tx-power", "country_code": "--country",
    "start_channel": "--start-channel", "channel_num": "--channel-num", "uart_port": "--uart-num",
    "uart_baudrate": "--baud",
    "uart_tx_pin": "--tx-pin", "uart_rx_pin": "--rx-pin", "uart_cts_pin": "--cts-pin", "uart_rts_pin": "--rts-pin",
}
#: PKI set families and how many sets the firmware offers (esp-at ships two client/https/wss sets).
PKI_FAMILIES: dict[str, int] = {"client": 2, "https": 2, "wss": 2, "server": 1, "mqtt": 1, "wpa_ent": 1}
PKI_KINDS = ("cert", "key", "ca")
_CFG_RE = re.compile(r"cfg(\d+)\Z")


def gatt_row_option(index: int) -> str:
    """``3`` → ``--gatts-cfg3`` (esp-at's at.py spells it ``--gatts_cfg3``)."""
    return f"--gatts-cfg{index}"


def pki_option(family: str, kind: str, index: int) -> str:
    """``("client", "cert", 0)`` → ``--client-cert0``."""
    return f"--{family.replace('_', '-')}-{kind}{index}"


def pki_namespace(family: str, kind: str, firmware: FirmwareProfile) -> str:
    """``client_cert``; the enterprise set follows :attr:`FirmwareProfile.enterprise_namespace`."""
    if family == "wpa_ent" and firmware.enterprise_namespace == "wpa2":
        family = "wpa2"
    return f"{family}_{kind}"


@dataclass(frozen=True)
class PkiChange:
    """One certificate/key/CA file for set ``index`` of ``family``."""

    family: str
    kind: str
    index: int
    data: bytes = field(repr=False)
    file: str = ""

    @property
    def option(self) -> str:
        return pki_option(self.family, self.kind, self.index)


@dataclass
class CustomizeRequest:
    """The changes asked for. ``factory_param`` values are validated again for the target's chip."""

    factory_param: dict[str, int | str] = field(default_factory=dict)
    pki: list[PkiChange] = field(default_factory=list)
    gatt: list[str] | None = None          # ble_data cfg strings (the whole table)
    gatt_file: str | None = None
    add_missing: bool = False
    gatt_rows: dict[int, str] = field(default_factory=dict)   # cfgN -> new row (single rows)
    allow_unread: bool = False             # add namespaces the target's firmware never reads

    def is_empty(self) -> bool:
        return not self.factory_param and not self.pki and self.gatt is None and not self.gatt_rows

    def options(self) -> list[str]:
        """The CLI options this request stands for (for messages)."""
        return ([OPTION_KEYS.get(k, k) for k in self.factory_param] + [c.option for c in self.pki]
                + (["--gatt"] if self.gatt is not None else []) + [gatt_row_option(i) for i in self.gatt_rows])


def load_gatt_rows(path: str | Path) -> list[str]:
    """cfg strings of a gatts_data.csv or a GATT description (``.toml``), validated."""

    path = Path(path)
    if path.suffix.lower() == ".toml":
        rows = load_description(path)
    else:
        rows = load_gatts_csv(path)
    validate_rows(rows, source=str(path))
    return cfg_strings(rows)


def make_request(values: dict[str, Any] | None = None, *, pki_files: dict[tuple[str, str, int], str | Path] | None = None,
                 gatt: str | Path | None = None, gatt_rows: dict[int, str] | None = None, add_missing: bool = False,
                 allow_unread: bool = False, at: dt.datetime | None = None) -> CustomizeRequest:
    """A request from option values (factory_param key -> value, None = not given), PKI files
    ``{(family, kind, index): path}`` (PEM checked: parses, supported key, valid now, cert and key
    of one set pair up), a GATT file or single rows ``{N: "index,uuid_len,..."}`` (checked with
    the target's other rows when planned)."""

    factory: dict[str, int | str] = {}
    for key, value in (values or {}).items():
        if value is None:
            continue
        option = OPTION_KEYS.get(key, key)
        if key == "max_tx_power":   # its range is the target's (0.25 dBm; a level 0..11 in a G1 legacy block)
            power = fp.parse_int(value, field=option)
            if not 0 <= power <= fp.TX_POWER_MAX:
                raise InputError(f"{power} is out of range 0..{fp.TX_POWER_MAX} (0.25 dBm {fp.TX_POWER_MIN}.."
                                 f"{fp.TX_POWER_MAX}; esp32-at v1.x blocks: a level 0..11)", field=option)
            factory[key] = power
            continue
        try:
            factory[key] = fp.validate_value(key, value)
        except InputError as exc:
            raise InputError(exc.message, field=option) from None
    at = at or dt.datetime.now(dt.timezone.utc)
    changes: list[PkiChange] = []
    certs: dict[tuple[str, int], Any] = {}
    keys: dict[tuple[str, int], tuple[Any, str]] = {}
    for (family, kind, index), path in sorted((pki_files or {}).items()):
        if family not in PKI_FAMILIES or kind not in PKI_KINDS or not 0 <= index < PKI_FAMILIES[family]:
            raise InputError("unknown PKI option", field=pki_option(family, kind, index))
        option = pki_option(family, kind, index)
        data = read_bytes(path, "PEM file", limit=PEM_LIMIT, field=option)
        if kind == "key":
            keys[(family, index)] = (check_key_file(data, file=str(path), field=option), str(path))
        else:
            parsed = check_cert_file(data, at=at, file=str(path), field=option)
            if kind == "cert":
                certs[(family, index)] = parsed[0]
        changes.append(PkiChange(family, kind, index, data, str(path)))
    for where, cert in certs.items():
        if where in keys:
            key, path = keys[where]
            check_pair(cert, key, file=path, field=pki_option(where[0], "key", where[1]))
    rows = load_gatt_rows(gatt) if gatt is not None else None
    single: dict[int, str] = {}
    for index, row in sorted((gatt_rows or {}).items()):
        option = gatt_row_option(index)
        if rows is not None:
            raise InputError("--gatt replaces the whole table; give it or single rows, not both", field=option)
        if not 0 <= index < GATTS_MAX_ROWS:
            raise InputError(f"row number must be 0..{GATTS_MAX_ROWS - 1}", field=option)
        try:
            single[index] = parse_cfg_string(str(row)).cfg_string()
        except InputError as exc:
            raise InputError(exc.message, field=option) from None
    return CustomizeRequest(factory, changes, rows, None if gatt is None else str(gatt), add_missing, single,
                            allow_unread)


# ----------------------------------------------------------------------------------------- planning


class KeyView(Protocol):
    """What a target holds: an image (local) or a live module (over AT+SYSMFG)."""

    local: bool

    def namespaces(self) -> list[str]: ...
    def keys(self, namespace: str) -> dict[str, str]: ...          # key -> type, in order
    def value(self, namespace: str, key: str) -> int | str | bytes | None: ...


class ImageView:
    """:class:`KeyView` of an :class:`NvsImage`."""

    local = True

    def __init__(self, image: NvsImage) -> None:
        self.image = image

    def namespaces(self) -> list[str]:
        return self.image.namespaces()

    def keys(self, namespace: str) -> dict[str, str]:
        return {e.key: e.type for e in self.image.keys(namespace)}

    def value(self, namespace: str, key: str) -> int | str | bytes | None:
        entry = self.image.get(namespace, key)
        return None if entry is None else entry.value


@dataclass(frozen=True)
class Edit:
    """One planned key change: ``action`` "set" (existing key), "add" or "remove"."""

    namespace: str
    key: str
    type: str
    value: int | str | bytes | None = field(repr=False)
    option: str
    action: str


def _missing(target: str, option: str, what: str, noun: str) -> InputError:
    return InputError(f"{noun} has no {what} (--add-missing creates it)", file=target, field=option)


def _factory_edits(view: KeyView, request: CustomizeRequest, chip: str | None, target: str,
                   noun: str) -> list[Edit]:
    ns_keys = view.keys(FACTORY_NS) if FACTORY_NS in view.namespaces() else {}
    edits = []
    for key, raw in request.factory_param.items():
        option = OPTION_KEYS.get(key, f"{FACTORY_NS}/{key}")
        try:
            value = fp.validate_value(key, raw, chip=chip)
        except InputError as exc:
            raise InputError(exc.message, field=option) from None
        if key in ns_keys:
            type_name, action = ns_keys[key], "set"
        elif request.add_missing:
            type_name, action = fp.KEY_TYPES[key], "add"
        else:
            raise _missing(target, option, f"{FACTORY_NS}/{key} key", noun)
        if (type_name == "string") != isinstance(value, str):
            raise InputError(f"{noun} stores {FACTORY_NS}/{key} as {type_name}", file=target, field=option)
        nf.check_value(type_name, value, field=option)
        edits.append(Edit(FACTORY_NS, key, type_name, value, option, action))
    _cross_check(view, request, edits)
    return edits


def _cross_check(view: KeyView, request: CustomizeRequest, edits: list[Edit]) -> None:
    """Channel range and shared UART pins, with the values the target keeps."""
    new = {e.key: e.value for e in edits}
    if {"start_channel", "channel_num"} & set(new):
        start = new.get("start_channel", view.value(FACTORY_NS, "start_channel"))
        num = new.get("channel_num", view.value(FACTORY_NS, "channel_num"))
        if isinstance(start, int) and isinstance(num, int) and start + num - 1 > 14:
            key = "channel_num" if "channel_num" in new else "start_channel"
            raise InputError(f"start_channel {start} + channel_num {num} - 1 = {start + num - 1} is past channel 14",
                             field=OPTION_KEYS[key])
    for key in fp.PIN_KEYS:
        pin = new.get(key)
        if not isinstance(pin, int) or pin < 0:
            continue
        for other in fp.PIN_KEYS:
            value = new[other] if other in new else view.value(FACTORY_NS, other)
            if other != key and value == pin:
                raise InputError(f"GPIO {pin} is also {other}", field=OPTION_KEYS[key])


def enterprise_of_target(namespaces: list[str], firmware: FirmwareProfile) -> FirmwareProfile:
    """``firmware`` with the enterprise set the target stores: a build with
    ``CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT`` writes it as ``wpa2_*`` (esp-at's mfg_nvs.py
    ``WPA_ENT_LEGACY_NAME_MAP``, "backward compatible with old firmware"); at.py edits them with
    ``--wpa2_*``. Only a target holding ``wpa2_*`` and no ``wpa_ent_*`` namespace switches."""
    old = any(n.startswith("wpa2_") for n in namespaces)
    new = any(n.startswith("wpa_ent_") for n in namespaces)
    if firmware.enterprise_namespace != "wpa2" and old and not new:
        return replace(firmware, enterprise_namespace="wpa2")
    return firmware


def _pki_edits(view: KeyView, request: CustomizeRequest, firmware: FirmwareProfile, target: str,
               noun: str) -> list[Edit]:
    edits = []
    namespaces = view.namespaces()
    firmware = enterprise_of_target(namespaces, firmware)
    wanted: dict[str, int] = {}
    for c in request.pki:
        ns = pki_namespace(c.family, c.kind, firmware)
        wanted[ns] = max(wanted.get(ns, 0), c.index + 1)
    names: dict[tuple[str, int], str] = {}
    for c in request.pki:
        ns = pki_namespace(c.family, c.kind, firmware)
        existing = view.keys(ns) if ns in namespaces else {}
        key = next((k for k in (f"{ns}.{c.index}", ns if c.index == 0 else None) if k and k in existing), None)
        if key is not None:
            if existing[key] != "blob":
                raise InputError(f"{noun} stores {ns}/{key} as {existing[key]}, not blob", file=target, field=c.option)
            edits.append(Edit(ns, key, "blob", c.data, c.option, "set"))
        elif request.add_missing:
            key = f"{ns}.{c.index}" if existing else pki_key_names(ns, wanted[ns], firmware)[c.index]
            edits.append(Edit(ns, key, "blob", c.data, c.option, "add"))
        else:
            what = f"{ns} namespace" if ns not in namespaces else f"{ns} key for set {c.index} (has {', '.join(existing) or 'no keys'})"
            raise _missing(target, c.option, what, noun)
        names[(ns, c.index)] = key
    if view.local:   # a new certificate must match the key the image keeps, and the other way round
        given = {(c.family, c.kind, c.index) for c in request.pki}
        for c in request.pki:
            other = "key" if c.kind == "cert" else "cert" if c.kind == "key" else None
            if other is None or (c.family, other, c.index) in given:
                continue
            ons = pki_namespace(c.family, other, firmware)
            okeys = view.keys(ons) if ons in namespaces else {}
            okey = next((k for k in (f"{ons}.{c.index}", ons if c.index == 0 else None) if k and k in okeys), None)
            data = view.value(ons, okey) if okey else None
            if not isinstance(data, bytes):
                continue
            try:
                cert_data, key_data = (c.data, data) if c.kind == "cert" else (data, c.data)
                cert, key = parse_pem_certs(cert_data)[0], parse_private_key(key_data)
            except InputError:
                continue   # the kept item does not parse: nothing to compare with
            check_pair(cert, key, file=c.file, field=f"{c.option} (with {ons}/{okey} of {target})")
    return edits


def _gatt_edits(view: KeyView, request: CustomizeRequest, target: str, noun: str) -> list[Edit]:
    if request.gatt is None and not request.gatt_rows:
        return []
    option = "--gatt" if request.gatt is not None else gatt_row_option(min(request.gatt_rows))
    if BLE_NS not in view.namespaces() and not request.add_missing:
        raise _missing(target, option, f"{BLE_NS} namespace", noun)
    existing = view.keys(BLE_NS) if BLE_NS in view.namespaces() else {}
    if request.gatt is None:
        return _gatt_row_edits(view, request, existing, target, noun)
    edits = [Edit(BLE_NS, f"cfg{i}", existing.get(f"cfg{i}", "string"), row, "--gatt",
                  "set" if f"cfg{i}" in existing else "add") for i, row in enumerate(request.gatt)]
    for key in existing:
        m = _CFG_RE.match(key)
        if m and int(m.group(1)) >= len(request.gatt):
            edits.append(Edit(BLE_NS, key, existing[key], None, "--gatt", "remove"))
    return edits


def _gatt_row_edits(view: KeyView, request: CustomizeRequest, existing: dict[str, str], target: str,
                    noun: str) -> list[Edit]:
    """Single rows (``--gatts-cfgN``): an existing row is replaced; with ``add_missing`` rows may
    extend the table right after its last row (the firmware reads cfg0.. up to the first gap)."""
    count = 0
    while f"cfg{count}" in existing:
        count += 1
    table: list[str] = []
    for i in range(count):
        value = view.value(BLE_NS, f"cfg{i}")
        table.append(value if isinstance(value, str) else "")
    edits = []
    for index, row in sorted(request.gatt_rows.items()):
        option = gatt_row_option(index)
        key = f"cfg{index}"
        if key in existing:
            if existing[key] != "string":
                raise InputError(f"{noun} stores {BLE_NS}/{key} as {existing[key]}", file=target, field=option)
            table[index] = row
            action = "set"
        elif request.add_missing and index == len(table):
            table.append(row)
            action = "add"
        else:
            have = f"cfg0..cfg{count - 1}" if count else "no rows"
            hint = f" (--add-missing appends cfg{len(table)})" if not request.add_missing else ""
            raise InputError(f"{noun} has {have}: {key} must be an existing row{hint}", file=target, field=option)
        edits.append(Edit(BLE_NS, key, "string", row, option, action))
    try:
        validate_rows(rows_from_cfg_strings(table, source=target), source=target)
    except InputError as exc:
        raise InputError(f"the GATT table with this row: {exc.message}", file=target,
                         field=gatt_row_option(min(request.gatt_rows))) from None
    return edits


def _unread_check(view: KeyView, edits: list[Edit], request: CustomizeRequest, build: BuildConfig | None,
                  target: str, noun: str) -> None:
    """A namespace to be added that the target's firmware never reads is refused (unless allow_unread)."""
    if build is None or request.allow_unread:
        return
    present = set(view.namespaces())
    for e in edits:
        if e.action == "add" and e.namespace not in present and not build.reads(e.namespace):
            raise InputError(f"the firmware of this {noun} never reads {e.namespace}: "
                             f"{build.why_unread(e.namespace)}; --allow-unread adds it anyway", file=target,
                             field=e.option)


def plan_edits(view: KeyView, request: CustomizeRequest, *, chip: str | None, firmware: FirmwareProfile,
               target: str, noun: str = "image", build: BuildConfig | None = None) -> list[Edit]:
    """The key edits ``request`` means for ``view``; :class:`InputError` naming the option and
    ``target`` (a file or port; ``noun`` says what it is) for a bad value, a key the target
    lacks (unless ``request.add_missing``) or a new namespace a firmware built with ``build``
    never reads (unless ``request.allow_unread``)."""
    edits = (_factory_edits(view, request, chip, target, noun) + _pki_edits(view, request, firmware, target, noun)
             + _gatt_edits(view, request, target, noun))
    _unread_check(view, edits, request, build, target, noun)
    _length_check(edits, request, firmware, target)
    return edits


def _length_check(edits: list[Edit], request: CustomizeRequest, firmware: FirmwareProfile, target: str) -> None:
    """Every string/blob fits one AT+SYSMFG write (1..8191 bytes, ground truth §6): a larger one could
    be written into an image, but never rotated or changed on the module again; refused up front."""
    files = {c.option: c.file for c in request.pki}
    for ed in edits:
        if ed.action == "remove" or not isinstance(ed.value, (str, bytes)):
            continue
        size = len(ed.value.encode("utf-8") if isinstance(ed.value, str) else ed.value)
        problem = sysmfg_length_problem(size, firmware)
        if problem is not None:
            raise InputError(f"{ed.namespace}/{ed.key} is {problem}", file=files.get(ed.option) or target,
                             field=ed.option)


__all__ = ["CustomizeRequest", "PkiChange", "Edit", "KeyView", "ImageView", "make_request", "plan_edits",
           "load_gatt_rows", "pki_option", "gatt_row_option", "pki_namespace", "OPTION_KEYS", "PKI_FAMILIES", "PKI_KINDS",
           "FACTORY_NS", "BLE_NS"]
