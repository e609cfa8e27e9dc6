"""``atfab build``: output folder content, firmware folders, and bad inputs (exit 2, OUT/ untouched)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.image.build import build, load_firmware, read_flash_args, write_synthetic_firmware
from atfab.cli import main
from atfab.core.errors import InputError
from atfab.image.nvs.reader import read_nvs
from atfab.image.partition_table import decode, encode
from atfab.image.profiles import BUILTIN_DIR, load_profile
from tests.paths import RAW_DATA

RAW = RAW_DATA


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "OUT"
    folder.mkdir()
    (folder / "keep.txt").write_text("old\n")
    (folder / "mfg_nvs.bin").write_bytes(b"previous build")
    return folder


def test_build_synthetic_c2(out: Path):
    res = run("build", "--module", "esp32c2-4mb", "-o", str(out), "--synthetic-firmware", "v3.3.0.0")
    assert res.exit_code == 0, res.output
    names = {p.name for p in out.iterdir()}
    assert {"at_customize.bin", "mfg_nvs.bin", "mfg_nvs.csv", "flash_args", "manifest.json", "bootloader.bin",
            "partition-table.bin", "ota_data_initial.bin", "esp-at.bin", "factory_ESP32C2-4MB.bin", "keep.txt"} == names
    assert (out / "flash_args").read_text() == (
        "--flash_mode dio --flash_freq 60m --flash_size 4MB\n"
        "0x0 bootloader.bin\n0x8000 partition-table.bin\n0xd000 ota_data_initial.bin\n"
        "0x1e000 at_customize.bin\n0x1f000 mfg_nvs.bin\n0x60000 esp-at.bin\n")
    profile = load_profile("esp32c2-4mb")
    assert (out / "at_customize.bin").read_bytes() == encode(profile.at_customize, md5=True)
    table = decode((out / "partition-table.bin").read_bytes())
    assert table == profile.primary and not table.has_md5
    assert (out / "ota_data_initial.bin").read_bytes() == b"\xff" * 0x2000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["module"] == "esp32c2-4mb" and manifest["app"]["version"] == "v3.3.0.0"
    assert manifest["offsets"]["mfg_nvs"] == "0x1f000"
    for entry in manifest["files"] + [manifest["factory_image"]]:
        assert hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    factory = (out / "factory_ESP32C2-4MB.bin").read_bytes()
    assert len(factory) == 4 << 20
    options, pairs = read_flash_args(out / "flash_args")
    assert options == ["--flash_mode", "dio", "--flash_freq", "60m", "--flash_size", "4MB"]
    for offset, path in pairs:
        data = path.read_bytes()
        assert factory[offset:offset + len(data)] == data, path.name
    app_end = 0x60000 + 0x400          # the synthetic app (with its command-set markers) is under 1 KB
    assert factory[app_end:0x230000] == b"\xff" * (0x230000 - app_end)
    nvs = read_nvs((out / "mfg_nvs.bin").read_bytes())
    assert nvs.get("factory_param", "module_name").value == "ESP32C2-4MB"
    assert nvs.get("ble_data", "cfg0") is None  # C2 4MB build has no BLE commands


def test_build_json_params_pki_gatt(tmp_path: Path, out: Path):
    params = tmp_path / "params.toml"
    params.write_text('[factory_param]\nmodule_name = "ACME-1"\nmax_tx_power = 80\nuart_baudrate = 921600\n'
                      '[custom.acme]\nserial = { type = "string", value = "SN0001" }\n')
    gatt = tmp_path / "gatts.csv"
    gatt.write_text("# index,uuid_len,uuid,perm,max_len,cur_len,value\n0,16,0x2800,0x01,2,2,A002\n"
                    "1,16,0x2803,0x01,1,1,02\n2,16,0xC300,0x01,1,1,30\n")
    res = run("build", "-m", "esp32c3-mini-1", "--params", str(params), "--pki-dir", str(RAW), "--gatt", str(gatt),
              "-o", str(out), "--json")
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.output)
    assert manifest["module_name"] == "ACME-1" and manifest["factory_image"] is None and manifest["app"] is None
    nvs = read_nvs((out / "mfg_nvs.bin").read_bytes())
    assert nvs.get("factory_param", "max_tx_power").value == 80
    assert nvs.get("factory_param", "uart_baudrate").value == 921600
    assert nvs.get("acme", "serial").value == "SN0001"
    assert [e.value for e in nvs.keys("ble_data")] == ["0,16,0x2800,0x01,2,2,A002", "1,16,0x2803,0x01,1,1,02",
                                                       "2,16,0xC300,0x01,1,1,30"]
    assert nvs.get("client_key", "client_key.1").value == (RAW / "client_key/client_key_01.key").read_bytes()
    assert nvs.get("server_cert", "server_cert") is not None
    assert (out / "mfg_nvs.bin").stat().st_mode & 0o777 == 0o600
    csv_text = (out / "mfg_nvs.csv").read_text()
    assert "PRIVATE KEY" not in csv_text and "client_key.0,file,binary," in csv_text
    assert "PRIVATE KEY" not in (out / "manifest.json").read_text()
    assert (out / "flash_args").read_text().splitlines()[1:] == ["0x1e000 at_customize.bin", "0x1f000 mfg_nvs.bin"]


def test_ble_module_gets_default_gatt(out: Path):
    build("esp32c2-2mb-ble", out)
    nvs = read_nvs((out / "mfg_nvs.bin").read_bytes())
    assert len(nvs.keys("ble_data")) == 31
    assert nvs.get("ble_data", "cfg0").value == "0,16,0x2800,0x01,2,2,A002"


@pytest.mark.parametrize("layout", ["download.config", "flat", "flasher_args.json"])
def test_build_with_firmware_folder(tmp_path: Path, layout: str):
    profile = load_profile("esp32-wroom-32")
    fw = write_synthetic_firmware(profile, tmp_path / "fw", version="v4.0.0.0")
    if layout == "flat":
        flat = tmp_path / "flat"
        flat.mkdir()
        for rel in ("bootloader/bootloader.bin", "partition_table/partition-table.bin", "ota_data_initial.bin",
                    "esp-at.bin"):
            shutil.copy(fw / rel, flat / Path(rel).name)
        fw = flat
    elif layout == "flasher_args.json":
        (fw / "download.config").unlink()
        (fw / "flasher_args.json").write_text(json.dumps({"flash_files": {
            "0x1000": "bootloader/bootloader.bin", "0x8000": "partition_table/partition-table.bin",
            "0x10000": "ota_data_initial.bin", "0x20000": "at_customize.bin", "0x21000": "mfg_nvs.bin",
            "0x100000": "esp-at.bin"}}))
    out = tmp_path / "out"
    manifest = build(profile, out, firmware=fw)
    assert manifest["app"]["version"] == "v4.0.0.0" and manifest["app"]["chip"] == "esp32"
    lines = (out / "flash_args").read_text().splitlines()
    assert lines[0] == "--flash_mode dio --flash_freq 40m --flash_size 4MB"
    assert lines[1:] == ["0x1000 bootloader.bin", "0x8000 partition-table.bin", "0x10000 ota_data_initial.bin",
                         "0x20000 at_customize.bin", "0x21000 mfg_nvs.bin", "0x100000 esp-at.bin"]
    factory = (out / "factory_WROOM-32.bin").read_bytes()
    assert len(factory) == 4 << 20 and factory[:0x1000] == b"\xff" * 0x1000
    assert factory[0x1000] == 0xE9 and factory[0x8000:0x8002] == b"\xaa\x50"


def test_firmware_of_another_module_is_rejected(tmp_path: Path, out: Path):
    fw = write_synthetic_firmware(load_profile("esp32c2-4mb"), tmp_path / "fw")
    before = _snapshot(out)
    res = run("build", "-m", "esp32c2-2mb", "--firmware", str(fw), "-o", str(out))
    assert res.exit_code == 2
    assert "download.config: app: esp-at.bin at 0x60000" in res.stderr
    assert _snapshot(out) == before
    (fw / "download.config").unlink()
    with pytest.raises(InputError) as ei:
        load_firmware(fw, load_profile("esp32c2-2mb"))
    assert ei.value.field == "partition_table" and ei.value.file.endswith("partition-table.bin")
    with pytest.raises(InputError) as ei:
        load_firmware(fw, load_profile("esp32c3-mini-1"))  # same layout, other chip
    assert ei.value.field == "bootloader"
    (fw / "esp-at.bin").unlink()
    with pytest.raises(InputError) as ei:
        load_firmware(fw, load_profile("esp32c2-4mb"))
    assert ei.value.field == "app"


# ---------------------------------------------------------------------------- bad inputs


def _custom_profile(tmp_path: Path, file: str, old: str, new: str) -> Path:
    folder = tmp_path / "custom"
    shutil.copytree(BUILTIN_DIR / "esp32c2-4mb", folder)
    text = (folder / file).read_text()
    assert old in text
    (folder / file).write_text(text.replace(old, new))
    return folder


def _huge_ca(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    (pki / "client_ca").mkdir(parents=True)
    bundle = (RAW / "client_ca/client_ca_00.crt").read_bytes() * 120   # ~150 KB of valid PEM
    (pki / "client_ca" / "bundle.crt").write_bytes(bundle)
    return pki


def _bad_cert(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    (pki / "client_cert").mkdir(parents=True)
    (pki / "client_cert" / "client.crt").write_text("this is not a certificate\n")
    return pki


def _bad_key(tmp_path: Path) -> Path:
    pki = tmp_path / "pki"
    (pki / "client_key").mkdir(parents=True)
    (pki / "client_key" / "client.key").write_bytes((RAW / "client_cert/client_cert_00.crt").read_bytes())
    return pki


@pytest.mark.parametrize("case", ["overlap", "long_name", "pin", "not_pem", "not_key", "overflow", "unknown_ns",
                                  "no_profile", "bad_toml"])
def test_bad_input_exit_2_out_untouched(tmp_path: Path, out: Path, case: str):
    args = ["build", "-m", "esp32c2-4mb", "-o", str(out), "--synthetic-firmware", "v3.3.0.0"]
    if case == "overlap":
        folder = _custom_profile(tmp_path, "partitions_at.csv", "phy_init, data, phy, 0xf000, 0x1000",
                                 "phy_init, data, phy, 0xe000, 0x1000")
        args[2], expect = str(folder), ("partitions_at.csv:3", "offset", "overlaps")
    elif case == "long_name":
        folder = _custom_profile(tmp_path, "at_customize.csv", "fs_storage,", "fs_storage_abcdef,")
        args[2], expect = str(folder), ("at_customize.csv:3", "name", "17 bytes")
    elif case == "pin":
        params = tmp_path / "params.toml"
        params.write_text('[factory_param]\nuart_tx_pin = "GPIO7"\n')
        args += ["--params", str(params)]
        expect = ("params.toml", "factory_param.uart_tx_pin", "not an integer")
    elif case == "bad_toml":
        params = tmp_path / "params.toml"
        params.write_text('[factory_param\nuart_tx_pin = 7\n')
        args += ["--params", str(params)]
        expect = ("params.toml", "toml", "TOML")
    elif case == "not_pem":
        args += ["--pki-dir", str(_bad_cert(tmp_path))]
        expect = ("client_cert/client.crt", "client_cert", "not a PEM certificate")
    elif case == "not_key":
        args += ["--pki-dir", str(_bad_key(tmp_path))]
        expect = ("client_key/client.key", "client_key", "private key")
    elif case == "overflow":
        args += ["--pki-dir", str(_huge_ca(tmp_path))]
        expect = ("client_ca/bundle.crt", "client_ca", "0x1f000")
    elif case == "unknown_ns":
        (tmp_path / "pki" / "client_certs").mkdir(parents=True)
        args += ["--pki-dir", str(tmp_path / "pki")]
        expect = ("pki/client_certs", "namespace", "unknown PKI namespace")
    else:
        args[2], expect = "esp32c2-16mb", ("", "module", "unknown module profile")
    before = _snapshot(out)
    res = run(*args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    where, field, text = expect
    assert err.startswith("atfab: error: ") and where in err and f": {field}: " in err and text in err, err
    assert _snapshot(out) == before
    assert not list(out.parent.glob(".OUT.stage.*"))
    assert "PRIVATE KEY" not in res.output


def test_missing_out_dir_not_created_on_error(tmp_path: Path):
    params = tmp_path / "params.toml"
    params.write_text('[factory_param]\nmax_tx_power = 200\n')
    res = run("build", "-m", "esp32c2-4mb", "--params", str(params), "-o", str(tmp_path / "new"))
    assert res.exit_code == 2 and "max_tx_power" in res.stderr
    assert not (tmp_path / "new").exists()


def test_firmware_and_synthetic_are_exclusive(tmp_path: Path):
    with pytest.raises(InputError):
        build("esp32c2-4mb", tmp_path / "o", firmware=tmp_path, synthetic_firmware="v3.3.0.0")


def test_flash_args_is_an_esptool_argument_file(tmp_path: Path):
    """esptool reads flash_args with @: merge-bin of it equals the factory image (unfilled part)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    manifest = build("esp32c2-2mb", out, synthetic_firmware="v3.3.0.0")
    merged = tmp_path / "merged.bin"
    res = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32c2", "merge-bin", "-o", str(merged),
                          "@flash_args"], cwd=out, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    data = merged.read_bytes()
    factory = (out / manifest["factory_image"]["name"]).read_bytes()
    assert len(factory) == 2 << 20 and factory[:len(data)] == data
