"""What the station does to one unit, per firmware generation: the runner's data.

The runner (:mod:`atfab.station.runner`) walks the same steps for every unit; what a step builds,
flashes, sets and checks comes from the recipe's :class:`UnitPlan`, chosen once from the module
and firmware profile by :func:`unit_plan`:

======== ============================== ============================ ===================== =====================
plan     build (per unit)               flash                        configure             verify
======== ============================== ============================ ===================== =====================
G3       at_customize.bin + mfg_nvs.bin firmware + both images       AT+UART_DEF, RFPOWER  :func:`verify_unit`
G1/G2    at_customize.bin + one image   firmware + the images        AT+UART_DEF (power:   :func:`verify_legacy`
         per item partition (0xFCFC     at their partitions          the block's, applied  (AT+SYSFLASH reads)
         block, PKI, ble_data)                                       at boot)
G0       nothing (no partitions)        the download map as it is    AT+UART= (v0.21)      :func:`verify_nonos`
======== ============================== ============================ ===================== =====================

A :class:`UnitBuild` holds the unit's images and what verification compares against; it holds
the unit's private key (inside the images) and lives only in the attempt's memory.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.firmware.catalog import release_data
from ..core.measurement import Measurement
from ..image.build import build_unit_images
from ..image.flash_set import Region
from ..image.gatt import cfg_strings
from ..image.legacy_build import build_legacy_images
from ..image.mfg_nvs import PkiFile, UnitContent
from ..image.nvs.reader import read_nvs
from ..image.partition_table import encode
from ..link.at.client import AtClient
from ..link.at.parse import UartConfig
from ..verify.legacy import LegacyBuilt, verify_legacy
from ..verify.nonos import verify_nonos
from ..verify.unit import BuiltUnit, verify_unit
from .firmware_images import FirmwareImages
from .recipe_checks import gatt_rows
from .recipe_spec import Recipe


@dataclass
class UnitBuild:
    """One unit's own images (flashed after the firmware) and what its verification expects."""

    regions: tuple[Region, ...]
    expect: Any = None                   # BuiltUnit (G3) / LegacyBuilt (G1/G2): compared by verify
    detail: str = ""
    images: dict[str, str] = field(default_factory=dict)   # file name -> sha256 (the report's ``images``)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UnitPlan(ABC):
    """The per-generation part of provisioning one unit of ``recipe`` (see the module doc)."""

    #: ``G0`` … ``G3`` (reports and messages).
    generation: str = ""
    #: Why a plan builds nothing per unit (None: it builds).
    no_build: str | None = None
    #: Download and AT port are one UART0 (ESP8266): given one port, the runner hands it from
    #: esptool to the AT client after flashing (:meth:`atfab.link.flasher.FlashSession.hand_over`).
    one_uart: bool = False

    def __init__(self, recipe: Recipe, firmware: FirmwareImages) -> None:
        self.recipe = recipe
        self.firmware = firmware
        self.ble_rows: list[str] = (cfg_strings(gatt_rows(recipe.profile, recipe.gatt))
                                    if recipe.gatt is not None else [])

    @property
    def announces_ready(self) -> bool:
        """The firmware prints a ``ready`` line when it has booted."""
        return bool(dict(self.recipe.profile.firmware.formats).get("ready"))

    def contact_bauds(self, at_baud: int) -> tuple[int, ...]:
        """Rates the booted unit may answer at, the one to listen at first: ``(at_baud,)`` when its
        firmware takes its UART from the factory_param the station flashes; else the firmware's boot
        rate (``uart_boot_baud``: a fresh unit, the line's common case), then ``at_baud`` (a unit that
        already holds it: a retest, or a map without the parameter sector's blank)."""
        boot = self.recipe.profile.firmware.uart_boot_baud
        return (boot, at_baud) if boot and boot != at_baud else (at_baud,)

    def content(self, pki: dict[str, list[PkiFile]]) -> UnitContent:
        return UnitContent(factory_param=dict(self.recipe.factory_param), pki=pki, ble_rows=list(self.ble_rows))

    def firmware_hashes(self) -> dict[str, str]:
        return {r.name: _sha256(r.data) for r in self.firmware.regions}

    @abstractmethod
    def build(self, pki: dict[str, list[PkiFile]]) -> UnitBuild | None:
        """The unit's images for its PKI items (None: the plan builds nothing, :attr:`no_build`)."""

    @abstractmethod
    def configure(self, at: AtClient) -> str:
        """Set what the recipe sets over AT on the booted unit; a line for the report."""

    @abstractmethod
    def verify(self, at: AtClient, build: UnitBuild | None, *, mac: str | None, serial: str | None) -> list[Measurement]:
        """The unit's measurements against ``build``."""

    def _uart_baud(self) -> int | None:
        fp = self.recipe.factory_param
        baud = fp.get("uart_baudrate")
        if not isinstance(baud, int) or baud <= 0 or fp.get("uart_port", 1) == -1:
            return None                  # SPI/SDIO build: no AT UART
        return baud


class MfgNvsPlan(UnitPlan):
    """G3: the unit's at_customize table and mfg_nvs (factory_param, PKI, ble_data) checked with AT+SYSMFG."""

    generation = "G3"

    def build(self, pki: dict[str, list[PkiFile]]) -> UnitBuild:
        recipe, profile = self.recipe, self.recipe.profile
        images = build_unit_images(profile, self.content(pki), allow_unread=recipe.firmware.allow_unread,
                                   source=str(recipe.path))
        return self._unit(images.at_customize, images.mfg_nvs.image, f"mfg_nvs {len(images.mfg_nvs.keys)} keys")

    def preprogrammed(self, mfg_nvs: bytes, detail: str) -> UnitBuild:
        """A unit that keeps a batch's mfg_nvs (its key is in it): the same images, nothing issued."""
        return self._unit(encode(self.recipe.profile.at_customize, md5=True), mfg_nvs, detail)

    def _unit(self, at_customize: bytes, mfg_nvs: bytes, detail: str) -> UnitBuild:
        profile = self.recipe.profile
        built = BuiltUnit(Path("<unit>"), {"module": profile.name, "app": self.firmware.app}, profile.at_customize,
                          read_nvs(mfg_nvs, source="mfg_nvs.bin"))
        regions = (Region(profile.at_customize_offset, "at_customize.bin", at_customize),
                   Region(profile.nvs_partition.offset, "mfg_nvs.bin", mfg_nvs))
        return UnitBuild(regions, built, detail,
                         {**self.firmware_hashes(), **{r.name: _sha256(r.data) for r in regions}})

    def configure(self, at: AtClient) -> str:
        fp, fw = self.recipe.factory_param, self.recipe.profile.firmware
        done = []
        baud = self._uart_baud()
        if baud is not None:
            at.set_uart_def(baud, 8, 1, 0, fw.uart_default_flow_control)
            done.append(f"UART_DEF={baud},8,1,0,{fw.uart_default_flow_control}")
        power = fp.get("max_tx_power")
        if fw.wifi and isinstance(power, int):
            at.set_rf_power(power)
            done.append(f"RFPOWER={power}")
        return ", ".join(done) or "nothing to set"

    def verify(self, at: AtClient, build: UnitBuild | None, *, mac: str | None, serial: str | None) -> list[Measurement]:
        assert build is not None and isinstance(build.expect, BuiltUnit), "the build step built the unit"
        recipe, fw = self.recipe, self.recipe.profile.firmware
        baud = recipe.factory_param.get("uart_baudrate")
        uart = UartConfig(baud, 8, 1, 0, fw.uart_default_flow_control) if isinstance(baud, int) and baud > 0 else None
        power = recipe.factory_param.get("max_tx_power")
        built = BuiltUnit(Path(f"<unit {serial}>"), build.expect.manifest, build.expect.at_customize,
                          build.expect.mfg_nvs)
        return verify_unit(at, built, mac=mac, firmware=fw, uart=uart, rf_power=power if isinstance(power, int) else None,
                           checks=recipe.verify.checks, at_version=recipe.verify.at_version).measurements


class LegacyPlan(UnitPlan):
    """G1/G2: one image per item partition (factory_param block, PKI, ble_data), read back with AT+SYSFLASH."""

    def __init__(self, recipe: Recipe, firmware: FirmwareImages) -> None:
        super().__init__(recipe, firmware)
        self.generation = recipe.profile.firmware.generation

    def build(self, pki: dict[str, list[PkiFile]]) -> UnitBuild:
        recipe, profile = self.recipe, self.recipe.profile
        images = build_legacy_images(profile, self.content(pki), source=str(recipe.path))
        regions = tuple(Region(off, name, data) for off, name, data in images.regions(profile))
        expect = LegacyBuilt(profile.at_customize, dict(images.parts), self.firmware.app, profile.firmware,
                             f"<{recipe.name} unit>")
        return UnitBuild(regions, expect, f"{', '.join(images.parts) or 'no item partitions'} "
                                          f"({profile.firmware.release} layout)",
                         {**self.firmware_hashes(), **{r.name: _sha256(r.data) for r in regions}})

    def configure(self, at: AtClient) -> str:
        fw = self.recipe.profile.firmware
        baud = self._uart_baud()
        done = []
        if baud is not None and fw.has_command("AT+UART_DEF", "set"):
            at.set_uart_def(baud, 8, 1, 0, fw.uart_default_flow_control)
            done.append(f"UART_DEF={baud},8,1,0,{fw.uart_default_flow_control}")
        if fw.factory_param_layout:
            return "; ".join([*done, "RF power and country: the factory_param block's, applied at boot"])
        level = self._over_at_power()
        if level is not None:       # no block (v1.0/v1.1): the recipe's power is set over AT, as a level on G1
            at.call(f"AT+RFPOWER={level}")
            done.append(f"RFPOWER={level}")
        return "; ".join([*done, f"esp-at {fw.release} has no factory_param block: country is the firmware's default"])

    def _over_at_power(self) -> int | None:
        """A block-less release's recipe power (set by configure, verified), None when the recipe gives none."""
        if self.recipe.profile.firmware.factory_param_layout or "max_tx_power" not in self.recipe.raw.get(
                "factory_param", {}):
            return None
        power = self.recipe.factory_param.get("max_tx_power")
        return power if isinstance(power, int) else None

    def verify(self, at: AtClient, build: UnitBuild | None, *, mac: str | None, serial: str | None) -> list[Measurement]:
        assert build is not None and isinstance(build.expect, LegacyBuilt), "the build step built the unit"
        recipe, fw = self.recipe, self.recipe.profile.firmware
        over_at: dict[str, int] = {}
        if not fw.factory_param_layout:        # what configure set over AT is what verify expects
            baud, level = self._uart_baud(), self._over_at_power()
            if baud is not None and fw.has_command("AT+UART_DEF", "query"):
                over_at["uart_baudrate"] = baud
            if level is not None:
                over_at["max_tx_power"] = level
        return verify_legacy(at, build.expect, mac=mac, checks=recipe.verify.checks,
                             at_version=recipe.verify.at_version, over_at=over_at).measurements


class NonosPlan(UnitPlan):
    """G0 (ESP8266 NONOS AT): the download map as it is; AT+UART= stores the baud; GMR, MAC, UART after reset."""

    generation = "G0"
    no_build = "a NONOS AT module has no per-unit images (the download map as it is)"
    one_uart = True

    def build(self, pki: dict[str, list[PkiFile]]) -> None:
        return None

    def configure(self, at: AtClient) -> str:
        """The release's stored UART form, ``AT+UART=<baud>,8,1,0,0`` on v0.21, ``AT+UART_DEF=`` on 1.x
        (OK comes at the old baud, then the host follows)."""
        baud = self.recipe.factory_param.get("uart_baudrate")
        if not isinstance(baud, int) or baud <= 0:
            return "nothing to set"
        command = str(release_data(self.recipe.profile.firmware.release)["release"].get("g0_uart_command", "AT+UART"))
        at.call(f"{command}={baud},8,1,0,0")
        at.apply_host_uart(UartConfig(baud, 8, 1, 0, 0))
        return f"{command.removeprefix('AT+')}={baud},8,1,0,0"

    def verify(self, at: AtClient, build: UnitBuild | None, *, mac: str | None, serial: str | None) -> list[Measurement]:
        recipe = self.recipe
        baud = recipe.factory_param.get("uart_baudrate")
        return verify_nonos(at, firmware=recipe.profile.firmware, app=self.firmware.app, mac=mac,
                            uart_baud=baud if isinstance(baud, int) else None, checks=recipe.verify.checks,
                            boot_timeout=recipe.verify.boot_timeout_s).measurements


def unit_plan(recipe: Recipe, firmware: FirmwareImages) -> UnitPlan:
    """The plan of ``recipe``'s module: G0 (NONOS AT), G1/G2 (per-item partitions) or G3 (mfg_nvs)."""
    profile = recipe.profile
    if profile.nonos is not None:
        return NonosPlan(recipe, firmware)
    if profile.legacy:
        return LegacyPlan(recipe, firmware)
    return MfgNvsPlan(recipe, firmware)


__all__ = ["UnitPlan", "UnitBuild", "MfgNvsPlan", "LegacyPlan", "NonosPlan", "unit_plan"]
