"""``atfab customize --port`` on G1/G2 modules (the 0xFCFC factory_param block over AT+SYSFLASH), through the
CLI against the virtual module: the block the module holds afterwards is byte for byte what
``customize --image`` makes of the same block, the firmware shows the new values after its restart, and
what the block cannot take is refused before anything is written."""

from __future__ import annotations

import base64
import hashlib
import json
import socket

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.image.gatt import cfg_strings
from atfab.image.legacy_ble import parse_legacy_csv
from atfab.image.mfg_nvs import PkiFile, UnitContent
from atfab.image.profiles import load_profile
from atfab.sim.module import VirtualModule
from tests.conftest import run_with_timeout
from tests.g2_fleet_support import flash_legacy_unit
from tests.legacy_support import GATT_CSV, make_pair

CASES = {
    # G2 (v3.0.0.0, version 3 block): 0.25 dBm power, module name, country with AT+CWCOUNTRY, baud
    "esp32-at-v2": ["--country", "US", "--start-channel", "1", "--channel-num", "11", "--tx-power", "60",
                    "--module-name", "WROVER-32", "--baud", "921600"],
    # G1 (v1.2.0.0, version 1 block): a power level 0..11, no module name field, no AT+CWCOUNTRY
    "esp32-at-v1.2": ["--tx-power", "3", "--country", "JP", "--start-channel", "2", "--channel-num", "12"],
}


def atfab(*args: object):
    return run_with_timeout(CliRunner().invoke, 60, main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=list(CASES))
def unit(request):
    profile = load_profile(request.param)
    vm = VirtualModule(chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware).start()
    try:
        flash_legacy_unit(vm, profile, UnitContent(factory_param=dict(profile.factory_param), pki={}, ble_rows=[]))
        yield request.param, profile, vm
    finally:
        vm.stop()


def _block(profile, vm) -> bytes:
    part = profile.at_customize.find("factory_param")
    return vm.flash.read(part.offset, part.size)


def test_live_customize_matches_image_customize(unit, tmp_path):
    module, profile, vm = unit
    opts = CASES[module]
    (tmp_path / "before.bin").write_bytes(_block(profile, vm))
    r = atfab("customize", "--image", tmp_path / "before.bin", "-o", tmp_path / "after.bin", "--module", module, *opts)
    assert r.exit_code == 0, r.output
    # no --module: the release comes from the AT core commit AT+GMR prints (G1 or G2, no AT+SYSMFG)
    r = atfab("customize", "--port", vm.at_url, "--json", *opts)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["passed"], result["measurements"]
    names = {m["name"] for m in result["measurements"]}
    assert {"factory_param.sha256", "factory_param.after_reboot"} <= names
    if module == "esp32-at-v2":
        assert {"gmr.module_name", "country", "uart_def"} <= names
    assert _block(profile, vm) == (tmp_path / "after.bin").read_bytes()
    assert {c["key"] for c in result["changes"]} >= {"max_tx_power", "country_code"}


def test_live_customize_refuses_what_the_block_cannot_take(unit):
    module, profile, vm = unit
    before = _block(profile, vm)
    bad = (["--uart-num", "0"] if module == "esp32-at-v2" else ["--module-name", "X"])
    for args in (bad, ["--tx-power", "999"], ["--whole-partition", "--country", "US"]):
        r = atfab("customize", "--port", vm.at_url, "--module", module, *args)
        assert r.exit_code == 2, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert _block(profile, vm) == before


def test_live_pki_items_match_image_customize(tmp_path):
    """--client-cert0/--client-key0 on a G2 module holding two sets: item 0 of client_cert and client_key
    replaced (item 1 kept), over AT+SYSFLASH exactly as customize --image rewrites the flash image."""
    profile = load_profile("esp32-at-v2")
    ca = make_pair("Legacy Test CA")[2]
    sets = [make_pair(f"unit-{i}", ca) for i in range(2)]
    content = UnitContent(factory_param=dict(profile.factory_param), ble_rows=[], pki={
        "client_cert": [PkiFile(f"cert_{i}.crt", c) for i, (c, _k, _o) in enumerate(sets)],
        "client_key": [PkiFile(f"key_{i}.key", k) for i, (_c, k, _o) in enumerate(sets)]})
    cert, key, _obj = make_pair("unit-new", ca)
    (tmp_path / "new.crt").write_bytes(cert)
    (tmp_path / "new.key").write_bytes(key)
    (tmp_path / "cert_1.crt").write_bytes(sets[1][0])
    (tmp_path / "key_1.key").write_bytes(sets[1][1])
    opts = ["--client-cert0", tmp_path / "new.crt", "--client-key0", tmp_path / "new.key"]
    vm = VirtualModule(chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware).start()
    try:
        flash_legacy_unit(vm, profile, content)
        (tmp_path / "flash.bin").write_bytes(vm.flash.read(0, vm.flash.size))
        r = atfab("customize", "--image", tmp_path / "flash.bin", "-o", tmp_path / "out.bin", "--module", "esp32-at-v2",
                  *opts)
        assert r.exit_code == 0, r.output
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--json", *opts)
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert result["passed"], result["measurements"]
        assert [(c["namespace"], c["key"], c["action"]) for c in result["changes"]] == [
            ("client_cert", "item 0", "changed"), ("client_key", "item 0", "changed")]
        assert "PRIVATE" not in r.stdout
        out = (tmp_path / "out.bin").read_bytes()
        for name in ("client_cert", "client_key", "factory_param"):
            part = profile.at_customize.find(name)
            assert vm.flash.read(part.offset, part.size) == out[part.offset:part.offset + part.size], name
        head = vm.flash.read(profile.at_customize.find("client_key").offset, 8 + 4 + len(key))
        assert head[12:12 + len(key)] == key and head[:4] == b"\xf1\xf1\x02\x00"     # item 0, two items
        # power lost between the erase and the write of the key partition's head (its staged copy
        # holds the new image): the same command run again puts the copy back and finishes
        base = vm.flash.read(0, vm.flash.size)
        # client_cert first (erase stage, write stage, erase head, write head, erase stage), then client_key:
        # its staged copy written, its head erased, then the power goes
        vm.faults.power_loss_after_flash_ops = 8
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--client-key0", tmp_path / "key_1.key",
                  "--client-cert0", tmp_path / "cert_1.crt")
        assert r.exit_code == 3, r.output
        key_part = profile.at_customize.find("client_key")
        assert vm.flash.read(key_part.offset, 4) == b"\xff" * 4            # no image at the head now
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--client-key0", tmp_path / "key_1.key",
                  "--client-cert0", tmp_path / "cert_1.crt", "--json")
        assert r.exit_code == 0, r.output
        assert any("put back the copy staged" in p for p in json.loads(r.stdout)["problems"]), r.stdout
        (tmp_path / "now.bin").write_bytes(base)
        r = atfab("customize", "--image", tmp_path / "now.bin", "-o", tmp_path / "want.bin", "--module", "esp32-at-v2",
                  "--client-key0", tmp_path / "key_1.key", "--client-cert0", tmp_path / "cert_1.crt")
        assert r.exit_code == 0, r.output
        want = (tmp_path / "want.bin").read_bytes()
        for name in ("client_cert", "client_key"):
            part = profile.at_customize.find(name)
            assert vm.flash.read(part.offset, part.size) == want[part.offset:part.offset + part.size], name
        for name in ("client_cert", "client_key"):      # back to the first customisation for what follows
            part = profile.at_customize.find(name)
            vm.flash.erase(part.offset, part.size)
            vm.flash.program(part.offset, out[part.offset:part.offset + part.size])
        vm.power_cycle()
        # a refused item write after the block went in: the items and the block are put back (exit 3)
        before = vm.flash.read(0, 0x40000)
        vm.faults.error_after_writes = 1           # the block's write passes, the certificate's is refused
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--country", "JP",
                  "--client-cert0", tmp_path / "cert_1.crt", "--client-key0", tmp_path / "key_1.key")
        assert r.exit_code == 3 and "restored to its previous values" in r.output, r.output
        assert vm.flash.read(0, 0x40000) == before
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--server-cert0", tmp_path / "new.crt")
        assert r.exit_code == 2 and "server_cert holds 0 item(s)" in r.output, r.output
    finally:
        vm.stop()


def test_live_gatt_rows_match_image_customize(tmp_path):
    """--gatts-cfgN on a G2 module: the ble_data image (0x2795 + JSON in the release's key order) rewritten
    over AT+SYSFLASH, the same bytes customize --image writes; a row past the end needs --add-missing."""
    profile = load_profile("esp32-at-v2")
    rows = cfg_strings(parse_legacy_csv(GATT_CSV))
    content = UnitContent(factory_param=dict(profile.factory_param), pki={}, ble_rows=rows)
    opts = ["--gatts-cfg2", "2,16,0xC301,0x01,4,2,BEEF", "--gatts-cfg3", "3,16,0x2803,0x01,1,1,02",
            "--gatts-cfg4", "4,16,0xC302,0x01,4,1,AA", "--add-missing"]
    vm = VirtualModule(chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware).start()
    try:
        flash_legacy_unit(vm, profile, content)
        (tmp_path / "flash.bin").write_bytes(vm.flash.read(0, vm.flash.size))
        r = atfab("customize", "--image", tmp_path / "flash.bin", "-o", tmp_path / "out.bin", "--module", "esp32-at-v2",
                  *opts)
        assert r.exit_code == 0, r.output
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--json", *opts)
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert result["passed"], result["measurements"]
        assert [(c["key"], c["action"]) for c in result["changes"]] == [("cfg2", "changed"), ("cfg3", "added"),
                                                                        ("cfg4", "added")]
        part = profile.at_customize.find("ble_data")
        got = vm.flash.read(part.offset, part.size)
        assert got == (tmp_path / "out.bin").read_bytes()[part.offset:part.offset + part.size]
        assert b'"uuid": "C301"' in got and got[2:4] == b"\x27\x95"
        r = atfab("customize", "--port", vm.at_url, "--module", "esp32-at-v2", "--gatts-cfg9", "9,16,0xC303,0x01,1,1,01")
        assert r.exit_code == 2 and "cfg9 must be an existing row" in r.output, r.output
    finally:
        vm.stop()


def test_live_customize_ends_a_write_an_earlier_contact_cut(unit):
    """A module still reading the payload of a write whose host died answers nothing: customize --port
    first ends that write (0xFF, AtClient.settle), then customizes as usual."""
    module, profile, vm = unit
    host, port = vm.at_url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b'AT+SYSFLASH=1,"server_ca",0,300\r\n')   # empty; v1.x finds type-0x40 entries only
        got = b""
        while b">" not in got:
            got += s.recv(100)
        s.sendall(b"x" * 10)
    r = atfab("customize", "--port", vm.at_url, "--module", module, "--country", "US", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["passed"]


def test_a_power_cut_between_the_block_erase_and_write_is_put_back(unit, tmp_path):
    """factory_param is one sector: a power cut between its erase and its write leaves no block. The old
    block was journalled (host side, by MAC) before the erase; the next customize --port on that unit puts
    it back, says so, and applies the request; nothing stays in the journal."""
    module, profile, vm = unit
    opts = CASES[module]
    before = _block(profile, vm)
    (tmp_path / "before.bin").write_bytes(before)
    r = atfab("customize", "--image", tmp_path / "before.bin", "-o", tmp_path / "want.bin", "--module", module, *opts)
    assert r.exit_code == 0, r.output
    journal = tmp_path / "journal"
    vm.faults.power_loss_after_flash_ops = 1          # the block's sector erased, then the power goes
    r = atfab("customize", "--port", vm.at_url, "--journal", journal, *opts)
    assert r.exit_code == 3, r.output
    assert _block(profile, vm) == b"\xff" * len(before)
    (entry,) = journal.glob("factory_param-*.json")
    kept = json.loads(entry.read_text())
    old = base64.b64decode(kept["old"])
    assert old and before.startswith(old) and kept["old_sha256"] == hashlib.sha256(old).hexdigest()
    r = atfab("customize", "--port", vm.at_url, "--journal", journal, "--json", *opts)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert any("was erased" in p and "put back the journalled old block" in p for p in out["problems"]), out
    assert _block(profile, vm) == (tmp_path / "want.bin").read_bytes()
    assert list(journal.iterdir()) == []
    # the power goes after the write landed, before its reply: the next run finds the planned block in place
    vm.faults.power_loss_after_flash_ops = 2
    r = atfab("customize", "--port", vm.at_url, "--journal", journal, "--channel-num", "13")
    assert r.exit_code == 3, r.output
    assert len(list(journal.iterdir())) == 1
    r = atfab("customize", "--port", vm.at_url, "--journal", journal, "--json", "--channel-num", "13")
    assert r.exit_code == 0, r.output
    assert any("had finished (the planned block is in place)" in p for p in json.loads(r.stdout)["problems"])
    assert list(journal.iterdir()) == []
