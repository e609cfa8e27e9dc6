"""What the virtual chip's download mode does that esptool's own test suite checks (issue #14),
each driven by the real esptool 5.6 and compared with a reference nobody here wrote:

* the SPI flash answers only once attached (esptool ``test_attach_flash``: JEDEC id all ones,
  SFDP zeros before SPI_ATTACH);
* the flash status register is read and written through SPI user commands (``write-flash-status``);
* only esptool's own stub image greets with ``OHAI``; any other RAM program takes the port;
* ``write-flash --encrypt`` on a blank-eFuse ESP32 stores what ``espsecure encrypt-flash-data``
  computes with the all-zero BLOCK1 key and FLASH_CRYPT_CONFIG 0;
* the RTC watchdog reset boots from flash.
"""

from __future__ import annotations

import io
import random
import struct

import espsecure
import pytest
from esptool import cmds
from esptool.loader import StubFlasher
from esptool.targets import ESP32C2ROM, ESP32ROM

from atfab.sim.module import VirtualModule
from tests.conftest import run_with_timeout
from tests.sim_at_support import StandInFirmware

T = 60


@pytest.fixture(params=["esp32c2", "esp32"])
def module(request):
    m = VirtualModule(chip=request.param, seed=f"fidelity-{request.param}", firmware_factory=StandInFirmware).start()
    yield m
    m.stop()


def _with_esp(url: str, work, *, stub: bool = False):
    def run():
        esp = cmds.detect_chip(url)
        try:
            return work(cmds.run_stub(esp) if stub else esp)
        finally:
            esp._port.close()
    return run_with_timeout(run, T)


def test_flash_answers_only_after_spi_attach(module):
    def work(esp):
        before = (esp.flash_id(), esp.read_spiflash_sfdp(0, 32))
        cmds.attach_flash(esp)
        return before, (esp.flash_id(), esp.read_spiflash_sfdp(0, 32))
    (id0, sfdp0), (id1, sfdp1) = _with_esp(module.flash_url, work)
    assert id0 & 0xFFFFFF == 0xFFFFFF and sfdp0 == 0          # nothing on the bus yet
    assert id1 == module.identity.jedec_id
    assert sfdp1.to_bytes(4, "little") == b"SFDP"
    stub_id = _with_esp(module.flash_url, lambda esp: esp.flash_id(), stub=True)   # the stub attaches itself
    assert stub_id == module.identity.jedec_id


@pytest.mark.parametrize("stub", [False, True], ids=["rom", "stub"])
def test_status_register_read_write_round_trip(module, stub):
    def work(esp):
        cmds.attach_flash(esp)
        first = esp.read_status(2)
        esp.write_status(0x0208, 2)           # QE (SR2 bit 1) and BP1 (SR1 bit 3)
        written = esp.read_status(2)
        esp.run_spiflash_command(0x01, struct.pack("B", 0x00))   # WRSR without WREN: ignored
        return first, written, esp.read_status(2)
    first, written, after = _with_esp(module.flash_url, work, stub=stub)
    assert (first, written, after) == (0, 0x0208, 0x0208)
    # the register belongs to the flash chip: a new session (power-on) reads it back
    assert _with_esp(module.flash_url, lambda esp: (cmds.attach_flash(esp), esp.read_status(2))[1]) == 0x0208
    _with_esp(module.flash_url, lambda esp: (cmds.attach_flash(esp), esp.write_status(0, 2)))
    assert module.flash.status == 0


def _load_ram(esp, segments: list[tuple[int, bytes]], entry: int) -> bool:
    """Load ``segments`` with MEM_BEGIN/MEM_DATA and start ``entry``; True when the chip said OHAI."""
    for addr, data in segments:
        blocks = -(-len(data) // esp.ESP_RAM_BLOCK)
        esp.mem_begin(len(data), blocks, esp.ESP_RAM_BLOCK, addr)
        for seq in range(blocks):
            esp.mem_block(data[seq * esp.ESP_RAM_BLOCK:(seq + 1) * esp.ESP_RAM_BLOCK], seq)
    esp.mem_finish(entry)
    esp._port.timeout = 1
    try:
        return next(esp._slip_reader) == b"OHAI"
    except Exception:
        return False


def test_only_esptools_stub_image_answers_as_the_stub(module):
    rom = {"esp32c2": ESP32C2ROM, "esp32": ESP32ROM}[module.chip]
    stub = StubFlasher(rom)            # the stub image exactly as esptool reads it for this chip
    segments = [(stub.text_start, stub.text)] + ([(stub.data_start, bytes(stub.data))] if stub.data else [])
    patched = bytearray(stub.text)
    patched[100] ^= 0xFF
    other = [(stub.text_start, bytes(patched))] + segments[1:]
    assert _with_esp(module.flash_url, lambda esp: _load_ram(esp, other, stub.entry)) is False
    assert module.wait_state("at", 10)             # the port closed: the module booted from flash
    assert module.last_session is not None and not module.last_session.stub_started
    assert _with_esp(module.flash_url, lambda esp: _load_ram(esp, segments, stub.entry + 4)) is False
    assert _with_esp(module.flash_url, lambda esp: _load_ram(esp, segments, stub.entry)) is True


def _espsecure_encrypt(data: bytes, address: int) -> bytes:
    out = io.BytesIO()
    espsecure.encrypt_flash_data(io.BytesIO(bytes(32)), out, address, 0, False, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "uncompressed"])
def test_encrypted_write_on_blank_esp32_matches_espsecure(compress):
    data = random.Random(7).randbytes(20000) + b"\x00" * 12000 + b"tail"   # not a multiple of 32
    with VirtualModule(chip="esp32", seed="encrypt", firmware_factory=StandInFirmware) as m:
        def work(esp):
            cmds.write_flash(esp, [(0x10000, data)], encrypt=True, ignore_flash_enc_efuse=True,
                             compress=compress, no_compress=not compress, no_progress=True)
            return cmds.read_flash(esp, 0x10000, len(data) + 28, no_progress=True)
        stored = _with_esp(m.flash_url, work, stub=True)
    padded = data + b"\xff" * (-len(data) % 32)            # esptool pads encrypted writes to 32
    assert stored[:len(padded)] == _espsecure_encrypt(padded, 0x10000)
    assert stored[:len(padded)] != padded


def test_encrypted_write_is_refused_where_not_modelled():
    with VirtualModule(chip="esp32c2", seed="encrypt-c2", firmware_factory=StandInFirmware) as m:
        def work(esp):
            with pytest.raises(Exception):
                cmds.write_flash(esp, [(0x10000, b"\x01" * 4096)], encrypt=True, ignore_flash_enc_efuse=True,
                                 no_progress=True)
        _with_esp(m.flash_url, work, stub=True)
        assert m.flash.read(0x10000, 16) == b"\xff" * 16
