"""A devkit's auto-reset circuit: what the host's DTR/RTS do to the chip's EN and boot strap.

The circuit of Espressif's devkits (two NPN transistors crossed between the USB-UART bridge's
DTR and RTS outputs) pulls EN low only when RTS is asserted and DTR is not, and pulls the boot
strap (GPIO0 on the ESP32, GPIO9 on the C2) low only when DTR is asserted and RTS is not; with
both asserted or both released neither transistor conducts, so opening or closing a port (which
moves both lines together) resets nothing. Asserted is pyserial's ``True`` (the wire is low),
the convention of esptool's ``esp_pylib.serial_reset`` (``PIN_LOW = True``).

EN has an RC on it, so the chip leaves reset only :data:`EN_RISE_S` after EN was released, and
samples the strap then. That is what makes esptool's ``ClassicReset`` work: its "IO0=LOW" (DTR)
follows "EN=HIGH" one line change later, yet the strap is already low when the chip wakes. If EN
is pulled low again before the delay, the release is void. The delay is slower than a datasheet
RC (10 kOhm x 1 uF: the chip wakes ~14 ms after release): pyserial's RFC 2217 client waits for
the server's acknowledgement of every line change by polling every 50 ms
(``TelnetSubnegotiation.wait``), so the strap goes low >= 50 ms after EN went high and a
datasheet RC boots from flash instead (a real devkit behind a plain RFC 2217 server does the
same; esptool's own ``esp_rfc2217_server`` replays the reset sequence on the server side for
that reason). ``rise_s`` models either. :class:`AutoResetCircuit` applies this and calls
``on_reset`` (EN went low: the chip is held in reset) and ``on_release(download)`` (the chip
left reset with the strap low = ``download`` True: ROM download mode; else it boots from flash).
"""

from __future__ import annotations

import threading
from typing import Callable

#: Seconds between EN's release and the chip leaving reset. esptool's ClassicReset over
#: pyserial's RFC 2217 client puts the strap low ~50 ms after EN's release and lets it go
#: ~200 ms after (two more acknowledged line changes + its 50 ms ``reset_delay``): 120 ms is
#: in the middle of that window. A datasheet RC would be ~0.014 (see the module docstring).
EN_RISE_S = 0.12


def en_low(dtr: bool, rts: bool) -> bool:
    """EN is pulled low (chip held in reset)."""
    return rts and not dtr


def strap_low(dtr: bool, rts: bool) -> bool:
    """The boot strap (GPIO0 / GPIO9) is pulled low (download mode if sampled now)."""
    return dtr and not rts


class AutoResetCircuit:
    """The two lines, EN and the strap; thread-safe. Lines start released (a closed port)."""

    def __init__(self, on_reset: Callable[[], None], on_release: Callable[[bool], None], *,
                 rise_s: float = EN_RISE_S) -> None:
        self._on_reset = on_reset
        self._on_release = on_release
        self._rise_s = rise_s
        self._lock = threading.Lock()
        self.dtr = False
        self.rts = False
        self._release_gen = 0
        self._timer: threading.Timer | None = None
        self._closed = False
        #: (EN pulses that held the chip, releases into download, releases into flash boot)
        self.resets = 0
        self.download_boots = 0
        self.flash_boots = 0

    def set_lines(self, dtr: bool | None = None, rts: bool | None = None) -> None:
        """Apply a line change (``None`` keeps a line); both at once when both are given."""
        with self._lock:
            if self._closed:
                return
            was_low = en_low(self.dtr, self.rts)
            if dtr is not None:
                self.dtr = bool(dtr)
            if rts is not None:
                self.rts = bool(rts)
            now_low = en_low(self.dtr, self.rts)
            if now_low == was_low:
                return
            self._release_gen += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if now_low:
                self.resets += 1
            else:
                self._timer = threading.Timer(self._rise_s, self._wake, args=(self._release_gen,))
                self._timer.daemon = True
                self._timer.start()
        if now_low:
            self._on_reset()

    def _wake(self, gen: int) -> None:
        with self._lock:
            if self._closed or gen != self._release_gen or en_low(self.dtr, self.rts):
                return
            self._timer = None
            download = strap_low(self.dtr, self.rts)
            if download:
                self.download_boots += 1
            else:
                self.flash_boots += 1
        self._on_release(download)

    def strap_is_low(self) -> bool:
        """The strap's level now (what a reset that samples it, e.g. the RTC watchdog, reads)."""
        with self._lock:
            return strap_low(self.dtr, self.rts)

    def close(self) -> None:
        """No more callbacks (a pending release is dropped)."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


__all__ = ["AutoResetCircuit", "EN_RISE_S", "en_low", "strap_low"]
