"""Test support for the virtual AT firmware: a fake module host, flash images built with the real
builders, and a loopback AT session with timeouts on every read."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field, replace

from atfab.image.appimage import default_at_core, make_app_image, make_bootloader_image
from atfab.image.build import synthetic_firmware_files
from atfab.core.firmware import FirmwareProfile
from atfab.image.gatt import cfg_strings, load_gatts_csv
from atfab.image.mfg_nvs import UnitContent, build_mfg_nvs
from atfab.image.partition_table import encode
from atfab.image.profiles import load_profile
from atfab.sim.at_firmware import AtFirmware
from atfab.sim.faults import FaultPlan
from atfab.sim.flash import NorFlash
from atfab.sim.link import Link, LinkClosed
from tests.paths import ESP_AT

REF = ESP_AT
GATTS_CSV = REF / "components/customized_partitions/raw_data/ble_data/gatts_data.csv"
MAC = bytes.fromhex("24d7eb0a1b2c")
TIMEOUT = 5.0


@dataclass
class FakeHost:
    """The ModuleHost protocol, recording what the firmware asked of it."""

    flash: NorFlash
    firmware: FirmwareProfile
    mac: bytes = MAC
    chip: str = "esp32c2"
    chip_revision: tuple[int, int] = (1, 2)
    faults: FaultPlan = field(default_factory=FaultPlan)
    state_token: int = 1
    bauds: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def enter_download_mode(self) -> None:
        self.events.append("download")
        self.state_token += 1

    def power_loss(self) -> None:
        self.events.append("power_loss")
        self.state_token += 1

    def set_at_baud(self, baud: int) -> None:
        self.bauds.append(baud)


def c2_profile():
    return load_profile("esp32c2-4mb")


def default_content(profile, **factory_overrides) -> UnitContent:
    fp = dict(profile.factory_param)
    fp.update(factory_overrides)
    rows = cfg_strings(load_gatts_csv(GATTS_CSV))
    return UnitContent(factory_param=fp, ble_rows=rows)


def build_flash(profile=None, *, content: UnitContent | None = None, app: bool = True, mfg: bool = True,
                app_version: str = "v3.3.0.0", release: str | None = None, bootloader: bool = True) -> NorFlash:
    """A 4 MB flash laid out like a factory-flashed ESP32-C2 module.

    ``release``: the app is atfab's synthetic build of the module at that esp-at release (core
    commit and command-set markers of the release); else a v3.3.0.0-core image without markers.
    """
    profile = profile or c2_profile()
    flash = NorFlash(profile.flash_size)
    if bootloader:
        flash.program(profile.bootloader_offset, make_bootloader_image(chip=profile.chip))
    flash.program(profile.partition_table_offset, encode(profile.primary, md5=False))
    flash.program(profile.at_customize_offset, encode(profile.at_customize, md5=True))
    if mfg:
        content = content or default_content(profile)
        image = build_mfg_nvs(content, profile.mfg_nvs.size, firmware=profile.firmware).image
        flash.program(profile.mfg_nvs.offset, image)
    if app and release:
        offset, data = synthetic_firmware_files(profile, version=release)["app"]
        flash.program(offset, data)
    elif app:
        flash.program(profile.app_offset, make_app_image(
            chip=profile.chip, version=app_version, idf_ver="v5.0.6-dirty",
            at_core=default_at_core("3.3.0.0", "ESP32C2")))
    return flash


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (Link sets TCP_NODELAY, which socketpair() lacks)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(TIMEOUT)
        client = socket.create_connection(srv.getsockname(), timeout=TIMEOUT)
        peer, _ = srv.accept()
    return client, peer


def connect_url(url: str) -> socket.socket:
    """A TCP connection to a module endpoint given as ``socket://host:port``."""
    host, port = url.removeprefix("socket://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=TIMEOUT)


class SocketReader:
    """A socket with a receive buffer; every read is bounded by a timeout.

    A read that times out raises AssertionError; one that finds the connection closed raises
    ``on_close`` (AssertionError unless a test expects the close and asks for another type).
    """

    def __init__(self, sock: socket.socket, *, on_close: type[Exception] = AssertionError) -> None:
        self.sock = sock
        self.buf = b""
        self.on_close = on_close

    def _fill(self, deadline: float, waiting: str) -> None:
        """Receive one chunk into the buffer before ``deadline`` (a socket timeout just returns)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timeout {waiting}; got {self.buf!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        if not chunk:
            raise self.on_close(f"connection closed {waiting}; got {self.buf!r}")
        self.buf += chunk

    def read_until(self, *ends: bytes, timeout: float = TIMEOUT) -> bytes:
        """Bytes up to and including the first of ``ends``; the rest stays buffered."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [(self.buf.find(e), e) for e in ends if e in self.buf]
            if hits:
                pos, e = min(hits)
                out, self.buf = self.buf[:pos + len(e)], self.buf[pos + len(e):]
                return out
            self._fill(deadline, f"waiting for {ends!r}")

    def read_exact(self, n: int, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline, f"reading {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def quiet(self, seconds: float = 0.15) -> bytes:
        """The buffer plus whatever arrives within ``seconds`` (used to assert silence); a close ends it."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.sock.close()


class Session(SocketReader):
    """One AT host connected to an AtFirmware over a socketpair; every read has a timeout."""

    def __init__(self, host: FakeHost, *, boot: bool = True) -> None:
        self.host = host
        self.fw = AtFirmware(host)
        self.boot_out = self.fw.boot() if boot else b""
        sock, peer = tcp_pair()
        super().__init__(sock)
        self.link = Link(peer)
        self.result: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result.append(self.fw.serve(self.link, self.host.state_token))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str | bytes, timeout: float = TIMEOUT) -> bytes:
        """Send a command and return everything up to its final OK/ERROR (inclusive)."""
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.read_until(b"\r\nOK\r\n", b"\r\nERROR\r\n", timeout=timeout)

    def close(self) -> str | None:
        self.sock.close()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "serve() did not return after the link closed"
        assert self.fw.errors == [], f"firmware handler errors: {self.fw.errors!r}"
        return self.result[0] if self.result else None

    def wait_result(self, timeout: float = TIMEOUT) -> str | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "serve() still running"
        return self.result[0] if self.result else None


def changed(fw: FirmwareProfile, **changes) -> FirmwareProfile:
    """``fw`` with fields replaced; ``ble``/``wifi`` add or drop that command set."""
    sets = {k: changes.pop(k) for k in ("ble", "wifi") if k in changes}
    return replace(fw.with_overrides(sets), **changes)


def new_host(flash: NorFlash | None = None, firmware: FirmwareProfile | None = None, **fw_changes) -> FakeHost:
    profile = c2_profile()
    fw = firmware or profile.for_release("v3.3.0.0").firmware      # the build build_flash() flashes
    if fw_changes:
        fw = changed(fw, **fw_changes)
    return FakeHost(flash=flash or build_flash(profile), firmware=fw)


class StandInFirmware:
    """Minimal AtFirmware for these tests: boots with 'ready', answers OK, AT+RST=1 -> download."""

    def __init__(self, host) -> None:
        self.host = host

    def boot(self) -> bytes:
        return b"\r\nready\r\n"

    def serve(self, link, token: int) -> str:
        buf = b""
        while True:
            if self.host.state_token != token:
                return "state"
            try:
                buf += link.recv(4096, timeout=0.05)
            except LinkClosed:
                return "closed"
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                link.send(b"\r\nOK\r\n")
                if line == b"AT+RST=1":
                    self.host.enter_download_mode()
