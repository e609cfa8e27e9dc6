"""The live station page's HTTP server: one per station run, on its own thread.

``GET /`` is the page (:file:`page.html`: the slots, counts, units per hour, the last failures),
``GET /events`` a server-sent-event stream that pushes the whole :class:`~atfab.station.live.state.LiveState`
snapshot on connect and after every change (so a page that reconnects, e.g. after the station
restarted, is complete at once), ``GET /state`` the same snapshot as JSON. ``POST /api/pause``,
``/api/resume`` (``{"slot": LABEL}``) and ``/api/stop`` (stop after the units in flight) call the
station's own controls (:meth:`Station.pause`, :meth:`Station.resume`, :meth:`Station.stop`).

Cross-site requests cannot use them: an action needs the run's random token in the
``X-Atfab-Token`` header (the page gets it from the stream, which another site cannot read; a
custom header also forces a CORS preflight, which is never granted), its ``Origin`` (when sent)
must be this server, and every request must name this server in ``Host`` (a literal IP address,
``localhost`` or the host of the ``--ui`` URL: a DNS-rebinding name is refused). The page may not
be framed and runs only its own script (Content-Security-Policy with a per-response nonce).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit

from ...core.errors import DeviceError, InputError
from ..events import STATION, Event, EventBus
from .state import LiveState

DEFAULT_PORT = 8080
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 10.0
#: Shortest time between two snapshots pushed to one page.
PUSH_INTERVAL_S = 0.1
TOKEN_HEADER = "X-Atfab-Token"


class StationControls(Protocol):
    """What the page may ask of a station (:class:`atfab.station.station.Station` has it)."""

    bus: EventBus

    def pause(self, label: str) -> None: ...
    def resume(self, label: str) -> None: ...
    def stop(self, *, abort: bool = True) -> None: ...


def parse_ui_url(url: str) -> tuple[str, int]:
    """``http://HOST[:PORT][/]`` → (host, port); port 0 = any free port. InputError otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query or \
            parts.username or port == -1:
        raise InputError(f"{url!r}: expected http://HOST:PORT (e.g. http://127.0.0.1:8080)", field="--ui")
    return parts.hostname, DEFAULT_PORT if port is None else port


def _url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], page: "LivePage") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.page = page
        super().__init__(address, _Handler)


class LivePage:
    """Serves ``state`` for ``station`` at ``url`` while started (:meth:`start` / :meth:`close`)."""

    def __init__(self, station: StationControls, state: LiveState, url: str) -> None:
        self.station = station
        self.state = state
        self.host, self.port = parse_ui_url(url)
        self.token = secrets.token_urlsafe(24)
        self.url = ""
        self.closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._streams = 0
        self._lock = threading.Lock()
        self._html = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    def start(self) -> "LivePage":
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as exc:
            raise DeviceError(f"cannot serve the station page on {_url(self.host, self.port)}: {exc.strerror or exc}") \
                from None
        self.url = _url(self.host, self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="atfab-station-page", daemon=True)
        self._thread.start()
        return self

    def close(self, *, linger: float = 1.0) -> None:
        """Push the final state to the open pages (up to ``linger`` s), then stop serving."""
        self.closing.set()
        self.state.end()
        deadline = time.monotonic() + linger
        while self.streams and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def streams(self) -> int:
        """Event streams open now."""
        with self._lock:
            return self._streams

    def _stream_opened(self, delta: int) -> None:
        with self._lock:
            self._streams += delta

    def host_allowed(self, header: str | None) -> bool:
        """True when a request's ``Host`` names this server (see the module docstring)."""
        if not header:
            return False
        parts = urlsplit(f"//{header}")
        try:
            port = parts.port
        except ValueError:
            return False
        name = parts.hostname or ""
        if port != self._server_port() or not name:
            return False
        if name in ("localhost", self.host.lower()):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _server_port(self) -> int | None:
        return self._server.server_address[1] if self._server is not None else None

    def render_page(self, nonce: str) -> bytes:
        html = self._html.replace("{{NONCE}}", nonce).replace("{{TOKEN}}", self.token)
        return html.replace("{{STATION}}", _escape(self.state.station_id)).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "atfab-station-page"
    sys_version = ""

    @property
    def page(self) -> LivePage:
        return self.server.page

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the console owns the terminal
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _refuse_host(self) -> bool:
        if self.page.host_allowed(self.headers.get("Host")):
            return False
        self._json(421, {"error": "this server does not answer for that Host"})
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self._refuse_host():
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            nonce = secrets.token_urlsafe(16)
            csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
                   "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
            self._send(200, self.page.render_page(nonce), "text/html; charset=utf-8",
                       {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})
        elif path == "/state":
            self._json(200, self.page.state.snapshot())
        elif path == "/events":
            self._stream()
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self._refuse_host():
            return
        origin = self.headers.get("Origin")
        if origin is not None and not self.page.host_allowed(urlsplit(origin).netloc) or \
                not hmac.compare_digest(self.headers.get(TOKEN_HEADER, ""), self.page.token):
            self._json(403, {"error": "refused: not this station's page"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 4096)) or b"{}") if length else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self._json(400, {"error": "the body must be a JSON object"})
            return
        action = urlsplit(self.path).path
        station = self.page.station
        try:
            if action in ("/api/pause", "/api/resume"):
                slot = body.get("slot")
                if not isinstance(slot, str):
                    raise InputError("give the slot: {\"slot\": LABEL}", field="slot")
                (station.pause if action == "/api/pause" else station.resume)(slot)
            elif action == "/api/stop":
                station.stop(abort=False)
            else:
                self._json(404, {"error": "no such action"})
                return
        except InputError as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"ok": True})

    def _stream(self) -> None:
        page = self.page
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.close_connection = True
        page._stream_opened(1)
        try:
            self.wfile.write(b"retry: 1000\n\n")
            version = -1
            while True:
                ended = page.closing.is_set()
                if page.state.version != version:
                    snap = page.state.snapshot()
                    version = snap["version"]
                    snap["token"] = page.token
                    self.wfile.write(b"event: state\ndata: " + json.dumps(snap).encode() + b"\n\n")
                    self.wfile.flush()
                if ended:
                    return
                time.sleep(PUSH_INTERVAL_S)
                if page.state.wait(version, KEEPALIVE_S) == version and not page.closing.is_set():
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            return
        finally:
            page._stream_opened(-1)


@contextmanager
def live_page(station: StationControls, url: str | None, *, station_id: str, recipe: str,
              ports: list[str]) -> Iterator[LivePage | None]:
    """While the block runs: the station page at ``url`` (None: no page), fed by ``station.bus``.

    The page's address is announced on the event stream (``page`` event; the console prints it).
    """
    if url is None:
        yield None
        return
    state = LiveState(station_id=station_id, recipe=recipe, ports=ports)
    page = LivePage(station, state, url)
    station.bus.subscribe(state)
    try:
        page.start()
        station.bus.emit(Event(STATION, None, "page", "ok", detail=page.url))
        yield page
    finally:
        station.bus.unsubscribe(state)
        page.close()


__all__ = ["LivePage", "LiveState", "live_page", "parse_ui_url", "StationControls", "TOKEN_HEADER", "DEFAULT_PORT"]
