"""One connected host on a virtual module's endpoint: bytes paced at a baud, and link faults.

A real UART moves 10 bits per byte (8N1). :class:`Link` holds both directions to that rate, so
a virtual module at 115200 baud takes as long as a real one, and injects the link-level faults
of a :class:`LinkFaults` (drop, stall, corrupt) at exact byte counts.

Two rates are kept apart: the module's UART rate (:attr:`Link.uart_baud`, what its transmitter
and receiver run at) and the host port's (``host_baud``, when the transport tells it: RFC 2217
SET_BAUDRATE; a ``socket://`` host has none). When both are known and differ, each side receives
what an 8N1 receiver at its own rate makes of the other's frames (:func:`atfab.sim.uart_noise.resample`):
framing noise, never the bytes that were sent. Pacing (:attr:`Link.baud`) is a separate choice.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .uart_noise import resample

BITS_PER_BYTE = 10


class LinkClosed(Exception):
    """The host went away, or a fault dropped the connection."""


@dataclass
class LinkFaults:
    """Link-level faults for one connection; byte counts are per direction since connect."""

    #: Close the connection once this many bytes were sent to the host.
    drop_after_tx: int | None = None
    #: Close the connection once this many bytes were received from the host.
    drop_after_rx: int | None = None
    #: Stop sending for ``stall_seconds`` once this many bytes were sent.
    stall_after_tx: int | None = None
    stall_seconds: float = 0.0
    #: XOR 0x20 into the sent byte at this offset (a corrupted read).
    corrupt_tx_at: int | None = None


class Link:
    """A paced, fault-injecting byte pipe over a connected socket."""

    def __init__(self, sock: socket.socket, baud: int | None = None, faults: LinkFaults | None = None, *,
                 uart_baud: int | None = None, host_baud: Callable[[], int | None] | None = None) -> None:
        self.sock = sock
        self.baud = baud
        #: The module's UART rate (None: it follows the host, as the ROM loader's auto-baud does).
        self.uart_baud = uart_baud
        self._host_baud = host_baud
        self.faults = faults or LinkFaults()
        self.tx_count = 0
        self.rx_count = 0
        self._tx_free_at = time.monotonic()
        self._rx_free_at = time.monotonic()
        self._send_lock = threading.Lock()
        self._pending = bytearray()
        self.closed = False
        if sock.family in (socket.AF_INET, socket.AF_INET6):   # the UART0 wire is a Unix socketpair
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- pacing ---------------------------------------------------------------------------
    def byte_time(self) -> float:
        """Seconds one byte takes on the wire (0 when not paced)."""
        return BITS_PER_BYTE / self.baud if self.baud else 0.0

    def set_baud(self, baud: int | None) -> None:
        """Change the emulated rate (after CHANGE_BAUDRATE or AT+UART_CUR)."""
        self.baud = baud

    def set_uart_baud(self, baud: int | None) -> None:
        """The module's UART now runs at ``baud`` (None: at whatever rate the host sends)."""
        self.uart_baud = baud

    def host_baud(self) -> int | None:
        """The rate the host's port is set to, when the transport says (None: unknown)."""
        return self._host_baud() if self._host_baud is not None else None

    def _mismatch(self) -> tuple[int, int] | None:
        """(module rate, host rate) when both are known and differ: each side reads noise."""
        host, uart = self.host_baud(), self.uart_baud
        if host and uart and host != uart:
            return uart, host
        return None

    @staticmethod
    def _sleep_until(t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    # -- receive --------------------------------------------------------------------------
    def recv(self, max_bytes: int = 4096, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` from the host, delivered no faster than the baud allows.

        Returns ``b""`` when ``timeout`` passes with nothing; raises :class:`LinkClosed` when
        the host closed the connection.
        """
        if self.closed:
            raise LinkClosed("link closed")
        if not self._pending:
            try:                   # close() from another thread (power loss) may win the race
                self.sock.settimeout(timeout)
                chunk = self.sock.recv(max(max_bytes, 4096))
            except socket.timeout:
                return b""
            except OSError as exc:
                self.close()
                raise LinkClosed(str(exc)) from exc
            if not chunk:
                self.close()
                raise LinkClosed("host closed the connection")
            rates = self._mismatch()
            if rates is not None:           # the module's receiver frames the host's bits at its own rate
                chunk = resample(chunk, rates[1], rates[0])
            self._pending += chunk
        data = bytes(self._pending[:max_bytes])
        del self._pending[:len(data)]
        limit = self.faults.drop_after_rx
        if limit is not None and self.rx_count + len(data) >= limit:
            self.close()
            raise LinkClosed(f"fault: dropped after {limit} received bytes")
        if self.baud:
            start = max(self._rx_free_at, time.monotonic() - len(data) * self.byte_time())
            self._rx_free_at = start + len(data) * self.byte_time()
            self._sleep_until(self._rx_free_at)
        self.rx_count += len(data)
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the receive queue (a parser read too far)."""
        self._pending[:0] = data
        self.rx_count -= len(data)

    def has_pending(self) -> bool:
        """True when the host has already sent bytes that were not read yet (no waiting)."""
        if self._pending:
            return True
        try:
            self.sock.settimeout(0)
            chunk = self.sock.recv(4096, socket.MSG_PEEK)
            return bool(chunk)
        except (BlockingIOError, socket.timeout):
            return False
        except OSError:
            return False

    # -- send -----------------------------------------------------------------------------
    def send(self, data: bytes, *, tx_baud: int | None = None) -> None:
        """Send bytes to the host at the emulated rate, applying tx faults. ``tx_baud``: the rate they
        go out at when not the UART's (a boot log), judged by the host's receiver when its rate is known."""
        if not data:
            return
        with self._send_lock:
            if self.closed:
                raise LinkClosed("link closed")
            f = self.faults
            rates = self._mismatch() if tx_baud is None else (tx_baud, self.host_baud() or tx_baud)
            if rates is not None and rates[0] != rates[1]:   # what the host's receiver makes of the frames
                data = resample(data, rates[0], rates[1])
            data = bytearray(data)
            if f.corrupt_tx_at is not None and self.tx_count <= f.corrupt_tx_at < self.tx_count + len(data):
                data[f.corrupt_tx_at - self.tx_count] ^= 0x20
            if f.drop_after_tx is not None and self.tx_count + len(data) >= f.drop_after_tx:
                cut = max(0, f.drop_after_tx - self.tx_count)
                self._paced_send(bytes(data[:cut]))
                self.close()
                raise LinkClosed(f"fault: dropped after {f.drop_after_tx} sent bytes")
            if f.stall_after_tx is not None and self.tx_count <= f.stall_after_tx < self.tx_count + len(data):
                cut = f.stall_after_tx - self.tx_count
                self._paced_send(bytes(data[:cut]))
                time.sleep(f.stall_seconds)
                self._paced_send(bytes(data[cut:]))
            else:
                self._paced_send(bytes(data))

    def _paced_send(self, data: bytes) -> None:
        if not data:
            return
        try:
            if not self.baud:
                self.sock.sendall(data)
                self.tx_count += len(data)
                return
            bt = self.byte_time()
            chunk = max(1, int(0.004 / bt))  # about 4 ms of wire time per write
            now = time.monotonic()
            if self._tx_free_at < now:
                self._tx_free_at = now
            for i in range(0, len(data), chunk):
                piece = data[i:i + chunk]
                self._tx_free_at += len(piece) * bt
                self.sock.sendall(piece)
                self.tx_count += len(piece)
                self._sleep_until(self._tx_free_at)
        except OSError as exc:
            self.close()
            raise LinkClosed(str(exc)) from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
