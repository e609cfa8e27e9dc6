"""The virtual module's AT+SYSFLASH write when the host's link drops inside the payload: like the core reading
its UART (ground truth §5: exactly <length> bytes are read, then written), the command keeps waiting, takes
the next link's first bytes as the rest of its payload, writes and answers; and AtClient.settle ends such a
write with 0xFF bytes (no NOR bit changes) before a contact's first command."""

from __future__ import annotations

import socket

from atfab.image.mfg_nvs import UnitContent
from atfab.image.profiles import load_profile
from atfab.link.at.client import AtClient
from atfab.link.transport import open_port
from atfab.sim.module import VirtualModule
from tests.conftest import run_with_timeout
from tests.g2_fleet_support import flash_legacy_unit


def _conn(url: str) -> socket.socket:
    host, port = url.removeprefix("socket://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.settimeout(5)
    return s


def _until(s: socket.socket, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    return got


def test_cut_sysflash_write_takes_the_next_links_bytes_then_settle_ends_it():
    profile = load_profile("esp32-at-v2")
    vm = VirtualModule(chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware).start()
    try:
        flash_legacy_unit(vm, profile, UnitContent(factory_param=dict(profile.factory_param), pki={}, ble_rows=[]))
        fatfs = profile.at_customize.find("fatfs").offset        # erased by flash_legacy_unit
        s = _conn(vm.at_url)
        s.sendall(b'AT+SYSFLASH=1,"fatfs",0,8\r\n')
        _until(s, b">")
        s.sendall(b"ABC")
        s.close()                                                 # the host died inside the payload
        s = _conn(vm.at_url)
        s.sendall(b"DEFGH")                                       # the next contact completes it
        assert b"OK" in _until(s, b"OK")
        s.close()
        assert vm.flash.read(fatfs, 8) == b"ABCDEFGH"

        s = _conn(vm.at_url)
        s.sendall(b'AT+SYSFLASH=1,"fatfs",8,200\r\n')
        _until(s, b">")
        s.sendall(b"0123")
        s.close()
        with AtClient(open_port(vm.at_url, None), firmware=profile.firmware, timeout=0.5) as client:
            assert run_with_timeout(client.settle, 30, 4096) is True       # it had to end a pending write
            assert run_with_timeout(client.settle, 30, 4096) is False      # and now the module answers
            probe = client.transcript[0].text.encode() + b"\r\n"         # the silent probe became data too
            got = client.sysflash_read("fatfs", 0, 208)
        assert got == b"ABCDEFGH0123" + probe + b"\xff" * (196 - len(probe))
    finally:
        vm.stop()
