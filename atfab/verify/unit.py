"""On-device verification of a provisioned unit: every check becomes a :class:`Measurement`.

Given what ``atfab build`` wrote for the unit (:class:`BuiltUnit`: manifest, at_customize.bin and
mfg_nvs.bin of the output folder) and an :class:`~atfab.link.at.client.AtClient` on the running
module, :func:`verify_unit` checks:

* ``at.alive`` / ``at.echo_off`` - ``AT`` answers; after ``ATE0`` nothing is echoed;
* ``gmr.*`` - ``AT+GMR``: AT core line, SDK, compile time (when the build knew the app) and
  ``Bin version:<app version>(<module_name>)``;
* ``at_customize.partitions`` - ``AT+SYSFLASH?`` against the built at_customize table;
* ``mfg_nvs.namespaces`` - ``AT+SYSMFG?`` lists exactly the built namespaces (sorted); every
  namespace the build did not write (an injected trusted CA ``https_ca``, a custom namespace) FAILs
  and gets its own ``mfg_nvs.<ns>.keys`` measurement (expected absent, measured its keys);
* ``mfg_nvs.<ns>.keys`` - ``AT+SYSMFG=1,"<ns>"`` lists exactly the built keys and types (sorted);
* ``factory_param.<key>`` (and ``<ns>.<key>`` of other text/number namespaces) - the value read
  back with ``AT+SYSMFG`` equals the built value;
* ``<ns>.<key>.sha256`` - blobs (PKI objects) by SHA-256 of the read-back bytes;
* ``uart_def`` / ``uart_cur.baud`` / ``uart_cur.format`` - ``AT+UART_DEF?`` equals the expected
  configuration; ``AT+UART_CUR?`` baud within ±2 % (clock division), format equal;
* ``rf_power.range`` / ``rf_power.wifi`` - ``AT+RFPOWER?`` inside the firmware's range and equal
  to the built ``max_tx_power`` (as this firmware reads it back);
* ``country`` - ``AT+CWCOUNTRY?`` code, start channel and channel count equal the built
  ``country_code``/``start_channel``/``channel_num`` (Wi-Fi firmware; the policy is not compared:
  the firmware shows 0 after applying the factory values, §6.2);
* ``gmr.recipe_version`` (when ``at_version`` is given) - the ``Bin version`` (else ``AT version``)
  of ``AT+GMR`` starts with it (a leading ``v`` is ignored on both sides);
* ``sta_mac`` - ``AT+CIPSTAMAC?`` equals the MAC esptool read (``present`` when none is given);
  on BLE-only firmware (no Wi-Fi commands) ``mac.base`` instead: ``AT+BLEADDR?`` minus
  ``bt_mac_offset`` (BT = base + 2, §6.3; :func:`atfab.link.at.mac.read_module_mac`) equals it;
* ``gatt.services`` / ``gatt.chars`` (BLE firmware with a ble_data table) - the discovery lines
  the firmware prints, read through its release's formats, against what the built table yields,
  by meaning (indices, UUIDs, properties; :mod:`atfab.verify.gatt`).

``checks`` (names of :data:`atfab.verify.checks.CHECKS`) limits verification to those checks:
``boot`` (``at.*``), ``gmr`` (``gmr.*``), ``mac`` (``sta_mac`` / ``mac.base``), ``factory_param`` (the
``factory_param`` namespace), ``uart``, ``rf_power``, ``country``, ``sysflash``
(``at_customize.partitions``), ``pki`` (the ``*_cert``/``*_key``/``*_ca`` namespaces), ``gatt``
(``gatt.*`` and the ``ble_data`` namespace); other mfg_nvs namespaces are always checked.
:func:`atfab.verify.checks.check_of` maps a measurement name to its check. Measurement names do not depend on
``checks``.

A wrong value is a failing measurement, but only once it is read twice alike: a read that does
not hold is read again, and a re-read that disagrees with the first read (a byte flipped on the
wire) raises :class:`ReadDisagrees` (link noise: ERROR, never FAIL). A check that cannot be made
because the link or the station failed (timeout, lost link, busy, garbled reply) raises that
:class:`~atfab.core.errors.DeviceError`: a station problem, not a unit verdict. An ``ERROR`` answer
to a read (e.g. a key the unit lacks), given again to the re-read, is a failing measurement of the unit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.inputs import load_json
from ..core.firmware import FirmwareProfile, rfpower_readback
from ..core.mac import normalize_mac
from ..core.measurement import (
    COUNTRY, FAIL, GMR_MODULE_NAME, MFG_NVS_NAMESPACES, RF_POWER_WIFI, UART_DEF, Measurement, evaluate,
    nvs_value_name,
)
from ..image.gatt import rows_from_cfg_strings
from ..image.nvs.reader import NvsImage, read_nvs
from ..image.partition_table import PartitionTable, decode
from ..image.profiles import load_profile
from ..link.at.client import AtClient
from ..link.at.gatt_lines import read_chars, read_services
from ..link.at.helpers import longest_payload
from ..link.at.errors import AtTimeout, ModuleRestarted
from ..link.at.mac import read_module_mac
from ..link.at.parse import UartConfig
from .checks import CHECKS, namespace_check
from .expected import expected_module_name, firmware_of_app
from .gatt import expected_items, meaning, prints_properties
from .reread import ReadDisagrees, Refused, RereadVerifier, ask, refused_measurement


UART_BAUD_TOLERANCE_PCT = 2.0
@dataclass
class BuiltUnit:
    """What the build wrote for one unit (the expectations of verification)."""

    folder: Path
    manifest: dict[str, Any]
    at_customize: PartitionTable
    mfg_nvs: NvsImage

    @property
    def factory_param(self) -> dict[str, int | str]:
        return {e.key: e.value for e in self.mfg_nvs.keys("factory_param")}  # type: ignore[misc]

    @property
    def app(self) -> dict[str, Any] | None:
        app = self.manifest.get("app")
        if hasattr(app, "to_dict"):         # an AppInfo (the station builds units in memory)
            app = app.to_dict()
        return app if isinstance(app, dict) else None

    def firmware(self) -> FirmwareProfile:
        """The firmware behaviour of the module profile the unit was built for."""

        try:
            return load_profile(str(self.manifest.get("module"))).firmware
        except InputError as exc:   # name the manifest that named the module
            raise exc.located(file=self.folder / "manifest.json", field="module") from None


def load_built(folder: str | Path) -> BuiltUnit:
    """Read manifest.json, at_customize.bin and mfg_nvs.bin of an ``atfab build`` folder."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists() and not manifest_path.is_symlink():
        raise InputError("no manifest.json here (not an `atfab build` output folder?)", file=manifest_path)
    manifest = load_json(manifest_path, "manifest", field="")
    if not isinstance(manifest, dict) or "module" not in manifest:
        raise InputError("not an atfab build manifest", file=manifest_path, field="module")
    images: dict[str, bytes] = {}
    for name in ("at_customize.bin", "mfg_nvs.bin"):
        try:
            images[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", file=folder / name) from None
    return BuiltUnit(folder, manifest, decode(images["at_customize.bin"], source=str(folder / "at_customize.bin")),
                     read_nvs(images["mfg_nvs.bin"], source=str(folder / "mfg_nvs.bin")))


@dataclass
class VerifyResult:
    """All measurements of one verification; ``passed`` when every one passed."""

    measurements: list[Measurement]
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = all(m.passed for m in self.measurements)

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if not m.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": [m.name for m in self.failed],
                "measurements": [m.to_dict() for m in self.measurements]}


class _UnitVerifier(RereadVerifier):
    """The checks of a G3 unit against what was built for it (:class:`BuiltUnit`)."""

    def __init__(self, at: AtClient, built: BuiltUnit, firmware: FirmwareProfile) -> None:
        super().__init__(at, firmware)
        self.built = built

    # -- checks --------------------------------------------------------------------------------
    def gmr(self) -> None:
        try:
            gmr = self.gmr_reply = ask(self.at.gmr)
        except Refused as exc:
            self.refused(GMR_MODULE_NAME, expected_module_name(self.fw, self.built.factory_param.get("module_name"))[0],
                         "equal", exc, self.at.gmr)
            return
        found = self._gmr_measurements(gmr)
        bad = [m for m in found if not m.passed]
        if bad:
            self.confirm(bad[0].name, gmr.lines, lambda: self.at.gmr().lines)
        self.out += found

    def _gmr_measurements(self, gmr: Any) -> list[Measurement]:
        name, note = expected_module_name(self.fw, self.built.factory_param.get("module_name"))
        out = [evaluate(GMR_MODULE_NAME, name, gmr.module_name, detail=note)]
        app = self.built.app
        if app is None:
            return out
        version_line = next((ln for ln in gmr.lines if ln.startswith("AT version:")), None)
        if app.get("at_core"):
            out.append(evaluate("gmr.at_version", app["at_core"],
                                version_line[len("AT version:"):].strip() if version_line else None))
        out.append(evaluate("gmr.sdk_version", app.get("idf_ver"), gmr.sdk_version))
        out.append(_compile_time(app, gmr))
        out.append(evaluate("gmr.bin_version", app.get("version"), gmr.bin_version))
        return out

    def partitions(self) -> None:
        expected = [f"{p.name},{p.type},{p.subtype},0x{p.offset:x},0x{p.size:x}" for p in self.built.at_customize.entries]
        self.check("at_customize.partitions", expected, lambda: [
            f"{p.name},{p.type},{p.subtype},0x{p.offset:x},0x{p.size:x}" for p in self.at.sysflash_partitions()])

    def namespaces(self) -> None:
        """``AT+SYSMFG?`` lists exactly the built namespaces: anything else on the unit (an injected
        trusted CA ``https_ca``, a custom namespace) FAILs, and each extra namespace gets its own
        ``mfg_nvs.<ns>.keys`` measurement (expected absent) naming it and its keys."""
        built = sorted(dict.fromkeys(e.namespace for e in self.built.mfg_nvs.entries))
        listed = self.check(MFG_NVS_NAMESPACES, built, lambda: sorted(dict.fromkeys(self.at.sysmfg_namespaces())))
        if not isinstance(listed, list):
            return
        extra = [ns for ns in listed if ns not in built]
        if extra:
            self.out[-1] = replace(self.out[-1], detail=f"not in the build: {', '.join(extra)}" + (
                f" (AT+SYSMFG? lists at most {self.fw.sysmfg_namespace_max})" if len(listed) >= self.fw.sysmfg_namespace_max
                and self.fw.sysmfg_namespace_max else ""))
        for ns in extra:
            try:
                keys: Any = sorted(f"{k.key}:{k.type}" for k in ask(lambda ns=ns: self.at.sysmfg_keys(ns)))
            except (Refused, InputError) as exc:   # listed but unreadable (or a name AT cannot address)
                keys = f"unreadable: {exc}"
            self.out.append(Measurement(f"mfg_nvs.{ns}.keys", None, keys, "absent", FAIL,
                                        detail=f"namespace {ns!r} is on the unit but not in the build"))

    def mfg_nvs(self, wanted: frozenset[str]) -> None:
        image = self.built.mfg_nvs
        for ns in dict.fromkeys(e.namespace for e in image.entries):
            if namespace_check(ns) not in wanted and namespace_check(ns) is not None:
                continue
            entries = image.keys(ns)
            # order is not a property of the unit: an in-place edit moves a key to the end
            self.check(f"mfg_nvs.{ns}.keys", sorted(f"{e.key}:{e.type}" for e in entries),
                       lambda ns=ns: sorted(f"{k.key}:{k.type}" for k in self.at.sysmfg_keys(ns)))
            for e in entries:
                name = nvs_value_name(ns, e.key)
                if isinstance(e.value, bytes):
                    self.check(f"{name}.sha256", hashlib.sha256(e.value).hexdigest(),
                               lambda e=e: _sha256(self.at.sysmfg_read(e.namespace, e.key)))
                else:
                    self.check(name, e.value, lambda e=e: self.at.sysmfg_read(e.namespace, e.key))

    def uart(self, expected: UartConfig | None) -> None:
        fp = self.built.factory_param
        if expected is None:
            baud = fp.get("uart_baudrate")
            if not isinstance(baud, int) or baud <= 0 or fp.get("uart_port", 1) == -1:
                return  # SPI/SDIO build: no AT UART
            expected = UartConfig(baud, 8, 1, 0, self.fw.uart_default_flow_control)
        want = [expected.baud, expected.databits, expected.stopbits, expected.parity, expected.flow]
        self.check(UART_DEF, want, lambda: list(_uart_fields(self.at.uart_def())))
        try:
            cur = ask(self.at.uart_cur)
        except Refused as exc:
            self.refused("uart_cur.baud", [expected.baud, UART_BAUD_TOLERANCE_PCT], "tolerance_pct", exc,
                         self.at.uart_cur)
            return
        self.add("uart_cur.baud", [expected.baud, UART_BAUD_TOLERANCE_PCT], cur.baud, "tolerance_pct",
                 reread=lambda: self.at.uart_cur().baud)
        self.add("uart_cur.format", want[1:], list(_uart_fields(cur))[1:],
                 reread=lambda: list(_uart_fields(self.at.uart_cur()))[1:])

    def rf_power(self, expected: int | None) -> None:
        if not self.fw.wifi:
            return
        if expected is None:
            power = self.built.factory_param.get("max_tx_power")
            expected = power if isinstance(power, int) else None
        measured = self.check("rf_power.range", [self.fw.rfpower_min, self.fw.rfpower_max],
                              lambda: self.at.rf_power()[0], "range")
        if expected is not None:
            self.add(RF_POWER_WIFI, rfpower_readback(expected, self.fw), measured,
                     reread=lambda: self.at.rf_power()[0])

    def country(self) -> None:
        fp = self.built.factory_param
        want = [fp.get("country_code"), fp.get("start_channel"), fp.get("channel_num")]
        if not self.fw.wifi or None in want:
            return
        self.check(COUNTRY, want, lambda: (lambda c: [c.code, c.start_channel, c.channel_count])(self.at.country()))

    def mac(self, mac: str | None) -> None:
        name, rule = ("sta_mac" if self.fw.wifi else "mac.base"), ("equal" if mac else "present")
        try:
            got = ask(lambda: read_module_mac(self.at, self.fw))
        except Refused as exc:
            self.refused(name, mac, rule, exc, lambda: read_module_mac(self.at, self.fw))
            return
        self.add(name, mac, got.base, rule, detail=got.detail if got.offset else None,
                 reread=lambda: read_module_mac(self.at, self.fw).base)

    def gatt(self) -> None:
        cfgs = [e for e in self.built.mfg_nvs.keys("ble_data") if isinstance(e.value, str)]
        if not self.fw.ble or not cfgs:
            return
        cfgs.sort(key=lambda e: int(e.key[3:]) if e.key[3:].isdigit() else 0)
        rows = rows_from_cfg_strings([str(e.value) for e in cfgs], source=str(self.built.folder / "mfg_nvs.bin"))
        services, chars = (meaning(x) for x in expected_items(rows, self.fw))
        started_here = False
        try:
            if ask(self.at.ble_role) != 2:
                ask(lambda: self.at.ble_init(2))
                started_here = True
                ask(self.at.gatts_create_and_start)
        except Refused as exc:
            self.out.append(refused_measurement("gatt.services", services, "equal", exc))
            return
        note = (f"compared by meaning (index, UUID{', properties' if prints_properties(self.fw) else ''}) "
                f"through the {self.fw.release} {self.fw.gmr_chip} line formats")
        try:
            self.check("gatt.services", services, lambda: meaning(read_services(self.at.command("AT+BLEGATTSSRV?"),
                                                                                self.fw)), detail=note)
            self.check("gatt.chars", chars, lambda: meaning(read_chars(self.at.command("AT+BLEGATTSCHAR?"), self.fw)),
                       detail=note)
        finally:
            if started_here:  # leave BLE as we found it
                try:
                    ask(lambda: self.at.ble_init(0))
                except Refused:
                    pass


def _compile_time(app: dict[str, Any], gmr: Any) -> Measurement:
    """``compile time(<commit>):<date> <time>``: the commit is ESP_AT_PROJECT_COMMIT_ID, which the app
    carries; the date and time are at_init.c's ``__DATE__``/``__TIME__``, a different translation unit
    from the app description's, so they are recorded, never compared (ground truth §2)."""
    stamp = f"the date/time printed ({gmr.compile_time!r}) is at_init.c's compile stamp, not the app description's: not compared"
    commit = app.get("commit")
    if isinstance(commit, str) and commit:
        return evaluate("gmr.compile_time", commit, gmr.compile_commit, detail=f"project commit compared; {stamp}")
    return evaluate("gmr.compile_time", None, gmr.compile_time, "present",
                    detail=f"the app does not name its project commit; {stamp}")


def _sha256(data: int | str | bytes) -> str:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if not isinstance(raw, bytes):
        raw = str(raw).encode()
    return hashlib.sha256(raw).hexdigest()


def _uart_fields(cfg: UartConfig) -> tuple[int, int, int, int, int]:
    return cfg.baud, cfg.databits, cfg.stopbits, cfg.parity, cfg.flow


def wait_alive(at: AtClient, timeout: float = 10.0, *, per_try: float = 0.5) -> None:
    """Send ``AT`` until the module answers (it may still be booting after a reset or a flash).

    The last :class:`~atfab.link.at.errors.AtTimeout` (a :class:`DeviceError`) propagates when the
    module stays silent for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            at.call("AT", timeout=per_try)
            return
        except (AtTimeout, ModuleRestarted):   # still booting, or it booted while ``AT`` was on its way
            if time.monotonic() >= deadline:
                raise


def first_contact(at: AtClient, timeout: float = 10.0) -> bool:
    """Before verifying: end a write an earlier contact cut (:meth:`AtClient.settle`: a probe query,
    answered at once by a module at its prompt; a silent one gets one write's worth of 0xFF and must
    then answer), then :func:`wait_alive` (a module still booting). True when a pending write was ended
    (the transcript notes it; what it left is then measured like any other content)."""
    try:
        ended = at.settle(longest_payload(at.firmware))
    except AtTimeout:
        ended = False                   # still booting (or gone): wait_alive decides
    wait_alive(at, timeout)
    return ended


def verify_unit(at: AtClient, built: BuiltUnit | str | Path, *, mac: str | bytes | None = None,
                firmware: FirmwareProfile | None = None, uart: UartConfig | None = None,
                rf_power: int | None = None, checks: Iterable[str] | None = None,
                at_version: str | None = None) -> VerifyResult:
    """Check the running module on ``at`` against what was built for it (see the module doc).

    ``mac``: the MAC esptool read (the module's base MAC must equal it). ``firmware``: behaviour of the module's
    firmware (default: that of the build's module profile). ``uart``/``rf_power`` override the
    expectations derived from the built factory parameters (e.g. from a recipe). ``checks``: only
    these checks (:data:`~atfab.verify.checks.CHECKS` names; None = all). ``at_version``: the esp-at version the
    unit must report (``gmr.recipe_version``, part of the ``gmr`` check).
    """
    wanted = frozenset(CHECKS if checks is None else checks)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise InputError(f"unknown check(s) {', '.join(sorted(unknown))} (known: {', '.join(CHECKS)})",
                         field="checks")
    if not isinstance(built, BuiltUnit):
        built = load_built(built)
    v = _UnitVerifier(at, built, firmware_of_app(firmware or built.firmware(), built.app))
    if "boot" in wanted:
        v.basics()
    if "gmr" in wanted:
        v.gmr()
        if at_version:
            v.recipe_version(at_version)
    if "sysflash" in wanted:
        v.partitions()
    v.namespaces()
    v.mfg_nvs(wanted)
    if "uart" in wanted:
        v.uart(uart)
    if "rf_power" in wanted:
        v.rf_power(rf_power)
    if "country" in wanted:
        v.country()
    if "mac" in wanted:
        v.mac(normalize_mac(mac) if mac is not None else None)
    if "gatt" in wanted:
        v.gatt()
    return VerifyResult(v.out)


__all__ = ["BuiltUnit", "VerifyResult", "ReadDisagrees", "load_built", "verify_unit", "wait_alive", "first_contact",
           "UART_BAUD_TOLERANCE_PCT"]
