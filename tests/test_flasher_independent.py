"""atfab's flasher against a ROM loader written independently of atfab's simulator (issue 4).

``tests/independent_rom_loader.py`` models only what Espressif documents and what esptool 5.6
sends and expects; it records every protocol violation. Every test here also checks that the
flasher caused none, so a flasher that works only thanks to a quirk of ``atfab/sim`` fails here.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import serial
from click.testing import CliRunner
from esptool.loader import ESPLoader
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from atfab.image.build import build
from atfab.cli import main
from atfab.image.flash_set import load_flash_set
from atfab.link.flasher import Flasher
from atfab.image.unit_content import Params
from tests.conftest import run_with_timeout
from tests.flash_support import actions, flash_url
from tests.independent_rom_loader import IndependentRomLoader

T = 60  # seconds: bound of any esptool conversation


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("indep") / "unit"
    build("esp32c2-4mb", out, synthetic_firmware="v3.3.0.0")
    return out


@pytest.fixture(scope="module")
def other_unit(tmp_path_factory) -> Path:
    """Same firmware, other factory parameters: only mfg_nvs differs from ``built``."""
    out = tmp_path_factory.mktemp("indep") / "other"
    build("esp32c2-4mb", out, synthetic_firmware="v3.3.0.0", params=Params(factory_param={"max_tx_power": 70}))
    return out


@pytest.fixture
def loader():
    ld = IndependentRomLoader().start()
    try:
        yield ld
    finally:
        ld.stop()
    assert ld.violations == [], ld.violations


def _flash(ld: IndependentRomLoader, folder: Path, **kwargs):
    return flash_url(ld.url, folder, **kwargs)


def _holds(ld: IndependentRomLoader, folder: Path) -> None:
    """The loader's flash holds every file of flash_args at its offset, byte for byte."""
    for region in load_flash_set(folder).regions:
        assert ld.read(region.offset, len(region.data)) == (folder / region.name).read_bytes(), region.name


@pytest.mark.parametrize("stub", [True, False], ids=["stub", "rom-only"])
def test_chip_info(loader, stub):
    info = run_with_timeout(Flasher(loader.url, stub=stub).chip_info, T)
    assert info.chip == "ESP32-C2"
    assert info.description == "ESP32-C2 (revision v1.0)"
    assert info.mac == loader.mac.hex(":")
    assert info.crystal_mhz == 26
    assert loader.ops_named("MEM_BEGIN") == 0 and loader.stub_runs == 0   # reading the chip needs no stub
    assert loader.ops_named("SYNC") >= 1 and loader.ops_named("GET_SECURITY_INFO") >= 1


def test_flash_with_stub_writes_every_region(loader, built):
    result = _flash(loader, built)
    _holds(loader, built)
    assert result.stub is True and loader.stub_runs == 1
    assert result.chip.mac == loader.mac.hex(":") and result.flash_size == "4MB"
    done = actions(result)
    assert done.pop("ota_data_initial.bin") == "skipped"      # all 0xFF: erased flash holds it
    assert set(done.values()) == {"written"}
    assert loader.ops_named("FLASH_DEFL_DATA", "stub") >= 1        # compressed through the stub
    assert loader.ops_named("FLASH_DEFL_END", "stub") >= 1
    assert loader.baud_requests == [("stub", 460800, 115200)]
    assert loader.sessions == 1


def test_flash_rom_only_writes_every_region(loader, built):
    result = _flash(loader, built, stub=False)
    _holds(loader, built)
    assert result.stub is False and loader.stub_runs == 0
    assert loader.ops_named("MEM_BEGIN") == 0 and loader.ops_named("FLASH_DATA", "rom") >= 1
    assert loader.ops_named("FLASH_DEFL_DATA") == 0                # ROM writes go uncompressed
    # the C2 ROM assumes a 40 MHz crystal: esptool asks for a scaled rate, which lands on 460800
    ((mode, asked, old),) = loader.baud_requests
    assert (mode, asked, old) == ("rom", 460800 * 40 // 26, 0)
    assert 460800 * 0.99 < asked * 26 / 40 <= 460800


def test_reflash_skips_what_the_device_holds(loader, built, other_unit):
    _flash(loader, built)
    again = _flash(loader, built)
    assert set(actions(again).values()) == {"skipped"} and again.bytes_written == 0
    writes = loader.ops_named("FLASH_DEFL_BEGIN") + loader.ops_named("FLASH_BEGIN")

    # another unit with the same firmware: only its mfg_nvs is written
    other = _flash(loader, other_unit)
    assert [n for n, a in actions(other).items() if a == "written"] == ["mfg_nvs.bin"]
    _holds(loader, other_unit)

    # one byte of mfg_nvs changes behind the flasher's back: only that region is rewritten
    mfg = next(r for r in load_flash_set(other_unit).regions if r.name == "mfg_nvs.bin")
    with loader._lock:
        loader.flash[mfg.offset + 40] ^= 0x01
    fixed = _flash(loader, other_unit)
    assert [n for n, a in actions(fixed).items() if a == "written"] == ["mfg_nvs.bin"]
    _holds(loader, other_unit)
    assert loader.ops_named("FLASH_DEFL_BEGIN") + loader.ops_named("FLASH_BEGIN") >= writes + 2


def test_reflash_rom_only_skips_then_writes_mfg_nvs(loader, built, other_unit):
    _flash(loader, built, stub=False)
    assert _flash(loader, built, stub=False).bytes_written == 0
    other = _flash(loader, other_unit, stub=False)
    assert [n for n, a in actions(other).items() if a == "written"] == ["mfg_nvs.bin"]
    _holds(loader, other_unit)


def test_one_session_reads_the_chip_then_writes(loader, built):
    """The station's path: one connection per unit, chip read first, stub and writes after."""
    flash_set = load_flash_set(built)

    def unit():
        with Flasher(loader.url).session() as s:
            info = s.chip_info
            stub_before_write = loader.stub_runs
            return info, stub_before_write, s.write(flash_set), s.write(flash_set)

    info, stub_before_write, first, second = run_with_timeout(unit, T)
    assert info.mac == loader.mac.hex(":") and stub_before_write == 0
    assert "written" in actions(first).values() and set(actions(second).values()) == {"skipped"}
    assert loader.sessions == 1 and loader.stub_runs == 1
    _holds(loader, built)


def test_cli_flash_json(loader, built):
    runner = CliRunner()
    r = run_with_timeout(runner.invoke, T, main, ["flash", "--port", loader.url, "--json", str(built)],
                         catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["chip"]["chip"] == "ESP32-C2" and out["chip"]["mac"] == loader.mac.hex(":")
    assert out["stub"] is True and out["bytes_written"] > 0
    assert {x["name"] for x in out["regions"] if x["action"] == "written"} >= {"mfg_nvs.bin", "esp-at.bin"}
    _holds(loader, built)


def test_the_loader_is_strict():
    """Sanity of the yardstick: it refuses what a real ROM refuses (bad checksum, unerased writes)."""
    with IndependentRomLoader() as ld:
        def talk() -> list[str]:
            port = serial.serial_for_url(ld.url, timeout=1)
            errors = []
            try:
                esp = CHIP_DEFS["esp32c2"](port, 115200)
                esp.connect("no-reset", 1, detecting=False, warnings=False)
                esp.flash_spi_attach(0)
                esp.flash_set_parameters(4 * 1024 * 1024)
                esp.flash_begin(0x400, 0x1000)
                block = b"\x00" * 0x400
                try:
                    esp.check_command("write", ESPLoader.ESP_CMDS["FLASH_DATA"],
                                      b"\x00\x04\x00\x00" + b"\x00" * 12 + block, chk=0x12)
                except FatalError as exc:
                    errors.append(str(exc))
                esp.flash_block(block, 0)                       # written: now all zero
                # announce one block but nothing to erase ...
                esp.check_command("begin", ESPLoader.ESP_CMDS["FLASH_BEGIN"],
                                  struct.pack("<5I", 0, 1, 0x400, 0x1000, 0))
                try:
                    esp.flash_block(b"\x5a" * 0x400, 0)         # ... so NOR cannot set those bits
                except FatalError as exc:
                    errors.append(str(exc))
                assert esp.flash_md5sum(0x1000, 0x400) == hashlib.md5(block).hexdigest()
            finally:
                port.close()
            return errors

        errors = run_with_timeout(talk, T)
        assert "Checksum error" in errors[0] and "Flash write error" in errors[1]
        assert any("checksum" in v for v in ld.violations) and any("read-back" in v for v in ld.violations)
