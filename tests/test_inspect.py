"""``atfab inspect``: kinds detected by content, tables, NVS values, keys never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from atfab.image.build import build
from atfab.cli import main
from atfab.core.errors import InputError
from atfab.image.inspect import inspect_bytes, inspect_file, render_text
from tests.paths import RAW_DATA

RAW = RAW_DATA


@pytest.fixture(scope="module")
def c2_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("c2") / "out"
    build("esp32c2-4mb", out, pki_dir=RAW, synthetic_firmware="v3.3.0.0", unread="skip")  # no BLE: ble_data/ left out
    return out


def _key_lines() -> list[str]:
    """Base64 body lines of the private keys used as inputs (must never be printed)."""
    lines = []
    for path in RAW.glob("*_key/*.key"):
        lines += [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("-----")][:3]
    assert lines
    return lines


def _assert_no_key_material(text: str) -> None:
    assert "PRIVATE KEY" not in text
    for line in _key_lines():
        assert line not in text


def _ns(part: dict, name: str) -> dict:
    return next(n for n in part["namespaces"] if n["name"] == name)


def test_factory_image(c2_build: Path):
    path = c2_build / "factory_ESP32C2-4MB.bin"
    report = inspect_file(path)
    assert report["kind"] == "flash_image" and report["size"] == 4 << 20
    assert report["bootloader"]["chip"] == "esp32c2" and report["bootloader"]["offset"] == "0x0"
    assert report["bootloader"]["flash_freq"] == "60m" and report["bootloader"]["digest_ok"]
    assert report["partition_table"]["offset"] == "0x8000" and not report["partition_table"]["md5"]
    assert [e["name"] for e in report["partition_table"]["entries"]] == \
        ["otadata", "phy_init", "nvs", "at_customize", "ota_0", "ota_1"]
    assert report["at_customize"]["md5"] and report["at_customize"]["entries"][0]["offset"] == "0x1f000"
    assert {"esp32c2-4mb", "esp32c2-4mb-g2"} <= set(report["matching_profiles"])
    assert "esp32c3-mini-1" not in report["matching_profiles"]  # same layout, other chip
    nvs = {p["partition"]: p for p in report["nvs"]}
    assert nvs["nvs"]["state"] == "blank"
    mfg = nvs["mfg_nvs"]
    fp = {k["key"]: k for k in _ns(mfg, "factory_param")["keys"]}
    assert fp["module_name"]["value"] == "ESP32C2-4MB" and fp["uart_tx_pin"]["value"] == 7
    cert = x509.load_pem_x509_certificate((RAW / "client_cert/client_cert_01.crt").read_bytes())
    shown = _ns(mfg, "client_cert")["keys"][1]
    assert shown["key"] == "client_cert.1" and shown["kind"] == "certificates"
    assert shown["certificates"][0]["sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert shown["certificates"][0]["subject"] == cert.subject.rfc4514_string()
    key = _ns(mfg, "client_key")["keys"][0]
    assert key["kind"] == "private_key" and key["key_type"] == "RSA" and key["key_bits"] == 2048
    assert set(key) == {"key", "type", "kind", "size", "key_type", "key_bits"}
    apps = {a["partition"]: a for a in report["apps"]}
    assert apps["ota_0"]["app"]["version"] == "v3.3.0.0" and apps["ota_0"]["app"]["at_core"].startswith("3.3.0.0(")
    assert apps["ota_1"]["state"] == "blank" and apps["ota_1"]["app"] is None
    assert report["problems"] == []
    text = render_text(report)
    assert "private key RSA 2048 bits" in text and "module_name" in text and "ESP32C2-4MB" in text
    _assert_no_key_material(json.dumps(report))
    _assert_no_key_material(text)


def test_with_module(c2_build: Path):
    path = c2_build / "factory_ESP32C2-4MB.bin"
    assert inspect_file(path, module="esp32c2-4mb")["profile_match"] is True
    other = inspect_file(path, module="esp32c3-mini-1")
    assert other["profile_match"] is False and any("esp32c2" in d for d in other["profile_differences"])
    two = inspect_file(path, module="esp32c2-2mb")
    assert two["profile_match"] is False


def test_truncated_dump(c2_build: Path):
    data = (c2_build / "factory_ESP32C2-4MB.bin").read_bytes()[:0x80000]
    report = inspect_bytes(data, source="dump.bin")
    assert report["kind"] == "flash_image"
    assert any("ends before" in p for p in report["problems"])
    assert {p["partition"]: p["state"] for p in report["nvs"]}["mfg_nvs"] == "nvs"
    assert {a["partition"]: a["state"] for a in report["apps"]}["ota_1"] == "blank"


@pytest.mark.parametrize("module, boot, table", [("esp32-wroom-32", "0x1000", "0x8000"),
                                                 ("esp32c5-4mb", "0x2000", "0xc000")])
def test_other_layouts_detected(tmp_path: Path, module: str, boot: str, table: str):
    manifest = build(module, tmp_path, synthetic_firmware="v4.0.0.0")
    report = inspect_file(tmp_path / manifest["factory_image"]["name"])
    assert report["bootloader"]["offset"] == boot and report["partition_table"]["offset"] == table
    assert module in report["matching_profiles"]
    assert {a["partition"]: a for a in report["apps"]}["ota_0"]["app"]["version"] == "v4.0.0.0"


def test_bare_files(c2_build: Path):
    pt = inspect_file(c2_build / "partition-table.bin")
    assert pt["kind"] == "partition_table" and pt["table_role"] == "primary" and not pt["partition_table"]["md5"]
    at = inspect_bytes((c2_build / "at_customize.bin").read_bytes() + b"\xff" * 0x400, source="x")
    assert at["kind"] == "partition_table" and at["table_role"] == "secondary" and at["partition_table"]["md5"]
    nvs = inspect_file(c2_build / "mfg_nvs.bin")
    assert nvs["kind"] == "nvs" and nvs["nvs"][0]["key_count"] > 13
    _assert_no_key_material(json.dumps(nvs))
    app = inspect_file(c2_build / "esp-at.bin")
    assert app["kind"] == "app_image" and app["app"]["project"] == "esp-at"
    boot = inspect_file(c2_build / "bootloader.bin")
    assert boot["kind"] == "bootloader_image" and boot["chip"] == "esp32c2"
    assert inspect_bytes(b"\xff" * 8192)["kind"] == "blank"


def test_not_recognised(tmp_path: Path):
    path = tmp_path / "mfg_nvs.bin"   # the name does not matter
    path.write_bytes(b"hello" * 1000)
    with pytest.raises(InputError) as ei:
        inspect_file(path)
    assert ei.value.field == "content"
    with pytest.raises(InputError):
        inspect_file(tmp_path / "missing.bin")


def test_cli(c2_build: Path, tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(c2_build / "factory_ESP32C2-4MB.bin")], catch_exceptions=False)
    assert res.exit_code == 0
    assert "partition table at 0x8000" in res.output and "[factory_param]" in res.output
    _assert_no_key_material(res.output)
    res = runner.invoke(main, ["inspect", "--json", "-m", "esp32c2-4mb", str(c2_build / "mfg_nvs.bin")],
                        catch_exceptions=False)
    assert res.exit_code == 0 and json.loads(res.output)["kind"] == "nvs"
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 100)
    res = runner.invoke(main, ["inspect", str(bad)], catch_exceptions=False)
    assert res.exit_code == 2 and "bad.bin" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_custom_key_namespaces_redacted():
    from atfab.image.inspect import describe_blob

    pem = (RAW / "client_key/client_key_00.key").read_bytes()
    assert describe_blob("whatever", "blob", pem)["kind"] == "private_key"
    assert describe_blob("acme_key", "k", b"\x01\x02secret")["kind"] == "private_key"
    assert describe_blob("acme_key", "k", b"\x01\x02secret")["key_type"] == "unparsed"
    plain = describe_blob("acme", "k", b"\x01\x02")
    assert plain["kind"] == "blob" and "value" not in plain
