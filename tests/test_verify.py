"""verify_unit against the virtual module: passing units, each kind of wrong value, broken links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atfab.link.at.client import AtClient
from atfab.image.build import build
from atfab.core.errors import DeviceError, InputError
from atfab.image.flash_set import load_flash_set
from atfab.link.flasher import Flasher
from atfab.core.measurement import FAIL
from atfab.image.profiles import load_profile
from atfab.sim.chip import MB
from atfab.sim.module import VirtualModule
from atfab.link.transport import open_port
from atfab.core.mac import normalize_mac
from atfab.core.firmware import rfpower_readback
from atfab.verify.unit import load_built, verify_unit, wait_alive
from tests.conftest import run_with_timeout
from tests.paths import RAW_DATA

RAW_DATA = RAW_DATA
T = 60


@pytest.fixture(scope="module")
def built_pki(tmp_path_factory) -> Path:
    """esp32c2-4mb unit with esp-at-shaped test certificates/keys (made at test time)."""
    out = tmp_path_factory.mktemp("verify") / "unit"
    build("esp32c2-4mb", out, synthetic_firmware="v3.3.0.0", pki_dir=RAW_DATA, unread="skip")  # no BLE: ble_data/ left out
    return out


def provision(module: VirtualModule, folder: Path) -> str:
    """Flash ``folder``; return the MAC esptool read. The module then boots its AT firmware."""
    result = run_with_timeout(Flasher(module.flash_url).flash, T, load_flash_set(folder))
    assert module.wait_state("at", 5)
    return result.chip.mac


def client(module: VirtualModule, folder: Path) -> AtClient:
    at = AtClient(open_port(module.at_url, 115200), firmware=load_built(folder).firmware())
    run_with_timeout(wait_alive, 15, at)
    return at


def failed(result) -> list[str]:
    return [m.name for m in result.failed]


def test_provisioned_unit_passes(virtual_module, built_pki):
    mac = provision(virtual_module, built_pki)
    with client(virtual_module, built_pki) as at:
        result = run_with_timeout(verify_unit, T, at, built_pki, mac=mac)
    assert result.passed, [m.describe() for m in result.failed]
    names = {m.name for m in result.measurements}
    assert {"at.alive", "at.echo_off", "gmr.module_name", "gmr.bin_version", "gmr.at_version",
            "at_customize.partitions", "factory_param.max_tx_power", "factory_param.module_name",
            "uart_def", "uart_cur.baud", "rf_power.range", "rf_power.wifi", "sta_mac"} <= names
    # every built mfg_nvs key was checked; PKI blobs by hash, never by content
    built = load_built(built_pki)
    for e in built.mfg_nvs.entries:
        assert (f"{e.namespace}.{e.key}.sha256" if isinstance(e.value, bytes) else f"{e.namespace}.{e.key}") in names
    blob = next(m for m in result.measurements if m.name == "client_key.client_key.0.sha256")
    assert len(blob.expected) == 64 and blob.expected == blob.measured
    text = json.dumps(result.to_dict())
    assert "PRIVATE KEY" not in text


def test_wrong_values_fail_by_name(virtual_module, built_pki):
    mac = provision(virtual_module, built_pki)
    with client(virtual_module, built_pki) as at:
        at.sysmfg_write("factory_param", "max_tx_power", "i8", 60)
        at.sysmfg_write("client_ca", "client_ca.1", "blob", b"-----BEGIN CERTIFICATE-----\nnot it\n")
        at.sysmfg_erase("factory_param", "channel_num")
        result = run_with_timeout(verify_unit, T, at, built_pki, mac="02:00:00:00:00:01")
    assert set(failed(result)) == {"factory_param.max_tx_power", "client_ca.client_ca.1.sha256",
                                   "factory_param.channel_num", "mfg_nvs.factory_param.keys", "sta_mac"}
    by_name = {m.name: m for m in result.measurements}
    assert by_name["factory_param.max_tx_power"].measured == 60
    missing = by_name["factory_param.channel_num"]
    assert missing.measured is None and "refused" in (missing.detail or "")
    assert by_name["sta_mac"].measured == mac
    # not applied until a reboot: the RF power still reads the built value
    assert by_name["rf_power.wifi"].outcome != FAIL


def test_uart_and_rf_power_expectations(virtual_module, built_pki):
    provision(virtual_module, built_pki)
    with client(virtual_module, built_pki) as at:
        at.set_uart_def(115200, 8, 1, 0, 0)
        result = run_with_timeout(verify_unit, T, at, built_pki, rf_power=70)
    assert set(failed(result)) == {"uart_def", "uart_cur.format", "rf_power.wifi"}
    sta = next(m for m in result.measurements if m.name == "sta_mac")
    assert sta.rule == "present" and sta.passed


def test_broken_link_is_a_device_error_not_a_verdict(virtual_module, built_pki):
    provision(virtual_module, built_pki)
    with client(virtual_module, built_pki) as at:
        virtual_module.faults.at.drop_after_tx = 400   # a few replies in, the AT link dies
        with pytest.raises(DeviceError):
            run_with_timeout(verify_unit, T, at, built_pki)


def test_a_read_that_disagrees_with_its_re_read_is_link_noise_not_a_fail(virtual_module, built_pki):
    """One flipped byte on a read-back is not a bad unit: the failing read is read again, and when
    the re-read disagrees verify raises ReadDisagrees (a DeviceError: ERROR, retried), never FAIL."""
    from atfab.verify.unit import ReadDisagrees

    provision(virtual_module, built_pki)
    with client(virtual_module, built_pki) as at:
        virtual_module.faults.corrupt_next_read = True     # flips one byte of the next SYSMFG/SYSFLASH read
        with pytest.raises(ReadDisagrees) as err:
            run_with_timeout(verify_unit, T, at, built_pki)
        assert isinstance(err.value, DeviceError) and "re-read" in str(err.value)
        result = run_with_timeout(verify_unit, T, at, built_pki)   # the link is clean again: the unit passes
    assert result.passed, failed(result)


def test_ble_build_checks_gatt_discovery(tmp_path):
    profile = load_profile("esp32c2-2mb-ble")
    out = tmp_path / "ble"
    build(profile, out, synthetic_firmware="v3.3.0.0")   # v3.3 lines: '1,<index>', no properties
    module = VirtualModule(flash_size=2 * MB, firmware=profile.firmware).start()
    try:
        mac = provision(module, out)
        with client(module, out) as at:
            result = run_with_timeout(verify_unit, T, at, out, mac=mac)
            names = {m.name for m in result.measurements}
            assert {"gatt.services", "gatt.chars"} <= names
            assert "rf_power.wifi" not in names and "sta_mac" not in names  # BLE-only firmware
            assert result.passed, [m.describe() for m in result.failed]
            # v3.3's C2 table has ESP32C2-BLE-2MB, not the profile's ESP32C2-2MB-BLE: entry 0 is printed
            (gm,) = [m for m in result.measurements if m.name == "gmr.module_name"]
            assert gm.expected == gm.measured == "ESP32C2-2MB" and "entry 0" in gm.detail
            # verification leaves BLE de-initialised
            assert at.ble_role() == 0
            # the base MAC comes from AT+BLEADDR? (BT = base + 2) and is compared with esptool's
            (base,) = [m for m in result.measurements if m.name == "mac.base"]
            bt = (int.from_bytes(bytes.fromhex(mac.replace(":", "")), "big") + 2).to_bytes(6, "big").hex(":")
            assert (base.expected, base.measured, base.detail) == (mac, mac, f"AT+BLEADDR? {bt} - 2")
            wrong = run_with_timeout(verify_unit, T, at, out, mac="24:0a:c4:00:00:01", checks=["mac"])
            assert [(m.name, m.measured) for m in wrong.failed] == [("mac.base", mac)]
            at.ble_init(2)                      # BLE already on: read without de-initialising it
            again = run_with_timeout(verify_unit, T, at, out, mac=mac, checks=["mac"])
            assert again.passed and at.ble_role() == 2
    finally:
        module.stop()


def test_helpers():
    from atfab.link.at.mac import base_from_bt
    from atfab.verify.checks import check_of

    assert check_of("mac.base") == check_of("sta_mac") == "mac"
    assert base_from_bt(bytes.fromhex("240ac4000001")).hex() == "240ac3ffffff"
    assert base_from_bt(bytes(6)).hex() == "fffffffffffe"            # 48-bit wrap
    assert [rfpower_readback(v, load_profile("esp32-wroom-32").firmware) for v in (40, 44, 51, 60, 77, 84)] == \
        [34, 44, 44, 60, 72, 78]
    assert rfpower_readback(81, load_profile("esp32c2-4mb").firmware) == 81
    assert normalize_mac("7C-DF-A1-68-75-60") == "7c:df:a1:68:75:60"
    assert normalize_mac(bytes(range(6))) == "00:01:02:03:04:05"
    with pytest.raises(InputError):
        normalize_mac("7c:df")


def test_load_built_errors(tmp_path):
    with pytest.raises(InputError, match="manifest.json"):
        load_built(tmp_path)
    (tmp_path / "manifest.json").write_text('{"module": "esp32c2-4mb"}')
    with pytest.raises(InputError, match="at_customize.bin"):
        load_built(tmp_path)


def test_checks_select_measurements_country_and_recipe_version(virtual_module, built_pki):
    from atfab.verify.checks import CHECKS as ALL_CHECKS, check_of

    provision(virtual_module, built_pki)
    fp = load_built(built_pki).factory_param
    with client(virtual_module, built_pki) as at:
        full = run_with_timeout(verify_unit, T, at, built_pki, at_version="v3.3.0.0")
        some = run_with_timeout(verify_unit, T, at, built_pki, checks=("boot", "gmr", "country"), at_version="3.3")
        at.command('AT+CWCOUNTRY=1,"JP",1,13')
        moved = run_with_timeout(verify_unit, T, at, built_pki, checks=["country"], at_version="v4.0.0.0")
        with pytest.raises(InputError, match="bogus"):
            verify_unit(at, built_pki, checks=["boot", "bogus"])
    assert full.passed, [m.describe() for m in full.failed]
    by_name = {m.name: m for m in full.measurements}
    assert by_name["country"].measured == [fp["country_code"], fp["start_channel"], fp["channel_num"]]
    assert by_name["gmr.recipe_version"].passed and by_name["gmr.recipe_version"].measured == "v3.3.0.0"
    assert {check_of(m.name) for m in full.measurements} - {None} == set(ALL_CHECKS) - {"gatt"}  # C2-4MB: no BLE
    assert {check_of(m.name) for m in some.measurements} - {None} == {"boot", "gmr", "country"} and some.passed
    # the namespace census belongs to no check: it runs whatever the checks (an extra namespace always FAILs)
    assert [m.name for m in some.measurements if check_of(m.name) is None] == ["mfg_nvs.namespaces"]
    assert [m.name for m in some.measurements if m.name.startswith("gmr.")] == [
        "gmr.module_name", "gmr.at_version", "gmr.sdk_version", "gmr.compile_time", "gmr.bin_version",
        "gmr.recipe_version"]
    assert [(m.name, m.measured) for m in moved.failed] == [("country", ["JP", 1, 13])]


def test_a_write_an_earlier_contact_cut_is_ended_before_verifying(virtual_module, built_pki):
    """A host that died inside an AT+SYSMFG write payload leaves the module reading it (ground truth §6);
    `atfab verify` first ends it (AtClient.settle: 0xFF) instead of timing out (ERROR): the item that
    cut write left is then measured like any content - a FAIL naming it, every other check passing."""
    from click.testing import CliRunner

    from atfab.cli import main
    from atfab.link.at.errors import LinkLost

    provision(virtual_module, built_pki)
    with client(virtual_module, built_pki) as at:
        key = at.sysmfg_keys("client_cert")[0].key
        old = at.sysmfg_read("client_cert", key)
        virtual_module.faults.drop_in_sysmfg_write = 1
        with pytest.raises(LinkLost):
            at.sysmfg_write("client_cert", key, 8, old[::-1])
    r = run_with_timeout(CliRunner().invoke, T, main, ["verify", "--port", virtual_module.at_url,
                                                       "--expect", str(built_pki), "--json"])
    assert r.exit_code == 1, r.output
    out, _ = json.JSONDecoder().raw_decode(r.output[r.output.index("{"):])
    failed_names = [m["name"] for m in out["measurements"] if m["outcome"] != "pass"]
    assert failed_names == [f"client_cert.{key}.sha256"], failed_names
