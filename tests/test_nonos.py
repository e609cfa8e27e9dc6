"""ESP8266 NONOS AT (G0): the synthetic download map, the virtual module booting what was flashed,
the v0.21 command dialect, and a station provisioning and verifying units end to end.

The facts come from the v0.21 manual (reference §0, §2.3, §2.4, §3.2, §11) and esptool's ESP8266
image formats; the boot log's shape (``load``/``tail``/``chksum`` per segment, then ``csum``) is
the one quoted in the manual's Q&A, and its running checksum must end equal to the image's own
checksum byte as esptool reads it.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
import serial
from click.testing import CliRunner
from esptool import cmds
from esptool.bin_image import ESP8266ROMFirmwareImage, ESP8266V2FirmwareImage
from esptool.loader import ESPLoader

from atfab.cli import main
from atfab.image.nonos import read_user1, synthetic_files
from atfab.image.profiles import load_profile
from atfab.sim.module import VirtualModule
from atfab.sim.uart_noise import resample
from atfab.link.transport import port_for_url
from tests.conftest import run_with_timeout

T = 30
PROFILE = "esp8266-nonos-512k"
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "esp8266-nonos-at.toml"


@pytest.fixture(scope="module")
def profile():
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def download_map(profile):
    return synthetic_files(profile.nonos, profile.firmware, flash_size=profile.flash_size,
                           flash_mode=profile.flash_mode, flash_freq=profile.flash_freq)


@pytest.fixture
def module(profile):
    m = VirtualModule(chip="esp8266", flash_size=profile.flash_size, firmware=profile.firmware, seed="g0").start()
    yield m
    m.stop()


def flash_with_esptool(m: VirtualModule, files) -> None:
    def work():
        port = port_for_url(m.flash_url, timeout=5)
        port.open()
        try:
            esp = cmds.run_stub(cmds.detect_chip(port))
            cmds.attach_flash(esp)
            cmds.write_flash(esp, [(off, data) for off, _name, data in files], flash_mode="keep",
                             flash_freq="keep", flash_size="keep", no_progress=True)
        finally:
            port.close()
    run_with_timeout(work, T)
    assert m.wait_state("at", 10)


def talk(port, command: bytes, wait: float = 0.3) -> bytes:
    port.write(command + b"\r\n")
    deadline = time.monotonic() + wait
    out = b""
    while time.monotonic() < deadline:
        out += port.read(4096)
    return out


def test_download_map_is_what_esptool_reads(download_map, profile):
    names = [(hex(off), name) for off, name, _ in download_map]
    assert names == [("0x0", "boot.bin"), ("0x1000", "user1.bin"), ("0x3e000", "blank.bin@0x3e000"),
                     ("0x7c000", "esp_init_data_default.bin"), ("0x7e000", "blank.bin@0x7e000")]
    files = {name: data for _off, name, data in download_map}
    boot = ESP8266ROMFirmwareImage(io.BytesIO(files["boot.bin"]))
    boot.verify()
    assert boot.flash_size_freq == 0x00 and boot.flash_mode == 0        # 512KB, 40m, QIO
    user1 = ESP8266V2FirmwareImage(io.BytesIO(files["user1.bin"]))      # checks checksum and CRC
    assert user1.version == 2 and files["user1.bin"][0] == 0xEA
    app = read_user1(files["user1.bin"])
    assert (app.at_version, app.sdk_version, app.synthetic) == ("0.21.0.0", "0.9.5", True)
    assert files["blank.bin@0x3e000"] == b"\xff" * 4096 and len(files["esp_init_data_default.bin"]) == 128


def test_uart_noise_is_what_a_receiver_at_another_baud_reads():
    text = b" ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n"
    assert resample(text, 115200, 115200) == text
    noise = resample(text, 74880, 115200)
    assert text not in noise and len(noise) > len(text)       # a faster receiver frames more bytes
    # by hand, receiver twice as fast: it samples the sender's bit (0.75 + k/2) for data bit k, so
    # the start bit lands in bit 0 and the sender's first 7 data bits fill bits 1..7
    assert resample(b"\xff" * 3, 9600, 19200) == b"\xfe" * 3
    # 0x0F: the first frame reads 0xFE; the falling edge into data bit 4 starts a second, 0x80
    assert resample(b"\x0f", 9600, 19200) == b"\xfe\x80"
    assert resample(b"\x00", 9600, 19200) == b"\x00"          # stop bit sampled low: framing error, passed on


def test_boots_what_was_flashed_and_speaks_v0_21(module, download_map):
    flash_with_esptool(module, download_map)
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert talk(p, b"AT") == b"AT\r\n\r\nOK\r\n"
        assert talk(p, b"AT+GMR") == b"AT+GMR\r\nAT version:0.21.0.0\r\nSDK version:0.9.5\r\n\r\nOK\r\n"
        assert talk(p, b"AT+CIPSTAMAC?") == (b'AT+CIPSTAMAC?\r\n+CIPSTAMAC:"' + module.mac.hex(":").encode()
                                             + b'"\r\n\r\nOK\r\n')
        assert talk(p, b"AT+UART_CUR?").endswith(b"\r\nERROR\r\n")        # not in 0.21 (G1 and later)
        assert talk(p, b"AT+UART?").endswith(b"\r\nERROR\r\n")            # set-only in 0.21
        assert talk(p, b"AT+UART=9600,9,1,0,0").endswith(b"\r\nERROR\r\n")  # databits 5..8
        assert talk(p, b"AT+SYSFLASH?").endswith(b"\r\nERROR\r\n")        # no partitions on G0
        assert talk(p, b"ATE0") == b"ATE0\r\n\r\nOK\r\n" and talk(p, b"AT") == b"\r\nOK\r\n"


def test_rom_log_at_74880_from_the_flashed_boot_image(module, download_map):
    """With AT+UART=74880 stored, a host at 74880 reads the boot log as text: one load/tail/chksum
    group per boot.bin segment (as esptool parses it), a running checksum that ends at the image's
    checksum byte, then the second stage and the SDK lines; at 115200 the same log is noise."""
    flash_with_esptool(module, download_map)
    boot = ESP8266ROMFirmwareImage(io.BytesIO(dict((n, d) for _o, n, d in download_map)["boot.bin"]))
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert talk(p, b"AT+UART=74880,8,1,0,0") == b"AT+UART=74880,8,1,0,0\r\n\r\nOK\r\n"
        log = talk(p, b"AT+RST", 0.6).decode("latin-1")
    assert log.startswith("AT+RST\r\n\r\nOK\r\n\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n")
    groups = re.findall(r"load 0x([0-9a-f]{8}), len (\d+), room (\d+) \r\ntail (\d)\r\nchksum 0x([0-9a-f]{2})\r\n", log)
    assert [(int(a, 16), int(n)) for a, n, *_ in groups] == [(s.addr, len(s.data)) for s in boot.segments]
    chk = ESPLoader.ESP_CHECKSUM_MAGIC
    for (_a, n, _room, tail, shown), seg in zip(groups, boot.segments):
        chk = ESPLoader.checksum(seg.data, chk)
        assert int(shown, 16) == chk and int(tail) == int(n) % 8
    assert f"csum 0x{boot.checksum:02x}\r\n" in log and chk == boot.checksum
    assert "SDK version:0.9.5\r\n" in log and "jump to run user1 @ 1000" in log


def test_uart_setting_survives_reset_and_blank_bin_factory_initialises(module, download_map):
    flash_with_esptool(module, download_map)
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        talk(p, b"AT+UART=57600,8,1,0,0")
        talk(p, b"AT+RST", 0.5)
    assert module._at_baud is None or module._at_baud == 57600
    assert module.flash.read(0x3E000, 8) == b"ATFABG0U"            # the user parameter area holds it
    flash_with_esptool(module, [f for f in download_map if f[0] == 0x3E000])   # blank.bin at 0x3E000 again
    assert module.flash.read(0x3E000, 8) == b"\xff" * 8


@pytest.mark.parametrize("what, offset", [("boot.bin", 0x0), ("user1.bin", 0x1000)])
def test_a_corrupt_image_never_reaches_the_at_app(module, download_map, what, offset):
    files = [(off, name, bytearray(data)) for off, name, data in download_map]
    for f in files:
        if f[1] == what:
            f[2][40] ^= 0xFF
    flash_with_esptool(module, [(o, n, bytes(d)) for o, n, d in files])
    with serial.serial_for_url(module.at_url, timeout=0.05) as p:
        assert b"OK" not in talk(p, b"AT", 0.5)


def test_station_provisions_and_verifies_esp8266_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", str(RECIPE), "--sim", "2", "--sim-baud", "0", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["counts"]["PASS"] == 2
    reports = sorted((tmp_path / "reports" / "esp8266-nonos-at").glob("*.json"))
    report = json.loads(reports[0].read_text())
    names = {m["name"]: m for m in report["measurements"]}
    assert {"at.alive", "gmr.at_version", "gmr.sdk_version", "sta_mac", "uart.after_reset"} <= set(names)
    assert names["gmr.at_version"]["expected"] == "0.21.0.0" and names["uart.after_reset"]["measured"] == 115200
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["build"]["outcome"] == "skipped" and steps["certificate"]["outcome"] == "skipped"
    # one UART0 per unit, as on a real ESP8266 line: esptool's port handed to the AT client
    assert "one UART0" in steps["connect"]["detail"] and report["station"]["port"] in ("sim0", "sim1")


def test_one_port_hand_over_and_two_ports_still_work(tmp_path):
    """The sim serves UART0 on one endpoint: after the ROM's "run user code" the firmware answers on
    the download connection (the AT endpoint stays silent meanwhile). A unit given FLASH,AT (two
    endpoints, e.g. a jig with a second adapter) is still provisioned the old way."""
    from atfab.link.at.client import AtClient
    from atfab.link.flasher import FlashError, Flasher
    from atfab.station.recipe import load_recipe
    from atfab.station.station import Station, parse_port

    prof = load_profile(PROFILE)
    with VirtualModule(chip="esp8266", flash_size=prof.flash_size, firmware=prof.firmware, seed="g0-one") as m:
        recipe = load_recipe(RECIPE, workdir=tmp_path)
        summary = run_with_timeout(Station(recipe, [parse_port(f"one={m.flash_url}")], station_id="t",
                                           reports_dir=tmp_path / "r1").run, T)
        assert summary.counts["PASS"] == 1, summary.to_dict()

        def stub_refuses():
            with Flasher(m.flash_url, firmware=prof.firmware).session() as s:
                s.md5(0, 4096)                                   # uploads the stub
                with pytest.raises(FlashError, match="stub cannot start"):
                    s.hand_over(115200)

        def hand_over(side):
            with Flasher(m.flash_url, firmware=prof.firmware, stub=False).session() as s:
                port = s.hand_over(115200)
            try:
                at = AtClient(port, firmware=prof.firmware, timeout=5)
                deadline = time.monotonic() + 5
                while True:
                    try:
                        at.call("AT", timeout=0.3)
                        break
                    except Exception:
                        assert time.monotonic() < deadline
                silent = b"OK" not in talk(side, b"AT", 0.3)   # while UART0 carries the firmware
                return at.gmr().at_version, silent
            finally:
                port.close()

        run_with_timeout(stub_refuses, T)
        with serial.serial_for_url(m.at_url, timeout=0.05) as side:
            assert run_with_timeout(hand_over, T, side) == ("0.21.0.0", True)
        two = run_with_timeout(Station(recipe, [parse_port(f"two={m.flash_url},{m.at_url}")], station_id="t",
                                       reports_dir=tmp_path / "r2").run, T)
        assert two.counts["PASS"] == 1, two.to_dict()


def test_demo_with_the_esp8266_recipe(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--recipe", str(RECIPE), "--out", str(tmp_path / "d"), "--count", "2",
                                    "--sim-baud", "0"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d" / "reports" / "esp8266-nonos-at").glob("*.json"))) == 2


def test_build_writes_the_download_map(tmp_path):
    res = CliRunner().invoke(main, ["build", "-m", PROFILE, "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "b"
    assert (out / "flash_args").read_text().splitlines() == [
        "--flash_mode qio --flash_freq 40m --flash_size 512KB", "0x0 boot.bin", "0x1000 user1.bin",
        "0x3e000 blank.bin", "0x7c000 esp_init_data_default.bin", "0x7e000 blank.bin"]
    factory = (out / "factory_ESP-01.bin").read_bytes()
    assert len(factory) == 512 * 1024 and factory[0x1000:0x1000 + 4] == (out / "user1.bin").read_bytes()[:4]


@pytest.mark.parametrize("edit, field", [
    ('[pki]\nca = "ca"\n', "pki"),
    ("[factory_param]\nmax_tx_power = 78\n", "factory_param.max_tx_power"),
    ('[verify]\nchecks = ["rf_power"]\n', "verify.checks"),
])
def test_recipe_asks_only_what_a_nonos_module_has(tmp_path, edit, field):
    text = RECIPE.read_text()
    for table in ("[factory_param]", "[verify]"):
        if edit.startswith(table):
            text = text.replace(table + "\n", "", 1).replace("uart_baudrate = 115200\n", "")
            text = re.sub(r"boot_timeout_s = .*\n", "", text)
    bad = tmp_path / "r.toml"
    bad.write_text(text + "\n" + edit)
    res = CliRunner().invoke(main, ["check", str(bad)])
    assert res.exit_code == 2, res.output
    assert field in res.output


def test_recipe_synthetic_release_must_be_the_modules(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text(RECIPE.read_text().replace('synthetic = "v0.21.0.0"', 'synthetic = "v4.1.0.0"'))
    res = CliRunner().invoke(main, ["check", str(bad)])
    assert res.exit_code == 2 and "firmware.synthetic" in res.output and "NONOS AT v0.21.0.0" in res.output

