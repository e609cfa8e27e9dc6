"""ESP8266 NONOS AT 1.x (NONOS AT 1.7.6.0, ESP8266_NONOS_SDK 3.0.6) on the virtual module: the SDK's two
AT download maps, the 1.x dialect served from what was flashed, and a station run end to end.

The facts (firmware data atfab/core/firmware/data/nonos-v1.7.6.0.toml) were read from the SDK
repository: bin/at/README.md (maps), the command table and strings of the shipped AT user1 bins, and
lib/libat.a (GMR, UART query and RFPOWER handlers). What the tests pin from there:

* GMR: ``AT version:1.7.6.0(Jan 24 2022 08:56:02)``, ``SDK version:3.0.6-dev(072755c)``, then the
  custom info ``compile time:Jun 17 2024 07:37:40`` CR LF ``Bin version(Wroom 02):1.7.6`` with no CR LF
  of its own before ``\\r\\nOK\\r\\n``;
* UART: ``+UART_DEF:<b>,<d>,<s>,<p>,<f>`` with no CR LF before OK; UART_CUR? the divider's baud
  (80 MHz / (80 MHz // 115200) = 115273); UART_CUR= is not stored, UART_DEF= is (user parameter area);
* RFPOWER: set only, 0..82;
* ``\\r\\nready\\r\\n`` after boot; a flash header whose map the release has no build for stops at
  ``system_partition_table_regist fail``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import serial
from click.testing import CliRunner
from esptool import cmds

from atfab.cli import main
from atfab.image.nonos import read_user1, synthetic_files
from atfab.image.profiles import load_profile
from atfab.link.transport import port_for_url
from atfab.sim.module import VirtualModule
from tests.conftest import run_with_timeout

T = 30
ROOT = Path(__file__).resolve().parents[1]
RECIPE_1MB = ROOT / "recipes" / "esp8266-nonos-at-1.7-1mb.toml"
RECIPE_C1 = ROOT / "recipes" / "esp8266-nonos-at-1.7.toml"
GMR = (b"AT version:1.7.6.0(Jan 24 2022 08:56:02)\r\nSDK version:3.0.6-dev(072755c)\r\n"
       b"compile time:Jun 17 2024 07:37:40\r\nBin version(Wroom 02):1.7.6\r\nOK\r\n")


def files_for(profile):
    return synthetic_files(profile.nonos, profile.firmware, flash_size=profile.flash_size,
                           flash_mode=profile.flash_mode, flash_freq=profile.flash_freq)


@pytest.fixture(scope="module")
def c1():
    return load_profile("esp8266-nonos-at-2mb")


@pytest.fixture
def module(c1):
    m = VirtualModule(chip="esp8266", flash_size=c1.flash_size, firmware=c1.firmware, seed="at1").start()
    yield m
    m.stop()


def flash_with_esptool(m: VirtualModule, files, flash_size: str = "keep") -> None:
    def work():
        port = port_for_url(m.flash_url, timeout=5)
        port.open()
        try:
            esp = cmds.run_stub(cmds.detect_chip(port))
            cmds.attach_flash(esp)
            cmds.write_flash(esp, [(off, data) for off, _name, data in files], flash_mode="keep",
                             flash_freq="keep", flash_size=flash_size, no_progress=True)
        finally:
            port.close()
    run_with_timeout(work, T)
    assert m.wait_state("at", 10)


def talk(port, command: bytes, wait: float = 0.3) -> bytes:
    """Send a line; what comes back until the result code (then a short quiet spell), or ``wait`` s."""
    port.write(command + b"\r\n")
    deadline = time.monotonic() + wait
    out = b""
    while time.monotonic() < deadline:
        out += port.read(4096)
        if out.endswith((b"\r\nOK\r\n", b"\r\nERROR\r\n")) and command != b"AT+RST":
            return out + port.read(4096)     # nothing more may follow (timeout 0.05 s)
    return out


def test_the_sdks_two_download_maps():
    one, c1 = load_profile("esp8266-nonos-at-1mb"), load_profile("esp8266-nonos-at-2mb")
    assert [(n, hex(o)) for n, o in one.nonos.regions()] == [
        ("boot.bin", "0x0"), ("user1.bin", "0x1000"), ("blank.bin@0x7e000", "0x7e000"),
        ("esp_init_data_default.bin", "0xfc000"), ("blank.bin@0xfe000", "0xfe000")]
    assert [hex(o) for _n, o in c1.nonos.regions()] == ["0x0", "0x1000", "0xfe000", "0x1fc000", "0x1fe000"]
    assert (one.flash_size_str, c1.flash_size_str, c1.flash_size) == ("1MB", "2MB-c1", 2 * 1024 * 1024)
    files = dict((n, d) for _o, n, d in files_for(c1))
    assert files["boot.bin"][3] & 0xF0 == 0x50 == files["user1.bin"][3] & 0xF0   # esptool's 2MB-c1 code
    app = read_user1(files["user1.bin"])
    assert (app.at_version, app.sdk_version) == ("1.7.6.0", "3.0.6-dev(072755c)")


def test_boots_ready_and_speaks_the_1x_dialect(module, c1):
    flash_with_esptool(module, files_for(c1))
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        talk(p, b"ATE0")
        assert talk(p, b"AT+GMR") == GMR
        assert talk(p, b"AT+UART_DEF?") == b"+UART_DEF:115200,8,1,0,0\r\nOK\r\n"
        assert talk(p, b"AT+UART_CUR?") == b"+UART_CUR:115273,8,1,0,0\r\nOK\r\n"   # 80 MHz / 694
        assert talk(p, b"AT+RFPOWER=82") == b"\r\nOK\r\n"
        assert talk(p, b"AT+RFPOWER=83") == b"\r\nERROR\r\n"
        assert talk(p, b"AT+RFPOWER?") == b"\r\nERROR\r\n"                         # set only
        assert talk(p, b"AT+SYSFLASH?") == b"\r\nERROR\r\n"
        assert talk(p, b"AT+UART_CUR=57600,8,1,0,0") == b"\r\nOK\r\n"              # OK at the old baud
        assert talk(p, b"AT+UART_CUR?") == b"+UART_CUR:57636,8,1,0,0\r\nOK\r\n"    # 80 MHz / 1388
        assert talk(p, b"AT+UART_DEF?") == b"+UART_DEF:115200,8,1,0,0\r\nOK\r\n"   # CUR is not stored
        assert talk(p, b"AT+UART_DEF=230400,8,1,0,0") == b"\r\nOK\r\n"
        assert talk(p, b"AT+RST", 0.5).startswith(b"\r\nOK\r\n")
        assert talk(p, b"AT+UART_CUR?").endswith(b"+UART_CUR:230547,8,1,0,0\r\nOK\r\n")   # the stored one, after reset
    assert module.flash.read(0xFE000, 8) == b"ATFABG0U"      # the user parameter sector blank.bin clears
    flash_with_esptool(module, [f for f in files_for(c1) if f[0] == 0xFE000])    # blank.bin: factory initialise
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert talk(p, b"AT+UART_DEF?").endswith(b"+UART_DEF:115200,8,1,0,0\r\nOK\r\n")


def test_the_release_served_is_the_flashed_one(module, c1):
    """A module whose profile says 1.7.6.0 but was flashed with v0.21 answers v0.21 (and back)."""
    old = load_profile("esp8266-nonos-512k")
    v021 = synthetic_files(old.nonos, old.firmware, flash_size=old.flash_size, flash_mode=old.flash_mode,
                           flash_freq=old.flash_freq)
    flash_with_esptool(module, [f for f in v021 if f[1] in ("boot.bin", "user1.bin")], flash_size="2MB")
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert talk(p, b"AT+GMR").endswith(b"AT version:0.21.0.0\r\nSDK version:0.9.5\r\n\r\nOK\r\n")
        assert talk(p, b"AT+UART_DEF?").endswith(b"\r\nERROR\r\n")
    flash_with_esptool(module, files_for(c1))
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert talk(p, b"AT+GMR").endswith(GMR)
    assert module._firmware_obj.errors == []


def test_a_header_naming_another_map_never_reaches_the_at_app(module, c1):
    """esptool --flash_size 2MB rewrites the header at 0x0 to 0x30 (the SDK's map 3): NONOS AT 1.7.6.0
    has no build for it and stops after system_partition_table_regist fail."""
    flash_with_esptool(module, files_for(c1), flash_size="2MB")
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert b"OK" not in talk(p, b"AT", 0.5)


def test_station_run_and_demo_on_the_16mbit_c1_map(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo", "--recipe", str(RECIPE_C1), "--out", str(tmp_path / "d"),
                                    "--count", "2", "--sim-baud", "0"])
    assert res.exit_code == 0, res.output
    reports = sorted((tmp_path / "d" / "reports" / "esp8266-nonos-at-1.7").glob("*.json"))
    assert len(reports) == 2
    report = json.loads(reports[0].read_text())
    assert report["outcome"] == "PASS"
    names = {m["name"]: m for m in report["measurements"]}
    assert names["gmr.at_version"]["expected"] == names["gmr.at_version"]["measured"] == "1.7.6.0"
    assert names["gmr.sdk_version"]["measured"] == "3.0.6-dev(072755c)"
    assert names["gmr.compile_time"]["measured"] == "Jun 17 2024 07:37:40" and names["gmr.bin_version"]["measured"] == "1.7.6"
    assert names["uart_def"]["measured"] == [115200, 8, 1, 0, 0] and names["uart.after_reset"]["outcome"] == "pass"
    details = {s["name"]: s["detail"] for s in report["steps"]}
    assert details["configure"] == "UART_DEF=115200,8,1,0,0; AT answered at 115200 baud"
    assert details["boot"].startswith("ready after")     # the boot output reached the AT client through the hand-over
    lines = [t.get("text") for t in report["transcript"]]
    assert "AT version:1.7.6.0(Jan 24 2022 08:56:02)" in lines and "Bin version(Wroom 02):1.7.6" in lines


def test_build_check_of_the_8mbit_map(tmp_path):
    assert CliRunner().invoke(main, ["check", str(RECIPE_1MB)]).exit_code == 0
    res = CliRunner().invoke(main, ["build", "-m", "esp8266-nonos-at-1mb", "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "flash_args").read_text().splitlines() == [
        "--flash_mode qio --flash_freq 40m --flash_size 1MB", "0x0 boot.bin", "0x1000 user1.bin",
        "0x7e000 blank.bin", "0xfc000 esp_init_data_default.bin", "0xfe000 blank.bin"]


def test_recipe_mixing_a_1x_map_with_the_v021_release(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text(RECIPE_1MB.read_text().replace('synthetic = "nonos-v1.7.6.0"', 'synthetic = "v0.21.0.0"'))
    res = CliRunner().invoke(main, ["check", str(bad)])
    assert res.exit_code == 2, res.output
    assert "firmware.synthetic" in res.output and "nonos-v1.7.6.0" in res.output
    assert len(res.output.strip().splitlines()) == 1
