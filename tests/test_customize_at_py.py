"""``atfab customize --image``: esp-at ``tools/at.py modify_bin``'s options (``--uart_num``, per-row
``--gatts_cfgN``), namespaces added where esp-at's build puts them, and the firmware's build
configuration for added namespaces (issue 14)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.customize.image import customize_image
from atfab.customize.plan import make_request
from atfab.image.build import build
from atfab.image.nvs.reader import read_nvs
from tests import esp_at_reference as ref
from tests.raw_data_support import DEFAULT, FULL, Material, raw_tree

MATERIAL = Material()
ROWS = [r for r in ref.GATTS_DATA.read_text().splitlines() if r and not r.startswith("#")]


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """mfg_nvs images: esp32c3-mini-1 (BLE) and esp32c2-4mb (no BLE) from esp-at's default set."""
    base = tmp_path_factory.mktemp("at_py")
    raw = raw_tree(base / "raw", DEFAULT, MATERIAL)
    build("esp32c3-mini-1", base / "c3", pki_dir=raw)
    build("esp32c2-4mb", base / "c2", pki_dir=raw, unread="skip")
    return {"raw": raw, "c3": base / "c3" / "mfg_nvs.bin", "c2": base / "c2" / "mfg_nvs.bin", "base": base}


def _changed(before: bytes, after: bytes) -> set[tuple[str, str]]:
    a = {(e.namespace, e.key): (e.type, e.value) for e in read_nvs(before).entries}
    b = {(e.namespace, e.key): (e.type, e.value) for e in read_nvs(after).entries}
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_uart_num_sets_uart_port(built, tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    res = run("customize", "--image", built["c3"], "-o", out, "--uart-num", 0)
    assert res.exit_code == 0, res.output
    data = out.read_bytes()
    assert _changed(built["c3"].read_bytes(), data) == {("factory_param", "uart_port")}
    assert read_nvs(data).get("factory_param", "uart_port").value == 0
    res = run("customize", "--image", built["c3"], "-o", tmp_path / "o2.bin", "--uart-num", 5)
    assert res.exit_code == 2 and "--uart-num" in res.output and not (tmp_path / "o2.bin").exists()


def test_single_gatt_row(built, tmp_path: Path) -> None:
    row = ROWS[2].replace(",30", ",31")
    before = built["c3"].read_bytes()
    new, result = customize_image(before, make_request(gatt_rows={2: row}), source="c3.bin")
    assert _changed(before, new) == {("ble_data", "cfg2")} and read_nvs(new).get("ble_data", "cfg2").value == row
    # the same as a rebuild from a table with that row changed (--gatt)
    table = tmp_path / "g.csv"
    table.write_text("\n".join(ROWS[:2] + [row] + ROWS[3:]) + "\n")
    assert customize_image(before, make_request(gatt=table), source="c3.bin")[0] == new
    # CLI spelling
    res = run("customize", "--image", built["c3"], "-o", tmp_path / "o.bin", "--gatts-cfg2", row)
    assert res.exit_code == 0 and (tmp_path / "o.bin").read_bytes() == new


@pytest.mark.parametrize("rows, add_missing, option, message", [
    ({31: "31,16,0x2901,0x01,4,4,41424344"}, False, "--gatts-cfg31", "(--add-missing appends cfg31)"),
    ({33: "33,16,0x2901,0x01,4,4,41424344"}, True, "--gatts-cfg33", "cfg33 must be an existing row"),
    ({2: "2,16,0xC300,0x01,1,1,30,0"}, False, "--gatts-cfg2", "expected 7 comma-separated fields"),
    ({2: "2,16,0xZZZZ,0x01,1,1,30"}, False, "--gatts-cfg2", "the GATT table with this row"),
])
def test_single_gatt_row_refusals(built, rows, add_missing, option, message) -> None:
    with pytest.raises(InputError) as info:
        customize_image(built["c3"].read_bytes(), make_request(gatt_rows=rows, add_missing=add_missing),
                        source="c3.bin")
    assert info.value.field == option and message in info.value.message


def test_single_gatt_row_appended_with_add_missing(built) -> None:
    before = built["c3"].read_bytes()
    row = "31,16,0x2901,0x01,4,4,41424344"
    new, _ = customize_image(before, make_request(gatt_rows={31: row}, add_missing=True), source="c3.bin")
    assert _changed(before, new) == {("ble_data", "cfg31")}


def test_gatt_and_single_rows_do_not_mix(built) -> None:
    with pytest.raises(InputError, match="whole table"):
        make_request(gatt=ref.GATTS_DATA, gatt_rows={1: ROWS[1]})


def test_added_namespace_lands_in_esp_at_order(built, tmp_path: Path) -> None:
    """--add-missing --wpa-ent-ca0 on esp32c2-4mb (EAP on): the image equals a fresh build of the raw_data
    tree with that folder (which the parity test proves equal to esp-at's pipeline)."""
    ca = tmp_path / "wpa_ent_ca.pem"
    ca.write_bytes(MATERIAL.file("wpa_ent_ca", "wpa_ent_ca.pem"))
    res = run("customize", "--image", built["c2"], "-o", tmp_path / "o.bin", "--wpa-ent-ca0", ca, "--add-missing")
    assert res.exit_code == 0, res.output
    image = read_nvs((tmp_path / "o.bin").read_bytes())
    names = image.namespaces()
    assert names.index("client_ca") + 1 == names.index("wpa_ent_ca") == names.index("mqtt_cert") - 1
    raw = tmp_path / "raw"
    shutil.copytree(built["raw"], raw)
    (raw / "wpa_ent_ca").mkdir()
    shutil.copyfile(ca, raw / "wpa_ent_ca" / "wpa_ent_ca.pem")
    build("esp32c2-4mb", tmp_path / "rebuild", pki_dir=raw, unread="skip")
    assert (tmp_path / "o.bin").read_bytes() == (tmp_path / "rebuild" / "mfg_nvs.bin").read_bytes()


def test_added_namespace_the_firmware_never_reads(built, tmp_path: Path) -> None:
    """esp32-wrover-32's build has no MQTT: adding mqtt_ca to its image is refused unless --allow-unread."""
    raw = raw_tree(tmp_path / "raw", {k: v for k, v in FULL.items() if k.startswith(("server", "client"))},
                   MATERIAL)
    build("esp32-wrover-32", tmp_path / "w", pki_dir=raw)
    ca = tmp_path / "mqtt_ca.crt"
    ca.write_bytes(MATERIAL.file("mqtt_ca", "mqtt_ca.crt"))
    args = ["customize", "--image", tmp_path / "w" / "mfg_nvs.bin", "--module", "esp32-wrover-32", "-o",
            tmp_path / "o.bin", "--mqtt-ca0", ca, "--add-missing"]
    res = run(*args)
    assert res.exit_code == 2 and "CONFIG_AT_MQTT_CLIENT_AUTH_BROKER" in res.output and "--mqtt-ca0" in res.output
    assert not (tmp_path / "o.bin").exists()
    res = run(*args, "--allow-unread")
    assert res.exit_code == 0 and "mqtt_ca" in read_nvs((tmp_path / "o.bin").read_bytes()).namespaces()


def test_customized_image_keeps_the_builds_page_layout(built, tmp_path: Path) -> None:
    """at.py's embedded NVS generator (ESP-IDF 17451f1fb3d, "lightweight version") writes a header on every
    page and marks all but the last page FULL (0xFC); esp-at's build (esp-idf-nvs-partition-gen) leaves the
    last written page ACTIVE (0xFE) and unused pages erased. ``customize --image`` keeps the build's layout:
    its output equals a fresh build with the same value, and at.py's pre-formatted pages are not imitated."""
    res = run("customize", "--image", built["c3"], "-o", tmp_path / "o.bin", "--uart-num", 0)
    assert res.exit_code == 0, res.output
    data = (tmp_path / "o.bin").read_bytes()
    params = tmp_path / "params.toml"
    params.write_text("[factory_param]\nuart_port = 0\n")
    build("esp32c3-mini-1", tmp_path / "rebuild", pki_dir=built["raw"], params=params)
    assert data == (tmp_path / "rebuild" / "mfg_nvs.bin").read_bytes()
    states = [data[i] for i in range(0, len(data), 4096)]
    written = [s for s in states if s != 0xFF]
    assert written[:-1] == [0xFC] * (len(written) - 1) and written[-1] == 0xFE
    assert all(s == 0xFF for s in states[len(written):])
    assert all(data[i:i + 4096] == b"\xff" * 4096 for i in range(len(written) * 4096, len(data), 4096))


def test_enterprise_set_of_a_legacy_namespace_build(tmp_path: Path) -> None:
    """A build with CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT stores the enterprise set as wpa2_* (esp-at's
    mfg_nvs.py WPA_ENT_LEGACY_NAME_MAP; at.py edits it with --wpa2_*): --wpa-ent-* without --module
    replaces those keys, as bench/esp_at_customize_parity.py's "wpa2 set" row compares with at.py."""
    ent = {k: v for k, v in FULL.items() if k.startswith("wpa_ent")}
    raw = raw_tree(tmp_path / "raw", ent, MATERIAL)
    sdkconfig = tmp_path / "sdkconfig"
    sdkconfig.write_text("CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_SUPPORT=y\nCONFIG_AT_BLE_COMMAND_SUPPORT=y\n"
                         "CONFIG_AT_EAP_COMMAND_SUPPORT=y\n"
                         "CONFIG_AT_EAP_LEGACY_NAMESPACE_SUPPORT=y\n")
    build("esp32c3-mini-1", tmp_path / "c3", pki_dir=raw, sdkconfig=sdkconfig)
    image = tmp_path / "c3" / "mfg_nvs.bin"
    assert {"wpa2_ca", "wpa2_cert", "wpa2_key"} <= set(read_nvs(image.read_bytes()).namespaces())
    ca = tmp_path / "ca.pem"
    ca.write_bytes(MATERIAL.file("wpa_ent_ca", "new-ca.pem"))
    out = tmp_path / "o.bin"
    res = run("customize", "--image", image, "-o", out, "--wpa-ent-ca0", ca)
    assert res.exit_code == 0, res.output
    assert _changed(image.read_bytes(), out.read_bytes()) == {("wpa2_ca", "wpa2_ca")}
    assert read_nvs(out.read_bytes()).get("wpa2_ca", "wpa2_ca").value == ca.read_bytes()
