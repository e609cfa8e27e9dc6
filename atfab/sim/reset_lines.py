"""A virtual module's UART0 with real reset lines: ``rfc2217://`` (see docs/virtual-module.md).

:class:`ResetLineUart0` joins the auto-reset circuit (:mod:`atfab.sim.reset_circuit`), the UART0
wire and its RFC 2217 server (:mod:`atfab.sim.rfc2217_front`) to the module. What runs on UART0
is decided by the chip's resets, never by who is connected:

* EN pulled low: the chip is held in reset (module state ``off``, AT port silent, a running ROM
  or stub session is gone, a ``socket://`` download session too).
* EN released, strap low when sampled: ROM download mode on the wire. The ROM loader, and the
  stub once uploaded, keep running across host connections until the next reset: esptool
  ``--before no-reset`` finds "Stub flasher is already running".
* EN released, strap high: the chip boots from flash (the module boots its AT firmware; the AT
  port prints its boot output). UART0 carries the ROM's boot message and, with no valid
  bootloader, its endless ``invalid header`` loop, at the ROM's log rate: a host set to another
  rate reads what its receiver makes of it (:func:`atfab.sim.uart_noise.resample`).
* The ROM leaving download mode itself (FLASH_END "run user code", the RTC watchdog) boots
  from flash the same way.

A ``socket://`` connection to the flash endpoint is still a power-on into download mode: it
takes UART0 (the wire goes silent) until it closes and the module boots from flash.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from .chip import ChipIdentity
from .flash import NorFlash
from .link import Link, LinkClosed
from .reset_circuit import AutoResetCircuit
from .rfc2217_front import Rfc2217Front, Uart0Wire
from .rom_loader import RAM_APP, RUN_USER_CODE, DownloadSession, SessionStats
from .uart_noise import resample

#: How often the ROM's ``invalid header`` loop is sent while a host has the port open (seconds).
ROM_LOOP_PERIOD_S = 0.05
#: Lines of the loop per burst (sent back to back, as the ROM prints them).
ROM_LOOP_BURST = 4


class ResetLineHost(Protocol):
    """What UART0 uses of its module (:class:`atfab.sim.module.VirtualModule`)."""

    name: str
    identity: ChipIdentity
    flash: NorFlash

    def rom_host_baud(self) -> int | None: ...
    def hold_in_reset(self) -> None: ...
    def boot_from_reset(self) -> None: ...
    def enter_wire_download(self, still_current: Callable[[], bool]) -> bool: ...
    def record_session(self, stats: SessionStats) -> None: ...
    def rom_loop_line(self) -> bytes: ...


class ResetLineUart0:
    """UART0 of ``module`` behind ``rfc2217://`` with DTR/RTS wired as on a devkit."""

    def __init__(self, module: ResetLineHost, *, host: str = "127.0.0.1") -> None:
        self.module = module
        self.spec = module.identity.spec
        self.circuit = AutoResetCircuit(self._en_low, self._en_released)
        self.wire = Uart0Wire()
        self.front = Rfc2217Front(self.wire, self.circuit, host=host, name=module.name)
        self.url = self.front.url
        self._cv = threading.Condition()
        self._request: str | None = None       # "download" | "flash" | "log" (boot output only)
        self._epoch = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"{module.name}-uart0")
        #: What UART0 ran last: "download", "flash", "reset" or "" (never reset).
        self.mode = ""

    def start(self) -> "ResetLineUart0":
        self._thread.start()
        self.front.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.circuit.close()
        self.front.stop()
        self.request(None)
        self._thread.join(5)
        self.wire.stop()

    # -- what starts on the wire -------------------------------------------------------------
    def request(self, mode: str | None) -> None:
        """End what runs on UART0 now and start ``mode`` (None: nothing, the wire is silent)."""
        with self._cv:
            self._epoch += 1
            self._request = mode
            self.wire.cut()
            self._cv.notify_all()

    def _en_low(self) -> None:
        self.mode = "reset"
        self.request(None)
        self.module.hold_in_reset()

    def _en_released(self, download: bool) -> None:
        self.request("download" if download else "flash")

    # -- the chip ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopped.is_set():
            with self._cv:
                self._cv.wait_for(lambda: self._request is not None or self._stopped.is_set())
                if self._stopped.is_set():
                    return
                mode, epoch, self._request = self._request, self._epoch, None
                sock = self.wire.attach_chip()
            m = self.module
            rom_baud = m.rom_host_baud()
            link = Link(sock, rom_baud)
            try:
                if mode == "download":
                    self.mode = "download"
                    self._download(link, epoch, rom_baud)
                else:
                    if mode == "flash":
                        self.mode = "flash"
                        m.boot_from_reset()
                    self._boot_output(link, epoch)
            except LinkClosed:
                pass
            finally:
                link.close()

    def _current(self, epoch: int) -> bool:
        with self._cv:
            return epoch == self._epoch and not self._stopped.is_set()

    def _rom_message(self, download: bool) -> bytes:
        return self.spec.rom_boot_log[0 if download else 1].encode()

    def _send_log(self, link: Link, data: bytes) -> None:
        """``data`` sent at the ROM's log rate, as the host's receiver reads it."""
        if self.wire.host_attached:
            link.send(resample(data, self.spec.rom_log_baud, self.wire.host_baud))

    def _download(self, link: Link, epoch: int, rom_baud: int | None) -> None:
        m = self.module
        if not m.enter_wire_download(lambda: self._current(epoch)):
            return
        self._send_log(link, self._rom_message(True))
        while self._current(epoch):
            link.set_baud(rom_baud)           # every ROM start auto-bauds to the host again
            session = DownloadSession(link, m.flash, m.identity, baud=m.rom_host_baud() or 115200,
                                      paced=rom_baud is not None)
            result = session.serve()
            m.record_session(session.stats)
            if result == RUN_USER_CODE:       # the ROM jumped to flash, or the RTC watchdog fired
                self.mode = "flash"
                m.boot_from_reset()
                self._boot_output(link, epoch)
                return
            if result == RAM_APP:             # some other RAM program: nothing executes it
                self._idle(link, epoch)
                return
            return                            # the wire was cut: a reset

    def _boot_output(self, link: Link, epoch: int) -> None:
        """What UART0 shows after a boot from flash: the ROM message, then its loop if any."""
        self._send_log(link, self._rom_message(False))
        loop = self.module.rom_loop_line()
        if not loop:
            self._idle(link, epoch)
            return
        burst = loop * ROM_LOOP_BURST
        while self._current(epoch):
            self._send_log(link, burst)
            # input is discarded; with no host on the port nothing is sent, so wake up rarely
            link.recv(65536, timeout=ROM_LOOP_PERIOD_S if self.wire.host_attached else 0.5)

    def _idle(self, link: Link, epoch: int) -> None:
        while self._current(epoch):
            link.recv(65536, timeout=0.5)


__all__ = ["ResetLineUart0"]
