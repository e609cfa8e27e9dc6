"""Test support: an RFC 2217 server on 127.0.0.1 in front of a pyserial URL (e.g. a virtual module).

Every client connection opens its own ``serial.serial_for_url(target)`` and is served by pyserial's
own :class:`serial.rfc2217.PortManager` (the pattern of pyserial's ``examples/rfc2217_server.py``):
network -> port through ``PortManager.filter`` (telnet/RFC 2217 commands are answered, data passes),
port -> network through ``PortManager.escape``. So ``rfc2217://127.0.0.1:P`` behaves like a remote
serial port with the target behind it.

A ``socket://`` target has no modem lines: RTS/DTR/BREAK and baud changes sent over RFC 2217 are
acknowledged by the PortManager but cannot reach a virtual module (which enters download mode when its
flash endpoint gets a connection, i.e. when a client connects here).

``stop()`` closes the listener, every client socket and port, and joins every thread with a timeout.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable

import serial
import serial.rfc2217


class _Connection:
    """One client: its socket, its serial port, its PortManager and the three copy threads."""

    def __init__(self, sock: socket.socket, port: serial.SerialBase, on_end: Callable[["_Connection"], None]) -> None:
        self.sock = sock
        self.port = port
        self.alive = threading.Event()     # set while the connection runs
        self.alive.set()
        self.ended = threading.Event()     # set once it was closed
        self._write_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._on_end = on_end
        self.manager = serial.rfc2217.PortManager(port, self)   # sends the initial telnet options
        self.threads = [
            threading.Thread(target=self._network_to_port, name="rfc2217-bridge net->port", daemon=True),
            threading.Thread(target=self._port_to_network, name="rfc2217-bridge port->net", daemon=True),
            threading.Thread(target=self._poll_modem_lines, name="rfc2217-bridge modem", daemon=True),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def write(self, data: bytes) -> None:
        """Thread-safe raw write to the network (the PortManager's connection interface)."""
        with self._write_lock:
            self.sock.sendall(data)

    def _network_to_port(self) -> None:
        try:
            while self.alive.is_set():
                data = self.sock.recv(65536)
                if not data:
                    break
                payload = b"".join(self.manager.filter(data))
                if payload:
                    self.port.write(payload)
        except (OSError, serial.SerialException):
            pass
        finally:
            self.close()

    def _port_to_network(self) -> None:
        try:
            while self.alive.is_set():
                data = self.port.read(self.port.in_waiting or 1)
                if data:
                    self.write(b"".join(self.manager.escape(data)))
        except (OSError, serial.SerialException, TypeError, AttributeError):
            pass    # the port was closed under us (close() from the other thread or stop())
        finally:
            self.close()

    def _poll_modem_lines(self) -> None:
        while not self.ended.wait(1.0):
            try:
                self.manager.check_modem_lines()
            except (OSError, serial.SerialException):
                break

    def close(self) -> None:
        """End this connection (idempotent): socket shut down, port closed."""
        with self._close_lock:
            if not self.alive.is_set():
                return
            self.alive.clear()
        self.ended.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.port.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self._on_end(self)

    def join(self, timeout: float) -> bool:
        """Join the threads; True when all of them ended."""
        me = threading.current_thread()
        for t in self.threads:
            if t is not me and t.ident is not None:
                t.join(timeout)
        return not any(t.is_alive() for t in self.threads if t is not me)


class Rfc2217Bridge:
    """An RFC 2217 server on 127.0.0.1 (ephemeral port) in front of ``target`` (a pyserial URL).

    ``url`` is ``rfc2217://127.0.0.1:P``. Each client gets its own ``serial_for_url(target)``.
    Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(self, target: str, *, host: str = "127.0.0.1", port_timeout: float = 0.05) -> None:
        self.target = target
        self.port_timeout = port_timeout
        self.connections_served = 0
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, 0))
        self._lsock.listen(4)
        self.url = f"rfc2217://{host}:{self._lsock.getsockname()[1]}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[_Connection] = []
        self._ended: list[_Connection] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="rfc2217-bridge accept", daemon=True)

    def start(self) -> "Rfc2217Bridge":
        """Start accepting (idempotent)."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    def __enter__(self) -> "Rfc2217Bridge":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._lsock, self._wake_r], [], [])
            except (OSError, ValueError):
                return
            if self._stop.is_set() or self._lsock not in ready:
                continue
            try:
                sock, _ = self._lsock.accept()
            except OSError:
                return
            self._open(sock)

    def _open(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            port = serial.serial_for_url(self.target, timeout=self.port_timeout)
        except (serial.SerialException, OSError):
            sock.close()
            return
        conn = _Connection(sock, port, self._ended_conn)
        with self._lock:
            if self._stop.is_set():
                conn.close()
                return
            self._conns.append(conn)
            self.connections_served += 1
        conn.start()

    def _ended_conn(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
                self._ended.append(conn)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every connection and join every thread (each join bounded by ``timeout``)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self._lsock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        with self._lock:
            everyone = conns + self._ended
        stuck = [c for c in everyone if not c.join(timeout)]
        self._wake_r.close()
        self._wake_w.close()
        if self._thread.is_alive() or stuck:
            raise RuntimeError(f"rfc2217 bridge: {len(stuck)} connection(s) or the accept thread did not stop")
