"""The virtual ESP32-C2 download mode driven by the real esptool (API and CLI), plus the
module's process model (flash session -> boot -> AT port) with a stand-in AT firmware."""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import random
import signal
import struct
import subprocess
import sys

import pytest
from esptool import cmds
from esptool.util import FatalError

from atfab.sim import rom_loader
from atfab.sim.chip import ESPRESSIF_OUIS, derive_mac
from atfab.sim.module import VirtualModule
from atfab.sim.slip import SlipDecoder, encode
from atfab.link.transport import port_for_url
from tests.conftest import run_with_timeout
from tests.sim_at_support import SocketReader, StandInFirmware, connect_url

MB = 1024 * 1024
OK = b"\r\nOK\r\n"
T = 30  # seconds any single esptool operation may take before the test fails as hung


@pytest.fixture
def module():
    m = VirtualModule(firmware_factory=StandInFirmware, seed="rom-tests").start()
    yield m
    m.stop()


def random_image(size: int, seed: int) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    if data[0] == 0xE9:          # not an app image header: esptool would patch it
        data[0] = 0
    return bytes(data)


def compressible_image(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    data = bytearray(b"\xff" * size)
    for off in range(0, size, 64 * 1024):       # a little random data in every 64 KB
        data[off + 16:off + 16 + 2048] = rnd.randbytes(2048)
    return bytes(data)


def connect(url: str, stub: bool = True, port=None):
    """esptool connected to ``url`` (or to an already open pyserial ``port``)."""
    esp = cmds.detect_chip(port if port is not None else url)
    if stub:
        esp = cmds.run_stub(esp)
    cmds.attach_flash(esp)
    return esp


def esptool_cli(*args: str, timeout: float = T) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esptool", *args], capture_output=True, text=True,
                          timeout=timeout)


# -- pieces -------------------------------------------------------------------------------------

def test_slip_roundtrip_in_random_pieces():
    rnd = random.Random(1)
    payloads = [bytes(rnd.choice(b"\xc0\xdb\xdc\xdd\x00\x01") for _ in range(rnd.randrange(1, 300)))
                for _ in range(50)]
    stream = b"noise" + b"".join(encode(p) for p in payloads)
    dec = SlipDecoder()
    got = []
    pos = 0
    while pos < len(stream):
        n = rnd.randrange(1, 40)
        got += dec.feed(stream[pos:pos + n])
        pos += n
    assert got == payloads
    assert dec.feed(b"\xc0\xdb\x01\xc0") == [None]     # invalid escape -> malformed frame


def test_checksum_matches_bytewise_xor():
    rnd = random.Random(2)
    for n in (0, 1, 2, 3, 7, 8, 9, 1023, 1024, 16384, 16385):
        data = rnd.randbytes(n)
        assert rom_loader.checksum(data) == functools.reduce(operator.xor, data, 0xEF)


def test_mac_is_deterministic_espressif():
    assert derive_mac("a") == derive_mac("a") != derive_mac("b")
    assert derive_mac("a")[:3] in ESPRESSIF_OUIS and derive_mac("a")[5] % 4 == 0


# -- esptool API --------------------------------------------------------------------------------

def test_detect_identity(module):
    def work():
        esp = cmds.detect_chip(module.flash_url)
        try:
            info = esp.get_security_info()
            desc = esp.get_chip_description()
            mac = bytes(esp.read_mac())
            xtal = esp.get_crystal_freq()
            stub = cmds.run_stub(esp)
            cmds.attach_flash(stub)
            return info, desc, mac, xtal, stub.IS_STUB, stub.flash_id(), stub.get_chip_features()
        finally:
            esp._port.close()

    info, desc, mac, xtal, is_stub, flash_id, features = run_with_timeout(work, T)
    assert info["chip_id"] == 12
    assert desc == "ESP8684H (revision v2.0)"
    assert mac == module.mac
    assert xtal == 26
    assert is_stub
    assert flash_id == 0x1640C8
    assert "Embedded Flash 4MB (GD)" in features


def test_stub_full_4mb_random_and_compressible(module):
    rnd_img = random_image(4 * MB, 10)
    comp_img = compressible_image(4 * MB, 11)

    def work():
        esp = connect(module.flash_url)
        try:
            cmds.write_flash(esp, [(0, rnd_img)], no_progress=True)
            snap_random = module.flash.snapshot()
            head = cmds.read_flash(esp, 0x1000, 64 * 1024, no_progress=True)
            cmds.write_flash(esp, [(0, comp_img)], no_progress=True)
            sent_compressed = module.flash.snapshot() == comp_img
            cmds.verify_flash(esp, [(0, comp_img)])
            cmds.erase_region(esp, 0x20000, 0x3000)
            md5 = esp.flash_md5sum(0x20000, 0x3000)
            mac = bytes(esp.read_mac())
            return snap_random, head, sent_compressed, md5, mac
        finally:
            esp._port.close()

    snap_random, head, compressed_ok, md5, mac = run_with_timeout(work, 60)
    assert snap_random == rnd_img
    assert head == rnd_img[0x1000:0x11000]
    assert compressed_ok
    assert md5 == hashlib.md5(b"\xff" * 0x3000).hexdigest()
    assert module.flash.read(0x20000, 0x3000) == b"\xff" * 0x3000
    assert module.flash.read(0x23000, 0x1000) == comp_img[0x23000:0x24000]
    assert mac == module.mac


def test_stub_4mb_written_and_read_back_whole(module):
    """The whole 4 MB image read back through esptool is identical to what was written.

    esptool sizes its reads by ``in_waiting``; pyserial's socket port reports 0 or 1 there, which
    makes a 4 MB read take ~30 s, so the read goes through atfab's SocketPort (same bytes on the
    wire, every waiting byte reported)."""
    img = random_image(4 * MB, 12)

    def work():
        port = port_for_url(module.flash_url, timeout=5)
        port.open()
        esp = connect(module.flash_url, port=port)
        try:
            cmds.write_flash(esp, [(0, img)], no_progress=True)
            return cmds.read_flash(esp, 0, 4 * MB, no_progress=True)
        finally:
            port.close()

    back = run_with_timeout(work, 90)
    assert len(back) == 4 * MB and back == img


def test_rom_only_write_read_verify_erase(module):
    rnd_img = random_image(256 * 1024, 20)
    comp_img = compressible_image(1 * MB, 21)

    def work():
        esp = connect(module.flash_url, stub=False)
        try:
            assert not esp.IS_STUB
            cmds.write_flash(esp, [(0x10000, rnd_img)], compress=False, no_progress=True)
            cmds.write_flash(esp, [(0x100000, comp_img)], no_progress=True)   # FLASH_DEFL in ROM
            back = cmds.read_flash(esp, 0x10000, 2048, no_progress=True)       # READ_FLASH_SLOW
            cmds.verify_flash(esp, [(0x10000, rnd_img), (0x100000, comp_img)])
            cmds.erase_region(esp, 0x11000, 0x1000)                            # via FLASH_BEGIN
            return back, bytes(esp.read_mac()), esp.flash_md5sum(0x10000, 0x1000)
        finally:
            esp._port.close()

    back, mac, md5 = run_with_timeout(work, T)
    assert back == rnd_img[:2048]
    assert mac == module.mac
    assert md5 == hashlib.md5(rnd_img[:0x1000]).hexdigest()
    assert module.flash.read(0x11000, 0x1000) == b"\xff" * 0x1000
    assert module.flash.read(0x100000, len(comp_img)) == comp_img
    assert not module.last_session.stub_started


def test_revision_v0_gets_no_stub():
    m = VirtualModule(firmware_factory=StandInFirmware, chip_revision=(0, 0)).start()
    try:
        def work():
            esp = cmds.detect_chip(m.flash_url)
            try:
                esp = cmds.run_stub(esp)
                cmds.attach_flash(esp)
                cmds.write_flash(esp, [(0x8000, b"\x5a" * 3000)], no_progress=True)
                return esp.IS_STUB
            finally:
                esp._port.close()
        assert run_with_timeout(work, T) is False
        assert m.flash.read(0x8000, 3000) == b"\x5a" * 3000
    finally:
        m.stop()


def test_bad_commands_get_error_statuses(module):
    def work():
        esp = cmds.detect_chip(module.flash_url)
        try:
            rom_unknown = esp.command(0x55, b"")
            with pytest.raises(FatalError, match="0107"):          # checksum error
                esp.check_command("x", rom_loader.MEM_BEGIN, struct.pack("<IIII", 4, 1, 4, 0x3FCA0000))
                esp.check_command("x", rom_loader.MEM_DATA, struct.pack("<IIII", 4, 0, 0, 0) + b"abcd", chk=0)
            with pytest.raises(FatalError, match="0105"):          # invalid message (bad length)
                esp.check_command("x", rom_loader.READ_REG, b"\x00\x00")
            stub = cmds.run_stub(esp)
            stub_unknown = stub.command(0x55, b"")
            with pytest.raises(FatalError, match="C600"):          # not in flash mode
                stub.check_command("x", rom_loader.FLASH_DATA, struct.pack("<IIII", 4, 0, 0, 0) + b"abcd",
                                   chk=rom_loader.checksum(b"abcd"))
            with pytest.raises(FatalError, match="C100"):          # bad data checksum
                stub.flash_begin(4096, 0x3000)
                stub.check_command("x", rom_loader.FLASH_DATA, struct.pack("<IIII", 4, 0, 0, 0) + b"abcd", chk=1)
            return rom_unknown, stub_unknown
        finally:
            esp._port.close()

    rom_unknown, stub_unknown = run_with_timeout(work, T)
    assert rom_unknown[1] == b"\x01\x05\x00\x00"
    assert stub_unknown[1] == b"\xc3\x00"


def test_rom_blocks_out_of_sequence_or_short_are_errors(module):
    """FLASH_DATA must carry block numbers 0, 1, ... below the announced count, full-sized in ROM mode
    (esptool pads): anything else is refused, so a client that numbers or sizes blocks wrongly fails here."""
    module.flash.program(0x2000, b"\x00" * 1024)

    def work():
        esp = connect(module.flash_url, stub=False)
        try:
            esp.flash_set_parameters(4 * MB)
            esp.flash_begin(2048, 0x1000)               # 2 blocks; erases 0x1000..0x1fff only
            block = b"\xa5" * 1024
            with pytest.raises(FatalError, match="0105"):
                esp.flash_block(block, 1)               # block 1 before block 0
            esp.flash_block(block, 0)
            with pytest.raises(FatalError, match="0105"):
                esp.flash_block(block[:512], 1)         # not padded to the block size
            with pytest.raises(FatalError, match="0105"):
                esp.flash_block(block, 4)               # beyond the announced blocks (0x2000 holds zeros)
        finally:
            esp._port.close()

    run_with_timeout(work, T)
    assert module.flash.read(0x1000, 1024) == b"\xa5" * 1024
    assert module.flash.read(0x2000, 1024) == b"\x00" * 1024


def test_power_loss_mid_flash_then_boot(module):
    img = random_image(256 * 1024, 30)
    module.flash.program(0, b"\x00" * 0x1000)         # old content, so "erased" is visible
    module.faults.flash.drop_after_rx = 100_000
    boots = module.boot_count

    def blocks_until_cut():
        esp = connect(module.flash_url)
        try:
            esp.flash_set_parameters(4 * MB)
            esp.flash_begin(len(img), 0)
            for seq in range(len(img) // esp.FLASH_WRITE_SIZE):
                esp.flash_block(img[seq * 0x4000:(seq + 1) * 0x4000], seq)
        finally:
            esp._port.close()

    with pytest.raises(Exception):                      # the link is cut under esptool
        run_with_timeout(blocks_until_cut, T)
    assert module.wait_state("at", 5) and module.boot_count == boots + 1
    assert module.faults.flash.drop_after_rx is None    # one-shot
    written = module.flash.read(0, len(img))
    assert written[:0x8000] == img[:0x8000]             # blocks acknowledged before the cut
    assert written[0x1C000:] == b"\xff" * (len(img) - 0x1C000) != img[0x1C000:]

    def write():
        esp = connect(module.flash_url)
        try:
            cmds.write_flash(esp, [(0, img)], no_progress=True)
        finally:
            esp._port.close()

    run_with_timeout(write, T)                           # the next attempt succeeds
    assert module.flash.read(0, len(img)) == img


# -- esptool CLI --------------------------------------------------------------------------------

def test_cli_write_read_verify_erase_mac(module, tmp_path):
    img = random_image(200 * 1024, 40)
    src = tmp_path / "img.bin"
    src.write_bytes(img)
    port = ["--port", module.flash_url, "--chip", "esp32c2"]

    r = esptool_cli(*port, "-b", "921600", "write-flash", "0x10000", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert module.flash.read(0x10000, len(img)) == img
    r = esptool_cli(*port, "--no-stub", "write-flash", "0x50000", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert module.flash.read(0x50000, len(img)) == img
    out = tmp_path / "back.bin"
    r = esptool_cli(*port, "read-flash", "0x10000", "0x8000", str(out))
    assert r.returncode == 0 and out.read_bytes() == img[:0x8000], r.stdout + r.stderr
    r = esptool_cli(*port, "verify-flash", "0x10000", str(src), "0x50000", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    r = esptool_cli(*port, "erase-region", "0x10000", "0x1000")
    assert r.returncode == 0 and module.flash.read(0x10000, 0x1000) == b"\xff" * 0x1000
    r = esptool_cli(*port, "read-mac")
    assert r.returncode == 0 and module.mac.hex(":") in r.stdout
    r = esptool_cli(*port, "--no-stub", "read-flash", "0x50000", "128", str(out))
    assert r.returncode == 0 and out.read_bytes() == img[:128], r.stdout + r.stderr


def test_cli_failure_is_reported_not_hung(module, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(b"\x00" * 8192)
    r = esptool_cli("--port", module.flash_url, "--chip", "esp32c2", "write-flash", "0x3ff000", str(src))
    assert r.returncode != 0 and "will not fit" in (r.stdout + r.stderr)


# -- process model ------------------------------------------------------------------------------

def esptool_session(url: str) -> None:
    esp = cmds.detect_chip(url)
    esp._port.close()


def test_flash_session_silences_at_port_then_boots(module):
    at = SocketReader(connect_url(module.at_url))
    try:
        at.sock.sendall(b"AT\r\n")
        assert b"OK" in at.read_until(OK)
        at.sock.sendall(b"AT+RST=1\r\n")
        assert b"OK" in at.read_until(OK)
        assert module.wait_state("download", 5)
        at.sock.sendall(b"AT\r\n")
        assert at.quiet(0.3) == b""                        # silent in download mode
        run_with_timeout(esptool_session, T, module.flash_url)
        assert at.read_until(b"ready\r\n") == b"\r\nready\r\n"
        assert module.state == "at"
        module.power_cycle()
        assert at.read_until(b"ready\r\n") == b"\r\nready\r\n"
        module.power_loss()
        assert at.quiet(1.0) == b""                        # connection dropped
    finally:
        at.close()
    at = SocketReader(connect_url(module.at_url))          # reconnect after the power loss
    try:
        at.sock.sendall(b"AT\r\n")
        assert b"OK" in at.read_until(OK)
    finally:
        at.close()


def test_soft_reset_and_no_reset_after_modes(module):
    def soft(url):
        esp = connect(url, stub=False)
        try:
            cmds.reset_chip(esp, "soft-reset")       # ROM FLASH_END(1): run the firmware
        finally:
            esp._port.close()

    def back_to_rom(url):
        esp = connect(url)
        try:
            cmds.reset_chip(esp, "no-reset")         # stub FLASH_END(0): reboot into the ROM
            val, _ = esp.command(rom_loader.SYNC, rom_loader.SYNC_PAYLOAD, timeout=1)
            return val
        finally:
            esp._port.close()

    def watchdog(url):
        esp = connect(url)
        try:
            # RTC WDT armed: a system reset; the released boot strap makes it boot from flash
            cmds.reset_chip(esp, "watchdog-reset")
            return module.wait_state("at", 5)
        finally:
            esp._port.close()

    boots = module.boot_count
    run_with_timeout(soft, T, module.flash_url)
    assert module.wait_state("at", 5)
    assert module.boot_count == boots + 1                 # booted once, not again at close
    assert run_with_timeout(back_to_rom, T, module.flash_url) != 0
    boots = module.boot_count
    assert run_with_timeout(watchdog, T, module.flash_url)
    assert module.boot_count == boots + 1                 # booted from flash, not again at close


def test_state_dir_persists_flash(tmp_path):
    kw = dict(firmware_factory=StandInFirmware, state_dir=tmp_path, name="unit7")
    with VirtualModule(**kw) as m:
        def work():
            esp = connect(m.flash_url)
            try:
                cmds.write_flash(esp, [(0x9000, b"persist" * 100)], no_progress=True)
            finally:
                esp._port.close()
        run_with_timeout(work, T)
    with VirtualModule(**kw) as m2:
        assert m2.flash.read(0x9000, 700) == b"persist" * 100
    assert (tmp_path / "unit7.flash").stat().st_size == 4 * MB


def test_paced_link_follows_change_baudrate():
    m = VirtualModule(firmware_factory=StandInFirmware, baud=115200).start()
    try:
        def work(stub):
            esp = cmds.detect_chip(m.flash_url)
            try:
                if stub:
                    esp = cmds.run_stub(esp)
                esp.change_baud(921600)
                cmds.attach_flash(esp)
                cmds.write_flash(esp, [(0, b"\x11" * 4096)], no_progress=True)
            finally:
                esp._port.close()
        run_with_timeout(work, T, False)
        assert m.last_session.baud_changes[-1][1] == 921600      # C2 ROM 40/26 MHz compensation
        run_with_timeout(work, T, True)
        assert m.last_session.baud_changes[-1][1] == 921600
        assert m.flash.read(0, 4096) == b"\x11" * 4096
    finally:
        m.stop()


def test_pool_and_fixture(module_pool):
    pool = module_pool(2, firmware_factory=StandInFirmware)
    macs = [m.mac for m in pool]
    assert len(set(macs)) == 2
    assert [d["index"] for d in pool.describe()] == [0, 1]

    def read_mac():
        esp = cmds.detect_chip(pool[1].flash_url)
        try:
            return bytes(esp.read_mac())
        finally:
            esp._port.close()

    mac = run_with_timeout(read_mac, T)
    assert mac == pool[1].mac


def test_atfab_sim_cli_serves_until_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "atfab.cli", "sim", "--count", "2", "--json",
                             "--state", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = run_with_timeout(proc.stdout.readline, 15)
        modules = json.loads(line)
        assert len(modules) == 2 and modules[0]["flash_url"].startswith("socket://127.0.0.1:")
        r = esptool_cli("--port", modules[1]["flash_url"], "read-mac")
        assert r.returncode == 0 and modules[1]["mac"] in r.stdout, r.stdout + r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)      # generous: it persists 2 x 4 MB of flash, on a machine maybe busy
        finally:
            proc.kill()
    assert rc == 0, proc.stderr.read()


def test_firmware_boot_failure_surfaces_at_start():
    class Broken(StandInFirmware):
        def boot(self) -> bytes:
            raise RuntimeError("firmware bug")

    with pytest.raises(RuntimeError, match="firmware bug"):
        VirtualModule(firmware_factory=Broken).start()
