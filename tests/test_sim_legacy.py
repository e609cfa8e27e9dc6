"""The virtual module serving G1/G2 firmware from the flashed bytes: the factory_param block applied as the
release does (module by id or name, power level on G1, country with byte 7 as the last channel, baud),
the release's GMR lines, AT+SYSFLASH on the per-item partitions, no AT+SYSMFG, ERR CODE always on G1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.image.profiles import load_profile
from atfab.sim.flash import NorFlash
from tests.sim_at_support import FakeHost, Session

PROFILES = ("esp32-at-v1.1", "esp32-at-v1.2", "esp32-at-v2", "esp32c3-at-v2", "esp32c2-4mb-at-v3.0",
            "esp32c2-2mb-at-v3.0")


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _image(tmp: Path, module: str) -> tuple[Path, dict]:
    prof = load_profile(module)
    out = tmp / module
    res = run("build", "-m", module, "--synthetic-firmware", prof.firmware.release, "-o", out, "--json")
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.output)
    return out / manifest["factory_image"]["name"], manifest


def _session(module: str, image: Path) -> Session:
    prof = load_profile(module)
    flash = NorFlash(prof.flash_size)
    flash.program(0, image.read_bytes())
    return Session(FakeHost(flash=flash, firmware=prof.firmware, chip=prof.chip))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    base = tmp_path_factory.mktemp("sim-legacy")
    return {m: _image(base, m) for m in PROFILES}


@pytest.mark.parametrize("module", PROFILES)
def test_each_legacy_profile_boots_and_answers_as_its_release(images, module):
    image, manifest = images[module]
    fw = load_profile(module).firmware
    s = _session(module, image)
    try:
        assert s.boot_out == b"\r\nready\r\n"
        gmr = s.cmd("AT+GMR").decode()
        lines = gmr.split("\r\n")
        assert lines[1].startswith(f"AT version:{fw.release[1:]}")
        if fw.generation == "G1":
            assert lines[3].startswith("compile time:")               # no project commit on v1.x
        else:
            assert lines[3].startswith("compile time(")
        has_block = any(p["name"] == "factory_param" for p in manifest["partitions"])
        assert lines[4].startswith(f"Bin version:{fw.fw_version or fw.release}(")
        if has_block:                        # the module the block names, as the release reads it (id or name)
            assert lines[4].endswith(f"({load_profile(module).module_name})")
        assert s.cmd("AT+SYSMFG?").endswith(b"\r\nERROR\r\n")
        listed = s.cmd("AT+SYSFLASH?").decode()
        for p in manifest["partitions"]:
            assert f'+SYSFLASH:"{p["name"]}",64,' in listed
        if has_block:
            off = next(int(p["offset"], 16) for p in manifest["partitions"] if p["name"] == "factory_param")
            reply = s.cmd('AT+SYSFLASH=2,"factory_param",0,8')
            assert image.read_bytes()[off:off + 8] in reply
        country = s.cmd("AT+CWCOUNTRY?")
        if fw.has_command("AT+CWCOUNTRY"):
            assert (b'"CN",1,13' in country) == has_block
        else:
            assert country.endswith(b"\r\nERROR\r\n")
        if fw.generation == "G1":
            assert b"ERR CODE:0x" in s.cmd("AT+BOGUS")                 # printed without AT+SYSLOG on G1
            assert s.cmd("AT+RFPOWER=5").endswith(b"\r\nOK\r\n")        # a level: table[5] in 0.25 dBm
            assert f"+RFPOWER:{fw.rfpower_levels[5]}".encode() in s.cmd("AT+RFPOWER?")
            assert s.cmd("AT+RFPOWER=60").endswith(b"\r\nERROR\r\n")
        else:
            assert b"ERR CODE" not in s.cmd("AT+BOGUS")
            assert s.cmd("AT+RFPOWER=60").endswith(b"\r\nOK\r\n")
            assert s.cmd("AT+RFPOWER=5").endswith(b"\r\nERROR\r\n")
    finally:
        s.close()


def test_a_customized_block_is_what_the_module_applies(images, tmp_path):
    image, _ = images["esp32-at-v2"]
    out = tmp_path / "custom.bin"
    res = run("customize", "--image", image, "-o", out, "--tx-power", "60", "--country", "US", "--start-channel",
              "3", "--channel-num", "9", "--baud", "921600")
    assert res.exit_code == 0, res.output
    s = _session("esp32-at-v2", out)
    try:
        assert b'+CWCOUNTRY:1,"US",3,9' in s.cmd("AT+CWCOUNTRY?")       # byte 7 = 11 is the last channel
        assert b"+RFPOWER:60" in s.cmd("AT+RFPOWER?")
        assert b"+UART_DEF:921600," in s.cmd("AT+UART_DEF?")
    finally:
        s.close()

    g1, _ = images["esp32-at-v1.2"]
    out = tmp_path / "g1.bin"
    assert run("customize", "--image", g1, "-o", out, "--tx-power", "3").exit_code == 0
    s = _session("esp32-at-v1.2", out)
    try:
        levels = load_profile("esp32-at-v1.2").firmware.rfpower_levels
        assert f"+RFPOWER:{levels[3]}".encode() in s.cmd("AT+RFPOWER?")  # the block's level, as 0.25 dBm
    finally:
        s.close()


def test_the_release_served_is_the_flashed_apps_not_the_module_profiles(tmp_path):
    """The module is started with esp32-at-v2's default build (v3.0.0.0) and flashed with a v2.0.0.0
    build: it answers as v2.0.0.0 (GMR lines, the version-1 block read by module id), as a real one
    would (it used to answer as the profile's release)."""
    prof = load_profile("esp32-at-v2")
    assert prof.firmware.release == "v3.0.0.0"
    out = tmp_path / "v2.0"
    params = tmp_path / "params.toml"
    params.write_text("[factory_param]\nmodule_id = 2\n")       # WROVER-32 in v2.0's table
    res = run("build", "-m", "esp32-at-v2", "--synthetic-firmware", "v2.0.0.0", "--params", params, "-o", out, "--json")
    assert res.exit_code == 0, res.output
    image = out / json.loads(res.output)["factory_image"]["name"]
    s = _session("esp32-at-v2", image)
    old = prof.for_release("v2.0.0.0").firmware
    try:
        lines = s.cmd("AT+GMR").decode().split("\r\n")
        assert lines[1].startswith("AT version:2.0.0.0(") and old.core_commit in lines[1]
        assert lines[4] == f"Bin version:{old.fw_version or 'v2.0.0.0'}({old.module_names[2]})"
        assert s.fw.profile.release == "v2.0.0.0" and "AT core" in s.fw.boot_log[-1]
    finally:
        s.close()
