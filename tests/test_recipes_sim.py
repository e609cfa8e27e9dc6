"""The shipped recipes on virtual modules: `atfab run recipes/<r>.toml --sim 2` end to end (tmp dirs).

The virtual module models an ESP32-C2 and a classic ESP32 (ROM download mode + AT firmware). The
BLE sensor recipe targets the BLE-only ESP32-C2 2MB build and must PASS; the ESP32-WROOM-32 recipe
runs on virtual ESP32 modules (ESP32-D0WD-V3, 4 MB) and must PASS too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from atfab.cli import main
from atfab.station.recipe import load_recipe
from tests.conftest import run_with_timeout
from tests.paths import REPO

T = 120
RECIPES = REPO / "recipes"
PASSPHRASE = "recipes on virtual modules"


def _invoke(args: list, **kw):
    return run_with_timeout(CliRunner().invoke, T, main, [str(a) for a in args], **kw)


def test_ble_sensor_recipe_passes_on_virtual_ble_only_modules(tmp_path: Path) -> None:
    recipe = RECIPES / "esp32c2-ble-sensor.toml"
    loaded = load_recipe(recipe, workdir=tmp_path)
    assert not loaded.profile.firmware.wifi and loaded.profile.firmware.ble     # a BLE-only build
    res = _invoke(["run", recipe, "--sim", 2, "--workdir", tmp_path, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["counts"]["PASS"] == 2, summary
    reports = sorted((tmp_path / "reports" / "esp32c2-ble-sensor").glob("*.json"))
    assert len(reports) == 2
    for path in reports:
        rep = json.loads(path.read_text())
        assert rep["outcome"] == "PASS"
        by_name = {m["name"]: m for m in rep["measurements"]}
        base = by_name["mac.base"]                      # AT+BLEADDR? - 2 = the MAC esptool read
        assert base["outcome"] == "pass" and base["measured"] == rep["unit"]["mac"]
        assert base["detail"].startswith("AT+BLEADDR? ")
        assert "sta_mac" not in by_name and "rf_power.wifi" not in by_name
        assert by_name["gatt.services"]["outcome"] == by_name["gatt.chars"]["outcome"] == "pass"
        assert rep["unit"]["serial"] == "BLES-" + rep["unit"]["mac"].replace(":", "").upper()


def test_esp32_wroom_recipe_passes_on_virtual_esp32_modules(tmp_path: Path) -> None:
    res = _invoke(["check", RECIPES / "esp32-wroom-32.toml", "--workdir", tmp_path])
    assert res.exit_code == 0 and ": ok (" in res.output, res.output
    # a copy next to a real CA folder where the recipe expects it (../certs/demo-ca)
    (tmp_path / "recipes").mkdir()
    recipe = Path(shutil.copy(RECIPES / "esp32-wroom-32.toml", tmp_path / "recipes"))
    env = {"ATFAB_CA_PASSPHRASE": PASSPHRASE}
    made = _invoke(["ca", "init", "--dir", tmp_path / "certs" / "demo-ca", "--cn", "Sim CA"], env=env)
    assert made.exit_code == 0, made.output
    work = tmp_path / "work"
    res = _invoke(["run", recipe, "--sim", 2, "--workdir", work, "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["counts"]["PASS"] == 2
    reports = sorted((work / "reports" / "esp32-wroom-32").glob("*.json"))
    assert len(reports) == 2
    for path in reports:
        rep = json.loads(path.read_text())
        assert rep["outcome"] == "PASS" and rep["unit"]["chip"] == "esp32"
        by_name = {m["name"]: m for m in rep["measurements"]}
        assert by_name["sta_mac"]["measured"] == rep["unit"]["mac"]     # the MAC esptool read
        assert by_name["gmr.module_name"]["measured"] == "WROOM-32"
        assert by_name["rf_power.wifi"]["outcome"] == "pass"              # ESP32 read-back steps
        assert by_name["gatt.services"]["outcome"] == by_name["gatt.chars"]["outcome"] == "pass"


def test_slow_at_uart_recipe_passes_with_download_mode_at_esptools_baud(tmp_path: Path) -> None:
    """A recipe whose AT UART runs at 9600 baud: the modules are paced at 9600 on the AT side,
    but their ROM loader answers at the rate esptool opens at (115200, then its baud change):
    the ROM auto-bauds to the download host, it never runs at the firmware's UART rate."""
    (tmp_path / "recipes").mkdir()
    text = (RECIPES / "esp32c2-4mb-default.toml").read_text()
    assert "uart_baudrate = 115200" in text
    recipe = tmp_path / "recipes" / "slow-uart.toml"
    recipe.write_text(text.replace("uart_baudrate = 115200", "uart_baudrate = 9600"))
    env = {"ATFAB_CA_PASSPHRASE": PASSPHRASE}
    made = _invoke(["ca", "init", "--dir", tmp_path / "certs" / "demo-ca", "--cn", "Sim CA"], env=env)
    assert made.exit_code == 0, made.output
    work = tmp_path / "work"
    res = _invoke(["run", recipe, "--sim", 1, "--workdir", work, "--json"], env=env)   # paced at 9600
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["counts"]["PASS"] == 1
    (report,) = sorted((work / "reports" / "esp32c2-4mb-default").glob("*.json"))
    rep = json.loads(report.read_text())
    assert rep["outcome"] == "PASS", rep.get("error")
    by_name = {m["name"]: m for m in rep["measurements"]}
    assert any("9600" in str(m.get("measured")) for m in by_name.values() if m["name"].startswith("uart")), by_name.keys()
