"""A unit whose firmware reads no factory partition for its UART boots at the firmware's own rate
(G0 NONOS AT, esp32-at v1.0/v1.1: 115200) until the configure step stores the recipe's. On virtual
modules behind an RFC 2217 serial server (the host's baud reaches the module; a port at another rate
reads framing noise) the station listens at the boot rate, configures, follows to the recipe's rate
and proves contact before verify; a unit that already holds the recipe's rate (a retest) works too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main

from atfab.link.transport import open_port
from atfab.sim.uart_noise import resample
from atfab.station.events import EventBus
from atfab.station.recipe import load_recipe
from atfab.station.runner import PortSpec
from atfab.station.station import Station
from tests.conftest import run_with_timeout
from tests.paths import REPO

T = 60
BAUD = 921600
G0 = REPO / "recipes" / "esp8266-nonos-at.toml"
G0_1X = REPO / "recipes" / "esp8266-nonos-at-1.7.toml"


def _read_until(port, want: bytes, seconds: float = 2.0) -> bytes:
    got, end = b"", time.monotonic() + seconds
    while want not in got and time.monotonic() < end:
        got += port.read(256)
    return got


def _run(recipe, pool, *, one_port: bool, bus: EventBus | None = None):
    ports = [PortSpec(f"m{i}", m.flash_url, None if one_port else m.at_url) for i, m in enumerate(pool)]
    return run_with_timeout(Station(recipe, ports, station_id="t", bus=bus or EventBus()).run, T)


def _details(report) -> dict:
    data = json.loads(Path(report).read_text())
    return {s["name"]: s.get("detail") or "" for s in data["steps"]}


def _g1(tmp: Path, extra: str = "") -> Path:
    path = tmp / "v11.toml"
    path.write_text('module = "esp32-at-v1.1"\n[firmware]\nsynthetic = "v1.1.0.0"\n'
                    f'[factory_param]\nuart_baudrate = {BAUD}\n[retry]\nattempts = 1\n{extra}')
    return path


def _g0(tmp: Path, shipped: Path) -> Path:
    path = tmp / "g0.toml"
    path.write_text(shipped.read_text().replace("uart_baudrate = 115200", f"uart_baudrate = {BAUD}")
                    .replace("attempts = 2", "attempts = 1"))
    return path


@pytest.mark.parametrize("shipped", [G0, G0_1X], ids=["v0.21", "1.7"])
def test_g0_unit_at_a_non_default_baud_passes(tmp_path: Path, shipped: Path) -> None:
    recipe = _g0(tmp_path, shipped)
    res = run_with_timeout(CliRunner().invoke, T, main, ["run", str(recipe), "--sim", "1", "--sim-rfc2217",
                                                           "--sim-baud", "0", "--workdir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    (unit,) = json.loads(res.stdout)["units_detail"]
    steps = _details(unit["report"])
    assert "at 115200 baud (the firmware's boot rate)" in steps["boot"], steps["boot"]   # v0.21 prints no ready
    assert steps["boot"].startswith("ready") == (shipped == G0_1X)
    assert steps["configure"].endswith(f"AT answered at {BAUD} baud"), steps["configure"]


def test_g1_v1_1_unit_at_a_non_default_baud_passes_fresh_and_as_a_retest_and_at_neither_rate_is_error(
        module_pool, tmp_path: Path) -> None:
    recipe = load_recipe(_g1(tmp_path), workdir=tmp_path)
    pool = module_pool(1, chip="esp32", flash_size=recipe.profile.flash_size, firmware=recipe.profile.firmware,
                       serial_server=True)
    first = _run(recipe, pool, one_port=False)
    assert [r.outcome for r in first.results] == ["PASS"], first.results
    assert _details(first.results[0].report)["boot"].startswith("ready at 115200 baud")
    again = _run(recipe, pool, one_port=False)                 # the unit's NVS keeps UART_DEF=921600
    assert [r.outcome for r in again.results] == ["PASS"], again.results
    boot = _details(again.results[0].report)["boot"]
    assert f"answered AT at {BAUD} baud" in boot, boot
    # the serial server garbles both ways while the rates differ
    url = pool[0].at_url
    assert url.startswith("rfc2217://")
    with open_port(url, 115200, timeout=0.05) as port:           # the host at the old rate
        port.write(b"AT\r\n")
        assert b"OK" not in _read_until(port, b"OK", 0.3)    # the module framed noise: no command, no reply
    with open_port(url, BAUD, timeout=0.05) as port:
        port.write(b"AT\r\n")
        assert b"OK\r\n" in _read_until(port, b"OK\r\n")
        port.write(b"AT+UART_CUR=115200,8,1,0,0\r\n")          # OK at 921600, then the module moves ...
        assert b"OK\r\n" in _read_until(port, b"OK\r\n")
        port.write(b"AT\r\n")                                   # ... and the host, still at 921600, is not heard
        assert b"OK" not in _read_until(port, b"OK", 0.3)
        port.baudrate = 115200
        port.write(b"AT\r\n")                                   # legible now, after the noise it left: ERROR
        assert _read_until(port, b"ERROR\r\n").endswith(b"\r\nERROR\r\n")
        port.write(b"AT\r\n")
        assert b"OK\r\n" in _read_until(port, b"OK\r\n")
        port.write(b"AT+UART_DEF=230400,8,1,0,0\r\n")          # stored: neither rate the station knows
        assert b"OK\r\n" in _read_until(port, b"OK\r\n")
    short = load_recipe(_g1(tmp_path, "[verify]\nboot_timeout_s = 1.5\n"), workdir=tmp_path)
    (lost,) = _run(short, pool, one_port=False).results
    assert lost.outcome == "ERROR" and "no answer to AT at 921600 or 115200 baud" in lost.error, lost




def test_a_host_at_another_rate_reads_each_boot_part_as_its_receiver_frames_it(module_pool, tmp_path: Path) -> None:
    """An ESP8266 whose UART stores 921600, read by a host at 115200: the 74880-baud logs as a 115200
    receiver frames them, then ``ready`` (sent at 921600) as noise - not noise of the noise."""
    recipe = load_recipe(_g0(tmp_path, G0_1X), workdir=tmp_path)
    pool = module_pool(1, chip=recipe.profile.chip, flash_size=recipe.profile.flash_size,
                       firmware=recipe.profile.firmware, serial_server=True)
    assert [r.outcome for r in _run(recipe, pool, one_port=True).results] == ["PASS"]
    module = pool[0]
    with open_port(module.at_url, 115200, timeout=0.05) as port:
        time.sleep(0.2)
        port.reset_input_buffer()
        module.power_cycle()
        log, ready = module._firmware_obj.boot_segments                     # what went out, at which rate
        assert (log[1], ready) == (74880, (b"\r\nready\r\n", BAUD))
        want = resample(log[0], 74880, 115200) + resample(ready[0], BAUD, 115200)
        assert want != resample(resample(log[0], 74880, BAUD) + ready[0], BAUD, 115200)
        got = _read_until(port, want, 2.0)
    assert got == want
