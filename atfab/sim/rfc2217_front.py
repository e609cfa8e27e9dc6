"""UART0 of a virtual chip behind an RFC 2217 server, with the devkit's auto-reset circuit.

Three parts, nothing here knows the ROM protocol:

* :class:`Uart0Wire`: the UART between the USB-UART bridge and the chip. The chip side attaches a
  fresh socket each time it comes out of reset (:meth:`Uart0Wire.attach_chip`) and loses it when
  it is reset (:meth:`Uart0Wire.cut`: the chip sees the end of its link). Bytes the chip sends
  go to the connected host, or nowhere when no host has the port open; bytes a host sends while
  the chip is in reset are lost, as on a real UART.
* :class:`BridgePort`: what pyserial's :class:`serial.rfc2217.PortManager` drives (a
  ``serial.SerialBase``): DTR/RTS go to the :class:`~atfab.sim.reset_circuit.AutoResetCircuit`,
  the baud rate is recorded (:attr:`Uart0Wire.host_baud`, what the host's receiver runs at).
* :class:`Rfc2217Front`: the TCP listener. One host at a time, like a serial port (others wait in
  the backlog); each is served by pyserial's own ``PortManager`` (telnet options, RFC 2217 line
  settings and modem control answered, data escaped). When a host disconnects the bridge
  releases both lines at once, as a closing tty does (HUPCL), which resets nothing.
"""

from __future__ import annotations

import select
import socket
import threading

import serial
import serial.rfc2217

from .reset_circuit import AutoResetCircuit
from .tcp_listener import OneHostListener


class Uart0Wire:
    """The chip's UART0 line (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host_end: socket.socket | None = None
        self._sink = None                      # callable(bytes) of the connected host, or None
        #: The rate the host's port is set to (RFC 2217 SET_BAUDRATE); 115200 until told.
        self.host_baud = 115200
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._pump, daemon=True, name="uart0-pump")
        self._thread.start()

    # -- chip side ---------------------------------------------------------------------------
    def attach_chip(self) -> socket.socket:
        """A new chip-side socket (the chip came out of reset); any previous one is cut."""
        chip_end, host_end = socket.socketpair()
        with self._lock:
            old, self._host_end = self._host_end, host_end
        self._close(old)
        self._wake()
        return chip_end

    def cut(self) -> None:
        """The chip is reset: its side of the line ends (its session sees the link close)."""
        with self._lock:
            old, self._host_end = self._host_end, None
        self._close(old)
        self._wake()

    # -- host side ---------------------------------------------------------------------------
    def set_sink(self, sink) -> None:
        """Where the chip's bytes go (``None``: no host has the port open, they are lost)."""
        with self._lock:
            self._sink = sink

    @property
    def host_attached(self) -> bool:
        return self._sink is not None

    def write(self, data: bytes) -> None:
        """Bytes from the host to the chip (dropped while the chip is in reset)."""
        with self._lock:
            end = self._host_end
        if end is None or not data:
            return
        try:
            end.sendall(data)
        except OSError:
            pass

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _close(sock: socket.socket | None) -> None:
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass

    def _pump(self) -> None:
        """Chip -> host, always drained (a chip never blocks on a port nobody opened)."""
        while not self._stopped.is_set():
            with self._lock:
                end = self._host_end
            watch = [self._wake_r] + ([end] if end is not None else [])
            try:
                ready, _, _ = select.select(watch, [], [])      # attach/cut/stop wake it
            except (OSError, ValueError):
                continue                      # the end was closed under us: take the new one
            if self._wake_r in ready:
                try:
                    self._wake_r.recv(4096)
                except OSError:
                    return
            if end is None or end not in ready:
                continue
            try:
                data = end.recv(65536)
            except OSError:
                continue
            if not data:
                with self._lock:
                    if self._host_end is end:
                        self._host_end = None
                self._close(end)
                continue
            sink = self._sink
            if sink is not None:
                try:
                    sink(data)
                except OSError:
                    pass


class BridgePort(serial.SerialBase):
    """The USB-UART bridge as pyserial's ``PortManager`` sees it: modem lines and settings."""

    def __init__(self, wire: Uart0Wire, circuit: AutoResetCircuit) -> None:
        self._wire = wire
        self._circuit = circuit
        super().__init__(baudrate=115200)
        self.is_open = True

    def open(self) -> None:                   # always open: there is no device to open
        self.is_open = True

    def close(self) -> None:
        pass

    def _reconfigure_port(self, force_update: bool = False) -> None:
        self._wire.host_baud = int(self._baudrate)

    def _update_dtr_state(self) -> None:
        self._circuit.set_lines(dtr=self._dtr_state)

    def _update_rts_state(self) -> None:
        self._circuit.set_lines(rts=self._rts_state)

    def _update_break_state(self) -> None:
        pass

    def release_lines(self) -> None:
        """Both lines released together (the host closed the port)."""
        self._dtr_state = self._rts_state = False
        self._circuit.set_lines(dtr=False, rts=False)

    # modem inputs: the devkit wires none of them
    cts = dsr = ri = cd = property(lambda self: False)

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        return b""

    def write(self, data: bytes) -> int:
        self._wire.write(bytes(data))
        return len(data)

    def reset_input_buffer(self) -> None:     # the bridge forwards at once: nothing is buffered
        pass

    def reset_output_buffer(self) -> None:
        pass


class _Client:
    """One connected host: its socket and PortManager (the connection object it writes to)."""

    def __init__(self, sock: socket.socket, port: BridgePort) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self.manager = serial.rfc2217.PortManager(port, self)

    def write(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def send_data(self, data: bytes) -> None:
        self.write(b"".join(self.manager.escape(data)))


class Rfc2217Front(OneHostListener):
    """``rfc2217://host:P`` in front of a :class:`Uart0Wire` and its reset circuit."""

    def __init__(self, wire: Uart0Wire, circuit: AutoResetCircuit, *, host: str = "127.0.0.1",
                 name: str = "module") -> None:
        self.wire = wire
        self.circuit = circuit
        self.port = BridgePort(wire, circuit)
        self.connections = 0
        super().__init__(host=host, scheme="rfc2217", thread_name=f"{name}-rfc2217")

    def _serve_client(self, sock: socket.socket) -> None:
        self.connections += 1
        try:
            client = _Client(sock, self.port)       # sends the initial telnet negotiation
        except OSError:
            sock.close()
            return
        self._client_sock = sock
        self.wire.set_sink(client.send_data)
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select([sock, self._wake_r], [], [])
                if sock not in ready:
                    continue
                data = sock.recv(65536)
                if not data:
                    break
                payload = b"".join(client.manager.filter(data))
                if payload:
                    self.wire.write(payload)
        except (OSError, ValueError):
            pass
        finally:
            self.wire.set_sink(None)
            self._client_sock = None
            try:
                sock.close()
            except OSError:
                pass
            self.port.release_lines()


__all__ = ["Uart0Wire", "BridgePort", "Rfc2217Front"]
