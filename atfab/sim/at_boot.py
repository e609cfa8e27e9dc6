"""What the virtual module's AT firmware learns from flash at boot (§8, §3.3, §11).

:func:`boot_from_flash` walks the same steps as the ROM, the ESP-IDF bootloader and the esp-at
init code, reading only what was really flashed:

0. The ROM loads the second-stage bootloader at the chip's offset (esptool's
   ``BOOTLOADER_FLASH_OFFSET``: 0x0 on C2/C3, 0x1000 on ESP32). It must be a valid ESP image as
   esptool's parser checks it (magic 0xE9, segments, checksum, SHA-256 digest when appended) and
   for this chip; otherwise the ROM prints ``invalid header: 0x%08x`` (the first word) in a loop
   on UART0 (``BootInfo.rom_log``) and nothing else runs.
1. Primary partition table at ``firmware.partition_table_offset`` (0x8000). Missing or corrupt
   -> the bootloader cannot start anything: the module stays silent (``BootInfo.runs`` False).
2. App selection: otadata (two 32-byte ``ota_select`` records, CRC32 over the sequence number)
   picks an OTA slot; blank otadata -> ``factory`` if present, else ``ota_0``. An invalid image
   (bad checksum/digest, or built for another chip) falls back to the other app partitions
   like the IDF bootloader; no valid app -> silent.
3. The type-0x40 ``at_customize`` partition holds the secondary table. A data/nvs entry named
   ``mfg_nvs`` -> "param mode 1"; a type-0x40 ``factory_param`` entry -> mode 2 (the legacy block,
   applied as the release does: :mod:`atfab.sim.legacy_boot`); else mode 0.
4. ``mfg_nvs`` is parsed as NVS. Blank flash is a valid, empty NVS. A region that is not NVS at
   all makes the firmware's mfg NVS init fail: every ``AT+SYSMFG`` answers ERROR and every
   factory value counts as missing.
5. Missing factory keys make their init step fail, as in esp-at: module name "" (GMR prints
   ``Bin version:<ver>()``), baud seed 115200, ``sys_store`` 1, Wi-Fi power/country left at the
   Wi-Fi driver defaults (``firmware.rfpower_default`` and world-safe ``"01"``, 1, 11).
6. System ``nvs`` (primary table, data/nvs named ``nvs``): namespace ``UART`` keys ``rate`` i32,
   ``databits`` i8 (bits-5), ``stopbits`` i8, ``parity`` i8 (IDF enum), ``flow_ctrl`` i8 (§3.2).
   Absent -> built from ``factory_param/uart_baudrate`` (fallback 115200), 8N1 and
   ``firmware.uart_default_flow_control``, and written back. A system NVS that does not parse is
   erased and re-initialised (the usual ``nvs_flash_init`` recovery in ``app_main``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import DeviceError, InputError
from ..image.appimage import AppInfo, read_app_info
from ..image.nvs.editor import NvsEditor
from ..image.nvs.reader import NvsImage, read_nvs
from ..image.partition_table import Partition, PartitionTable, decode
from .flash import FlashError, NorFlash
from .legacy_boot import legacy_factory_values
from ..image.factory_param import KEY_TYPES as FACTORY_KEY_TYPES

TYPE_APP = 0x00
TYPE_DATA = 0x01
TYPE_AT_CUSTOMIZE = 0x40
SUBTYPE_OTA_DATA = 0x00
SUBTYPE_NVS = 0x02
SUBTYPE_FACTORY = 0x00
SUBTYPE_OTA_0 = 0x10
TABLE_BYTES = 0xC00

#: What reading or editing a flash region may raise (not NVS / not a table, NVS full, flash did
#: not take, region outside the chip): the firmware step fails, the firmware keeps running.
NVS_ERRORS = (InputError, ValueError, DeviceError, FlashError)
SECTOR = 4096

#: ESP-IDF default Wi-Fi country when nothing configures it: world safe mode.
IDF_DEFAULT_COUNTRY = ("01", 1, 11)

#: AT parity value <-> ESP-IDF ``uart_parity_t`` stored in system NVS (§3.2).
PARITY_AT_TO_IDF = {0: 0, 1: 3, 2: 2}
PARITY_IDF_TO_AT = {v: k for k, v in PARITY_AT_TO_IDF.items()}


@dataclass(frozen=True)
class UartConfig:
    """AT-level UART settings: baud, data bits 5-8, stop bits 1-3, parity 0-2, flow control 0-3."""

    baud: int = 115200
    databits: int = 8
    stopbits: int = 1
    parity: int = 0
    flow: int = 1

    def fields(self) -> tuple[int, int, int, int, int]:
        return (self.baud, self.databits, self.stopbits, self.parity, self.flow)


@dataclass
class BootInfo:
    """Everything boot read from flash; ``runs`` False means the AT port stays silent."""

    runs: bool = False
    reason: str = ""
    #: What the ROM prints on UART0 (the download port) when it cannot start the bootloader.
    rom_log: bytes = b""
    #: The flashed app partition's bytes (the build identifies itself from them: at_build).
    app_image: bytes = b""
    primary: PartitionTable | None = None
    secondary: PartitionTable | None = None      # at_customize
    app_partition: Partition | None = None       # the app booted from
    app: AppInfo | None = None
    param_mode: int = 0
    mfg: Partition | None = None                 # mfg_nvs (absolute offset)
    mfg_ok: bool = False                   # mfg NVS initialised
    factory: dict[str, Any] = field(default_factory=dict)
    #: NVS type of each factory_param key ("i8", "u8", "string" ...): a key read with another
    #: type than the firmware asks for is missing to it (ground truth §11).
    factory_types: dict[str, str] = field(default_factory=dict)
    sys_nvs: Partition | None = None             # the system nvs
    uart_def: UartConfig = field(default_factory=UartConfig)
    problems: list[str] = field(default_factory=list)
    #: The firmware build that booted (``serve``'s answer for the flashed app; else the one given).
    firmware: Any = None
    #: How ``serve`` recognised the flashed app (empty without ``serve``).
    served_why: str = ""

    # -- factory values with their init-failure fallbacks (§8.1) --------------------------
    def fint(self, key: str) -> int | None:
        v = self.factory.get(key)
        return v if isinstance(v, int) else None

    def typed(self, key: str, nvs_type: str) -> Any:
        """factory_param ``key`` when it is stored as ``nvs_type`` (what ``nvs_get_<type>`` finds), else None."""
        if self.factory_types.get(key) != nvs_type:
            return None
        return self.factory.get(key)

    @property
    def module_name(self) -> str:
        v = self.factory.get("module_name")
        return v if isinstance(v, str) else ""


# -- small flash helpers ------------------------------------------------------------------
def nvs_editor(flash: NorFlash, part: Partition) -> NvsEditor:
    """An :class:`atfab.image.nvs.editor.NvsEditor` over ``part`` of ``flash`` (firmware-like edits)."""
    base = part.offset
    return NvsEditor(
        read=lambda off, n: flash.read(base + off, n),
        program=lambda off, data: flash.program(base + off, data),
        erase_sector=lambda off: flash.erase(base + off, SECTOR),
        size=part.size,
    )


def read_nvs_region(flash: NorFlash, part: Partition, source: str) -> NvsImage:
    """Parse ``part`` as NVS; raises :class:`InputError` when it is not NVS at all."""
    return read_nvs(flash.read(part.offset, part.size), source=source)


def _decode_table(data: bytes, source: str) -> PartitionTable:
    return decode(data, source=source)


def _fits(flash: NorFlash, part: Partition) -> bool:
    return part.size > 0 and part.offset + part.size <= flash.size


# -- app selection --------------------------------------------------------------------------
def _otadata_slot(flash: Any, otadata: Any) -> int | None:
    """OTA slot chosen by the two ota_select records, or None when both are blank/invalid."""
    best: int | None = None
    for i in range(2):
        addr = otadata.offset + i * SECTOR
        if addr + 32 > otadata.offset + otadata.size:
            break
        rec = flash.read(addr, 32)
        seq = int.from_bytes(rec[0:4], "little")
        state = int.from_bytes(rec[24:28], "little")
        crc = int.from_bytes(rec[28:32], "little")
        if seq in (0, 0xFFFFFFFF) or crc != zlib.crc32(rec[0:4], 0xFFFFFFFF) & 0xFFFFFFFF:
            continue
        if state in (3, 4):  # ESP_OTA_IMG_INVALID, ESP_OTA_IMG_ABORTED
            continue
        if best is None or seq > best:
            best = seq
    return best


def _app_candidates(flash: Any, table: Any) -> list[Any]:
    apps = [p for p in table.entries if p.type == TYPE_APP]
    otas = sorted((p for p in apps if SUBTYPE_OTA_0 <= p.subtype < SUBTYPE_OTA_0 + 16), key=lambda p: p.subtype)
    factory = next((p for p in apps if p.subtype == SUBTYPE_FACTORY), None)
    otadata = next((p for p in table.entries if p.type == TYPE_DATA and p.subtype == SUBTYPE_OTA_DATA), None)
    first = None
    if otadata is not None and otas:
        seq = _otadata_slot(flash, otadata)
        if seq is not None:
            first = otas[(seq - 1) % len(otas)]
    if first is None:
        first = factory or (otas[0] if otas else None)
    order = ([first] if first is not None else []) + [p for p in apps if p is not first]
    return order


def _load_app(flash: Any, table: Any, info: BootInfo, chip: str | None) -> bool:
    """First bootable app: a valid image (checksum, digest) built for this chip."""

    for part in _app_candidates(flash, table):
        if not _fits(flash, part):
            info.problems.append(f"{part.name}: outside the flash chip")
            continue
        try:
            app = read_app_info(flash.read(part.offset, part.size), source=part.name)
        except NVS_ERRORS as exc:
            info.problems.append(f"{part.name}: {exc}")
            continue
        if not app.checksum_ok or app.digest_ok is False:
            info.problems.append(f"{part.name}: image checksum/digest mismatch")
            continue
        if chip and app.chip and app.chip != chip:
            info.problems.append(f"{part.name}: image is for {app.chip}, not {chip}")
            continue
        info.app = app
        info.app_partition = part
        info.app_image = flash.read(part.offset, part.size)
        return True
    return False


# -- ROM: second-stage bootloader --------------------------------------------------------------
#: Times the ROM's ``invalid header`` line is kept in ``BootInfo.rom_log`` (it loops forever).
ROM_LOOP_LINES = 8


def bootloader_offset(chip: str) -> int:
    """Where the ROM looks for the second-stage bootloader (esptool's BOOTLOADER_FLASH_OFFSET)."""
    from esptool.targets import CHIP_DEFS  # noqa: PLC0415 (slow import)

    return int(getattr(CHIP_DEFS.get(chip), "BOOTLOADER_FLASH_OFFSET", 0))


def _bootloader_ok(flash: Any, chip: str, pt_off: int, info: BootInfo) -> bool:
    """True when a valid bootloader image for ``chip`` sits at its offset; else the ROM's loop."""
    from ..image.appimage import read_image_summary  # noqa: PLC0415

    off = bootloader_offset(chip)
    end = pt_off if pt_off > off else min(flash.size, off + 0x10000)
    data = flash.read(off, end - off)
    problem = ""
    try:
        summary = read_image_summary(data, source="bootloader")
        if summary.chip != chip:
            problem = f"bootloader image is for {summary.chip}"
        elif not summary.checksum_ok or summary.digest_ok is False:
            problem = "bootloader checksum/digest mismatch"
    except NVS_ERRORS as exc:
        problem = str(exc)
    if not problem:
        return True
    word = int.from_bytes(data[:4], "little")
    info.reason = f"invalid header: 0x{word:08x} ({problem})"
    info.rom_log = f"invalid header: 0x{word:08x}\r\n".encode() * ROM_LOOP_LINES
    return False


# -- system NVS: UART settings (§3.2, §3.3) -------------------------------------------------
def load_uart_def(flash: Any, sys_nvs: Any, factory_baud: int | None, default_flow: int,
                  problems: list[str]) -> UartConfig:
    """UART_DEF from system NVS, seeding (and writing) the default when it is absent."""
    seed = UartConfig(baud=factory_baud if factory_baud and factory_baud > 0 else 115200, flow=default_flow)
    if sys_nvs is None:
        problems.append("no system nvs partition: UART settings kept in RAM")
        return seed
    try:
        image = read_nvs_region(flash, sys_nvs, "nvs")
    except NVS_ERRORS as exc:
        problems.append(f"system nvs unreadable ({exc}): erased")
        flash.erase(sys_nvs.offset, sys_nvs.size)
        image = None
    if image is not None:
        vals = {k: image.get("UART", k) for k in ("rate", "databits", "stopbits", "parity", "flow_ctrl")}
        if all(v is not None for v in vals.values()):
            try:
                return UartConfig(
                    baud=int(vals["rate"].value), databits=int(vals["databits"].value) + 5,
                    stopbits=int(vals["stopbits"].value), parity=PARITY_IDF_TO_AT[int(vals["parity"].value)],
                    flow=int(vals["flow_ctrl"].value),
                )
            except KeyError:
                problems.append("system nvs UART/parity holds an unknown value: default used")
    try:
        store_uart_def(flash, sys_nvs, seed)
    except NVS_ERRORS as exc:
        problems.append(f"cannot store UART defaults: {exc}")
    return seed


def store_uart_def(flash: Any, sys_nvs: Any, cfg: UartConfig) -> None:
    """Write UART_DEF values to system NVS namespace ``UART`` exactly as §3.2 lists them."""
    if sys_nvs is None:
        return
    ed = nvs_editor(flash, sys_nvs)
    ed.set("UART", "rate", "i32", cfg.baud)
    ed.set("UART", "databits", "i8", cfg.databits - 5)
    ed.set("UART", "stopbits", "i8", cfg.stopbits)
    ed.set("UART", "parity", "i8", PARITY_AT_TO_IDF[cfg.parity])
    ed.set("UART", "flow_ctrl", "i8", cfg.flow)


# -- the boot walk ----------------------------------------------------------------------------
def boot_from_flash(flash: Any, firmware: Any, chip: str | None = None, *,
                    serve: Callable[[AppInfo, bytes], tuple[Any, str]] | None = None) -> BootInfo:
    """Read partition tables, app, mfg_nvs and system NVS as the real boot does (see module doc).

    ``serve(app, image)``: the firmware build the flashed app is, and how that was found (None and
    the reason: the app is not recognised and the module stays silent); the rest of the boot (the
    factory block, UART defaults) follows that build. Without it ``firmware`` is the build."""
    info = BootInfo(firmware=firmware)
    pt_off = getattr(firmware, "partition_table_offset", 0x8000)
    if chip and not _bootloader_ok(flash, chip, pt_off, info):
        return info
    try:
        info.primary = _decode_table(flash.read(pt_off, TABLE_BYTES), f"partition table @{pt_off:#x}")
    except NVS_ERRORS as exc:
        info.reason = f"no valid partition table: {exc}"
        return info
    if not info.primary.entries:
        info.reason = "partition table is empty"
        return info
    if not _load_app(flash, info.primary, info, chip):
        info.reason = "no bootable app image"
        return info
    if serve is not None:
        assert info.app is not None
        served, why = serve(info.app, info.app_image)
        if served is None:
            info.reason = f"app not recognised: {why}"
            return info
        info.firmware = firmware = served
        info.served_why = why
    info.runs = True
    info.sys_nvs = next((p for p in info.primary.entries if p.type == TYPE_DATA and p.subtype == SUBTYPE_NVS
                         and p.name == "nvs" and _fits(flash, p) and p.size % SECTOR == 0), None)
    atc = next((p for p in info.primary.entries if p.type == TYPE_AT_CUSTOMIZE), None)
    if atc is not None:
        try:
            info.secondary = _decode_table(flash.read(atc.offset, TABLE_BYTES), f"at_customize @{atc.offset:#x}")
        except NVS_ERRORS as exc:
            info.problems.append(f"at_customize unreadable: {exc}")
    if info.secondary is not None:
        mfg = info.secondary.find("mfg_nvs")
        if mfg is not None and mfg.type == TYPE_DATA and mfg.subtype == SUBTYPE_NVS and _fits(flash, mfg):
            info.param_mode = 1
            info.mfg = mfg
        elif any(p.type == TYPE_AT_CUSTOMIZE and p.name == "factory_param" for p in info.secondary.entries):
            info.param_mode = 2          # G1/G2: the legacy block, applied as the release does
            info.factory = legacy_factory_values(flash.read, info.secondary, firmware, info.problems)
            info.factory_types = {k: FACTORY_KEY_TYPES[k] for k in info.factory if k in FACTORY_KEY_TYPES}
    if info.mfg is not None:
        try:
            image = read_nvs_region(flash, info.mfg, "mfg_nvs")
            info.mfg_ok = True
            entries = list(image.keys("factory_param"))
            info.factory = {e.key: e.value for e in entries}
            info.factory_types = {e.key: e.type for e in entries}
        except NVS_ERRORS as exc:
            info.problems.append(f"mfg_nvs init failed: {exc}")
    info.uart_def = load_uart_def(flash, info.sys_nvs, info.fint("uart_baudrate"),
                                  firmware.uart_default_flow_control, info.problems)
    return info


__all__ = ["NVS_ERRORS", "BootInfo", "UartConfig", "boot_from_flash", "load_uart_def", "store_uart_def", "nvs_editor",
           "read_nvs_region", "IDF_DEFAULT_COUNTRY", "PARITY_AT_TO_IDF", "PARITY_IDF_TO_AT"]
