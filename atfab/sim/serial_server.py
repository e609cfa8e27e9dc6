"""An RFC 2217 serial server in front of one virtual module endpoint: the host's baud reaches the module.

A ``socket://`` host cannot say what rate its port runs at, so a virtual module behind one delivers
clean bytes whatever the host set. A station that talks to its units through a network serial server
(ser2net, an RFC 2217 device server) sets the rate with RFC 2217 SET_BAUDRATE; :class:`SerialServer`
is that server for one endpoint of a :class:`~atfab.sim.module.VirtualModule`:

* ``rfc2217://127.0.0.1:P``; one host at a time, like a serial port (others wait in the backlog);
  each connection is served by pyserial's own :class:`serial.rfc2217.PortManager` (telnet options
  and line settings answered, data escaped), as in pyserial's ``examples/rfc2217_server.py``.
* A connection is handed to the module as a connected socket (``handler(sock, host_baud)``), exactly
  what its ``socket://`` endpoint gets, plus ``host_baud()``: the rate the host last set (None until
  it sets one). The module's :class:`~atfab.sim.link.Link` then garbles what the two sides send each
  other while their rates differ.
* DTR/RTS are acknowledged and wired to nothing (a connection is still the power-on it is for the
  ``socket://`` endpoint); the devkit's reset lines are :mod:`atfab.sim.reset_lines`.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable

import serial
import serial.rfc2217

from .tcp_listener import OneHostListener

Handler = Callable[[socket.socket, Callable[[], "int | None"]], None]


class _LineSettings(serial.SerialBase):
    """What pyserial's PortManager sets: only the baud rate is kept (modem lines go nowhere)."""

    def __init__(self) -> None:
        self.host_baud: int | None = None
        super().__init__()
        self.is_open = True

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        pass

    def _reconfigure_port(self, force_update: bool = False) -> None:
        if self.is_open:                      # SerialBase.__init__ sets defaults before the host does
            self.host_baud = int(self._baudrate)

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_break_state(self) -> None:
        pass

    cts = dsr = ri = cd = property(lambda self: False)

    @property
    def in_waiting(self) -> int:
        return 0

    def reset_input_buffer(self) -> None:
        pass

    def reset_output_buffer(self) -> None:
        pass


class _Connection:
    """The PortManager's connection object: raw writes to the host's socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)


class SerialServer(OneHostListener):
    """``rfc2217://`` for one endpoint; ``handler`` serves each host's connection (see the module doc)."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", name: str = "module") -> None:
        self._handler = handler
        self._name = name
        super().__init__(host=host, scheme="rfc2217", thread_name=f"{name}-serial-server")

    def _serve_client(self, sock: socket.socket) -> None:
        line = _LineSettings()
        module_end, our_end = socket.socketpair()
        self._client_sock = sock
        try:
            manager = serial.rfc2217.PortManager(line, _Connection(sock))   # sends the telnet options
        except OSError:
            for s in (sock, module_end, our_end):
                s.close()
            self._client_sock = None
            return
        worker = threading.Thread(target=self._handler, args=(module_end, lambda: line.host_baud), daemon=True,
                                  name=f"{self._name}-serial-client")
        worker.start()
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select([sock, our_end, self._wake_r], [], [])
                if self._wake_r in ready:
                    break
                if sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        break
                    out, rate = bytearray(), line.host_baud
                    for piece in manager.filter(data):     # a SET_BAUDRATE takes effect in stream order
                        if line.host_baud != rate and out:
                            our_end.sendall(bytes(out))
                            out.clear()
                        rate = line.host_baud
                        out += piece
                    if out:
                        our_end.sendall(bytes(out))
                if our_end in ready:
                    data = our_end.recv(65536)
                    if not data:                           # the module ended the connection
                        break
                    sock.sendall(b"".join(manager.escape(data)))
        except (OSError, ValueError):
            pass
        finally:
            for s in (our_end, sock):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            worker.join(5)
            self._client_sock = None


__all__ = ["SerialServer"]
