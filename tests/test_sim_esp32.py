"""The virtual ESP32 (classic, ESP32-D0WD-V3 on a WROOM-32) driven by the real esptool 5.6.

Detection without GET_SECURITY_INFO (magic word), eFuse BLK0 MAC + CRC, description, crystal,
stub and ROM-only write / read-back / verify / erase, the ROM's baud-rate compensation, a flash
set built for esp32-wroom-32 through atfab's Flasher, and ``atfab sim --module-profile``.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from esptool import cmds
from esptool.util import FatalError

from atfab.link.at.client import AtClient
from atfab.image.build import build
from atfab.image.flash_set import load_flash_set
from atfab.image.profiles import load_profile
from atfab.sim import rom_loader
from atfab.sim.module import VirtualModule
from atfab.sim.slip import SlipDecoder, encode
from atfab.link.transport import open_port, port_for_url
from tests.conftest import run_with_timeout
from tests.flash_support import actions, flash_url
from tests.sim_at_support import StandInFirmware

MB = 1024 * 1024
T = 30            # seconds any single esptool conversation may take before the test fails as hung
MAGIC_REG = 0x40001000


@pytest.fixture
def esp32():
    m = VirtualModule(chip="esp32", seed="esp32-tests", firmware_factory=StandInFirmware).start()
    yield m
    m.stop()


def ended_session(module: VirtualModule):
    """Stats of the flash session the test just closed (the module notices the close and boots)."""
    assert module.wait_state("at", 10), "the download session did not end"
    return module.last_session


def random_image(size: int, seed: int) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = 0            # not an app image header: esptool would patch it
    return bytes(data)


def _espefuse_mac_crc(mac: bytes) -> int:
    with warnings.catch_warnings():             # espefuse's CLI module warns about click on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from espefuse.efuse.esp32.fields import EfuseMacField
    return EfuseMacField.calc_crc(mac)


def test_detect_mac_description_and_identity(esp32):
    def work():
        esp = cmds.detect_chip(esp32.flash_url)
        try:
            with pytest.raises(FatalError):                 # ESP32 ROM: no GET_SECURITY_INFO
                esp.get_security_info(cache=False)
            words = [esp.read_efuse(i) for i in range(7)]
            found = (esp.CHIP_NAME, esp.get_chip_description(), esp.get_chip_features(), bytes(esp.read_mac()),
                     esp.get_crystal_freq(), esp.read_reg(MAGIC_REG), esp.get_chip_spi_pads(),
                     esp.get_flash_encryption_enabled(), esp.get_secure_boot_enabled())
            stub = cmds.run_stub(esp)
            cmds.attach_flash(stub)
            return found, words, stub.IS_STUB, stub.get_crystal_freq(), stub.flash_id(), cmds.detect_flash_size(stub)
        finally:
            esp._port.close()

    found, words, is_stub, stub_xtal, flash_id, size = run_with_timeout(work, T)
    name, desc, features, mac, xtal, magic, pads, encrypted, secure = found
    assert (name, desc) == ("ESP32", "ESP32-D0WD-V3 (revision v3.0)")
    assert {"Wi-Fi", "BT", "240MHz", "Coding Scheme None"} <= set(features)
    assert mac == esp32.mac
    # BLK0 word 2 [23:16] holds the MAC CRC the way espefuse checks it (its own CRC-8 code)
    assert (words[2] >> 16) & 0xFF == _espefuse_mac_crc(esp32.mac)
    assert (xtal, stub_xtal) == (40, 40)
    assert magic == 0x00F01D83
    assert pads == (0, 0, 0, 0, 0) and not encrypted and not secure
    assert is_stub and flash_id == 0x1640C8 and size == "4MB"
    assert any("0x14" in e for e in ended_session(esp32).errors)


def _frames(sock: socket.socket, count: int) -> list[bytes]:
    dec, got = SlipDecoder(), []
    while len(got) < count:
        data = sock.recv(4096)
        assert data, "the module closed the connection"
        got += [f for f in dec.feed(data) if f is not None]
    return got


def test_rom_refuses_security_info_like_the_esp32_rom(esp32):
    """On the wire: 8 error replies (status 01 05) whose opcode is not the request's, as esptool
    expects of the ESP32 ROM; a FLASH_BEGIN with the 5th "encrypted" word is refused."""
    host, port = esp32.flash_url.removeprefix("socket://").split(":")

    def work():
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(encode(struct.pack("<BBHI", 0, rom_loader.GET_SECURITY_INFO, 0, 0)))
            unsupported = _frames(s, 8)
            s.sendall(encode(struct.pack("<BBHI", 0, rom_loader.FLASH_BEGIN, 20, 0) + bytes(20)))
            (begin,) = _frames(s, 1)
            return unsupported, begin

    unsupported, begin = run_with_timeout(work, T)
    assert unsupported == [bytes.fromhex("0100040000000000" "01050000")] * 8
    assert begin[:2] == bytes([1, rom_loader.FLASH_BEGIN]) and begin[8:10] == b"\x01\x05"


def test_stub_write_read_back_verify_erase(esp32):
    img = random_image(256 * 1024, 31)

    def work():
        port = port_for_url(esp32.flash_url, timeout=5)
        port.open()
        try:
            esp = cmds.run_stub(cmds.detect_chip(port))
            esp.change_baud(921600)
            cmds.attach_flash(esp)
            cmds.write_flash(esp, [(0x10000, img)], no_progress=True)
            back = cmds.read_flash(esp, 0x10000, len(img), no_progress=True)
            cmds.verify_flash(esp, [(0x10000, img)])
            cmds.erase_region(esp, 0x20000, 0x2000)
            return back, esp.flash_md5sum(0x20000, 0x2000)
        finally:
            port.close()

    back, md5 = run_with_timeout(work, T)
    assert back == img
    assert md5 == hashlib.md5(b"\xff" * 0x2000).hexdigest()
    assert esp32.flash.read(0x10000, 0x10000) == img[:0x10000]
    assert esp32.flash.read(0x20000, 0x2000) == b"\xff" * 0x2000
    assert esp32.flash.read(0x22000, 0x1000) == img[0x12000:0x13000]
    stats = ended_session(esp32)
    assert stats.stub_started and stats.baud_changes[-1][1] == 921600


def test_rom_only_write_read_verify_erase(esp32):
    img = random_image(256 * 1024, 32)
    packed = (b"\x00" * 4096 + random.Random(33).randbytes(4096)) * 16      # 128 KB, compressible

    def work():
        esp = cmds.detect_chip(esp32.flash_url)
        try:
            assert not esp.IS_STUB
            esp.change_baud(460800)          # ESP32ROM sends baud * ROM crystal estimate // 40 MHz
            cmds.attach_flash(esp)
            cmds.write_flash(esp, [(0x10000, img)], compress=False, no_progress=True)    # FLASH_DATA
            cmds.write_flash(esp, [(0x300000, packed)], no_progress=True)   # FLASH_DEFL, beyond 2 MB
            back = cmds.read_flash(esp, 0x10000, 2048, no_progress=True)        # READ_FLASH_SLOW
            cmds.verify_flash(esp, [(0x10000, img), (0x300000, packed)])
            cmds.erase_region(esp, 0x11000, 0x1000)                             # via FLASH_BEGIN
            return back, bytes(esp.read_mac()), esp.flash_md5sum(0x10000, 0x1000)
        finally:
            esp._port.close()

    back, mac, md5 = run_with_timeout(work, T)
    assert back == img[:2048] and mac == esp32.mac
    assert md5 == hashlib.md5(img[:0x1000]).hexdigest()
    assert esp32.flash.read(0x11000, 0x1000) == b"\xff" * 0x1000
    assert esp32.flash.read(0x12000, 0x1000) == img[0x2000:0x3000]
    assert esp32.flash.read(0x300000, len(packed)) == packed
    stats = ended_session(esp32)
    assert not stats.stub_started
    # the ROM divides its own 40.04 MHz estimate; esptool compensated, so the line runs at 460800
    assert stats.baud_changes == [(stats.baud_changes[0][0], 460800)]


@pytest.fixture(scope="module")
def wroom_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("esp32") / "unit"
    build("esp32-wroom-32", out, synthetic_firmware="v4.1.0.0")
    return out


def test_flasher_writes_a_wroom32_set_and_the_module_boots_it(wroom_set):
    profile = load_profile("esp32-wroom-32")
    module = VirtualModule(chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware,
                           seed="wroom").start()
    try:
        result = flash_url(module.flash_url, wroom_set)
        fs = load_flash_set(wroom_set)
        for region in fs.regions:
            assert module.flash.read(region.offset, len(region.data)) == region.data, region.name
        boot = next(r for r in fs.regions if r.name == "bootloader.bin")
        assert boot.offset == 0x1000
        assert actions(result)["esp-at.bin"] == "written"
        assert (result.chip.chip, result.chip.description) == ("ESP32", "ESP32-D0WD-V3 (revision v3.0)")
        assert result.chip.mac == module.mac.hex(":") and result.stub and result.flash_size == "4MB"

        def gmr():
            assert module.wait_state("at", 10)
            with AtClient(open_port(module.at_url, env={}), firmware=module.firmware) as client:
                return client.gmr()

        info = run_with_timeout(gmr, T)
        assert (info.chip, info.bin_version, info.module_name) == ("ESP32", "v4.1.0.0", "WROOM-32")
    finally:
        module.stop()


def test_atfab_sim_serves_esp32_wroom32_modules():
    proc = subprocess.Popen([sys.executable, "-m", "atfab.cli", "sim", "--module-profile", "esp32-wroom-32",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (row,) = json.loads(run_with_timeout(proc.stdout.readline, 15))
        assert (row["chip"], row["chip_revision"], row["flash_size"]) == ("esp32", "v3.0", 4 * MB)
        r = subprocess.run([sys.executable, "-m", "esptool", "--port", row["flash_url"], "read-mac"],
                           capture_output=True, text=True, timeout=T)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ESP32-D0WD-V3 (revision v3.0)" in r.stdout and row["mac"] in r.stdout
        # the same UART0 with reset lines (driven by esptool in tests/test_sim_reset_lines.py)
        assert row["rfc2217_url"].startswith("rfc2217://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        finally:
            proc.kill()
    assert rc == 0, proc.stderr.read()
