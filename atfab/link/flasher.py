"""Flash a unit over esptool's Python API, in-process, one :class:`Flasher` per port.

* Writes the flash-args set of ``atfab build`` (``flash_args`` + ``manifest.json``): for every
  region it first asks the device for the MD5 of that flash range (``esp.flash_md5sum``) and
  skips the region when it already holds the image, so re-provisioning a unit whose firmware is
  unchanged writes only what changed (its ``mfg_nvs``). Written regions go through esptool's
  ``write_flash`` (compressed with the stub, as esptool's CLI does; verified by MD5 by esptool).
* Reads the chip description and the MAC.
* :meth:`Flasher.session` keeps one esptool connection for a whole unit: the chip and MAC are
  read when it opens, the caller decides what to write (e.g. builds the unit's images from the
  MAC), and :meth:`FlashSession.write` uploads the stub and writes over the same connection, so
  a unit costs one connect (reset into the ROM loader, sync) instead of two.
* No process-wide state: esptool's output and progress are routed per port
  (:mod:`atfab.core.esptool_log`); each operation opens its own serial port.
* Every esptool call is bounded in time: the port is opened with a read timeout (esptool
  restores it, instead of ``None``, after each command) and each step runs under a watchdog that
  closes the port when its budget is spent, so a silent device turns into :class:`FlashError`.
* A wrong chip (the set was built for another chip) is :class:`WrongChip`, an
  :class:`~atfab.core.errors.InputError` (exit 2): the build chosen for this port is wrong; retrying
  the same unit cannot help and the station is not at fault.

esptool 5.6 formats hex dumps of every packet for its trace even when tracing is off (about
1 s of CPU per MB sent). esptool offers no switch for that (``trace_enabled`` only gates the
printing), so each of *our* loader objects gets an instance attribute ``command`` that sends
the bulk data commands (FLASH_DATA, FLASH_DEFL_DATA, MEM_DATA) without building those strings
and lets esptool's own ``command`` read the reply. Nothing module-level is patched; other
ESPLoader objects in the process are untouched; with ``trace=True`` esptool's path is used.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import serial
from esptool import cmds
from esptool.loader import DEFAULT_TIMEOUT, ESPLoader
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError, NotImplementedInROMError, flash_size_bytes

from ..core.errors import DeviceError, InputError
from ..core.esptool_log import EsptoolSink, routed
from ..core.firmware import FirmwareProfile, firmware_for
from ..image.flash_set import FLASH_PARAM_KEYS, FlashSet, Region, load_flash_set, padded
from .at.client import AtClient
from .transport import open_port, port_for_url

#: Called with (bytes written, bytes to write) of the whole operation.
ProgressCallback = Callable[[int, int], None]


class FlashError(DeviceError):
    """esptool, the serial link or a timeout failed while talking to the ROM loader (exit 3)."""

    def __init__(self, port: str, step: str, detail: str) -> None:
        super().__init__(f"{port}: {step}: {' '.join(detail.split())}")
        self.port = port
        self.step = step
        self.detail = detail


class WrongChip(InputError):
    """The flash set was built for another chip than the one on the port (exit 2)."""

    def __init__(self, message: str, *, port: str = "", expected: str = "", found: str = "",
                 file: str | None = None, field: str | None = "chip", line: int | None = None) -> None:
        super().__init__(message, file=file, field=field, line=line)
        self.port = port
        self.expected = expected
        self.found = found


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ChipInfo:
    """What the ROM loader told about the unit."""

    chip: str                 # esptool chip name, e.g. "ESP32-C2"
    description: str          # e.g. "ESP32-C2 (revision v1.0)"
    features: list[str]
    mac: str                  # "aa:bb:cc:dd:ee:ff"
    crystal_mhz: int | None


@dataclass(frozen=True)
class RegionResult:
    offset: int
    name: str
    size: int
    md5: str
    action: str               # "written" | "skipped" (device already held it)


@dataclass(frozen=True)
class FlashResult:
    port: str
    chip: ChipInfo
    stub: bool
    baud: int
    flash_size: str | None    # what esptool detected
    regions: list[RegionResult]
    seconds: float

    @property
    def bytes_written(self) -> int:
        return sum(r.size for r in self.regions if r.action == "written")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bytes_written"] = self.bytes_written
        return data


# --------------------------------------------------------------------------- flasher


def _wire_seconds(nbytes: int, baud: int) -> float:
    return nbytes * 10 / baud


class Flasher:
    """esptool work on one serial port (pyserial URL or device path).

    ``at_port``: a board without auto-reset is put into download mode by ``AT+RST=1`` on that
    port first (the flash port is then opened without a reset). ``progress`` gets
    (bytes written, bytes to write); ``on_line`` every line esptool prints for this port.
    """

    def __init__(
        self,
        port: str,
        *,
        baud: int = 460800,
        initial_baud: int = ESPLoader.ESP_ROM_BAUD,
        at_port: str | None = None,
        at_baud: int = 115200,
        firmware: FirmwareProfile | None = None,
        stub: bool = True,
        before: str = "default-reset",
        after: str = "hard-reset",
        connect_attempts: int = 3,
        io_timeout: float = 5.0,
        step_timeout: float = 30.0,
        trace: bool = False,
        progress: ProgressCallback | None = None,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        self.port = port
        self.baud = baud
        self.initial_baud = initial_baud
        self.at_port = at_port
        self.at_baud = at_baud
        self.firmware = firmware or firmware_for("esp32c2")
        self.stub = stub
        self.before = "no-reset" if at_port else before
        self.after = after
        self.connect_attempts = connect_attempts
        self.io_timeout = io_timeout
        self.step_timeout = step_timeout
        self.trace = trace
        self.progress = progress
        self.sink = EsptoolSink(on_line=on_line)
        self._keep_open = False          # the open session's port was handed over (FlashSession.hand_over)

    # ------------------------------------------------------------------ public operations

    def chip_info(self) -> ChipInfo:
        """Connect to the ROM loader, read chip description and MAC, reset into the firmware."""
        with self._session(fast=False) as (esp, info):
            self._finish(esp)
            return info

    def flash(self, flash_set: FlashSet, *, force: bool = False) -> FlashResult:
        """Write ``flash_set``; regions the device already holds are skipped unless ``force``."""
        started = time.monotonic()
        with self._session(fast=True, expect_chip=flash_set.chip, source=flash_set.source) as (esp, info):
            result = self._write_set(esp, info, flash_set, force=force, started=started)
            self._finish(esp)
        return result

    @contextmanager
    def session(self) -> Iterator["FlashSession"]:
        """One esptool connection for a whole unit (see :class:`FlashSession`).

        Opens the port, connects to the ROM loader and reads the chip; on a normal exit resets
        the chip (``after``) and closes the port. When the body raises, the chip is reset on a
        best-effort basis and the port closed; the exception propagates.
        """
        with self._session(fast=False) as (esp, info):
            sess = FlashSession(self, esp, info)
            try:
                yield sess
            except BaseException as exc:
                if not isinstance(exc, FlashError) and not sess.handed_over:   # a broken link cannot take a reset
                    try:
                        self._finish(sess._esp)
                    except Exception:  # noqa: BLE001 - best effort; the body's error is the news
                        pass
                raise
            if not sess.handed_over:
                self._finish(sess._esp)

    def _write_set(self, esp: ESPLoader, info: ChipInfo, flash_set: FlashSet, *, force: bool,
                   started: float) -> FlashResult:
        flash_size = self._prepare_flash(esp, flash_set)
        to_write: list[Region] = []
        results: dict[int, RegionResult] = {}
        for region in flash_set.regions:
            size = len(padded(region.data))
            same = False
            if not force:
                with self._step(f"md5 {region.name}", esp._port, self.step_timeout + 8 * size / 2**20):
                    same = esp.flash_md5sum(region.offset, size) == region.md5
            if same:
                results[region.offset] = RegionResult(region.offset, region.name, len(region.data),
                                                      region.md5, "skipped")
            else:
                to_write.append(region)
        total = sum(len(r.data) for r in to_write)
        done = 0
        self._report(0, total)
        for region in to_write:
            wrote = self._write_region(esp, flash_set, region, done, total, force=force)
            done += len(region.data)
            self._report(done, total)
            results[region.offset] = RegionResult(region.offset, region.name, len(region.data), region.md5,
                                                  "written" if wrote else "skipped")
        baud = int(esp._port.baudrate)   # the initial rate when the ROM could not change it
        return FlashResult(
            port=self.port, chip=info, stub=bool(esp.IS_STUB), baud=baud, flash_size=flash_size,
            regions=[results[r.offset] for r in flash_set.regions], seconds=time.monotonic() - started,
        )

    # ------------------------------------------------------------------ steps

    @contextmanager
    def _session(self, *, fast: bool, expect_chip: str | None = None,
                 source: str = "") -> Iterator[tuple[ESPLoader, ChipInfo]]:
        with routed(self.sink):
            self._keep_open = False
            if self.at_port:
                self._enter_download_mode_via_at()
            try:
                ser = port_for_url(self.port, exclusive=True)
                ser.baudrate = self.initial_baud
                ser.timeout = self.io_timeout
                ser.open()
            except (serial.SerialException, OSError, ValueError) as exc:
                raise FlashError(self.port, "open", str(exc)) from exc
            try:
                with self._step("connect", ser, self.step_timeout):
                    esp = cmds.detect_chip(ser, self.initial_baud, self.before, self.trace, self.connect_attempts)
                _own_loader(esp)
                found = esp.CHIP_NAME
                if expect_chip is not None and CHIP_DEFS[expect_chip].CHIP_NAME != found:
                    raise WrongChip(
                        f"the images are for {CHIP_DEFS[expect_chip].CHIP_NAME} but the device on "
                        f"{self.port} is {found}",
                        port=self.port, expected=expect_chip, found=found,
                        file=str(Path(source) / "manifest.json") if source else None,
                    )
                with self._step("read chip info", ser, self.step_timeout):
                    info = ChipInfo(
                        chip=found,
                        description=esp.get_chip_description(),
                        features=list(esp.get_chip_features()),
                        mac=":".join(f"{b:02x}" for b in esp.read_mac()),
                        crystal_mhz=esp.get_crystal_freq(),
                    )
                if fast:
                    esp = self._speed_up(esp)
                yield esp, info
            finally:
                try:
                    if not self._keep_open:
                        ser.close()
                except Exception:  # noqa: BLE001 - closing a port that failed is best effort
                    pass

    def _speed_up(self, esp: ESPLoader) -> ESPLoader:
        """Upload the stub (``stub``) and switch to ``baud``; returns the loader to use from now on."""
        ser = esp._port
        if self.stub:
            with self._step("run stub", ser, self.step_timeout):
                esp = cmds.run_stub(esp)
            _own_loader(esp)
        if self.baud > self.initial_baud:
            with self._step("change baud", ser, self.step_timeout):
                try:
                    esp.change_baud(self.baud)
                except NotImplementedInROMError:
                    self.sink.text("warning", f"ROM cannot change baud; keeping {self.initial_baud}")
        return esp

    def _enter_download_mode_via_at(self) -> None:
        try:
            at = open_port(self.at_port, self.at_baud, timeout=0.05)
        except DeviceError as exc:
            raise FlashError(str(self.at_port), "open AT port", str(exc)) from exc
        try:
            with self._step("enter download mode (AT)", at, self.step_timeout, name=self.at_port):
                used = AtClient(at, firmware=self.firmware).enter_download_mode()
            self.sink.text("info", f"download mode entered with {used} on {self.at_port}")
        finally:
            at.close()

    def _prepare_flash(self, esp: ESPLoader, flash_set: FlashSet) -> str | None:
        with self._step("attach flash", esp._port, self.step_timeout):
            cmds.attach_flash(esp)
            detected = None if esp.secure_download_mode else cmds.detect_flash_size(esp)
            size = flash_set.flash_size if flash_set.flash_size not in ("keep", "detect") else detected
            if size:
                esp.flash_set_parameters(flash_size_bytes(size))
        return detected

    def _write_region(self, esp: ESPLoader, flash_set: FlashSet, region: Region, done: int, total: int,
                      *, force: bool) -> bool:
        """Write one region through esptool; False when esptool found it already in flash."""
        rewrites_header = region.offset == esp.BOOTLOADER_FLASH_OFFSET and any(
            getattr(flash_set, k) != "keep" for k in FLASH_PARAM_KEYS)
        bars_before = self.sink.bars
        previous = self.sink.on_bar
        size = len(region.data)

        def on_bar(cur: int, bar_total: int) -> None:
            if bar_total > 0:
                self._report(done + size * min(cur, bar_total) // bar_total, total)

        self.sink.on_bar = on_bar
        budget = self.step_timeout + 3 * _wire_seconds(size, esp._port.baudrate) + 30 * size / 2**20
        try:
            with self._step(f"write {region.name} at {region.offset:#x}", esp._port, budget):
                cmds.write_flash(
                    esp, [(region.offset, region.data)],
                    flash_mode=flash_set.flash_mode, flash_freq=flash_set.flash_freq,
                    flash_size=flash_set.flash_size,
                    # esptool rewrites the bootloader header with the flash params: only it knows
                    # whether the device already holds the *rewritten* image
                    skip_flashed=rewrites_header and not force,
                )
        finally:
            self.sink.on_bar = previous
        return self.sink.bars > bars_before

    def _finish(self, esp: ESPLoader) -> None:
        if self.after == "hard-reset" and self.port.startswith("socket://"):
            # RTS does not travel over TCP (esptool says so for the reset before connecting);
            # closing the connection is all a socket port can do, so skip the 0.1 s RTS pulse
            self.sink.text("note", "no hard reset over a TCP socket; closing the port")
            return
        with self._step("reset", esp._port, self.step_timeout):
            cmds.reset_chip(esp, self.after)

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    @contextmanager
    def _step(self, step: str, port: serial.SerialBase, seconds: float, *,
              name: str | None = None) -> Iterator[None]:
        """Run a step under a watchdog; turn esptool/serial failures into :class:`FlashError`."""
        name = name or self.port
        dog = _Watchdog(port, seconds)
        try:
            with dog:
                yield
        except (InputError, FlashError):
            raise
        except DeviceError as exc:  # e.g. the AT client's timeout while entering download mode
            raise FlashError(name, step, str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - esptool raises many kinds once the port is gone
            if dog.fired:
                raise FlashError(name, step, f"no answer within {seconds:.0f} s") from exc
            if isinstance(exc, (FatalError, serial.SerialException, OSError, StopIteration, struct.error)):
                detail = str(exc) or type(exc).__name__
                raise FlashError(name, step, detail) from exc
            raise


class FlashSession:
    """An open esptool connection to one unit (from :meth:`Flasher.session`).

    ``chip_info`` was read when the session opened. :meth:`write` checks the set is for this
    chip, uploads the stub and raises the baud rate (first call only), then writes like
    :meth:`Flasher.flash` (MD5 skip, progress, watchdogs). The session may write several sets.
    """

    def __init__(self, flasher: Flasher, esp: ESPLoader, info: ChipInfo) -> None:
        self._flasher = flasher
        self._esp = esp
        self._fast = False
        self.chip_info = info
        self.handed_over = False

    def hand_over(self, baud: int, *, timeout: float = 0.05) -> serial.SerialBase:
        """Start the unit's firmware on this very connection and give the open port to the caller,
        at ``baud`` (the firmware's UART rate): an ESP8266's download and AT port are one UART0.

        The ROM loader is told to run the user code (esptool's soft reset: FLASH_END(run)); no RTS
        pulse, so a board without auto-reset circuit works the same. esptool 5's flasher stub
        cannot run user code, so the session must not have uploaded it (``Flasher(stub=False)``):
        :class:`FlashError` otherwise. The session then neither resets nor closes the port: the
        caller owns it (and closes it)."""
        f = self._flasher
        port = self._esp._port
        if self._esp.IS_STUB:
            raise FlashError(f.port, "hand over the port", "the flasher stub cannot start the firmware on this "
                             "connection (open the session with stub=False)")
        with routed(f.sink):
            with f._step("run user code", port, f.step_timeout):
                cmds.reset_chip(self._esp, "soft-reset")
        try:                                     # what follows is the firmware's output: the caller reads it
            port.baudrate = baud
            port.timeout = timeout
        except (serial.SerialException, OSError, ValueError) as exc:
            raise FlashError(f.port, "hand over the port", str(exc)) from exc
        self.handed_over = True
        f._keep_open = True
        return port

    def write(self, flash_set: FlashSet, *, force: bool = False) -> FlashResult:
        """Write ``flash_set`` over this connection; regions the unit holds are skipped unless ``force``."""
        f, started = self._flasher, time.monotonic()
        expected = CHIP_DEFS[flash_set.chip].CHIP_NAME
        if expected != self.chip_info.chip:
            source = flash_set.source
            raise WrongChip(f"the images are for {expected} but the device on {f.port} is {self.chip_info.chip}",
                            port=f.port, expected=flash_set.chip, found=self.chip_info.chip,
                            file=str(Path(source) / "manifest.json") if source else None)
        with routed(f.sink):
            if not self._fast:
                self._esp = f._speed_up(self._esp)
                self._fast = True
            return f._write_set(self._esp, self.chip_info, flash_set, force=force, started=started)

    def md5(self, offset: int, size: int) -> str:
        """MD5 (hex) of ``size`` flash bytes at ``offset``, computed by the unit (``flash_md5sum``)."""
        f = self._flasher
        with routed(f.sink):
            if not self._fast:
                self._esp = f._speed_up(self._esp)
                self._fast = True
            with f._step(f"md5 0x{offset:x}", self._esp._port, f.step_timeout + 8 * size / 2**20):
                return str(self._esp.flash_md5sum(offset, size)).lower()


class _Watchdog:
    """Close ``port`` when a step takes longer than ``seconds`` so esptool's read/write fails."""

    def __init__(self, port: serial.SerialBase, seconds: float) -> None:
        self.port = port
        self.seconds = seconds
        self.fired = False
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        self.fired = True
        for cancel in ("cancel_read", "cancel_write"):
            try:
                getattr(self.port, cancel)()
            except Exception:  # noqa: BLE001 - not every port type can cancel
                pass
        try:
            self.port.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "_Watchdog":
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._timer is not None
        self._timer.cancel()


# --------------------------------------------------------------------------- trace-free bulk data

_BULK_OPS = frozenset(ESPLoader.ESP_CMDS[name] for name in ("FLASH_DATA", "FLASH_DEFL_DATA", "MEM_DATA"))


def _own_loader(esp: ESPLoader) -> None:
    """Per-object settings of every loader object the flasher uses (nothing class-wide).

    * no in-place reconnect inside ``write_flash``: esptool would replace the loader object
      internally and leave ours stale (wrong IS_STUB, baud); a lost link is a :class:`FlashError`
      and the caller decides whether to provision the unit again;
    * bulk data without trace strings (:func:`_quiet_bulk_commands`).
    """
    esp.WRITE_FLASH_ATTEMPTS = 1
    _quiet_bulk_commands(esp)


def _quiet_bulk_commands(esp: ESPLoader) -> None:
    """Give ``esp`` (this object only) a ``command`` that sends bulk data without trace strings.

    esptool's ``command`` builds ``HexFormatter`` strings of the whole packet twice before
    deciding not to print them. For bulk data opcodes we send the same SLIP frame ourselves and
    let esptool's ``command`` (called with ``op=None``, its documented "just read a response"
    mode) read the reply with the same timeout handling. Other opcodes, and everything when
    tracing is on, go through esptool unchanged.
    """
    if "command" in vars(esp):
        return
    original = esp.command

    def command(op: int | None = None, data: bytes = b"", chk: int = 0, wait_response: bool = True,
                timeout: float = DEFAULT_TIMEOUT):
        if op not in _BULK_OPS or esp._trace_enabled:
            return original(op, data, chk, wait_response, timeout)
        packet = struct.pack("<BBHI", 0x00, op, len(data), chk) + data
        esp._port.write(b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0")
        if not wait_response:
            return None
        return original(None, b"", 0, True, timeout)

    esp.command = command  # type: ignore[method-assign]


__all__ = [
    "ChipInfo", "FlashError", "FlashResult", "FlashSession", "FlashSet", "Flasher", "ProgressCallback", "Region",
    "RegionResult", "WrongChip", "load_flash_set",
]
