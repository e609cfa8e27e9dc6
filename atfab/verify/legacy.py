"""On-device checks of a legacy (G1 esp32-at v1.x / G2 ESP-AT v2.x-v3.0.0.0) unit: per-item partitions.

There is no mfg_nvs and no ``AT+SYSMFG``: every partition built for the unit (:class:`LegacyBuilt`:
an ``atfab build`` folder's manifest ``partitions``, or the station's images in memory; the
factory_param block, the PKI partitions, ble_data) is read back with ``AT+SYSFLASH=2`` and
compared with the built image (SHA-256, measurement ``partition.<name>``; check ``partitions``,
or per kind the recipe checks ``factory_param``, ``pki``, ``gatt``); the rest is what the
firmware shows of them:

* ``boot``: ``at.alive``, ``at.echo_off``;
* ``gmr``: ``gmr.at_version`` (the app's AT-core record), ``gmr.bin_version`` (CONFIG_ESP_AT_FW_VERSION
  where the release printed it, else the app version) and ``gmr.module_name`` (the module the block
  names, as the release reads it: by id or by name); with ``at_version``, ``gmr.recipe_version``
  (the AT version starts with it);
* ``sysflash``: ``AT+SYSFLASH?`` lists the built at_customize table;
* ``uart``: ``AT+UART_DEF?`` baud = the block's baud; ``rf_power``: ``AT+RFPOWER?`` = the block's power
  (a G1 level as its 0.25 dBm value); ``country``: ``AT+CWCOUNTRY?`` where the release has it;
* ``mac``: the STA MAC equals the one esptool read.

Reads that do not hold are read again first (:class:`~atfab.verify.reread.RereadVerifier`): a re-read that
disagrees is link noise (ERROR), never a FAIL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.firmware import FirmwareProfile
from ..core.inputs import load_json
from ..core.mac import normalize_mac
from ..image import legacy_factory as lf
from ..image.legacy_layout import KIND_BLE, KIND_FACTORY, KIND_PKI, kind_of
from ..image.partition_table import PartitionTable, decode
from ..image.profiles import load_profile
from ..link.at.client import AtClient
from .reread import RereadVerifier
from .unit import VerifyResult

#: The checks of a legacy unit (a subset of :data:`atfab.verify.checks.CHECKS`).
LEGACY_CHECKS = ("boot", "gmr", "sysflash", "partitions", "uart", "rf_power", "country", "mac")


def is_legacy_build(folder: str | Path) -> bool:
    """True when ``folder`` is an ``atfab build`` output of a G1/G2 layout (manifest generation)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return False
    manifest = load_json(path, "manifest", field="")
    return isinstance(manifest, dict) and manifest.get("generation") in ("G1", "G2")


def legacy_firmware(manifest: dict[str, Any], source: str) -> FirmwareProfile:
    """The firmware facts of the release the unit was built for."""
    try:
        profile = load_profile(str(manifest.get("module")))
        release = manifest.get("release")
        return (profile.for_release(str(release)) if release else profile).firmware
    except InputError as exc:
        raise exc.located(file=source, field="module") from None


@dataclass(frozen=True)
class LegacyBuilt:
    """What was built for one legacy unit: the expectations of :func:`verify_legacy`.

    ``parts``: partition name -> the image written at its offset (manifest ``partitions``);
    ``app``: the app description of the firmware flashed (None: unknown, GMR lines not compared);
    ``firmware``: the release the unit was built for; ``source``: where it came from (for messages).
    """

    at_customize: PartitionTable
    parts: dict[str, bytes]
    app: dict[str, Any] | None
    firmware: FirmwareProfile
    source: str = ""


def load_legacy_built(folder: str | Path) -> LegacyBuilt:
    """The :class:`LegacyBuilt` of an ``atfab build`` folder of a G1/G2 module."""
    folder = Path(folder)
    manifest = load_json(folder / "manifest.json", "manifest", field="")
    files = {p["name"]: (folder / f"{p['name']}.bin").read_bytes() for p in manifest.get("partitions", [])}
    table = decode((folder / "at_customize.bin").read_bytes(), source=str(folder / "at_customize.bin"))
    return LegacyBuilt(table, files, manifest.get("app") or None,
                       legacy_firmware(manifest, str(folder / "manifest.json")), str(folder))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: The recipe check (:data:`atfab.verify.checks.CHECKS`) each kind of item partition belongs to.
_PARTITION_CHECK = {KIND_FACTORY: "factory_param", KIND_BLE: "gatt", KIND_PKI: "pki"}


class _LegacyVerifier(RereadVerifier):
    def __init__(self, at: AtClient, built: LegacyBuilt) -> None:
        super().__init__(at, built.firmware)
        self.built = built
        self.files = built.parts
        block = self.files.get("factory_param")
        self.block = lf.decode_block(block, source=f"{built.source}/factory_param.bin") if block else None

    def _module_name(self) -> str:
        names = tuple(self.fw.module_names) or ("",)
        if self.block is None:                       # no factory_param partition (v1.0-v1.1): table entry 0
            return self.fw.printed_module_name(None)
        if self.fw.factory_param_module == "id" or self.block["version"] <= 2:
            ident = self.block.get("module_id", 0)
            return names[ident] if 0 <= ident < len(names) else names[0]
        return self.fw.printed_module_name(self.block.get("module_name"))

    def legacy_gmr(self) -> None:
        app = self.built.app or {}
        gmr = self.check("gmr.module_name", self._module_name(), lambda: self.at.gmr().module_name)
        if gmr is None:
            return
        reply = self.gmr_reply = self.at.gmr()
        line = next((ln for ln in reply.lines if ln.startswith("AT version:")), "")
        if app.get("at_core"):
            self.add("gmr.at_version", app["at_core"], line[len("AT version:"):].strip(),
                     reread=lambda: next((ln for ln in self.at.gmr().lines if ln.startswith("AT version:")),
                                         "")[len("AT version:"):].strip())
        version = (self.fw.fw_version if self.fw.bin_version_source == "CONFIG_ESP_AT_FW_VERSION"
                   and self.fw.fw_version else app.get("version"))
        self.add("gmr.bin_version", version, reply.bin_version, reread=lambda: self.at.gmr().bin_version)

    def table(self) -> None:
        expected = [(p.name, p.type, p.subtype, p.offset, p.size) for p in self.built.at_customize.entries]
        self.check("sysflash.table", expected, lambda: [(e.name, e.type, e.subtype, e.offset, e.size)
                                                        for e in self.at.sysflash_partitions()])

    def partitions(self, wanted: frozenset[str]) -> None:
        for name, data in self.files.items():
            if "partitions" in wanted or _PARTITION_CHECK.get(kind_of(name) or "") in wanted:
                self.check(f"partition.{name}", _sha(data),
                           lambda n=name, d=data: _sha(self.at.sysflash_read(n, 0, len(d))))

    def values(self, wanted: frozenset[str], over_at: dict[str, int]) -> None:
        fw = (self.block or {}).get("firmware") or {}
        if self.block is None and over_at:    # no block (v1.0/v1.1): what the station set over AT
            if "uart" in wanted and "uart_baudrate" in over_at:
                self.check("uart_def.baud", over_at["uart_baudrate"], lambda: self.at.uart_def().baud)
            if "rf_power" in wanted and "max_tx_power" in over_at:
                raw, levels = over_at["max_tx_power"], tuple(self.fw.rfpower_levels)
                expected = levels[raw] if levels and raw < len(levels) else raw
                self.check("rf_power.wifi", expected, lambda: self.at.rf_power()[0])
            return
        if "uart" in wanted and fw.get("uart_baudrate") is not None:
            self.check("uart_def.baud", fw["uart_baudrate"], lambda: self.at.uart_def().baud)
        if "rf_power" in wanted and fw.get("max_tx_power") is not None:
            raw = fw["max_tx_power"]
            levels = tuple(self.fw.rfpower_levels)
            skip = self.fw.factory_param_tx_power == "skip_v1_levels" and self.block["version"] == 1 and raw < 10
            if not skip:
                expected = levels[raw] if levels and raw < len(levels) else raw
                self.check("rf_power.wifi", expected, lambda: self.at.rf_power()[0])
        if "country" in wanted and fw.get("channels") and self.fw.has_command("AT+CWCOUNTRY"):
            start, count = fw["channels"]
            self.check("country", (fw["country_code"], start, count),
                       lambda: (lambda c: (c.code, c.start_channel, c.channel_count))(self.at.country()))

    def legacy_mac(self, mac: str | None) -> None:
        self.check("sta_mac", mac, lambda: normalize_mac(self.at.sta_mac()))


def verify_legacy(at: AtClient, built: LegacyBuilt | str | Path, *, mac: str | bytes | None = None,
                  checks: Iterable[str] | None = None, at_version: str | None = None,
                  over_at: dict[str, int] | None = None) -> VerifyResult:
    """Check the running legacy unit on ``at`` against ``built`` (a :class:`LegacyBuilt` or an ``atfab
    build`` folder; see the module doc). ``checks``: :data:`LEGACY_CHECKS` names, or the recipe
    checks ``factory_param``/``pki``/``gatt`` (the partitions of that kind); ``at_version``: the
    esp-at version the unit must report (``gmr.recipe_version``); ``over_at``: on a release without a
    factory_param block, the ``uart_baudrate`` / ``max_tx_power`` (a G1 level) the station set over AT."""
    wanted = frozenset(LEGACY_CHECKS if checks is None else checks)
    unknown = wanted - set(LEGACY_CHECKS) - set(_PARTITION_CHECK.values())
    if unknown:
        raise InputError(f"check(s) {', '.join(sorted(unknown))} do not exist on a legacy unit "
                         f"(known: {', '.join(LEGACY_CHECKS)})", field="checks")
    if not isinstance(built, LegacyBuilt):
        built = load_legacy_built(built)
    v = _LegacyVerifier(at, built)
    if "boot" in wanted:
        v.basics()
    if "gmr" in wanted:
        v.legacy_gmr()
        if at_version:
            v.recipe_version(at_version, core=True)
    if "sysflash" in wanted:
        v.table()
    v.partitions(wanted)
    v.values(wanted, over_at or {})
    if "mac" in wanted and mac is not None:
        v.legacy_mac(normalize_mac(mac))
    return VerifyResult(v.out)


__all__ = ["verify_legacy", "is_legacy_build", "legacy_firmware", "load_legacy_built", "LegacyBuilt", "LEGACY_CHECKS"]
