"""``atfab build`` for the legacy (G1/G2) module profiles: per-item partitions per esp-at release,
from a raw_data-like folder made at test time; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import atexit
import json
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.image.legacy_pki import decode_pki
from atfab.image.partition_table import decode
from tests.legacy_support import GATT_OBJECTS, expected_ble, expected_pki, make_raw_data

CSV_KEYS = ("index", "uuid_len", "uuid", "perm", "val_max_len", "val_cur_len", "value")


def _private_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="atfab-legacy-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@pytest.fixture(scope="module")
def raw() -> tuple[Path, dict]:
    """A v2.2-era raw_data folder (keys in it: kept out of tmp_path)."""
    folder = _private_dir() / "raw_data"
    files = make_raw_data(folder, factory="v2.2", partitions=("client_cert", "client_key", "client_ca", "mqtt_ca"),
                          der=True)
    return folder, files


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _build(tmp_path: Path, module: str, release: str, *extra: str, name: str = "out"):
    out = tmp_path / name
    res = run("build", "-m", module, "--synthetic-firmware", release, "-o", str(out), "--json", *extra)
    return res, out


@pytest.mark.parametrize("release,key_type", [("v2.2.0.0", 2), ("v2.4.0.0", 2), ("v3.0.0.0", 3)])
def test_esp32_g2_release_decides_the_pki_item_types(tmp_path, raw, release, key_type):
    folder, files = raw
    res, out = _build(tmp_path, "esp32-at-v2", release, "--pki-dir", str(folder))
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.output)
    assert manifest["release"] == release and manifest["generation"] == "G2"
    assert [p["name"] for p in manifest["partitions"]] == ["ble_data", "client_cert", "client_key", "client_ca",
                                                           "factory_param", "mqtt_ca"]
    assert (out / "client_cert.bin").read_bytes() == expected_pki(files["client_cert"], 2)
    assert (out / "client_key.bin").read_bytes() == expected_pki(files["client_key"], key_type)
    assert (out / "mqtt_ca.bin").read_bytes() == expected_pki(files["mqtt_ca"], 2 if key_type == 2 else 1)
    assert (out / "ble_data.bin").read_bytes() == expected_ble(GATT_OBJECTS, CSV_KEYS)
    assert stat.S_IMODE((out / "client_key.bin").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "client_cert.bin").stat().st_mode) != 0o600
    args = (out / "flash_args").read_text().split()
    assert "0x2c000" in args and args[args.index("0x2c000") + 1] == "client_key.bin"
    assert decode((out / "at_customize.bin").read_bytes()).has_md5
    assert not decode((out / "partition-table.bin").read_bytes()).has_md5
    assert len(decode_pki((out / "client_cert.bin").read_bytes())) == 3       # two PEM and one DER certificate


def test_v2_0_and_v2_1_blocks_and_python2_ble_data(tmp_path):
    folder = _private_dir() / "raw20"
    make_raw_data(folder, factory="v2.0", partitions=())
    res, out = _build(tmp_path, "esp32-at-v2", "v2.0.0.0", "--pki-dir", str(folder))
    assert res.exit_code == 0, res.output
    block = (out / "factory_param.bin").read_bytes()
    assert block[:8] == bytes([0xFC, 0xFC, 1, 1, 78, 0xFF, 1, 13]) and block[20:24] == b"\xff" * 4
    assert (out / "ble_data.bin").read_bytes() == expected_ble(
        GATT_OBJECTS, ("index", "uuid", "uuid_len", "val_max_len", "value", "perm", "val_cur_len"))
    res, out = _build(tmp_path, "esp32-at-v2", "v2.1.0.0", name="v21")      # profile defaults, default table
    assert res.exit_code == 0, res.output
    assert (out / "factory_param.bin").read_bytes()[:8] == bytes([0xFC, 0xFC, 2, 1, 78, 1, 1, 13])
    rows = json.loads((out / "ble_data.bin").read_bytes()[4:])["Service"]
    assert len(rows) == 31 and list(rows[0]) == ["index", "uuid", "uuid_len", "val_max_len", "value", "perm",
                                                  "val_cur_len"]


def test_g1_power_is_a_level_and_no_block_before_v1_1_3(tmp_path):
    params = tmp_path / "p.toml"
    params.write_text("[factory_param]\nmax_tx_power = 5\ncountry_code = \"US\"\nchannel_num = 11\n")
    res, out = _build(tmp_path, "esp32-at-v1.2", "v1.2.0.0", "--params", str(params))
    assert res.exit_code == 0, res.output
    block = (out / "factory_param.bin").read_bytes()
    assert block[:12] == bytes([0xFC, 0xFC, 1, 1, 5, 0xFF, 1, 11]) + b"US\0\0" and block[20:] == b"\xff" * 4076
    assert decode((out / "partition-table.bin").read_bytes()).has_md5       # v1.2.0.0: IDF 3.2 writes MD5
    res, out = _build(tmp_path, "esp32-at-v1.1", "v1.1.0.0", name="v11")
    assert res.exit_code == 0, res.output
    names = [p["name"] for p in json.loads(res.output)["partitions"]]
    assert names == ["ble_data"] and not decode((out / "at_customize.bin").read_bytes()).has_md5
    assert len(json.loads((out / "ble_data.bin").read_bytes()[4:])["Service"]) == 24    # v1.0's example.csv (cfg0..cfg23)


@pytest.mark.parametrize("args,field,message", [
    (("-m", "esp32-at-v2", "--synthetic-firmware", "v2.0.0.0", "--params", "{p_port}"), "factory_param.uart_port",
     "no uart_port field"),
    (("-m", "esp32-at-v1.2", "--synthetic-firmware", "v1.2.0.0", "--params", "{p_power}"), "factory_param.max_tx_power",
     "0..11"),
    (("-m", "esp32-at-v2", "--synthetic-firmware", "v1.2.0.0"), "release", "built by esp-at"),
    (("-m", "esp32-at-v1.1", "--synthetic-firmware", "v1.1.0.0", "--params", "{p_port}"), "factory_param.uart_port",
     "no factory_param partition"),
    (("-m", "esp32c2-2mb-at-v3.0", "--synthetic-firmware", "v3.0.0.0", "--gatt", "{gatt}"), "ble_data", "never reads"),
    (("-m", "esp32-at-v1.2", "--synthetic-firmware", "v1.2.0.0", "--pki-dir", "{mqtt}"), "mqtt_cert", "no mqtt_cert"),
    (("-m", "esp32-at-v2", "--synthetic-firmware", "v3.0.0.0", "--pki-dir", "{badcert}"), "client_cert",
     "not a certificate"),
])
def test_bad_input_exit_2(tmp_path, args, field, message):
    (tmp_path / "port.toml").write_text("[factory_param]\nuart_port = 0\n")
    (tmp_path / "power.toml").write_text("[factory_param]\nmax_tx_power = 78\n")
    (tmp_path / "g.csv").write_text("index,uuid_len,uuid,perm,val_max_len,val_cur_len,value\n0,16,0x2800,0x01,2,2,A002\n")
    (tmp_path / "mqtt" / "mqtt_cert").mkdir(parents=True)
    (tmp_path / "mqtt" / "mqtt_cert" / "c.crt").write_text("x")
    (tmp_path / "bad" / "client_cert").mkdir(parents=True)
    (tmp_path / "bad" / "client_cert" / "c.crt").write_text("not a certificate")
    subst = {"p_port": tmp_path / "port.toml", "p_power": tmp_path / "power.toml", "gatt": tmp_path / "g.csv",
             "mqtt": tmp_path / "mqtt", "badcert": tmp_path / "bad"}
    out = tmp_path / "OUT"
    res = run("build", *(a.format(**subst) for a in args), "-o", str(out))
    assert res.exit_code == 2, res.output
    assert field in res.output and message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_c2_2mb_with_allow_unread_and_4k_partitions(tmp_path):
    folder = _private_dir() / "raw_c2"
    make_raw_data(folder, factory=None)
    res, out = _build(tmp_path, "esp32c2-2mb-at-v3.0", "v3.0.0.0", "--pki-dir", str(folder), "--allow-unread")
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert {p["name"]: p["offset"] for p in m["partitions"]}["client_key"] == "0x20000"
    assert "ble_data" in m["sources"]["written_unread"]
    block = (out / "factory_param.bin").read_bytes()
    assert block[16:20] == bytes([7, 6, 19, 20]) and block[56:67] == b"ESP32C2-2MB"
