"""Customise one live module over AT (§3, §4, §5, §6): the ``atfab customize --port`` half.

Per-key mode: the planned edits (:func:`atfab.customize.plan.plan_edits`, same refusals as for an
image) are written with ``AT+SYSMFG=2`` (removed GATT rows erased with ``AT+SYSMFG=0``), every
changed key is read back, ``--tx-power`` is also applied at once with ``AT+RFPOWER`` and
``--baud`` saved with ``AT+UART_DEF`` (the host port follows). ``whole_partition``: mfg_nvs is
read with ``AT+SYSFLASH=2``, rebuilt offline (:func:`atfab.customize.nvs_edit.customize_nvs`), erased,
rewritten and read back. A write that fails part-way puts back what was already written (the
old values, read first; the old image) and raises :class:`CustomizeIncomplete`. Then ``AT+RST`` and the production checks: ``AT+GMR`` module name,
``AT+UART_DEF?``, ``AT+RFPOWER?``, ``AT+CWCOUNTRY?``, as the request makes them applicable.

A G1/G2 module (its firmware profile has a 0xFCFC ``factory_param_layout``; without ``--module`` the
release its AT+GMR names) has no AT+SYSMFG: :mod:`atfab.customize.live_legacy` rewrites its
factory_param block, PKI items and ble_data over AT+SYSFLASH. Every contact first ends a write an
earlier one left reading its payload (:meth:`atfab.link.at.client.AtClient.settle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..core.errors import DeviceError, InputError, UnitFailed
from ..core.firmware import FirmwareProfile, firmware_for, firmware_profile, release_of_core, rfpower_readback
from ..core.measurement import (
    COUNTRY, RF_POWER_WIFI, UART_DEF, Measurement, nvs_value_name,
)
from . import live_legacy
from .block_journal import BlockJournal
from .nvs_edit import Change, customize_nvs, show_value
from .readback import measure, measure_bytes, refusable
from .plan import BLE_NS, FACTORY_NS, CustomizeRequest, Edit, ImageView, plan_edits
from ..image.build_config import BuildConfig
from ..image.profiles import load_profile
from ..link.at.client import AtClient
from ..link.at.helpers import longest_payload
from ..link.at.mac import read_module_mac
from ..link.at.errors import AtError, AtTimeout, LinkLost
from ..link.transport import open_port, selector_from_options

MFG_NVS = "mfg_nvs"
_COUNTRY_KEYS = ("country_code", "start_channel", "channel_num")



class LiveView:
    """:class:`atfab.customize.plan.KeyView` of a module, read over AT+SYSMFG (cached)."""

    local = False

    def __init__(self, client: Any) -> None:
        self.client = client
        self._namespaces: list[str] | None = None
        self._keys: dict[str, dict[str, str]] = {}
        self._values: dict[tuple[str, str], Any] = {}

    def namespaces(self) -> list[str]:
        if self._namespaces is None:
            self._namespaces = list(self.client.sysmfg_namespaces())
        return self._namespaces

    def keys(self, namespace: str) -> dict[str, str]:
        if namespace not in self.namespaces():
            return {}
        if namespace not in self._keys:
            self._keys[namespace] = {k.key: k.type for k in self.client.sysmfg_keys(namespace)}
        return self._keys[namespace]

    def value(self, namespace: str, key: str) -> Any:
        if key not in self.keys(namespace):
            return None
        if (namespace, key) not in self._values:
            self._values[(namespace, key)] = self.client.sysmfg_read(namespace, key)
        return self._values[(namespace, key)]


@dataclass
class ModuleResult:
    """What :func:`customize_module` changed and measured."""

    target: str
    chip: str | None
    whole_partition: bool
    changes: list[Change] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # damage in the module's mfg_nvs (whole partition)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.measurements)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "chip": self.chip, "whole_partition": self.whole_partition,
                "passed": self.passed, "changes": [c.to_dict() for c in self.changes],
                "measurements": [m.to_dict() for m in self.measurements], "problems": list(self.problems)}

    def require_pass(self) -> None:
        """:class:`UnitFailed` naming the failed checks, if any."""
        failed = [m for m in self.measurements if not m.passed]
        if failed:
            raise UnitFailed(f"{self.target}: {len(failed)} check(s) failed after customising: "
                             + "; ".join(m.describe() for m in failed))


def _reread(client: Any, namespace: str, key: str, expected: Any, removed: bool) -> Measurement:
    """A changed key read back (read again before a failing measurement: :func:`measure`)."""
    name = nvs_value_name(namespace, key)
    if removed:
        return measure(client, name, "absent", lambda: "present" if any(
            k.key == key for k in client.sysmfg_keys(namespace)) else "absent")
    return measure(client, name, expected,
                   refusable(lambda: show_value(namespace, key, client.sysmfg_read(namespace, key))))


class CustomizeIncomplete(DeviceError):
    """A write failed part-way through customising a live module (exit code 3).

    ``restored`` tells whether every value already written was put back (the module then holds
    exactly what it held before); ``written`` names what had been written before the failure.
    """

    def __init__(self, target: str, failed: str, cause: Exception, written: list[str], restored: bool,
                 restore_error: Exception | None = None) -> None:
        self.target, self.failed, self.cause = target, failed, cause
        self.written, self.restored, self.restore_error = written, restored, restore_error
        done = ", ".join(written) if written else "nothing"
        if restored:
            tail = f"the module was restored to its previous values ({done} put back)"
        else:
            tail = (f"restoring failed too ({restore_error}); written before the failure: {done}, "
                    f"{failed} unknown; run the same atfab customize again to finish")
        super().__init__(f"{target}: writing {failed} failed ({cause}); {tail}")


_AT_FAULTS = (AtError, AtTimeout, LinkLost)


def _snapshot(view: LiveView, edits: list[Edit]) -> dict[tuple[str, str], tuple[str, Any] | None]:
    """Type and value of every key ``edits`` touch, read before anything is written (secrets too:
    they stay in memory, for a rollback); None for a key the module does not hold."""
    return {(ed.namespace, ed.key): ((view.keys(ed.namespace)[ed.key], view.value(ed.namespace, ed.key))
                                     if ed.key in view.keys(ed.namespace) else None)
            for ed in edits}


def _restore_keys(client: Any, keys: list[tuple[str, str]],
                  before: dict[tuple[str, str], tuple[str, Any] | None]) -> None:
    """Put ``keys`` back to ``before`` (newest first): rewrite the old value, or erase an added key."""
    for namespace, key in reversed(keys):
        old = before[(namespace, key)]
        if old is None:
            if any(k.key == key for k in client.sysmfg_keys(namespace)):
                client.sysmfg_erase(namespace, key)
        else:
            client.sysmfg_write(namespace, key, old[0], old[1])


def _per_key(client: Any, view: LiveView, edits: list[Edit], firmware: FirmwareProfile,
             out: list[Measurement], target: str) -> list[Change]:
    changes = []
    for ed in edits:
        secret = "_key" in ed.namespace or "_key" in ed.key
        old = None if ed.action == "add" or secret else view.value(ed.namespace, ed.key)
        if ed.action != "remove" and not secret and old is not None and old == ed.value:
            continue   # already holds the value
        action = {"set": "changed", "add": "added", "remove": "removed"}[ed.action]
        changes.append(Change(ed.namespace, ed.key, ed.type, action,
                              "<not read>" if secret and ed.action != "add" else show_value(ed.namespace, ed.key, old),
                              show_value(ed.namespace, ed.key, ed.value)))
    if firmware.ble and any(c.namespace == BLE_NS for c in changes) and client.ble_role() != 0:
        client.ble_init(0)     # ble_data may only change while BLE is de-initialised (§5.4)
    todo = {(c.namespace, c.key) for c in changes}
    pending = [ed for ed in edits if (ed.namespace, ed.key) in todo]
    before = _snapshot(view, pending)
    touched: list[tuple[str, str]] = []
    for ed in pending:
        touched.append((ed.namespace, ed.key))   # a failed write may still have landed: restore it too
        try:
            if ed.action == "remove":
                client.sysmfg_erase(ed.namespace, ed.key)
            else:
                client.sysmfg_write(ed.namespace, ed.key, ed.type, ed.value)
        except _AT_FAULTS as exc:
            written = [f"{ns}/{k}" for ns, k in touched[:-1]]
            try:
                _restore_keys(client, touched, before)
            except _AT_FAULTS as again:
                raise CustomizeIncomplete(target, f"{ed.namespace}/{ed.key}", exc, written, False, again) from exc
            raise CustomizeIncomplete(target, f"{ed.namespace}/{ed.key}", exc, written, True) from exc
    for c in changes:
        out.append(_reread(client, c.namespace, c.key, c.new, c.action == "removed"))
    return changes


def _rewrite_mfg_nvs(client: Any, image: bytes) -> None:
    """Erase the module's mfg_nvs and write ``image`` to it (AT+SYSFLASH)."""
    client.sysflash_erase(MFG_NVS)
    client.sysflash_write(MFG_NVS, 0, image)


def _whole_partition(client: Any, request: CustomizeRequest, chip: str | None, firmware: FirmwareProfile,
                     target: str, out: list[Measurement], problems: list[str],
                     build: BuildConfig | None = None) -> tuple[list[Change], Callable[[str, str], Any]]:
    parts = {p.name: p for p in client.sysflash_partitions()}
    part = parts.get(MFG_NVS)
    if part is None:
        raise InputError(f"module lists no {MFG_NVS} partition in AT+SYSFLASH?", file=target, field="--whole-partition")
    old = client.sysflash_read(MFG_NVS, 0, part.size)
    new, changes, before = customize_nvs(old, request, chip=chip, firmware=firmware, target=target, build=build)
    try:
        _rewrite_mfg_nvs(client, new)
    except _AT_FAULTS as exc:
        try:
            _rewrite_mfg_nvs(client, old)
        except _AT_FAULTS as again:
            raise CustomizeIncomplete(target, f"{MFG_NVS} (whole partition)", exc, [f"{MFG_NVS} (partly)"],
                                      False, again) from exc
        raise CustomizeIncomplete(target, f"{MFG_NVS} (whole partition)", exc, [], True) from exc
    out.append(measure_bytes(client, "mfg_nvs.sha256", new, lambda: client.sysflash_read(MFG_NVS, 0, part.size)))
    problems.extend(before.problems)
    return changes, ImageView(before).value


def _runtime(client: Any, request: CustomizeRequest, firmware: FirmwareProfile, out: list[Measurement]) -> Any:
    """AT+RFPOWER now (best effort: needs Wi-Fi on) and AT+UART_DEF (switches the host); the
    UART_DEF configuration to expect after the reboot, or None."""
    power = request.factory_param.get("max_tx_power")
    if isinstance(power, int):
        try:
            client.set_rf_power(power)
            out.append(measure(client, RF_POWER_WIFI, rfpower_readback(power, firmware), lambda: client.rf_power()[0]))
        except AtError as exc:
            client.note(f"AT+RFPOWER not applied now ({exc}); checked after the reboot")
    baud = request.factory_param.get("uart_baudrate")
    if not isinstance(baud, int) or baud < 0:
        return None
    cur = client.uart_def()
    client.set_uart_def(baud, cur.databits, cur.stopbits, cur.parity, cur.flow)
    return (baud, cur.databits, cur.stopbits, cur.parity, cur.flow)


def _after_reboot(client: Any, request: CustomizeRequest, firmware: FirmwareProfile, uart: Any,
                  current: Callable[[str, str], Any], out: list[Measurement]) -> None:
    fpv = request.factory_param
    if "module_name" in fpv:
        out.append(live_legacy.module_name_check(client, firmware, fpv["module_name"]))
    if uart is not None:
        out.append(measure(client, UART_DEF, list(uart), lambda: live_legacy.uart_def_values(client)))
    if isinstance(fpv.get("max_tx_power"), int):
        out.append(measure(client, f"{RF_POWER_WIFI}.after_reboot", rfpower_readback(int(fpv["max_tx_power"]), firmware),
                           lambda: client.rf_power()[0]))
    if firmware.wifi and set(_COUNTRY_KEYS) & set(fpv):
        want = [fpv[k] if k in fpv else current(FACTORY_NS, k) for k in _COUNTRY_KEYS]
        out.append(measure(client, COUNTRY, want, lambda: live_legacy.country_values(client)))


def _check_uart_port(view: LiveView, request: CustomizeRequest, target: str) -> None:
    """A live module keeps its AT UART: after the restart it would answer on another one."""
    new = request.factory_param.get("uart_port")
    if new is None:
        return
    current = view.value(FACTORY_NS, "uart_port")
    if current is not None and current != new:
        raise InputError(f"the module answers AT on UART{current}; after its restart it would answer on UART{new}, "
                         "not on this port (change it in an image: --image)", file=target, field="--uart-num")


def customize_module(client: Any, request: CustomizeRequest, *, chip: str | None = None,
                     whole_partition: bool = False, target: str | None = None,
                     ready_timeout: float = 10.0, build: BuildConfig | None = None,
                     journal: BlockJournal | None = None) -> ModuleResult:
    """Apply ``request`` to the module behind ``client`` (an :class:`atfab.link.at.client.AtClient`),
    reboot it and verify. Returns the changes and measurements (check ``result.passed`` or call
    ``result.require_pass()``); :class:`InputError` before anything is written when an option
    is invalid, the module lacks its key (without ``request.add_missing``), a namespace to add is
    one its firmware (``build``, when known) never reads, or ``--uart-num`` would move the AT port.
    ``journal``: where a G1/G2 block rewrite is journalled (:mod:`atfab.customize.block_journal`)."""
    if request.is_empty():
        raise InputError("nothing to change: give at least one option to customise", field="options")
    firmware = client.firmware
    chip = chip or (firmware.gmr_chip.lower() if firmware.gmr_chip else None)
    target = target or str(getattr(client.port, "portstr", None) or getattr(client.port, "port", None) or "module")
    result = ModuleResult(target, chip, whole_partition)
    client.note(f"atfab customize: {' '.join(request.options())}")
    client.at()
    if firmware.factory_param_layout:          # G1/G2: the 0xFCFC block over AT+SYSFLASH, no AT+SYSMFG
        return _legacy_module(client, request, chip, firmware, result, ready_timeout, journal)
    _check_uart_port(LiveView(client), request, target)
    if whole_partition:
        result.changes, current = _whole_partition(client, request, chip, firmware, target, result.measurements,
                                                   result.problems, build)
    else:
        view = LiveView(client)
        edits = plan_edits(view, request, chip=chip, firmware=firmware, target=target, noun="module", build=build)
        result.changes = _per_key(client, view, edits, firmware, result.measurements, target)
        current = view.value
    uart = _runtime(client, request, firmware, result.measurements)
    client.restart(wait_ready=True, timeout=ready_timeout)
    if whole_partition:
        for c in result.changes:
            result.measurements.append(_reread(client, c.namespace, c.key, c.new, c.action == "removed"))
    _after_reboot(client, request, firmware, uart, current, result.measurements)
    return result


def _legacy_module(client: Any, request: CustomizeRequest, chip: str | None, firmware: FirmwareProfile,
                   result: ModuleResult, ready_timeout: float, journal: BlockJournal | None) -> ModuleResult:
    """:func:`customize_module` for a legacy module (:mod:`atfab.customize.live_legacy`): first a block
    rewrite a cut left in ``journal`` for this unit (its base MAC) is settled (:func:`live_legacy.recover_block`)."""
    if result.whole_partition:
        raise InputError("a G1/G2 module's factory_param block is always rewritten whole; --whole-partition is "
                         "for mfg_nvs", file=result.target, field="--whole-partition")
    unit_journal = None
    if journal is not None:
        unit_journal = live_legacy.UnitBlockJournal(journal, read_module_mac(client, firmware).base)
        live_legacy.recover_block(client, unit_journal, target=result.target, problems=result.problems)

    def incomplete(failed: str, cause: Exception, written: list[str], restored: bool,
                   again: Exception | None) -> CustomizeIncomplete:
        return CustomizeIncomplete(result.target, failed, cause, written, restored, again)

    items = bool(request.pki or request.gatt is not None or request.gatt_rows)
    planned = (live_legacy.plan_module_items(client, request, firmware=firmware, target=result.target,
                                             problems=result.problems)
               if items else None)           # every refusal before the first write
    block = None
    if request.factory_param:
        result.changes, before, new, old_block = live_legacy.customize_block(
            client, request, chip=chip, firmware=firmware, target=result.target, out=result.measurements,
            incomplete=incomplete, journal=unit_journal)
        block = (before, new, old_block)
    images: dict[str, bytes] = {}
    if planned is not None:
        try:
            images = live_legacy.write_items(client, planned, out=result.measurements, incomplete=incomplete)
        except CustomizeIncomplete as exc:
            if block is None or not exc.restored or block[2] == block[1]:
                raise
            try:                        # the block of this run went in first: put it back too
                live_legacy.put_back_block(client, block[2], unit_journal)
            except _AT_FAULTS as again:
                raise CustomizeIncomplete(result.target, exc.failed, exc.cause, ["factory_param (block)", *exc.written],
                                          False, again) from exc
            raise CustomizeIncomplete(result.target, exc.failed, exc.cause, ["factory_param (block)", *exc.written],
                                      True) from exc
        result.changes += planned[3]
    levels = bool(firmware.rfpower_levels)     # G1: byte 4 and AT+RFPOWER are power levels; applied at boot only
    now = request if not levels else replace(request, factory_param={
        k: v for k, v in request.factory_param.items() if k != "max_tx_power"})
    uart = _runtime(client, now, firmware, result.measurements)
    client.restart(wait_ready=True, timeout=ready_timeout)
    if block is not None:
        live_legacy.after_reboot(client, request, firmware, uart, block[0], block[1], result.measurements)
    live_legacy.items_after_reboot(client, images, result.measurements)
    return result


def run_on_port(request: CustomizeRequest, *, port: str | None = None, usb_serial: str | None = None,
                location: str | None = None, connect_baud: int | None = None, module: str | None = None,
                chip: str | None = None, whole_partition: bool = False, timeout: float = 3.0,
                journal: str | Path | None = None) -> ModuleResult:
    """Open the AT port, run :func:`customize_module`, close the port. The firmware behaviour is
    the ``module`` profile's, else the G1/G2 release the module's GMR names (:func:`legacy_firmware_of`),
    else that of ``chip`` (default esp32c2). ``journal``: the folder of the G1/G2 block journal
    (:mod:`atfab.customize.block_journal`; None: no journal)."""

    if module is not None:
        profile = load_profile(module)
        if chip is not None and chip != profile.chip:
            raise InputError(f"--chip {chip} contradicts --module {module} ({profile.chip})", field="--chip")
        firmware, chip, build = profile.firmware, profile.chip, profile.build
    else:
        firmware, build = firmware_for(chip or "esp32c2"), None
    selector = selector_from_options(port, usb_serial, location)
    serial_port = open_port(selector, connect_baud)
    with AtClient(serial_port, firmware=firmware, timeout=timeout) as client:
        # a write an earlier contact left reading its payload is ended first (AtClient.settle)
        client.settle(longest_payload(client.firmware))
        if module is None:
            legacy = legacy_firmware_of(client, chip)
            if legacy is not None:            # a G1/G2 module: no AT+SYSMFG, its partitions over AT+SYSFLASH
                client.firmware, chip = legacy, legacy.chip
        return customize_module(client, request, chip=chip, whole_partition=whole_partition,
                                target=str(selector or serial_port.portstr), build=build,
                                journal=BlockJournal(journal) if journal is not None else None)


def legacy_firmware_of(client: Any, chip: str | None) -> FirmwareProfile | None:
    """The G1/G2 release a module runs, by the AT core commit its ``AT+GMR`` prints (None: not a
    legacy release atfab knows). ``chip``: the one given, else the one GMR names, else ESP32 (the
    only G1 chip, whose v1.x GMR names none)."""
    gmr = client.gmr()
    chip = chip or (gmr.chip.lower() if gmr.chip else "esp32")
    release = release_of_core(chip, gmr.at_core_hash or "")
    if release is None:
        return None
    fw = firmware_profile(release, chip)
    return fw if fw.legacy else None


__all__ = ["customize_module", "run_on_port", "legacy_firmware_of", "ModuleResult", "LiveView", "CustomizeIncomplete"]
