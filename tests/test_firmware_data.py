"""The shipped firmware data (atfab/core/firmware/data): every release, chip and module build
makes a consistent profile, and the facts the rest of atfab leans on hold."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from atfab.core.errors import InputError
from atfab.core.firmware import (
    DEFAULT_RELEASE, chips, command_set, core_commits, feature_marker, firmware_for, firmware_profile, modules,
    release_data, release_of_core, releases,
)
from atfab.core.firmware.catalog import release_of_version
from atfab.core.firmware.catalog import common

BUILDS = [(r, c, m.name) for r in releases() for c in chips(r) for m in modules(r, c)]


def test_releases_the_project_supports():
    assert set(releases()) >= {"v3.3.0.0", "v4.0.0.0", "v4.1.0.0", "v5.0.1.0", "master"}
    assert releases()[-1] == "master" and DEFAULT_RELEASE in releases()


def test_every_data_file_is_toml_and_names_itself():
    folder = resources.files("atfab.core.firmware").joinpath("data")
    for item in folder.iterdir():
        data = tomllib.loads(item.read_text(encoding="utf-8"))
        if item.name != "common.toml":
            assert data["release"]["name"] == item.name.removesuffix(".toml")
            assert data["release"]["generation"] in ("G0", "G1", "G2", "G3")


@pytest.mark.parametrize("release,chip,module", BUILDS)
def test_every_module_build_makes_a_profile(release, chip, module):
    fw = firmware_profile(release, chip, module=module)
    names = [name for name, _forms in fw.commands]
    assert names[:3] == ["AT", "ATE0", "ATE1"] and fw.has_command("AT+GMR", "exec")
    assert fw.has_command("AT+SYSMFG", "set") == (fw.generation == "G3")
    # every generation but the ESP8266's (G0: no partitions) has AT+SYSFLASH
    assert fw.has_command("AT+SYSFLASH", "query") == (fw.generation != "G0")
    for feature in fw.features:
        assert command_set(release, chip, feature) or feature in ("rainmaker",), feature
    assert fw.wifi == fw.has_command("AT+CWMODE", "query")
    assert fw.ble == fw.has_command("AT+BLEINIT", "set")
    assert fw.rfpower_fields in (1, 4) and (bool(fw.module_names) == (fw.generation != "G0"))
    if not fw.legacy or release >= "v2.2":
        assert fw.fmt("gmr_at_version") == "AT version:%d.%d.%d.%d%s(%s%s - %s - %s %s)\r\n"
    if fw.ble:
        assert fw.has_fmt("gattssrv") and fw.has_fmt("gattschar")


def test_core_commit_names_the_release_per_chip():
    for release in releases():
        for chip in chips(release):
            commit = release_data(release)["chip"][chip]["core_commit"]
            if not commit:      # NONOS AT (G0) prints no core commit: its image names it by AT version
                version = release_data(release)["chip"][chip]["core_version"]
                assert release_of_version(chip, "G0", version) == release
                continue
            assert release_of_core(chip, commit) == release
    assert core_commits("esp32c2") == {"478a3d0": "v3.0.0.0", "3b13d04": "v3.3.0.0", "3fe3806": "v4.0.0.0", "c861975": "v4.1.0.0",
                                       "3258eee": "v5.0.1.0", "32ff6e1": "master"}


def test_a_tag_is_not_one_firmware_version():
    # the v5.0.1.0 tag releases C5/C61; its C2 core is a 4.2.0.0-dev core and prints so
    c2 = firmware_profile("v5.0.1.0", "esp32c2", module="ESP32C2-4MB")
    assert (c2.at_version, c2.core_commit, c2.fw_version) == ("4.2.0.0-dev", "3258eee", "v4.2.0.0-dev")
    c5 = firmware_profile("v5.0.1.0", "esp32c5")
    assert c5.at_version == "5.0.1.0"
    assert firmware_profile("v4.0.0.0", "esp32c2").at_version == "4.0.0.0-dev"


def test_module_name_tables_per_release():
    assert firmware_profile("v3.3.0.0", "esp32c2").module_names == ("ESP32C2-2MB", "ESP32C2-4MB", "ESP32C2-BLE-2MB")
    assert firmware_profile("v4.0.0.0", "esp32c2").module_names == ("ESP32C2-2MB", "ESP32C2-4MB")
    c2 = firmware_profile("v4.1.0.0", "esp32c2")
    assert len(c2.module_names) == 7 and c2.printed_module_name("ACME-1") == "ESP32C2-2MB"
    assert c2.printed_module_name("ESP32C2-4MB-G2") == "ESP32C2-4MB-G2" and c2.printed_module_name(None) == "ESP32C2-2MB"
    c3 = firmware_profile("v4.1.0.0", "esp32c3", module="ESP32C3_RAINMAKER")
    assert c3.printed_module_name("ESP32C3_RAINMAKER") == "MINI-1"


def test_rfpower_fields_follow_the_build():
    four = {(r, m.name) for r in releases() if "esp32c2" in chips(r) for m in modules(r, "esp32c2")
            if firmware_profile(r, "esp32c2", module=m.name).rfpower_fields == 4}
    assert ("v3.3.0.0", "ESP32C2-4MB") in four            # BluFi sets the getter already at v3.3
    assert ("v4.1.0.0", "ESP32C2-2MB") not in four and ("v4.1.0.0", "ESP32C2-2MB-BLE") in four
    assert ("v4.0.0.0", "ESP32C2-2MB") not in four
    assert firmware_profile("v4.1.0.0", "esp32", module="WROOM-32").rfpower_readback == "esp32_steps"


def test_version_dependent_behaviour_is_in_the_data():
    v33, v41, v501, master = (firmware_profile(r, "esp32c2", module="ESP32C2-4MB")
                              for r in ("v3.3.0.0", "v4.1.0.0", "v5.0.1.0", "master"))
    assert v33.sysmfg_namespace_listing == "previous" and v41.sysmfg_namespace_listing == "unique"
    assert v33.sysstore_boot == "constant" and v41.sysstore_boot == "factory_param"
    assert firmware_profile("v4.0.0.0", "esp32c2").cmd_search_duplicate == "first"
    assert v33.fmt("gattssrv") == "%s:1,%d,0x%04X,1\r\n" and not v33.has_fmt("gattssrv_uuid128")
    assert v501.fmt("gattssrv") == "%s:%d,1,0x%04X,1\r\n"
    assert v501.fmt("gattschar").endswith(",0x%02x\r\n") and master.fmt("gattschar").endswith(",0x%x\r\n")
    assert v41.bleinit_roles == (0, 1, 2) and v501.bleinit_roles == (0, 1, 2, 3)
    assert "https_ca" not in v33.pki_namespaces and "https_ca" in v41.pki_namespaces
    assert "wpa_ent_ca" in master.pki_namespaces
    assert v41.sysmfg_value_max == 8191 and v41.sysflash_prompt == b">" and v41.sysflash_read_trailer == b""
    assert v41.default_dns == ("208.67.222.222", "114.114.114.114", "8.8.8.8")
    assert v33.default_dns == ("208.67.222.222", "8.8.8.8")
    esp32 = firmware_profile("v4.1.0.0", "esp32", module="WROOM-32")
    assert esp32.download_mode_commands == () and not esp32.gatts_auto_create and esp32.has_fmt("gattsdesc")


def test_registration_markers():
    assert feature_marker("v4.1.0.0", "wifi") == "esp_at_wifi_cmd_regist"
    assert feature_marker("v4.1.0.0", "signaling") == "esp_at_fact_cmd_regist"
    assert feature_marker("master", "ethernet") == "esp_at_eth_cmd_register"
    assert feature_marker("v4.0.0.0", "ble_hid") == "regist ble hid cmd fail\r\n"
    assert feature_marker("v4.0.0.0", "uart") == "" and feature_marker("v4.1.0.0", "userwkmcu") == ""


def test_common_facts():
    core = common()["core"]
    assert core["sysmfg_value_max"] == 8191 and core["sysmsg_nvs"] == ["NVM_012", "s_msg", "i32"]
    assert common()["formats"]["busy"] == "\r\nbusy p...\r\n"


def test_bad_names_are_input_errors():
    with pytest.raises(InputError, match="unknown esp-at release"):
        firmware_profile("v9.9.9.9", "esp32c2")
    with pytest.raises(InputError, match="has no esp32c61 core"):
        firmware_profile("v4.1.0.0", "esp32c61")
    with pytest.raises(InputError, match="unknown chip"):
        firmware_for("esp32h2")
    with pytest.raises(InputError, match="unknown firmware setting"):
        firmware_for("esp32c2", {"no_such": 1})


def test_module_profile_overrides():
    fw = firmware_for("esp32c2", {"ble": True, "wifi": False})
    assert fw.ble and not fw.wifi
    assert firmware_for("esp32c61").release == "v5.0.1.0"      # first release with a C61 core
