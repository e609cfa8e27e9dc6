"""A fixture slot: fixed ``socket://`` flash and AT addresses in front of whichever virtual module
sits in it, so a test or a line rehearsal can swap units and pull them mid-attempt.

A station is given the slot's :attr:`UnitSlot.flash_url` / :attr:`UnitSlot.at_url` as its port.
Each connection to the slot is relayed to the module now in the slot. :meth:`UnitSlot.insert`
puts a module in (a swap when one was there: the live connections are cut, as when an operator
pulls a board mid-flash and seats the next one), :meth:`UnitSlot.pull` takes it out (live
connections cut; a new connection is accepted and closed at once, like a port with nothing on
it). Nothing here knows the protocols: bytes are relayed as they come.
"""

from __future__ import annotations

import selectors
import socket
import threading
from urllib.parse import urlsplit

from .module import VirtualModule

_SIDES = ("flash", "at")


class UnitSlot:
    """One slot of a fixture (see the module docstring). A context manager; thread-safe."""

    def __init__(self, module: VirtualModule | None = None, *, host: str = "127.0.0.1", name: str = "slot") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._module = module
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._sides: dict[tuple[socket.socket, socket.socket], str] = {}
        self._listeners: dict[str, socket.socket] = {}
        for side in _SIDES:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            s.listen(16)
            self._listeners[side] = s
        self.flash_url = f"socket://{host}:{self._listeners['flash'].getsockname()[1]}"
        self.at_url = f"socket://{host}:{self._listeners['at'].getsockname()[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept_loop, args=(side,), daemon=True,
                                          name=f"{name}-{side}-accept") for side in _SIDES]
        self.swaps = 0
        self.pulls = 0

    @property
    def module(self) -> VirtualModule | None:
        """The module in the slot now (None: empty)."""
        return self._module

    def connected(self, side: str = "flash") -> bool:
        """True while a host is connected to the slot's ``side`` (``flash`` or ``at``) endpoint."""
        with self._lock:
            return any(v == side for v in self._sides.values())

    def start(self) -> "UnitSlot":
        for t in self._threads:
            t.start()
        return self

    def insert(self, module: VirtualModule) -> None:
        """Seat ``module`` (cutting the connections to the one that was there, if any)."""
        with self._lock:
            swapped = self._module is not None and self._module is not module
            self._module = module
            self._cut()
        if swapped:
            self.swaps += 1

    def pull(self) -> None:
        """Take the module out: connections cut, the slot answers nothing until :meth:`insert`."""
        with self._lock:
            self._module = None
            self._cut()
        self.pulls += 1

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._cut()
        for s in self._listeners.values():
            s.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> "UnitSlot":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- relaying -------------------------------------------------------------------------------

    def _cut(self) -> None:
        for a, b in self._pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self._pairs.clear()
        self._sides.clear()

    def _accept_loop(self, side: str) -> None:
        lsock = self._listeners[side]
        while not self._stop.is_set():
            try:
                client, _ = lsock.accept()
            except OSError:
                return
            with self._lock:
                module = self._module
            if module is None:
                client.close()
                continue
            target = urlsplit(module.flash_url if side == "flash" else module.at_url)
            try:
                upstream = socket.create_connection((target.hostname, target.port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._module is not module:          # swapped while connecting
                    client.close()
                    upstream.close()
                    continue
                self._pairs.append((client, upstream))
                self._sides[(client, upstream)] = side
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True,
                             name=f"{self.name}-{side}-relay").start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))
                self._sides.pop((a, b), None)
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


__all__ = ["UnitSlot"]
