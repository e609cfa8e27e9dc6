"""pyserial port classes for the network URLs a station uses: ``socket://`` and ``rfc2217://``.

Both keep pyserial's behaviour except where it costs a station time on every unit (a 0.3 s
sleep on close, renegotiating line settings on every timeout change) or breaks a reader that
sizes its reads by ``in_waiting``. :func:`atfab.link.transport.port_for_url` picks them.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from typing import Any

import serial
import serial.rfc2217
from serial.urlhandler.protocol_socket import Serial as _SocketSerial


class SocketPort(_SocketSerial):
    """A ``socket://`` port that closes at once and reports every byte that is waiting.

    pyserial's socket port sleeps 0.3 s in ``close()`` so that a server has time before a quick
    reconnect; a station reconnects to every unit several times, so that sleep would dominate a
    rotation. Instead :meth:`open` retries a refused connection for a short while, which waits
    only when the server really needs it.
    """

    #: How long a refused connection is retried on open (seconds).
    reconnect_window = 1.0

    def open(self) -> None:
        deadline = time.monotonic() + self.reconnect_window
        while True:
            try:
                super().open()
                return
            except serial.SerialException as exc:
                refused = isinstance(exc.__cause__, ConnectionRefusedError) or "refused" in str(exc).lower()
                if not refused or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read now (pyserial's socket port says only 0 or 1, so readers that
        size their reads by it, like esptool's SLIP reader, would read one byte per call)."""
        n = super().in_waiting
        if n and self._socket is not None:
            try:
                n = max(n, struct.unpack("i", fcntl.ioctl(self._socket.fileno(), termios.FIONREAD, b"\0" * 4))[0])
            except OSError:
                pass
        return n

    def close(self) -> None:
        if self.is_open:
            if self._socket:
                try:
                    self._socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._socket.close()
                self._socket = None
            self.is_open = False


class Rfc2217Port(serial.rfc2217.Serial):
    """An ``rfc2217://`` port that negotiates line settings only when they change.

    pyserial's RFC 2217 client renegotiates baud, data bits, parity, stop bits and flow control
    with the server, and waits at least 0.1 s for the answers, whenever *any* setting changes,
    timeouts included. esptool sets a timeout around almost every command, so flashing a small
    set through an RFC 2217 server took 20-30 s instead of a fraction of a second. Timeouts are
    local to the client (``read`` waits on its own queue), so here only a change of the line
    settings goes to the server.

    pyserial's client also refuses any ``write_timeout`` (``NotImplementedError`` from
    ``open()``, which :func:`open_port` sets); here it is accepted and not sent anywhere: a write
    is bounded by the client socket's own timeout (5 s in pyserial). ``close()`` skips pyserial's
    0.3 s pause for quick reconnects, as :class:`SocketPort` does.
    """

    _negotiated: tuple[Any, ...] | None = None

    def open(self) -> None:
        self._negotiated = None
        super().open()

    def _reconfigure_port(self) -> None:
        line = (self._baudrate, self._bytesize, self._parity, self._stopbits, self._rtscts, self._xonxoff)
        if line == self._negotiated:
            return
        write_timeout, self._write_timeout = self._write_timeout, None
        try:
            super()._reconfigure_port()
        finally:
            self._write_timeout = write_timeout
        self._negotiated = line

    def close(self) -> None:
        self.is_open = False
        if self._socket:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
                self._socket.close()
            except OSError:
                pass
        if self._thread:
            self._thread.join(7)     # its recv ends at once on the shut-down socket
            self._thread = None
        self._socket = None


__all__ = ["SocketPort", "Rfc2217Port"]
