"""The AT firmware inside a real VirtualModule: TCP endpoint, download mode, power loss, pacing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from atfab.sim.module import VirtualModule
from tests.sim_at_support import TIMEOUT, SocketReader, build_flash, c2_profile, connect_url

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"


class AtPort(SocketReader):
    """A raw TCP connection to a module's AT endpoint; a read that finds it closed raises
    ConnectionResetError (the power-loss test expects exactly that)."""

    def __init__(self, url: str) -> None:
        super().__init__(connect_url(url), on_close=ConnectionResetError)

    def cmd(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read_until(OK, ERROR)

    def silent(self, seconds: float = 0.2) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(100) == b"" and False
        except socket.timeout:
            return True


@contextmanager
def flashed_port(**kwargs) -> Iterator[tuple[VirtualModule, AtPort]]:
    """A running module with the default factory flash and an AT port on it; both closed after."""
    with VirtualModule(flash=build_flash(c2_profile()), **kwargs) as module:
        port = AtPort(module.at_url)
        try:
            yield module, port
        finally:
            port.close()


def test_blank_module_at_port_is_silent(virtual_module):
    port = AtPort(virtual_module.at_url)
    try:
        port.sock.sendall(b"AT\r\n")
        assert port.silent()
    finally:
        port.close()


def test_module_answers_from_flash():
    with flashed_port() as (module, port):
        assert module.boot_error is None
        assert port.cmd("ATE0") == b"ATE0\r\n" + OK
        assert port.cmd("AT+GMR").endswith(b"Bin version:v3.3.0.0(ESP32C2-4MB)\r\n" + OK)
        assert port.cmd("AT+CIPSTAMAC?") == f'+CIPSTAMAC:"{module.mac.hex(":")}"\r\n'.encode() + OK
        port.sock.sendall(b"AT+RST\r\n")
        assert port.read_until(b"ready\r\n") == OK + b"\r\nready\r\n"


def test_download_mode_and_back():
    with flashed_port() as (module, port):
        assert port.cmd("AT+RST=1") == b"AT+RST=1\r\n" + OK
        assert module.wait_state("download", TIMEOUT)
        port.sock.sendall(b"AT\r\n")
        assert port.silent()
        module.power_cycle()
        assert port.read_until(b"ready\r\n") == b"\r\nready\r\n"
        assert port.cmd("AT") == b"AT\r\n" + OK


def test_power_loss_drops_the_link_between_writes():
    with flashed_port() as (module, port):
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
        again = AtPort(module.at_url)
        try:
            assert again.cmd("AT+RFPOWER?") == b"AT+RFPOWER?\r\n+RFPOWER:60,0,0,0\r\n" + OK   # rebooted, write kept
        finally:
            again.close()


def test_paced_uart_switch():
    with flashed_port(baud=115200) as (module, port):
        assert port.cmd("ATE0").endswith(OK)
        assert port.cmd("AT+UART_CUR=921600,8,1,0,0") == OK
        assert port.cmd("AT+UART_CUR?") == b"+UART_CUR:922190,8,1,0,0\r\n" + OK
