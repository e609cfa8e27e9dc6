"""What goes into mfg_nvs follows the firmware's build configuration; raw_data trees are read as
esp-at reads them, and what esp-at would silently do differently is refused (issue 14)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.image.build import build, write_synthetic_firmware
from atfab.image.build_config import read_sdkconfig
from atfab.image.nvs.reader import read_nvs
from atfab.image.profiles import BUILTIN_DIR, load_profile
from atfab.station.recipe import check_recipe
from tests import esp_at_reference as ref
from tests.raw_data_support import DEFAULT, FULL, Material, raw_tree

MATERIAL = Material()
#: The kconfgen sdkconfig of esp-at's module_esp32c2_default build (CONFIG_AT_* lines).
C2_SDKCONFIG = ref.SDKCONFIGS / "module_esp32c2_default.sdkconfig"


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _tree(tmp_path: Path, layout=DEFAULT, **kw) -> Path:
    return raw_tree(tmp_path / "raw", layout, MATERIAL, **kw)


def _sdkconfig(tmp_path: Path, *, drop: tuple[str, ...] = (), add: tuple[str, ...] = (), name="sdkconfig") -> Path:
    text = C2_SDKCONFIG.read_text()
    for option in drop:
        assert f"CONFIG_{option}=y\n" in text
        text = text.replace(f"CONFIG_{option}=y\n", f"# CONFIG_{option} is not set\n")
    text += "".join(f"CONFIG_{o}=y\n" for o in add)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ the build configuration

def test_sdkconfig_and_json_give_the_same_configuration(tmp_path: Path) -> None:
    conf = read_sdkconfig(C2_SDKCONFIG)
    assert conf.enabled == load_profile("esp32c2-4mb").build.enabled and conf.source == str(C2_SDKCONFIG)
    assert not conf.ble_data and conf.reads("wpa_ent_ca") and not conf.reads("https_ca") and conf.reads("factory_param")
    values = {line.split("=")[0].removeprefix("CONFIG_"): True for line in C2_SDKCONFIG.read_text().splitlines()
              if line.startswith("CONFIG_") and line.endswith("=y")}
    (tmp_path / "sdkconfig.json").write_text(json.dumps({**values, "AT_BLE_COMMAND_SUPPORT": False}))
    assert read_sdkconfig(tmp_path / "sdkconfig.json").enabled == conf.enabled


@pytest.mark.parametrize("text, message", [
    ("hello\n", "not an sdkconfig"),
    ("CONFIG_AT_BLE_COMMAND_SUPPORT=y\n", "CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT is not enabled"),
    ("# CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT=y\nCONFIG_X=y\n", "reads no mfg_nvs"),
])
def test_bad_sdkconfig_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "sdkconfig").write_text(text)
    with pytest.raises(InputError) as info:
        read_sdkconfig(tmp_path / "sdkconfig")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_firmware_folder_sdkconfig_decides(tmp_path: Path) -> None:
    """An esp-at build folder's sdkconfig wins over the profile: without MQTT the mqtt folders are refused."""
    profile = load_profile("esp32c2-4mb")
    fw = write_synthetic_firmware(profile, tmp_path / "fw", version="v4.1.0.0")
    raw = _tree(tmp_path, ble_data=False)
    shutil.copyfile(_sdkconfig(tmp_path, drop=("AT_MQTT_BROKER_AUTH_CLIENT", "AT_MQTT_CLIENT_AUTH_BROKER")),
                    fw / "sdkconfig")
    res = run("build", "-m", "esp32c2-4mb", "--firmware", fw, "--pki-dir", raw, "-o", tmp_path / "out")
    assert res.exit_code == 2 and not (tmp_path / "out").exists()
    line = res.output.strip()
    assert "\n" not in line and "mqtt_cert" in line and "CONFIG_AT_MQTT_BROKER_AUTH_CLIENT is not enabled" in line
    assert str(fw / "sdkconfig") in line
    res = run("build", "-m", "esp32c2-4mb", "--firmware", fw, "--pki-dir", raw, "-o", tmp_path / "out",
              "--skip-unread", "--json")
    manifest = json.loads(res.output)
    assert manifest["build_config"]["source"] == str(fw / "sdkconfig")
    assert "mqtt_ca" not in manifest["namespaces"] and manifest["sources"]["skipped_unread"].keys() == {
        "mqtt_cert", "mqtt_key", "mqtt_ca"}
    # --sdkconfig is for a folder without one
    res = run("build", "-m", "esp32c2-4mb", "--firmware", fw, "--sdkconfig", C2_SDKCONFIG, "-o", tmp_path / "o2")
    assert res.exit_code == 2 and "has its own build configuration" in res.output


def test_gatt_on_a_build_without_ble(tmp_path: Path) -> None:
    res = run("build", "-m", "esp32c2-4mb", "--gatt", ref.GATTS_DATA, "-o", tmp_path / "out")
    assert res.exit_code == 2 and "CONFIG_AT_BLE_COMMAND_SUPPORT is not enabled" in res.output
    assert res.output.count("\n") == 1 and not (tmp_path / "out").exists()
    res = run("build", "-m", "esp32c2-4mb", "--gatt", ref.GATTS_DATA, "-o", tmp_path / "out", "--allow-unread")
    assert res.exit_code == 0 and "written although never read: ble_data" in res.output
    assert "ble_data" in read_nvs((tmp_path / "out" / "mfg_nvs.bin").read_bytes()).namespaces()
    res = run("build", "-m", "esp32c2-4mb", "--gatt", ref.GATTS_DATA, "-o", tmp_path / "o2", "--skip-unread")
    assert res.exit_code == 0 and "left out: ble_data" in res.output
    assert run("build", "-m", "esp32c2-4mb", "-o", tmp_path / "o3", "--skip-unread", "--allow-unread").exit_code == 2


# ------------------------------------------------------------------------------------- raw_data trees

@pytest.mark.parametrize("stray, kind", [(".DS_Store", "file"), ("README.md", "file"), ("server_ca.der", "file"),
                                         ("server_ca.PEM", "file"), ("backup", "folder")])
def test_stray_entry_in_a_pki_folder_is_refused(tmp_path: Path, stray: str, kind: str) -> None:
    """esp-at would name the single cert server_ca.0 because of the stray entry; atfab refuses it."""
    raw = _tree(tmp_path, {"server_ca": ["server_ca.crt"]}, ble_data=False)
    (raw / "server_ca" / stray).mkdir() if kind == "folder" else (raw / "server_ca" / stray).write_bytes(b"x")
    res = run("build", "-m", "esp32c2-4mb", "--pki-dir", raw, "-o", tmp_path / "out")
    assert res.exit_code == 2 and f"stray {kind} in a PKI folder" in res.output and stray in res.output
    assert "server_ca.0" in res.output


def test_raw_data_factory_param_and_gatt_are_used(tmp_path: Path) -> None:
    raw = _tree(tmp_path, {"client_ca": ["client_ca_00.crt"]})
    data = raw / "factory_param" / "factory_param_data.csv"
    data.write_text(data.read_text().replace("PLATFORM_ESP32C3,MINI-1,\"4MB, Wi-Fi + BLE, OTA, TX:7 RX:6\",4,78,",
                                             "PLATFORM_ESP32C3,MINI-1,\"4MB, Wi-Fi + BLE, OTA, TX:7 RX:6\",4,66,"))
    gatts = raw / "ble_data" / "gatts_data.csv"
    gatts.write_text(gatts.read_text().replace("C300,0x01,1,1,30", "C300,0x01,1,1,31"))
    manifest = build("esp32c3-mini-1", tmp_path / "out", pki_dir=raw)
    image = read_nvs((tmp_path / "out" / "mfg_nvs.bin").read_bytes())
    assert manifest["factory_param"]["max_tx_power"] == 66 and manifest["sources"]["factory_param"] == str(data)
    assert image.get("client_ca", "client_ca").value.startswith(b"-----BEGIN CERTIFICATE")
    assert "C300,0x01,1,1,31" in image.get("ble_data", "cfg2").value
    # params.toml still overrides the row; an explicit --gatt replaces the folder's table (and says so)
    params = tmp_path / "p.toml"
    params.write_text("[factory_param]\nmax_tx_power = 70\n")
    res = run("build", "-m", "esp32c3-mini-1", "--pki-dir", raw, "--params", params, "--gatt", ref.GATTS_DATA,
              "-o", tmp_path / "o2")
    assert res.exit_code == 0 and f"not used: {gatts} (--gatt given)" in res.output
    image = read_nvs((tmp_path / "o2" / "mfg_nvs.bin").read_bytes())
    assert image.get("factory_param", "max_tx_power").value == 70
    assert "C300,0x01,1,1,30" in image.get("ble_data", "cfg2").value


@pytest.mark.parametrize("change, message", [
    (lambda raw: (raw / "factory_param" / "x.pem").write_bytes(b"x"), "may hold only"),
    (lambda raw: (raw / "ble_data" / "extra.crt").write_bytes(b"x"), "may hold only gatts_data.csv"),
    (lambda raw: (raw / "factory_param" / "factory_param_type.csv").write_text("version,data,u8\n"),
     "differs from the factory_param key table"),
    (lambda raw: (raw / "factory_param" / "factory_param_data.csv").write_text("platform,module_name\n"),
     "no row for PLATFORM_ESP32C3,MINI-1"),
    (lambda raw: (raw / "mqtt_certs").mkdir(), "unknown PKI namespace 'mqtt_certs'"),
    (lambda raw: (raw / "wpa2_ca").mkdir() or (raw / "wpa2_ca" / "a.pem").write_bytes(MATERIAL.file("wpa_ent_ca", "a")),
     "two folders for namespace wpa_ent_ca"),
])
def test_raw_data_problems_are_one_line(tmp_path: Path, change, message: str) -> None:
    raw = _tree(tmp_path, {"wpa_ent_ca": ["wpa_ent_ca.pem"]})
    change(raw)
    res = run("build", "-m", "esp32c3-mini-1", "--pki-dir", raw, "-o", tmp_path / "out", "--skip-unread")
    assert res.exit_code == 2 and message in res.output and res.output.count("\n") == 1, res.output


def test_legacy_enterprise_names(tmp_path: Path) -> None:
    """CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT: HEAD's wpa_ent_* folders are written as wpa2_* (mfg_nvs.py)."""
    sdk = _sdkconfig(tmp_path, add=("AT_EAP_LEGACY_NAMESPACE_SUPPORT",))
    raw = _tree(tmp_path, {k: v for k, v in FULL.items() if k.startswith("wpa_ent")}, ble_data=False)
    manifest = build("esp32c2-4mb", tmp_path / "out", pki_dir=raw, sdkconfig=sdk)
    assert manifest["namespaces"] == ["wpa2_cert", "wpa2_key", "wpa2_ca", "factory_param"]
    expected = ref.mfg_nvs_csv(raw, sdk.read_text(), platform="PLATFORM_ESP32C2", module="ESP32C2-4MB")
    assert (tmp_path / "out" / "mfg_nvs.bin").read_bytes() == ref.mfg_nvs_bin(expected, 0x1F000, tmp_path / "e")


# ---------------------------------------------------------------------------------- module profiles

@pytest.mark.parametrize("old, new, message", [
    ("[build]\n", "[build]\nextra = 1\n", "unknown field"),
    ('"AT_EAP_COMMAND_SUPPORT",\n', '"AT_EAP_COMMAND_SUPORT",\n', "is not an option that changes mfg_nvs"),
    ('"AT_EAP_COMMAND_SUPPORT",\n', '"AT_EAP_LEGACY_NAMESPACE_SUPPORT",\n', "needs AT_EAP_COMMAND_SUPPORT"),
    ('"AT_EAP_COMMAND_SUPPORT",\n', '"AT_BLE_COMMAND_SUPPORT",\n', "they must agree"),
    ('"AT_EAP_COMMAND_SUPPORT",\n', '"AT_MQTT_CLIENT_AUTH_BROKER",\n', "listed twice"),
])
def test_profile_build_table_is_checked(tmp_path: Path, old: str, new: str, message: str) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(BUILTIN_DIR / "esp32c2-4mb", folder)
    text = (folder / "profile.toml").read_text()
    assert old in text
    (folder / "profile.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        load_profile(str(folder))
    assert message in info.value.message and info.value.field.startswith("build")


def test_profile_without_build_table_and_with_an_sdkconfig(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(BUILTIN_DIR / "esp32c2-4mb", folder)
    text = (folder / "profile.toml").read_text()
    head = text[:text.index("\n[build]")]
    (folder / "profile.toml").write_text(head)
    with pytest.raises(InputError, match="missing \\[build\\] table"):
        load_profile(str(folder))
    shutil.copyfile(C2_SDKCONFIG, folder / "sdkconfig")
    (folder / "profile.toml").write_text(head + '\n[build]\nsdkconfig = "sdkconfig"\n')
    assert load_profile(str(folder)).build.enabled == load_profile("esp32c2-4mb").build.enabled


# ---------------------------------------------------------------------------------------------- recipes

RECIPE = """\
name = "r"
module = "esp32-wrover-32"
[firmware]
synthetic = "v4.1.0.0"{extra}
[pki]
ca = "ca"
demo_ca = true
[pki.identity]
subject = {{ CN = "{{serial}}" }}
[[pki.slot]]
set = "mqtt"
cert = "unit"
key = "unit"
"""


def test_recipe_slot_the_firmware_never_reads(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text(RECIPE.format(extra=""))
    problems = check_recipe(tmp_path / "r.toml", workdir=tmp_path)
    assert [p.field for p in problems] == ["pki.slot[0].set"]
    assert "mqtt_cert, mqtt_key" in problems[0].message and "CONFIG_AT_MQTT_BROKER_AUTH_CLIENT" in problems[0].message
    assert "allow_unread = true" in problems[0].message
    (tmp_path / "r.toml").write_text(RECIPE.format(extra="\nallow_unread = true"))
    assert check_recipe(tmp_path / "r.toml", workdir=tmp_path) == []


def test_recipe_build_dir_sdkconfig_decides(tmp_path: Path) -> None:
    """A recipe's build_dir with an sdkconfig: that build's options, not the profile's, decide."""
    profile = load_profile("esp32c2-4mb")
    fw = write_synthetic_firmware(profile, tmp_path / "fw", version="v4.1.0.0")
    text = RECIPE.replace('module = "esp32-wrover-32"', 'module = "esp32c2-4mb"').replace(
        'synthetic = "v4.1.0.0"', 'build_dir = "fw"')
    (tmp_path / "r.toml").write_text(text.format(extra=""))
    assert check_recipe(tmp_path / "r.toml", workdir=tmp_path) == []       # the profile: MQTT on
    _sdkconfig(fw, drop=("AT_MQTT_BROKER_AUTH_CLIENT", "AT_MQTT_CLIENT_AUTH_BROKER"))
    problems = check_recipe(tmp_path / "r.toml", workdir=tmp_path)
    assert [p.field for p in problems] == ["pki.slot[0].set"] and str(fw / "sdkconfig") in problems[0].message
