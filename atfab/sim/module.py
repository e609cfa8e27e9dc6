"""One virtual ESP-AT module: identity, NOR flash, and two TCP endpoints on 127.0.0.1.

* ``flash_url`` (``socket://127.0.0.1:P``) is UART0 in ROM download mode: a new connection
  is a power-on with the boot strap held, served by :class:`~atfab.sim.rom_loader.DownloadSession`
  (the real esptool drives it). While it is open the AT endpoint goes silent (it reads and
  discards). When it closes the module boots its AT firmware from flash; a connected AT host
  receives the boot output (``\\r\\nready\\r\\n``).
* ``at_url`` is UART1 with the AT firmware. One host at a time; others wait in the backlog.
* ``serial_server=True``: both URLs are ``rfc2217://`` instead (:class:`~atfab.sim.serial_server.SerialServer`
  in front of each endpoint, same semantics): the host's port baud reaches the module, and while it
  differs from the UART's current rate each side reads framing noise (:class:`~atfab.sim.link.Link`).
  Over ``socket://`` the host's baud is unknown and bytes pass clean.
* ``shared_uart0`` (default: on for an ESP8266 NONOS AT module, whose download and AT port are
  both UART0): when the download session ends with "run user code" (esptool ``--after
  soft-reset``: the ROM's FLASH_END(run) or the stub's RUN_USER_CODE), the firmware boots and
  answers on *that* connection, at its UART baud (the 74880-baud boot log as noise, then AT), as
  on the one UART0 line of a real board; meanwhile ``at_url`` stays silent. A new connection is
  still a power-on with the strap held (download mode).

State machine: ``"at"`` (firmware running) / ``"download"`` / ``"off"``; ``state_token``
changes on every transition and every boot. ``AT+RST=1`` calls :meth:`enter_download_mode`.

The AT firmware (:class:`atfab.sim.at_firmware.AtFirmware`, or any ``firmware_factory``) sees
its module as :class:`atfab.sim.host.ModuleHost`: ``boot()`` after every power-on or reset
returns the boot output, ``serve(link, token)`` answers one connected AT host until the link
closes ("closed") or ``state_token`` changes ("state").
"""

from __future__ import annotations

import select
import socket
import threading
from pathlib import Path
from typing import Callable, Protocol

from ..core.firmware import FirmwareProfile, firmware_for
from .at_firmware import AtFirmware
from .chip import MB, ChipIdentity, derive_mac
from .faults import FaultPlan
from .flash import NorFlash
from .g0_firmware import G0Firmware
from .host import ModuleHost
from .link import Link, LinkClosed
from .reset_lines import ResetLineUart0
from .serial_server import SerialServer
from .rom_loader import CLOSED, RAM_APP, RUN_USER_CODE, DownloadSession, SessionStats

#: The rate a host opens the ROM loader at (esptool ``ESPLoader.ESP_ROM_BAUD``). The ROM auto-bauds
#: to the host's SYNC, so download mode runs at the host's rate, never at the AT firmware's UART
#: baud; a ``socket://`` host cannot say its rate, and esptool (and atfab's flasher) open at this one.
ROM_HOST_BAUD = 115200


class AtFirmwareLike(Protocol):
    def boot(self) -> bytes: ...
    def serve(self, link: Link, token: int) -> str: ...


FirmwareFactory = Callable[[ModuleHost], AtFirmwareLike]


def _default_firmware(host: ModuleHost) -> AtFirmwareLike:
    """The AT firmware model of the module's generation: ESP8266 NONOS AT (G0) or ESP-AT."""
    if host.firmware.generation == "G0":
        return G0Firmware(host)
    return AtFirmware(host)


class _Waker:
    """A socketpair a thread can select() on, so state changes and stop() wake it at once."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.w.setblocking(False)

    def notify(self) -> None:
        try:
            self.w.send(b"!")
        except (BlockingIOError, OSError):
            pass

    def drain(self) -> None:
        try:
            while self.r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self.r.close()
        self.w.close()


class _Link(Link):
    """A Link that remembers whether its receive-side drop fault fired (for one-shot faults)."""

    rx_fault_fired = False

    def recv(self, max_bytes: int = 4096, timeout: float | None = None) -> bytes:
        try:
            return super().recv(max_bytes, timeout)
        except LinkClosed as exc:
            if str(exc).startswith("fault:"):
                self.rx_fault_fired = True
            raise


class VirtualModule:
    """A simulated module (ESP32-C2 or ESP32 ROM + AT firmware) reachable over ``socket://`` URLs.

    ``chip`` is a model of :data:`atfab.sim.chip.CHIPS`; ``chip_revision`` None is its default
    (C2 v2.0, ESP32 v3.0). ``seed`` makes the MAC deterministic (unless ``mac`` is given);
    ``baud`` paces the AT endpoint like a UART at that rate (``None``: both endpoints unpaced);
    a paced flash endpoint runs at the download host's rate (:data:`ROM_HOST_BAUD`, then what
    CHANGE_BAUDRATE sets), whatever the AT baud; ``state_dir`` keeps the flash in
    ``<state_dir>/<name>.flash`` across restarts; ``firmware_factory`` builds the AT firmware
    at each boot (default :class:`atfab.sim.at_firmware.AtFirmware`). A firmware that raises
    while booting makes :meth:`start` raise; later boots keep the error in ``boot_error`` and
    leave the AT port silent.
    """

    def __init__(self, *, chip: str = "esp32c2", flash_size: int = 4 * MB, seed: object = 0,
                 mac: bytes | None = None, chip_revision: tuple[int, int] | None = None,
                 baud: int | None = None, state_dir: str | Path | None = None, name: str = "module",
                 flash: NorFlash | None = None, faults: FaultPlan | None = None,
                 firmware: FirmwareProfile | None = None,
                 firmware_factory: FirmwareFactory | None = None, host: str = "127.0.0.1",
                 reset_lines: bool = False, shared_uart0: bool | None = None,
                 serial_server: bool = False) -> None:
        self.name = name
        self.identity = ChipIdentity(chip=chip, mac=bytes(mac) if mac else derive_mac(seed),
                                     revision=tuple(chip_revision) if chip_revision else None,  # type: ignore[arg-type]
                                     flash_size=flash_size)
        self.chip = chip
        self.mac = self.identity.mac
        self.chip_revision = self.identity.revision
        self.baud = baud
        self.faults = faults if faults is not None else FaultPlan()
        self.firmware = firmware if firmware is not None else firmware_for(chip)
        self.shared_uart0 = self.firmware.generation == "G0" if shared_uart0 is None else shared_uart0
        self._uart0_link: Link | None = None       # the download link while it carries the firmware
        self._own_flash = flash is None
        if flash is None:
            path = Path(state_dir) / f"{name}.flash" if state_dir is not None else None
            flash = NorFlash(flash_size, path)
        elif flash.size != flash_size:
            flash_size = flash.size
            self.identity = ChipIdentity(chip=chip, mac=self.mac, revision=self.chip_revision,
                                         flash_size=flash_size)
        self.flash = flash
        self._factory: FirmwareFactory = firmware_factory or _default_firmware
        self._host = host
        self._cond = threading.Condition(threading.RLock())
        self._power = threading.RLock()      # serialises power-on/boot transitions
        self.state = "off"
        self.state_token = 0
        self.flash_url = ""
        self.at_url = ""
        #: ``rfc2217://`` UART0 with DTR/RTS reset lines ("" unless ``reset_lines``).
        self.rfc2217_url = ""
        self._reset_lines = reset_lines
        self._uart0: ResetLineUart0 | None = None
        self.last_session: SessionStats | None = None
        self.session_count = 0
        self.boot_count = 0
        self.boot_error: BaseException | None = None
        self._firmware_obj: AtFirmwareLike | None = None
        self._boot_output = b""
        #: The last boot's output as sent, (bytes, rate) per part (a firmware's ``boot_segments``), for a
        #: host whose rate is known; ``_boot_output`` is what a receiver at the UART's rate reads.
        self._boot_segments: tuple[tuple[bytes, int], ...] = ()
        self._boot_seq = 0
        self._at_baud = baud
        #: The AT UART's current rate (kept when unpaced too: a host at another rate reads noise).
        self._uart_baud: int | None = baud
        self._serial_server = serial_server
        self._servers: list[SerialServer] = []
        self._flash_link: Link | None = None
        self._at_link: Link | None = None
        self._stopped = threading.Event()
        self._wake_flash = _Waker()
        self._wake_at = _Waker()
        self._threads: list[threading.Thread] = []
        self._lsocks: list[socket.socket] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "VirtualModule":
        """Open both endpoints, power on (boot the firmware) and start serving."""
        self._boot()
        if self.boot_error is not None:
            error = self.boot_error
            self.stop()
            raise error
        if self._serial_server:
            flash_s = SerialServer(self._flash_connection, host=self._host, name=f"{self.name}-flash").start()
            at_s = SerialServer(self._at_connection, host=self._host, name=f"{self.name}-at").start()
            self._servers = [flash_s, at_s]
            self.flash_url, self.at_url = flash_s.url, at_s.url
        else:
            flash_l = self._listen()
            at_l = self._listen()
            self.flash_url = f"socket://{self._host}:{flash_l.getsockname()[1]}"
            self.at_url = f"socket://{self._host}:{at_l.getsockname()[1]}"
            for target, lsock in ((self._flash_loop, flash_l), (self._at_loop, at_l)):
                t = threading.Thread(target=target, args=(lsock,), daemon=True,
                                     name=f"{self.name}-{target.__name__.strip('_')}")
                t.start()
                self._threads.append(t)
        if self._reset_lines:
            self._uart0 = ResetLineUart0(self, host=self._host).start()
            self.rfc2217_url = self._uart0.url
        return self

    def _listen(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self._host, 0))
        s.listen(8)
        self._lsocks.append(s)
        return s

    def stop(self, timeout: float = 5.0) -> None:
        """Close both endpoints and stop every thread of this module (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._uart0 is not None:
            self._uart0.stop()
        with self._cond:
            links = [self._flash_link, self._at_link]
            self._set_state("off")
        for link in links:
            if link is not None:
                link.close()
        for server in self._servers:
            server.stop()
        for t in self._threads:
            t.join(timeout)
        for s in self._lsocks:
            s.close()
        self._wake_flash.close()
        self._wake_at.close()
        if self._own_flash:
            self.flash.close()

    def __enter__(self) -> "VirtualModule":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- ModuleHost --------------------------------------------------------------------------
    def enter_download_mode(self) -> None:
        """AT+RST=1: the AT port goes silent until the next flash session ends."""
        with self._power, self._cond:
            self._set_state("download")
        if self._uart0 is not None:          # the ROM loader also listens on the reset-line UART0
            self._uart0.request("download")

    def power_cycle(self) -> None:
        """Power off and on: an open download session is cut; the AT host stays connected
        and receives the boot output."""
        with self._power:
            with self._cond:
                self._set_state("off")
                link = self._flash_link
            if link is not None:
                link.close()
            self._boot()
        self._uart0_shows_boot()

    def power_loss(self) -> None:
        """Power lost: both connections drop, the module is off, then boots from flash."""
        with self._power:
            with self._cond:
                self._set_state("off")
                links = [self._flash_link, self._at_link]
            for link in links:
                if link is not None:
                    link.close()
            self._boot()
        self._uart0_shows_boot()

    def set_at_baud(self, baud: int | None) -> None:
        """The AT UART now runs at ``baud``: the AT endpoint is paced at it (unless the module is
        unpaced) and a host whose port is at another rate reads noise."""
        with self._cond:
            self._uart_baud = baud
            self._at_baud = baud if self.baud is not None else None
            for link in (self._at_link, self._uart0_link):
                if link is not None:
                    link.set_baud(self._at_baud)
                    link.set_uart_baud(baud)

    def wait_state(self, state: str, timeout: float) -> bool:
        """Wait until the module is in ``state``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.state == state, timeout)

    def describe(self) -> dict:
        """Plain data about this module (for listings and --json)."""
        return {"name": self.name, "chip": self.chip, "mac": self.mac.hex(":"),
                "chip_revision": f"v{self.chip_revision[0]}.{self.chip_revision[1]}",
                "flash_size": self.flash.size, "flash_url": self.flash_url, "at_url": self.at_url,
                "baud": self.baud, "flash_file": str(self.flash.path) if self.flash.path else None,
                "rfc2217_url": self.rfc2217_url or None}

    # -- UART0 with reset lines (atfab.sim.reset_lines) ---------------------------------------
    def rom_host_baud(self) -> int | None:
        """The rate a download link is paced at when it starts (None: unpaced module)."""
        return ROM_HOST_BAUD if self.baud is not None else None

    def hold_in_reset(self) -> None:
        """EN low: the chip stops (AT port silent, a ``socket://`` download session cut)."""
        with self._power:
            with self._cond:
                self._set_state("off")
                link = self._flash_link
            if link is not None:
                link.close()

    def boot_from_reset(self) -> None:
        """The chip left reset (or download mode) with the strap high: boot the firmware."""
        self._boot()

    def enter_wire_download(self, still_current: Callable[[], bool]) -> bool:
        """The chip left reset with the strap low: download mode on UART0 (AT port silent)."""
        with self._power, self._cond:
            if self._stopped.is_set() or not still_current():
                return False
            self._set_state("download")
            return True

    def record_session(self, stats: SessionStats) -> None:
        with self._cond:
            self.last_session = stats
            self.session_count += 1

    def rom_loop_line(self) -> bytes:
        """One line of the ROM's ``invalid header`` loop after the last boot (b"": none)."""
        log = getattr(self._firmware_obj, "rom_log", b"") or b""
        end = log.find(b"\r\n")
        return log[:end + 2] if end >= 0 else log

    def _uart0_shows_boot(self) -> None:
        if self._uart0 is not None and not self._stopped.is_set():
            self._uart0.request("log")

    # -- state -------------------------------------------------------------------------------
    def _set_state(self, state: str) -> int:
        """Caller holds ``_cond``."""
        self.state = state
        self.state_token += 1
        self._cond.notify_all()
        self._wake_flash.notify()
        self._wake_at.notify()
        return self.state_token

    def _boot(self) -> int:
        """Power-on of the firmware: a fresh AtFirmware boots from the flash contents."""
        with self._power:
            self.set_at_baud(self.baud)
            firmware: AtFirmwareLike | None = None
            try:
                firmware = self._factory(self)
                output = firmware.boot()
                segments = tuple(getattr(firmware, "boot_segments", ()) or ())
                self.boot_error = None
            except Exception as exc:     # a firmware bug must not kill the module's threads
                self.boot_error = exc
                firmware, output, segments = None, b"", ()
            with self._cond:
                self._firmware_obj = firmware
                self._boot_output = output
                self._boot_segments = segments
                self._boot_seq += 1
                self.boot_count += 1
                return self._set_state("at")

    # -- threads -----------------------------------------------------------------------------
    def _accept(self, lsock: socket.socket, waker: _Waker) -> socket.socket | None:
        while not self._stopped.is_set():
            try:
                ready, _, _ = select.select([lsock, waker.r], [], [])
            except (OSError, ValueError):
                return None
            if waker.r in ready:
                waker.drain()
            if lsock in ready and not self._stopped.is_set():
                try:
                    sock, _ = lsock.accept()
                except OSError:
                    return None
                return sock
        return None

    def _idle(self, link: Link, waker: _Waker, until: Callable[[], bool]) -> str:
        """Read and discard from ``link`` until ``until()`` holds ("state") or it closes ("closed")."""
        while True:
            if self._stopped.is_set() or link.closed:
                return CLOSED
            with self._cond:
                if until():
                    return "state"
            try:
                if not link.has_pending():
                    ready, _, _ = select.select([link.sock, waker.r], [], [])
                    if waker.r in ready:
                        waker.drain()
                    if link.sock not in ready:
                        continue
                link.recv(65536, timeout=0.05)
            except LinkClosed:
                return CLOSED
            except (OSError, ValueError):
                return CLOSED

    def _flash_loop(self, lsock: socket.socket) -> None:
        while not self._stopped.is_set():
            sock = self._accept(lsock, self._wake_flash)
            if sock is None:
                return
            self._flash_connection(sock)

    def _flash_connection(self, sock: socket.socket, host_baud: Callable[[], int | None] | None = None) -> None:
        if self._uart0 is not None:          # a power-on into download mode: it takes UART0
            self._uart0.request(None)
        rom_baud = ROM_HOST_BAUD if self.baud is not None else None   # paced: at the host's rate
        # uart_baud None: the ROM auto-bauds to the host's SYNC (and CHANGE_BAUDRATE moves both sides)
        link = _Link(sock, rom_baud, self.faults.live("flash"), host_baud=host_baud)  # type: ignore[arg-type]
        with self._power, self._cond:
            if self._stopped.is_set():
                link.close()
                return
            self._flash_link = link
            token = self._set_state("download")
        try:
            while True:
                link.set_baud(rom_baud)          # every ROM start auto-bauds to the host again
                link.set_uart_baud(None)
                session = DownloadSession(link, self.flash, self.identity, baud=ROM_HOST_BAUD,
                                          paced=rom_baud is not None)
                result = session.serve()
                self.last_session = session.stats
                self.session_count += 1
                if result == RUN_USER_CODE and self.shared_uart0:
                    # one UART0: the firmware boots and answers on this very connection
                    with self._cond:
                        self._uart0_link = link        # before the boot: the AT endpoint stays silent
                    self._boot()
                    if self._serve_uart0(link) == CLOSED:
                        break
                    with self._cond:
                        token = self.state_token
                    continue
                if result == RUN_USER_CODE:
                    # The ROM jumped to the firmware; UART0 now carries its log (discarded).
                    self._boot()
                    if self._idle(link, self._wake_flash, lambda: self.state == "download") == CLOSED:
                        break
                    with self._cond:        # AT+RST=1: the ROM listens on this link again
                        token = self.state_token
                    continue
                if result == RAM_APP:
                    self._idle(link, self._wake_flash, lambda: False)
                break
        finally:
            link.close()
            self.faults.consume_fired("flash", link)
            with self._power:
                with self._cond:
                    self._flash_link = None
                    ours = self.state == "download" and self.state_token == token
                if ours and not self._stopped.is_set():
                    self._boot()
            if ours:
                self._uart0_shows_boot()

    def _serve_uart0(self, link: Link) -> str:
        """The firmware on the download link (``shared_uart0``) until the link closes
        (:data:`CLOSED`) or the module enters download mode ("state")."""
        with self._cond:
            self._uart0_link = link
            seen = self._boot_seq
            output = self._boot_output
            link.set_baud(self._at_baud)
            link.set_uart_baud(self._uart_baud)
        try:
            if output:
                # the boot logs go out at 74880 baud after the ROM's last reply: the firmware's first
                # bytes cannot follow that reply at once (and a host still reading it would swallow them)
                self._stopped.wait(float(getattr(self._firmware_obj, "boot_seconds", 0.0)))
                self._send_boot(link, output)
            while not link.closed and not self._stopped.is_set():
                with self._cond:
                    state, token = self.state, self.state_token
                    firmware, boot_seq, output = self._firmware_obj, self._boot_seq, self._boot_output
                if state == "download":
                    return "state"
                if state == "at" and firmware is not None:
                    if boot_seq != seen:
                        seen = boot_seq
                        if output:
                            self._send_boot(link, output)
                    if firmware.serve(link, token) == CLOSED:
                        return CLOSED
                elif self._idle(link, self._wake_flash, lambda: self.state != "off") == CLOSED:
                    return CLOSED
            return CLOSED
        except LinkClosed:
            return CLOSED
        finally:
            with self._cond:
                self._uart0_link = None
            self._wake_at.notify()               # the AT endpoint (the same UART0) may answer again

    def _send_boot(self, link: Link, output: bytes) -> None:
        """The boot output: to a host whose rate is known, each part at the rate it went out at (the
        ESP8266's 74880-baud logs framed by the host's receiver bit by bit); else as rendered for a
        receiver at the UART's rate."""
        with self._cond:
            segments = self._boot_segments if output is self._boot_output else ()
        if segments and link.host_baud() is not None:
            for data, baud in segments:
                link.send(data, tx_baud=baud)
        else:
            link.send(output)

    def _at_loop(self, lsock: socket.socket) -> None:
        while not self._stopped.is_set():
            sock = self._accept(lsock, self._wake_at)
            if sock is None:
                return
            self._at_connection(sock)

    def _at_connection(self, sock: socket.socket, host_baud: Callable[[], int | None] | None = None) -> None:
        link = _Link(sock, self._at_baud, self.faults.live("at"), host_baud=host_baud)  # type: ignore[arg-type]
        with self._cond:
            link.set_baud(self._at_baud)
            link.set_uart_baud(self._uart_baud)
            if self._stopped.is_set():
                link.close()
                return
            self._at_link = link
            seen_boot = self._boot_seq
        try:
            while not link.closed and not self._stopped.is_set():
                with self._cond:
                    state, token = self.state, self.state_token
                    firmware, boot_seq, output = self._firmware_obj, self._boot_seq, self._boot_output
                if state == "at" and firmware is not None and self._uart0_link is None:
                    if boot_seq != seen_boot:
                        seen_boot = boot_seq
                        if output:
                            self._send_boot(link, output)
                    if firmware.serve(link, token) == CLOSED:
                        break
                else:
                    woke = self._idle(link, self._wake_at,
                                      lambda: self.state == "at" and self._firmware_obj is not None
                                      and self._uart0_link is None)
                    if woke == CLOSED:
                        break
        except LinkClosed:
            pass
        finally:
            link.close()
            self.faults.consume_fired("at", link)
            with self._cond:
                if self._at_link is link:
                    self._at_link = None


__all__ = ["VirtualModule", "ModuleHost", "AtFirmwareLike", "FirmwareFactory"]
