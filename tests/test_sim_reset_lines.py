"""The virtual module's UART0 behind ``rfc2217://`` with a devkit's DTR/RTS auto-reset circuit,
driven by the real esptool API (its reset sequences, esptool/reset.py + esp_pylib.serial_reset):

* the flasher stub keeps running across reconnects until a reset: ``--before no-reset`` finds
  "Stub flasher is already running" (esptool ``TestStubReuse``); ``--after no-reset`` hands back to
  the ROM loader (esptool's "Staying in bootloader"; ``no-reset-stub`` is the mode that keeps the
  stub); a DTR/RTS reset brings the ROM back;
* ``--after hard-reset`` (EN pulsed with the strap high) boots the flashed app: the AT port,
  silent in download mode, prints its boot output and answers;
* the circuit's truth table (EN low only for RTS without DTR, strap low only for DTR without RTS).
"""

from __future__ import annotations

import socket

import pytest
import serial
from esptool import cmds
from esptool.targets import ESP32C2ROM

from atfab.link.transport import port_for_url
from atfab.sim.module import VirtualModule
from atfab.sim.reset_circuit import en_low, strap_low
from tests.conftest import run_with_timeout
from tests.sim_at_support import StandInFirmware, build_flash

T = 60


def _connect(url: str, before: str):
    """esptool's connect (detect_chip) with ``before``; returns (esp, stub already running?).

    The port is atfab's (as the flasher opens it): pyserial's RFC 2217 client with line settings
    negotiated only when they change; DTR/RTS changes still wait for the server's answer.
    """
    port = port_for_url(url, exclusive=True, baudrate=115200)
    port.open()
    esp = cmds.detect_chip(port, connect_mode=before)
    return esp, esp.sync_stub_detected


def test_circuit_truth_table():
    #       (dtr,   rts)  -> EN low, strap low
    assert [(en_low(d, r), strap_low(d, r)) for d, r in
            [(False, False), (True, True), (False, True), (True, False)]] == \
        [(False, False), (False, False), (True, False), (False, True)]


def test_stub_survives_a_reconnect_and_is_gone_after_a_reset():
    m = VirtualModule(chip="esp32c2", seed="reset-lines", reset_lines=True, firmware_factory=StandInFirmware).start()
    try:
        def work():
            esp, running = _connect(m.rfc2217_url, "default-reset")     # ClassicReset into the ROM
            assert not running and m.state == "download"
            stub = cmds.run_stub(esp)
            jedec = stub.flash_id()
            esp._port.close()                                          # --after no-reset-stub
            esp, running = _connect(m.rfc2217_url, "no-reset")
            assert running                                             # "Stub flasher is already running"
            assert cmds.run_stub(esp).flash_id() == jedec
            esp._port.close()
            port = port_for_url(m.rfc2217_url, exclusive=True, baudrate=115200)   # no-reset-no-sync: no
            port.open()                                                        # sync, so esptool uploads
            esp = ESP32C2ROM(port)                                             # the stub to the running
            esp.connect("no-reset-no-sync")                                    # one, which restarts
            stub = cmds.run_stub(esp)
            assert stub.flash_id() == jedec
            cmds.reset_chip(stub, "no-reset")          # --after no-reset: the stub hands back to the ROM
            esp._port.close()
            esp, running = _connect(m.rfc2217_url, "no-reset")
            assert not running                         # the ROM answers (no reset happened)
            cmds.run_stub(esp)
            esp._port.close()
            esp, running = _connect(m.rfc2217_url, "default-reset")     # DTR/RTS reset: the ROM again
            esp._port.close()
            return running
        assert run_with_timeout(work, T) is False
        assert m._uart0.circuit.download_boots == 2
    finally:
        m.stop()


def _at_lines(sock: socket.socket, want: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    got = b""
    while want not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def test_hard_reset_boots_the_flashed_app():
    m = VirtualModule(chip="esp32c2", seed="reset-lines-app", reset_lines=True, flash=build_flash()).start()
    host, port = m.at_url.removeprefix("socket://").rsplit(":", 1)
    at = socket.create_connection((host, int(port)), timeout=5)
    try:
        boots = m.boot_count

        def work():
            esp, _ = _connect(m.rfc2217_url, "default-reset")
            assert m.state == "download"
            at.sendall(b"AT\r\n")                                     # the chip is in the ROM: silence
            esp = cmds.run_stub(esp)
            assert esp.flash_md5sum(0, 4096)
            cmds.reset_chip(esp, "hard-reset")                        # EN pulsed, strap high
            esp._port.close()
        run_with_timeout(work, T)
        assert _at_lines(at, b"ready\r\n").endswith(b"\r\nready\r\n")   # boot output only: no OK for the AT
        at.sendall(b"AT\r\n")
        assert _at_lines(at, b"OK\r\n").endswith(b"OK\r\n")
        assert m.state == "at" and m.boot_count == boots + 1 and m._uart0.mode == "flash"
    finally:
        at.close()
        m.stop()


@pytest.mark.parametrize("chip", ["esp32"])
def test_socket_endpoint_is_still_a_power_on_per_connection(chip):
    """``socket://`` keeps its meaning beside the reset lines: each connection is the ROM, fresh."""
    m = VirtualModule(chip=chip, seed="reset-lines-socket", reset_lines=True, firmware_factory=StandInFirmware).start()
    try:
        def work():
            esp = cmds.run_stub(cmds.detect_chip(m.flash_url))
            esp._port.close()
            esp, running = _connect(m.flash_url, "no-reset")
            esp._port.close()
            return running
        assert run_with_timeout(work, T) is False
        assert m.wait_state("at", 10)                                 # the connection's end boots it
    finally:
        m.stop()


def test_watchdog_reset_shows_the_rom_loop_on_uart0():
    """esptool's TestReset::test_watchdog_reset with a port that does not stall between commands:
    the bootloader erased, ``watchdog-reset`` boots from flash and UART0 carries the ROM's
    ``invalid header`` loop at 74880 baud, read at 115200 as the bytes esptool's test expects."""
    m = VirtualModule(chip="esp32c2", seed="reset-lines-wdt", reset_lines=True, flash=build_flash()).start()
    try:
        def work():
            esp, _ = _connect(m.rfc2217_url, "default-reset")
            esp = cmds.run_stub(esp)
            cmds.erase_region(esp, 0x0, 0x4000)
            cmds.reset_chip(esp, "watchdog-reset")
            esp._port.close()
            with serial.serial_for_url(m.rfc2217_url, 115200, rtscts=True) as p:   # as verify_output opens it
                p.timeout = 5
                return p.read(200)
        out = run_with_timeout(work, T)
        assert b"\x02b\xe2n\x9e\xe0p\x12n\x9c\x0cn" in out                # esptool: "Mangled bytes [...] C2 26 MHz"
        assert m._uart0.mode == "flash" and m.state == "at"
    finally:
        m.stop()


def test_atfab_flasher_over_reset_lines_boots_what_it_flashed(tmp_path):
    """atfab's own Flasher (esptool API, default-reset / hard-reset) on a blank module over
    rfc2217://: the ROM is reached by DTR/RTS, the hard reset after the write boots the flashed AT
    firmware from flash (no socket close involved), and the AT port answers."""
    from atfab.image.build import build
    from tests.flash_support import flash_url

    out = tmp_path / "unit"
    build("esp32c2-4mb", out, synthetic_firmware="v3.3.0.0")
    m = VirtualModule(chip="esp32c2", seed="reset-lines-flasher", reset_lines=True).start()
    host, port = m.at_url.removeprefix("socket://").rsplit(":", 1)
    try:
        result = flash_url(m.rfc2217_url, out)
        assert result.stub and m._uart0.circuit.download_boots == 1
        assert m.wait_state("at", 10) and m._uart0.mode == "flash"
        with socket.create_connection((host, int(port)), timeout=5) as at:
            at.sendall(b"AT\r\n")
            assert _at_lines(at, b"OK\r\n").endswith(b"OK\r\n")
    finally:
        m.stop()


def test_classic_reset_prints_the_download_boot_message():
    """esptool's own ClassicReset sequence (esp_pylib.serial_reset) on an ESP32: the ROM prints its
    boot mode message at 115200, which esptool's boot-log check reads as download mode."""
    import re

    from esp_pylib.serial_reset import classic_bootloader_reset, hard_reset

    m = VirtualModule(chip="esp32", seed="reset-lines-log", reset_lines=True, firmware_factory=StandInFirmware).start()
    try:
        def work():
            port = port_for_url(m.rfc2217_url, baudrate=115200, timeout=0.5)
            port.open()
            try:
                classic_bootloader_reset(port)
                download = port.read(200)
                hard_reset(port)
                flash = port.read(200)
            finally:
                port.close()
            return download, flash
        download, flash = run_with_timeout(work, T)
        found = re.search(rb"boot:(0x[0-9a-fA-F]+)(.*waiting for download)?", download, re.DOTALL)  # esptool loader.py
        assert found and found.group(1) == b"0x3" and found.group(2)
        assert b"boot:0x13 (SPI_FAST_FLASH_BOOT)" in flash and b"waiting for download" not in flash
        assert m.state == "at"
    finally:
        m.stop()
