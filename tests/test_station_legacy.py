"""The production station on legacy (G1/G2) units: `atfab run` / `atfab demo` with the shipped G1 and G2
recipes on virtual ESP32 modules (real esptool), per-item partitions built per unit (certificate and key
in client_*/mqtt_*), read back with AT+SYSFLASH; per-unit reports, ledger identities; a partition that
does not hold what was written is FAIL, a read-back flipped on the wire is ERROR (then retried)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from atfab.cli import main
from atfab.image.profiles import load_profile
from atfab.pki.ca import create_ca, load_ca
from atfab.station.events import Event, EventBus
from atfab.station.ledger import Ledger
from atfab.station.recipe import load_recipe
from atfab.station.station import Station, parse_port
from tests.conftest import run_with_timeout
from tests.paths import REPO
from tests.station_support import check_report

T = 120
G1 = REPO / "recipes" / "esp32-at-v1.2-g1.toml"
G2 = REPO / "recipes" / "esp32-at-v2-g2.toml"
PASSPHRASE = "legacy station test"


def _invoke(args: list, **kw):
    return run_with_timeout(CliRunner().invoke, T, main, [str(a) for a in args], **kw)


def _g2_recipe(tmp: Path) -> Path:
    """The shipped G2 recipe with a real CA folder in ``tmp/ca``."""
    create_ca(tmp / "ca", common_name="Legacy Station CA", organization="atfab tests", passphrase=PASSPHRASE.encode())
    path = tmp / "g2.toml"
    path.write_text(G2.read_text().replace('ca = "../certs/demo-ca"', f'ca = "{tmp / "ca"}"')
                    .replace("demo_ca = true", "demo_ca = false"))
    return path


def test_g2_recipe_runs_two_units_with_certificates_in_their_partitions(tmp_path: Path) -> None:
    recipe = _g2_recipe(tmp_path)
    assert _invoke(["check", recipe]).exit_code == 0
    res = _invoke(["run", recipe, "--sim", 2, "--sim-baud", 0, "--workdir", tmp_path, "--json"],
                  env={"ATFAB_CA_PASSPHRASE": PASSPHRASE})
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["counts"]["PASS"] == 2
    units = {u["serial"]: u for u in summary["units_detail"]}
    assert set(units) == {"G2E-000001", "G2E-000002"}
    with Ledger(tmp_path / "ledger.sqlite") as led:
        for serial, unit in units.items():
            data = check_report(Path(unit["report"]))
            assert data["outcome"] == "PASS" and data["unit"] == {"chip": "esp32", "mac": unit["mac"], "serial": serial}
            by_name = {m["name"]: m for m in data["measurements"]}
            assert {"partition.factory_param", "partition.client_cert", "partition.client_key", "partition.mqtt_key",
                    "partition.ble_data", "sysflash.table", "gmr.recipe_version", "country", "sta_mac"} <= set(by_name)
            assert all(m["outcome"] == "pass" for m in by_name.values())
            assert by_name["gmr.module_name"]["measured"] == "WROOM-32" and by_name["country"]["measured"] == ["EU", 1, 13]
            assert {"client_cert.bin", "mqtt_key.bin", "factory_param.bin", "esp-at.bin"} <= set(data["images"])
            certs = led.certificates_for(unit["mac"])
            assert {c.fingerprint for c in certs} == {c["fingerprint_sha256"] for c in data["certificates"]}
            assert led.attempt(data["attempt_id"]).serial == serial


def test_g1_demo_passes_with_power_levels(tmp_path: Path) -> None:
    res = _invoke(["demo", "--recipe", G1, "--out", tmp_path / "d", "--count", 1, "--sim-baud", 0])
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "d" / "reports" / "esp32-at-v1.2-g1").glob("*.json")
    data = check_report(path)
    by_name = {m["name"]: m for m in data["measurements"]}
    levels = load_profile("esp32-at-v1.2").firmware.rfpower_levels
    assert data["outcome"] == "PASS" and by_name["rf_power.wifi"]["measured"] == levels[10]   # level 10, in 0.25 dBm
    assert {"partition.client_cert", "partition.client_key", "partition.factory_param"} <= set(by_name)
    assert {s["name"]: s["outcome"] for s in data["steps"]}["certificate"] == "ok"


def test_a_partition_that_does_not_hold_is_fail_and_a_flipped_read_back_is_error(module_pool, tmp_path: Path) -> None:
    recipe = load_recipe(_g2_recipe(tmp_path), workdir=tmp_path)
    profile = recipe.profile
    pool = module_pool(2, chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware)
    pool[0].faults.corrupt_next_read = True            # one byte flipped on one AT+SYSFLASH read: link noise
    cert = profile.at_customize.find("client_cert")
    bus = EventBus()

    def spoil(ev: Event) -> None:                      # unit 1's client_cert sector loses its content after flashing
        if ev.port == "m1" and ev.step == "configure" and ev.status == "start":
            pool[1].flash.erase(cert.offset, 0x1000)

    bus.subscribe(spoil)
    ports = [parse_port(f"m{i}={m.flash_url},{m.at_url}") for i, m in enumerate(pool)]
    station = Station(recipe, ports, ca=load_ca(tmp_path / "ca", PASSPHRASE.encode()), station_id="t", bus=bus)
    summary = run_with_timeout(station.run, T)
    by_port: dict[str, list] = {}
    for r in summary.results:
        by_port.setdefault(r.port, []).append(r)
    first, second = by_port["m0"]
    assert (first.outcome, second.outcome) == ("ERROR", "PASS") and "re-read" in first.error
    assert second.retry_of == first.attempt_id
    (failed,) = by_port["m1"]                          # [retry] on = ["ERROR"]: a FAIL is not retried
    assert failed.outcome == "FAIL" and failed.error == "failed: partition.client_cert"
    data = check_report(failed.report)
    (m,) = [m for m in data["measurements"] if m["outcome"] == "fail"]
    assert m["name"] == "partition.client_cert" and m["measured"] != m["expected"]
    assert summary.exit_code == 1 and not bus.errors


def test_a_build_folder_or_factory_image_names_the_release_the_recipe_is_checked_for(tmp_path: Path) -> None:
    """No synthetic version: the release is the one the app's AT core commit names (v2.1.0.0 here, not the
    profile's default v3.0.0.0), so [factory_param] is checked against v2.1's version-2 block."""
    out = tmp_path / "fw"
    assert _invoke(["build", "-m", "esp32-at-v2", "--synthetic-firmware", "v2.1.0.0", "-o", out]).exit_code == 0
    for kind, value in (("build_dir", out), ("factory_image", out / "factory_WROOM-32.bin")):
        path = tmp_path / f"{kind}.toml"
        path.write_text(f'module = "esp32-at-v2"\n[firmware]\n{kind} = "{value}"\n[factory_param]\nmodule_id = 2\n')
        recipe = load_recipe(path, workdir=tmp_path)
        assert recipe.profile.firmware.release == "v2.1.0.0", kind
        assert recipe.profile.firmware.factory_param_layout != load_profile("esp32-at-v2").firmware.factory_param_layout


def test_a_release_without_a_factory_param_block_gets_baud_and_power_over_at(tmp_path: Path) -> None:
    """esp32-at v1.1.0.0 reads no factory_param partition: the recipe's baud and power level are set with
    AT+UART_DEF and AT+RFPOWER=<level> by the configure step and verified; other keys are refused."""
    recipe = tmp_path / "v11.toml"
    recipe.write_text('module = "esp32-at-v1.1"\n[firmware]\nsynthetic = "v1.1.0.0"\n'
                      '[factory_param]\nuart_baudrate = 230400\nmax_tx_power = 4\n')
    checked = _invoke(["check", recipe, "--workdir", tmp_path])       # valid: the station finds the boot rate itself
    assert checked.exit_code == 0 and "warning" not in checked.output, checked.output
    res = _invoke(["run", recipe, "--sim", 1, "--sim-baud", 0, "--workdir", tmp_path, "--json"])
    assert res.exit_code == 0, res.output
    (unit,) = json.loads(res.stdout)["units_detail"]
    data = check_report(Path(unit["report"]))
    by_name = {m["name"]: m for m in data["measurements"]}
    levels = load_profile("esp32-at-v1.1").firmware.rfpower_levels
    assert by_name["uart_def.baud"]["measured"] == 230400 and by_name["rf_power.wifi"]["measured"] == levels[4]
    assert "RFPOWER=4" in {s["name"]: s["detail"] for s in data["steps"]}["configure"]
