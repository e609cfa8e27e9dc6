"""A TCP listener that serves one host at a time, like a serial port (others wait in the backlog).

The base of the simulator's ``rfc2217://`` servers (:mod:`atfab.sim.rfc2217_front`,
:mod:`atfab.sim.serial_server`): the listening socket on an ephemeral loopback port, the serving
thread, and a stop that wakes it, shuts the connected host's socket and joins the thread with a
timeout. A subclass serves each accepted connection in :meth:`OneHostListener._serve_client`
(returning when the host leaves or :attr:`_stopped` is set; :attr:`_wake_r` becomes readable on stop).
"""

from __future__ import annotations

import select
import socket
import threading


class OneHostListener:
    """Listens on ``host``:ephemeral; :meth:`_serve_client` serves one accepted socket at a time."""

    def __init__(self, *, host: str, scheme: str, thread_name: str) -> None:
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, 0))
        self._lsock.listen(8)
        self.url = f"{scheme}://{host}:{self._lsock.getsockname()[1]}"
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._client_sock: socket.socket | None = None    # the host being served, shut on stop
        self._thread = threading.Thread(target=self._serve, daemon=True, name=thread_name)

    def start(self):
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wake the thread, end the host's connection, join (5 s), close the sockets."""
        self._stopped.set()
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass
        client = self._client_sock
        if client is not None:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread.ident is not None:
            self._thread.join(5)
        self._lsock.close()
        self._wake_r.close()
        self._wake_w.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                ready, _, _ = select.select([self._lsock, self._wake_r], [], [])
            except (OSError, ValueError):
                return
            if self._stopped.is_set() or self._lsock not in ready:
                continue
            try:
                sock, _ = self._lsock.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve_client(sock)

    def _serve_client(self, sock: socket.socket) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


__all__ = ["OneHostListener"]
