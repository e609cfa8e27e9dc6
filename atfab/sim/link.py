"""One connected host on a virtual module's endpoint: bytes paced at a baud, and link faults.

A real UART moves 10 bits per byte (8N1). :class:`Link` holds both directions to that rate, so
a virtual module at 115200 baud takes as long as a real one, and injects the link-level faults
of a :class:`LinkFaults` (drop, stall, corrupt) at exact byte counts.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

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

    def __init__(self, sock: socket.socket, baud: int | None = None, faults: LinkFaults | None = None) -> None:
        self.sock = sock
        self.baud = baud
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
    def send(self, data: bytes) -> None:
        """Send bytes to the host at the emulated rate, applying tx faults."""
        if not data:
            return
        with self._send_lock:
            if self.closed:
                raise LinkClosed("link closed")
            f = self.faults
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
