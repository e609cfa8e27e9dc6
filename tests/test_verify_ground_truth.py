"""Verification that holds on hardware (issue 13, client half), end to end through the CLI on the
virtual module, plus the facts it rests on (ground truth §2, §6, §10 — the client side of each row).

* a recipe with a custom ``module_name``: ``AT+GMR`` prints table entry 0, the unit PASSes and the
  measurement says why (``gmr.module_name`` detail); ``atfab check`` warns in one line;
* ESP32C3_RAINMAKER is not in the C3 table: ``atfab check`` of the shipped profile warns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.firmware import firmware_profile
from atfab.verify.expected import expected_module_name, firmware_of_app, module_name_warning, release_of_app
from tests.conftest import run_with_timeout

T = 120

C2_TABLE = ("ESP32C2-2MB", "ESP32C2-4MB", "ESP32C2-2MB-BLE", "ESP32C2-2MB-G2", "ESP32C2-4MB-G2",
            "ESP32C2-2MB-NO-OTA-G2", "ESP32C2-2MB-BLE-G2")
ESP32_TABLE = ("WROOM-32", "WROOM-32", "WROVER-32", "PICO-D4", "SOLO-1", "MINI-1", "ESP32-SDIO", "ESP32-D2WD")


def _invoke(args: list, **kw):
    return run_with_timeout(CliRunner().invoke, T, main, [str(a) for a in args], **kw)


def _recipe(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n{body}\n[report]\ndir = "reports/{name}"\n[ledger]\npath = "ledger.sqlite"\n')
    return path


# -- ground truth §2: the compiled-in module-name tables -----------------------------------------
@pytest.mark.parametrize("release", ["v4.1.0.0", "v5.0.1.0", "master"])
def test_module_name_tables_are_the_ground_truth_lists(release):
    assert firmware_profile(release, "esp32c2").module_names == C2_TABLE
    assert firmware_profile(release, "esp32c3").module_names == ("MINI-1", "ESP32C3-SPI")
    assert firmware_profile(release, "esp32").module_names == ESP32_TABLE


def test_printed_module_name_is_a_table_entry_else_entry_0():
    fw = firmware_profile("v5.0.1.0", "esp32c2")
    assert expected_module_name(fw, "ESP32C2-4MB-G2") == ("ESP32C2-4MB-G2", None)   # strcmp match
    for name in ("ACME-SENSOR-7", "esp32c2-4mb", None, 5):                          # custom, case, missing, wrong type
        printed, note = expected_module_name(fw, name)
        assert printed == "ESP32C2-2MB" and "entry 0" in note
    assert module_name_warning(fw, "ESP32C2-4MB") is None
    c3 = firmware_profile("v4.1.0.0", "esp32c3")
    assert expected_module_name(c3, "ESP32C3_RAINMAKER")[0] == "MINI-1"


def test_the_app_names_the_release_verification_expects():
    base = firmware_profile("v4.1.0.0", "esp32c2", module="ESP32C2-2MB-BLE")
    assert release_of_app("esp32c2", {"version": "v5.0.1.0"}) == "v5.0.1.0"
    assert release_of_app("esp32c2", {"version": "custom-1", "at_core": "4.1.0.0(c861975 - ESP32C2 - x)"}) == "v4.1.0.0"
    assert release_of_app("esp32c2", {"version": "custom-1"}) is None
    fw = firmware_of_app(base, {"version": "v5.0.1.0"})
    assert fw.release == "v5.0.1.0" and fw.features == base.features
    assert firmware_of_app(base, None) is base


# -- ground truth §2: compile time is at_init.c's stamp; only the commit comes from the same source --------
def test_compile_time_compares_the_project_commit_only():
    from atfab.link.at.parse import parse_gmr
    from atfab.verify.unit import _compile_time
    gmr = parse_gmr(["AT version:4.1.0.0(c861975 - ESP32C2 - Jul 18 2025 07:28:00)", "SDK version:v5.0.6",
                     "compile time(be332568):Jul 18 2025 07:31:12", "Bin version:v4.1.0.0(ESP32C2-4MB)"])
    app = {"commit": "be332568", "date": "Jul 18 2025", "time": "07:30:59"}   # esp_app_desc.c: another TU
    m = _compile_time(app, gmr)
    assert m.passed and (m.expected, m.measured) == ("be332568", "be332568") and "not compared" in m.detail
    assert not _compile_time({**app, "commit": "deadbeef"}, gmr).passed
    unknown = _compile_time({"date": "x", "time": "y"}, gmr)                    # a real image: no commit known
    assert unknown.passed and unknown.rule == "present"


# -- atfab check ------------------------------------------------------------------------------------
def test_check_warns_once_when_module_name_is_never_printed(tmp_path):
    rainmaker = _recipe(tmp_path, "rm", 'module = "esp32c3-rainmaker"\n[firmware]\nsynthetic = "v4.1.0.0"\n')
    res = _invoke(["check", rainmaker, "--workdir", tmp_path])
    assert res.exit_code == 0, res.output                       # a warning, not an error
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "factory_param.module_name" in warnings[0]
    assert "'ESP32C3_RAINMAKER'" in warnings[0] and "'MINI-1'" in warnings[0]
    known = _recipe(tmp_path, "ok", 'module = "esp32c2-4mb"\n[firmware]\nsynthetic = "v4.1.0.0"\n')
    res = _invoke(["check", known, "--workdir", tmp_path, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["warnings"] == []


# -- must show: a custom module_name PASSes with a clear note ---------------------------------------
def test_custom_module_name_unit_passes_with_a_note(tmp_path):
    recipe = _recipe(tmp_path, "custom-name", 'module = "esp32c2-4mb"\n[firmware]\nsynthetic = "v4.1.0.0"\n'
                                              '[factory_param]\nmodule_name = "ACME-SENSOR-7"\n')
    res = _invoke(["run", recipe, "--sim", 1, "--workdir", tmp_path, "--json"])
    reports = sorted((tmp_path / "reports" / "custom-name").glob("*.json"))
    assert len(reports) == 1, res.output
    rep = json.loads(reports[0].read_text())
    m = {x["name"]: x for x in rep["measurements"]}["gmr.module_name"]
    assert m["expected"] == "ESP32C2-2MB"
    assert "'ACME-SENSOR-7' is not in the ESP32C2 v4.1.0.0 module-name table" in m["detail"]
    assert m["outcome"] == "pass" and rep["outcome"] == "PASS", (m, res.output)
    assert res.exit_code == 0


# -- ground truth §7: +RFPOWER field count per build ------------------------------------------------
def test_rfpower_fields_follow_the_build():
    """4 fields where a registered set stores at_ble_tx_power_get: BLE from v4.1.0.0 on, BluFi at every
    release (v3.3/v4.0 too: at_blufi.c.obj defines the pointer and esp_at_blufi_cmd_regist+0x4..0x10
    stores esp_ble_tx_power_get in it, read from the C2 cores of both tags), else 1."""
    from atfab.link.at.errors import AtResponseError
    from atfab.link.at.parse import parse_rfpower
    cases = {("v3.3.0.0", "ESP32C2-4MB"): 4, ("v3.3.0.0", "ESP32C2-BLE-2MB"): 4, ("v4.0.0.0", "ESP32C2-4MB"): 4,
             ("v4.1.0.0", "ESP32C2-4MB"): 4, ("v4.1.0.0", "ESP32C2-2MB-BLE"): 4, ("v4.1.0.0", "ESP32C2-2MB"): 1,
             ("v5.0.1.0", "ESP32C2-4MB"): 4, ("master", "ESP32C2-2MB-BLE"): 4, ("master", "ESP32C2-2MB-G2"): 1}
    for (release, module), want in cases.items():
        fw = firmware_profile(release, "esp32c2", module=module)
        assert fw.rfpower_fields == want, (release, module, fw.features)
        line = "+RFPOWER:78,0,0,0" if want == 4 else "+RFPOWER:78"
        assert parse_rfpower(line, fields=fw.rfpower_fields)[0] == 78
        with pytest.raises(AtResponseError):
            parse_rfpower("+RFPOWER:78" if want == 4 else "+RFPOWER:78,0,0,0", fields=fw.rfpower_fields)


# -- ground truth §10: GATT discovery lines read by meaning, per release -----------------------------
def _c2(release: str, module: str = "ESP32C2-2MB-BLE"):
    return firmware_profile(release, "esp32c2", module=module)


def test_v33_to_v41_service_lines_print_1_then_the_index():
    from atfab.link.at.gatt_lines import read_services
    for release in ("v3.3.0.0", "v4.0.0.0", "v4.1.0.0"):
        fw = _c2(release, module=None)
        # the esp-at sysmfg doc example is real v3.3-v4.1 output: literal 1, then index 2
        items = read_services(["+BLEGATTSSRV:1,1,0xA002,1", "+BLEGATTSSRV:1,2,0xA003,1"], fw)
        assert [(i.srv_index, i.uuid) for i in items] == [(1, 0xA002), (2, 0xA003)], release
        # the v5.0.1 order is not this firmware's: unreadable, never silently index 1
        assert read_services(["+BLEGATTSSRV:2,1,0xA003,1"], fw) == ["+BLEGATTSSRV:2,1,0xA003,1"]


def test_v501_and_head_service_lines_print_the_index_first():
    from atfab.link.at.gatt_lines import read_services
    for release in ("v5.0.1.0", "master"):
        items = read_services(["+BLEGATTSSRV:1,1,0xA002,1", "+BLEGATTSSRV:2,1,0xA003,1"], _c2(release))
        assert [(i.srv_index, i.uuid) for i in items] == [(1, 0xA002), (2, 0xA003)], release


def test_c2_char_lines_per_release_and_properties_case_insensitive():
    from atfab.link.at.gatt_lines import read_chars
    v41 = read_chars(['+BLEGATTSCHAR:"char",1,3,0xC302'], _c2("v4.1.0.0"))[0]
    assert (v41.srv_index, v41.char_index, v41.uuid, v41.prop) == (1, 3, 0xC302, None)
    v501 = read_chars(['+BLEGATTSCHAR:"char",1,3,0xC302,0x08'], _c2("v5.0.1.0"))[0]       # ,0x%02x
    head = read_chars(['+BLEGATTSCHAR:"char",1,3,0xC302,0x8'], _c2("master"))[0]          # ,0x%x
    assert v501.prop == head.prop == 8 and v501.text() == head.text() == "char 1.3 uuid=0xC302 prop=0x08"
    upper = read_chars(['+BLEGATTSCHAR:"char",1,1,0xc300,0x1A'], _c2("v5.0.1.0"))[0]
    assert upper.text() == "char 1.1 uuid=0xC300 prop=0x1A"
    # a v5.0.1 line on v4.1 firmware has one field too many: unreadable
    assert read_chars(['+BLEGATTSCHAR:"char",1,3,0xC302,0x08'], _c2("v4.1.0.0")) == [
        '+BLEGATTSCHAR:"char",1,3,0xC302,0x08']


def test_bluedroid_lines_lower_case_properties_and_descriptors():
    from atfab.link.at.gatt_lines import read_chars, read_services
    for chip in ("esp32", "esp32c3"):
        fw = firmware_profile("v4.1.0.0", chip)
        srv = read_services(["+BLEGATTSSRV:1,1,0xA002,1"], fw)[0]
        assert (srv.srv_index, srv.uuid) == (1, 0xA002)
        char, desc = read_chars(['+BLEGATTSCHAR:"char",1,1,0xC300,0x0a', '+BLEGATTSCHAR:"desc",1,1,1,0x2901'], fw)
        assert char.prop == 0x0A and desc.text() == "desc 1.1.1 uuid=0x2901"


def test_expected_meaning_follows_the_release():
    from atfab.image.gatt import load_gatts_csv
    from atfab.verify.gatt import expected_items
    from tests.paths import REPO
    rows = load_gatts_csv(REPO / "partitions" / "gatts_data.csv")
    v41 = expected_items(rows, _c2("v4.1.0.0"))
    v501 = expected_items(rows, _c2("v5.0.1.0"))
    assert [s.text() for s in v41[0]] == [s.text() for s in v501[0]] == ["srv 1 uuid=0xA002", "srv 2 uuid=0xA003"]
    assert all(c.prop is None for c in v41[1]) and all(c.prop is not None for c in v501[1])
    assert all(c.kind == "char" for c in v501[1])                       # never desc lines on C2
    esp32 = expected_items(rows, firmware_profile("v4.1.0.0", "esp32"))
    assert any(c.kind == "desc" for c in esp32[1])


# -- must show: a v5.0.1.0 BLE unit PASSes with a clear note -----------------------------------------
def test_v501_ble_unit_passes_with_gatt_compared_by_meaning(tmp_path):
    (tmp_path / "gatt").mkdir()
    from tests.paths import REPO
    (tmp_path / "gatt" / "ble-sensor.toml").write_text((REPO / "recipes" / "gatt" / "ble-sensor.toml").read_text())
    recipe = _recipe(tmp_path, "ble501", 'module = "esp32c2-2mb-ble"\n[firmware]\nsynthetic = "v5.0.1.0"\n'
                                         '[factory_param]\nmodule_name = "ESP32C2-2MB-BLE"\nuart_baudrate = 115200\n'
                                         '[gatt]\nfile = "gatt/ble-sensor.toml"\n'
                                         '[verify]\nchecks = ["boot", "gmr", "mac", "factory_param", "uart", '
                                         '"sysflash", "gatt"]\n')
    res = _invoke(["run", recipe, "--sim", 1, "--workdir", tmp_path, "--json"])
    reports = sorted((tmp_path / "reports" / "ble501").glob("*.json"))
    assert len(reports) == 1, res.output
    rep = json.loads(reports[0].read_text())
    by_name = {x["name"]: x for x in rep["measurements"]}
    assert rep["outcome"] == "PASS", [m for m in rep["measurements"] if m["outcome"] != "pass"]
    assert by_name["gmr.bin_version"]["measured"] == "v5.0.1.0"
    chars = by_name["gatt.chars"]
    assert "by meaning" in chars["detail"] and "v5.0.1.0" in chars["detail"] and "properties" in chars["detail"]
    assert all(" prop=0x" in c for c in chars["measured"])               # v5.0.1 prints properties on C2
    assert res.exit_code == 0
