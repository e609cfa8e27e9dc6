"""atfab customize --port: one live (virtual) module over AT, and an offline-customised image flashed with esptool."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from atfab.link.at.client import AtClient
from atfab.image.build import build
from atfab.cli import main
from atfab.customize.image import customize_image
from atfab.customize.plan import make_request
from atfab.customize.live import CustomizeIncomplete, customize_module, run_on_port
from atfab.core.errors import DeviceError, InputError, UnitFailed
from atfab.core.firmware import firmware_for
from atfab.image.flash_set import FlashSet, Region
from atfab.link.flasher import Flasher
from atfab.image.nvs.reader import read_nvs
from atfab.sim.flash import NorFlash
from atfab.sim.module import VirtualModule
from atfab.link.transport import open_port
from tests.conftest import run_with_timeout
from tests.test_customize_image import GATT, RAW, _identity

T = 60
MFG = (0x1F000, 0x1F000)


@pytest.fixture(scope="module")
def factory(tmp_path_factory) -> dict[str, bytes]:
    base = tmp_path_factory.mktemp("live")
    build("esp32c2-4mb", base / "full", synthetic_firmware="v3.3.0.0", pki_dir=RAW, gatt=GATT,
          unread="write")   # c2-4mb has no BLE: the GATT table is written on purpose, to be edited
    build("esp32c2-4mb", base / "plain", synthetic_firmware="v3.3.0.0")
    return {name: next((base / name).glob("factory_*.bin")).read_bytes() for name in ("full", "plain")}


@pytest.fixture
def module_with(factory):
    """``module_with(name)``: a started virtual module whose flash already holds that factory image."""
    started: list[VirtualModule] = []

    def make(name: str) -> VirtualModule:
        flash = NorFlash(len(factory[name]))
        flash.program(0, factory[name])
        module = VirtualModule(flash=flash).start()
        started.append(module)
        return module

    yield make
    for m in started:
        m.stop()


def _mfg(module: VirtualModule):
    return read_nvs(module.flash.read(*MFG))


def _entries(image) -> dict[tuple[str, str], object]:
    return {(e.namespace, e.key): (e.type, e.value) for e in image.entries}


def _differing(before, after) -> set[tuple[str, str]]:
    a, b = _entries(before), _entries(after)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


FACTORY_CHANGES = {"max_tx_power": 60, "module_name": "ACME-7", "country_code": "US", "channel_num": 11,
                   "uart_baudrate": 921600}


def test_per_key_customize_and_production_checks(module_with):
    module = module_with("full")
    before = _mfg(module)
    result = run_with_timeout(run_on_port, T, make_request(FACTORY_CHANGES), port=module.at_url)
    assert result.passed, [m.describe() for m in result.measurements if not m.passed]
    names = {m.name for m in result.measurements}
    assert {f"factory_param.{k}" for k in FACTORY_CHANGES} <= names
    assert {"gmr.module_name", "uart_def", "rf_power.wifi.after_reboot", "country"} <= names
    after = _mfg(module)
    assert _differing(before, after) == {("factory_param", k) for k in FACTORY_CHANGES}
    assert after.get("factory_param", "module_name").value == "ACME-7"
    json.dumps(result.to_dict())


def test_whole_partition_rewrite(module_with):
    module = module_with("full")
    before = _mfg(module)
    result = run_with_timeout(run_on_port, T, make_request({"max_tx_power": 70, "module_name": "ACME-8"}),
                              port=module.at_url, whole_partition=True)
    assert result.passed, [m.describe() for m in result.measurements if not m.passed]
    assert "mfg_nvs.sha256" in {m.name for m in result.measurements}
    after = _mfg(module)
    assert _differing(before, after) == {("factory_param", "max_tx_power"), ("factory_param", "module_name")}
    assert [(e.namespace, e.key) for e in after.entries] == [(e.namespace, e.key) for e in before.entries]


def test_live_pki_and_gatt(module_with, tmp_path):
    module = module_with("full")
    before = _mfg(module)
    cert, key = _identity(tmp_path)
    rows = [r for r in GATT.read_text().splitlines() if r and not r.startswith("#")]
    short = tmp_path / "gatt.csv"
    short.write_text("\n".join(rows[:3]) + "\n")
    req = make_request(pki_files={("client", "cert", 1): cert, ("client", "key", 1): key}, gatt=short)
    result = run_with_timeout(run_on_port, T, req, port=module.at_url)
    assert result.passed, [m.describe() for m in result.measurements if not m.passed]
    after = _mfg(module)
    expected = {("client_cert", "client_cert.1"), ("client_key", "client_key.1")}
    expected |= {("ble_data", f"cfg{i}") for i in range(3, 31)}
    assert _differing(before, after) == expected
    assert after.get("client_cert", "client_cert.1").value == cert.read_bytes()
    assert all("PRIVATE" not in json.dumps(c.to_dict()) for c in result.changes)
    key.unlink()


def test_live_refusal_writes_nothing(module_with, tmp_path):
    module = module_with("plain")
    snapshot = module.flash.read(0, 0x60000)
    cert, key = _identity(tmp_path)
    req = make_request({"max_tx_power": 60}, pki_files={("client", "cert", 0): cert, ("client", "key", 0): key})
    with pytest.raises(InputError) as info:
        run_with_timeout(run_on_port, T, req, port=module.at_url)
    assert info.value.field == "--client-cert0" and info.value.file == module.at_url
    assert module.flash.read(0, 0x60000) == snapshot
    key.unlink()


def test_live_uart_num_that_would_move_the_at_port_is_refused(module_with):
    module = module_with("plain")
    snapshot = module.flash.read(0, 0x60000)
    with pytest.raises(InputError) as info:
        run_with_timeout(run_on_port, T, make_request({"uart_port": 0}), port=module.at_url)
    assert info.value.field == "--uart-num" and "UART1" in info.value.message
    assert module.flash.read(0, 0x60000) == snapshot


def test_live_single_gatt_row(module_with):
    module = module_with("full")
    before = _mfg(module)
    row = "2,16,0xC300,0x01,1,1,31"
    result = run_with_timeout(run_on_port, T, make_request(gatt_rows={2: row}), port=module.at_url)
    assert result.passed, [m.describe() for m in result.measurements if not m.passed]
    after = _mfg(module)
    assert _differing(before, after) == {("ble_data", "cfg2")} and after.get("ble_data", "cfg2").value == row


class _WrongName(AtClient):
    def gmr(self):
        return dataclasses.replace(super().gmr(), module_name="SOMETHING-ELSE")


def test_failed_check_is_unit_failed(module_with):
    module = module_with("plain")

    def run():
        with _WrongName(open_port(module.at_url), firmware=firmware_for("esp32c2")) as client:
            return customize_module(client, make_request({"module_name": "ACME-9"}))

    result = run_with_timeout(run, T)
    assert not result.passed
    with pytest.raises(UnitFailed, match="gmr.module_name") as info:
        result.require_pass()
    assert info.value.exit_code == 1


class _DamageReadBack(AtClient):
    """Arms the virtual module's read corruption right after each AT+SYSMFG write (its read-back)."""

    module: VirtualModule
    reads = 1

    def sysmfg_write(self, *args, **kwargs):
        out = super().sysmfg_write(*args, **kwargs)
        self.module.faults.corrupt_next_reads = self.reads
        return out


@pytest.mark.parametrize("reads", [1, 2])
def test_a_damaged_read_back_is_link_noise_not_a_fail(module_with, reads):
    """One flipped byte on the read-back of a written key is read again: a clean re-read passes (noted);
    a re-read that disagrees too is link noise (ReadDisagrees, exit 3), never a FAIL. The same wrong
    value twice is the unit's: test_failed_check_is_unit_failed."""
    from atfab.link.at.reread import ReadDisagrees

    module = module_with("plain")

    def run():
        with _DamageReadBack(open_port(module.at_url), firmware=firmware_for("esp32c2")) as client:
            client.module, client.reads = module, reads
            try:
                return customize_module(client, make_request({"module_name": "ACME-9"})), client
            finally:
                client.module.faults.corrupt_next_reads = 0

    if reads == 2:
        with pytest.raises(ReadDisagrees) as info:
            run_with_timeout(run, T)
        assert info.value.exit_code == 3 and "link noise" in str(info.value)
        return
    result, client = run_with_timeout(run, T)
    assert result.passed, [m.describe() for m in result.measurements if not m.passed]
    assert any("re-read did (link noise)" in e.text for e in client.transcript)


def test_write_error_is_device_error(module_with):
    module = module_with("plain")
    module.faults.error_next_write = True
    with pytest.raises(DeviceError):
        run_with_timeout(run_on_port, T, make_request({"max_tx_power": 60}), port=module.at_url)


def test_write_error_part_way_restores_what_was_written(module_with):
    """Two keys written, the third refused: the two are put back; the module's NVS holds what it held."""
    module = module_with("full")
    before = _mfg(module)
    module.faults.error_after_writes = 2
    changes = {"max_tx_power": 60, "module_name": "ACME-7", "country_code": "US", "channel_num": 11}
    with pytest.raises(CustomizeIncomplete) as info:
        run_with_timeout(run_on_port, T, make_request(changes), port=module.at_url)
    err = info.value
    assert err.restored and len(err.written) == 2 and err.exit_code == 3
    assert "restored to its previous values" in str(err) and "\n" not in str(err)
    assert _differing(before, _mfg(module)) == set()


def test_whole_partition_write_error_puts_the_old_image_back(module_with):
    module = module_with("full")
    old = module.flash.read(*MFG)
    module.faults.error_next_write = True
    with pytest.raises(CustomizeIncomplete) as info:
        run_with_timeout(run_on_port, T, make_request({"module_name": "ACME-7"}), port=module.at_url,
                         whole_partition=True)
    assert info.value.restored
    assert module.flash.read(*MFG) == old


def test_power_loss_part_way_says_what_is_left(module_with):
    module = module_with("plain")
    module.faults.power_loss_after_writes = 1       # the link is gone before the second write
    with pytest.raises(CustomizeIncomplete) as info:
        run_with_timeout(run_on_port, T, make_request({"max_tx_power": 60, "module_name": "ACME-7"}),
                         port=module.at_url)
    err = info.value
    assert not err.restored and "run the same atfab customize again" in str(err)


def test_customised_factory_image_flashes_and_verifies(factory, virtual_module):
    """Offline customize -> esptool writes the new factory image at 0x0 -> boot -> AT checks."""
    new, result = customize_image(factory["full"], make_request({"module_name": "ACME-FAB", "max_tx_power": 66,
                                                                  "country_code": "JP"}), source="factory.bin")
    assert {c.key for c in result.changes} == {"module_name", "max_tx_power", "country_code"}
    fs = FlashSet((Region(0, "factory.bin", new),), chip="esp32c2", source="factory.bin")
    run_with_timeout(Flasher(virtual_module.flash_url).flash, T, fs)
    assert virtual_module.wait_state("at", 10)

    def check():
        with AtClient(open_port(virtual_module.at_url), firmware=firmware_for("esp32c2")) as client:
            client.at()
            values = {k: client.sysmfg_read("factory_param", k) for k in ("module_name", "max_tx_power",
                                                                          "country_code", "uart_tx_pin")}
            cert = client.sysmfg_read("client_cert", "client_cert.0")
            return values, cert, client.gmr().module_name, client.rf_power()[0]

    values, cert, gmr_name, power = run_with_timeout(check, T)
    assert values == {"module_name": "ACME-FAB", "max_tx_power": 66, "country_code": "JP", "uart_tx_pin": 7}
    assert cert == (RAW / "client_cert" / sorted(p.name for p in (RAW / "client_cert").iterdir())[0]).read_bytes()
    assert gmr_name == "ESP32C2-2MB" and power == 66     # a custom name prints table entry 0 (ground truth §2)


def test_cli_live(module_with):
    module = module_with("plain")
    runner = CliRunner()
    res = run_with_timeout(runner.invoke, T, main, ["customize", "--port", module.at_url, "--tx-power", "60",
                                                   "--module-name", "CLI-1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["passed"] and {c["key"] for c in out["changes"]} == {"max_tx_power", "module_name"}
    res = run_with_timeout(runner.invoke, T, main, ["customize", "--port", module.at_url, "--gatt", str(GATT)])
    assert res.exit_code == 2 and "ble_data" in res.output
    res = run_with_timeout(runner.invoke, T, main, ["customize", "--port", module.at_url, "--whole-partition",
                                                   "--country", "US"])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "country" in res.output
    assert _mfg(module).get("factory_param", "country_code").value == "US"
