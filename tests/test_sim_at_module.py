"""The AT firmware inside a real VirtualModule: TCP endpoint, download mode, power loss, pacing."""

from __future__ import annotations

import socket
import time

from atfab.sim.module import VirtualModule
from tests.sim_at_support import TIMEOUT, build_flash, c2_profile

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


class AtPort:
    """A raw TCP connection to a module's AT endpoint; every read has a timeout."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self.buf = b""

    def read_until(self, *ends: bytes, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            hits = [(self.buf.find(e), e) for e in ends if e in self.buf]
            if hits:
                pos, e = min(hits)
                out, self.buf = self.buf[:pos + len(e)], self.buf[pos + len(e):]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timeout waiting for {ends!r}; got {self.buf!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionResetError(f"closed; got {self.buf!r}")
            self.buf += chunk

    def cmd(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read_until(OK, ERROR)

    def silent(self, seconds: float = 0.2) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(100) == b"" and False
        except socket.timeout:
            return True

    def close(self) -> None:
        self.sock.close()


def flashed_module(**kwargs) -> VirtualModule:
    return VirtualModule(flash=build_flash(c2_profile()), **kwargs).start()


def test_blank_module_at_port_is_silent(virtual_module):
    port = AtPort(virtual_module.at_url)
    try:
        port.sock.sendall(b"AT\r\n")
        assert port.silent()
    finally:
        port.close()


def test_module_answers_from_flash():
    module = flashed_module()
    port = AtPort(module.at_url)
    try:
        assert module.boot_error is None
        assert port.cmd("ATE0") == b"ATE0\r\n" + OK
        assert port.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-4MB)\r\n" + OK)
        assert port.cmd("AT+CIPSTAMAC?") == f'+CIPSTAMAC:"{module.mac.hex(":")}"\r\n'.encode() + OK
        port.sock.sendall(b"AT+RST\r\n")
        assert port.read_until(b"ready\r\n") == OK + b"\r\nready\r\n"
    finally:
        port.close()
        module.stop()


def test_download_mode_and_back():
    module = flashed_module()
    port = AtPort(module.at_url)
    try:
        assert port.cmd("AT+RST=1") == b"AT+RST=1\r\n" + OK
        assert module.wait_state("download", TIMEOUT)
        port.sock.sendall(b"AT\r\n")
        assert port.silent()
        module.power_cycle()
        assert port.read_until(b"ready\r\n") == b"\r\nready\r\n"
        assert port.cmd("AT") == b"AT\r\n" + OK
    finally:
        port.close()
        module.stop()


def test_power_loss_drops_the_link_between_writes():
    module = flashed_module()
    port = AtPort(module.at_url)
    try:
        assert port.cmd("ATE0").endswith(OK)
        module.faults.power_loss_after_writes = 1
        port.sock.sendall(b'AT+SYSMFG=2,"factory_param","max_tx_power",2,60\r\n')
        try:
            got = port.read_until(OK, ERROR, timeout=2)
        except ConnectionResetError:
            got = b""
        assert got == b""
        port.close()
        assert module.wait_state("at", TIMEOUT)
        port = AtPort(module.at_url)
        assert port.cmd("AT+RFPOWER?") == b"AT+RFPOWER?\r\n+RFPOWER:60\r\n" + OK   # rebooted, write kept
    finally:
        port.close()
        module.stop()


def test_paced_uart_switch():
    module = flashed_module(baud=115200)
    port = AtPort(module.at_url)
    try:
        assert port.cmd("ATE0").endswith(OK)
        assert port.cmd("AT+UART_CUR=921600,8,1,0,0") == OK
        assert port.cmd("AT+UART_CUR?") == b"+UART_CUR:922190,8,1,0,0\r\n" + OK
    finally:
        port.close()
        module.stop()
