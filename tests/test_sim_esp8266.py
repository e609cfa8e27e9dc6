"""The virtual ESP8266 (ESP8266EX, 512 KB flash) driven by the real esptool 5.6.

Detection by the magic word (no GET_SECURITY_INFO), the OTP MAC words, the 26 MHz crystal from a
UART divider taken from 52 MHz, the SPI flash id through the ESP8266 SPI layout (bit lengths in
USR1), a ROM that has only SYNC/REG/MEM/FLASH commands (2-byte status), the ROM's FLASH_BEGIN
erase overshoot that esptool's ``get_erase_size`` makes up for, and the stub (compressed writes,
MD5, reads, baud change).
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct

import pytest
from esptool import cmds
from esptool.util import FatalError

from atfab.sim import rom_loader
from atfab.sim.module import VirtualModule
from atfab.sim.slip import SlipDecoder, encode
from atfab.link.transport import port_for_url
from tests.conftest import run_with_timeout
from tests.sim_at_support import StandInFirmware

KB = 1024
T = 30
MAGIC_REG = 0x40001000


@pytest.fixture
def esp8266():
    m = VirtualModule(chip="esp8266", flash_size=512 * KB, seed="esp8266-tests",
                      firmware_factory=StandInFirmware).start()
    yield m
    m.stop()


def ended_session(module: VirtualModule):
    assert module.wait_state("at", 10), "the download session did not end"
    return module.last_session


def random_image(size: int, seed: int) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = 0            # not an image header: esptool would patch it
    return bytes(data)


def test_detect_mac_description_crystal_and_flash_id(esp8266):
    def work():
        esp = cmds.detect_chip(esp8266.flash_url)
        try:
            found = (esp.CHIP_NAME, esp.get_chip_description(), esp.get_chip_features(), bytes(esp.read_mac()),
                     esp.get_crystal_freq(), esp.read_reg(MAGIC_REG), esp.chip_id(), esp.IS_STUB)
            rom_id = esp.flash_id()                      # SPI user command, lengths in USR1
            stub = cmds.run_stub(esp)
            return found, rom_id, stub.IS_STUB, stub.flash_id(), cmds.detect_flash_size(stub)
        finally:
            esp._port.close()

    found, rom_id, is_stub, stub_id, size = run_with_timeout(work, T)
    name, desc, features, mac, xtal, magic, chip_id, rom_is_stub = found
    assert (name, desc, features) == ("ESP8266", "ESP8266EX", ["Wi-Fi", "160MHz"])
    assert mac == esp8266.mac and magic == 0xFFF0C101 and xtal == 26 and not rom_is_stub
    assert chip_id == int.from_bytes(esp8266.mac[3:6], "big")      # SDK system_get_chip_id(): MAC bytes 3..5
    assert rom_id == stub_id == 0x1340C8 and is_stub and size == "512KB"


def test_rom_has_only_its_commands_and_answers_with_two_status_bytes(esp8266):
    """SPI_ATTACH (which esptool never sends to this ROM) is refused with a 2-byte ``01 05``;
    READ_REG answers with a 2-byte status too."""
    host, port = esp8266.flash_url.removeprefix("socket://").split(":")

    def frames(sock: socket.socket, count: int) -> list[bytes]:
        dec, got = SlipDecoder(), []
        while len(got) < count:
            data = sock.recv(4096)
            assert data, "the module closed the connection"
            got += [f for f in dec.feed(data) if f is not None]
        return got

    def work():
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(encode(struct.pack("<BBHI", 0, rom_loader.SPI_ATTACH, 8, 0) + bytes(8)))
            (attach,) = frames(s, 1)
            s.sendall(encode(struct.pack("<BBHI", 0, rom_loader.READ_REG, 4, 0) + struct.pack("<I", MAGIC_REG)))
            (magic,) = frames(s, 1)
            return attach, magic

    attach, magic = run_with_timeout(work, T)
    assert attach == bytes([1, rom_loader.SPI_ATTACH, 2, 0, 0, 0, 0, 0, 1, 5])
    assert magic == bytes([1, rom_loader.READ_REG, 2, 0]) + struct.pack("<I", 0xFFF0C101) + b"\x00\x00"


@pytest.mark.parametrize("offset, size", [(0x21000, 70000), (0x1000, 0x3D000), (0x7E000, 0x1000), (0x10000, 0x1000)])
def test_rom_write_erases_exactly_the_image_as_esptool_compensates(esp8266, offset, size):
    """esptool sends the ROM a reduced erase size (``get_erase_size``); the model's overshoot
    must turn it back into the image's sectors: written bytes read back, neighbours untouched."""
    esp8266.flash.program(0, b"\x00" * 0x80000)          # every bit programmed: an erase shows
    img = random_image(size, offset)

    def work():
        esp = cmds.detect_chip(esp8266.flash_url)
        try:
            cmds.attach_flash(esp)                      # ROM: FLASH_BEGIN(0, 0) instead of SPI_ATTACH
            cmds.write_flash(esp, [(offset, img)], compress=False, no_progress=True)
            with pytest.raises(FatalError, match="does not support"):
                cmds.read_flash(esp, offset, 64, no_progress=True)
        finally:
            esp._port.close()

    run_with_timeout(work, T)
    assert esp8266.flash.read(offset, size) == img
    sectors = -(-size // 4096)
    end = offset + sectors * 4096
    after = esp8266.flash.read(end, 4096) if end < 0x80000 else b""
    # the ROM rounds a short head up to an even count: at most one sector beyond the image
    assert after in (b"", b"\x00" * 4096, b"\xff" * 4096)
    if offset:
        assert esp8266.flash.read(offset - 4096, 4096) == b"\x00" * 4096
    assert not ended_session(esp8266).stub_started


def test_stub_write_read_back_verify_erase(esp8266):
    img = random_image(128 * KB, 7)

    def work():
        port = port_for_url(esp8266.flash_url, timeout=5)
        port.open()
        try:
            esp = cmds.run_stub(cmds.detect_chip(port))
            esp.change_baud(921600)
            cmds.attach_flash(esp)
            cmds.write_flash(esp, [(0x1000, img)], no_progress=True)
            back = cmds.read_flash(esp, 0x1000, len(img), no_progress=True)
            cmds.verify_flash(esp, [(0x1000, img)])
            cmds.erase_region(esp, 0x7E000, 0x2000)
            return back, esp.flash_md5sum(0x7E000, 0x2000)
        finally:
            port.close()

    back, md5 = run_with_timeout(work, T)
    assert back == img and esp8266.flash.read(0x1000, len(img)) == img
    assert md5 == hashlib.md5(b"\xff" * 0x2000).hexdigest()
    stats = ended_session(esp8266)
    assert stats.stub_started and stats.baud_changes[-1][1] == 921600
