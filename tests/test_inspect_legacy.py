"""``atfab inspect`` decodes the G1/G2 per-item partitions: bare (what ``atfab build`` writes per item or
``AT+SYSFLASH`` reads back) and inside a full flash image, for every legacy profile. Keys are never shown."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from tests.legacy_support import make_raw_data

PROFILES = {"esp32-at-v1.1": "v1.1.0.0", "esp32-at-v1.2": "v1.2.0.0", "esp32-at-v2": "v2.4.0.0",
            "esp32c3-at-v2": "v2.4.0.0", "esp32c2-4mb-at-v3.0": "v3.0.0.0", "esp32c2-2mb-at-v3.0": "v3.0.0.0"}


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def raw() -> tuple[Path, dict]:
    folder = Path(tempfile.mkdtemp(prefix="atfab-inspect-legacy-")) / "raw_data"
    atexit.register(shutil.rmtree, folder.parent, True)
    files = make_raw_data(folder, factory=None, partitions=("client_cert", "client_key", "client_ca"))
    return folder, files


def _build(tmp_path: Path, module: str, release: str, *extra: str) -> Path:
    out = tmp_path / module
    res = run("build", "-m", module, "--synthetic-firmware", release, "-o", str(out), *extra)
    assert res.exit_code == 0, res.output
    return out


def _inspect(path: Path) -> dict:
    res = run("inspect", str(path), "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.mark.parametrize("module", sorted(PROFILES))
def test_every_legacy_profile_image_is_decoded(tmp_path, raw, module):
    folder, files = raw
    out = _build(tmp_path, module, PROFILES[module], "--pki-dir", str(folder), "--allow-unread")
    image = out / json.loads((out / "manifest.json").read_text())["factory_image"]["name"]
    report = _inspect(image)
    assert report["kind"] == "flash_image" and module in report["matching_profiles"]
    items = {it["partition"]: it for it in report["legacy"]}
    assert items["client_cert"]["state"] == "pki" and len(items["client_cert"]["items"]) == len(files["client_cert"])
    assert [i["kind"] for i in items["client_key"]["items"]] == ["private_key"] * len(files["client_key"])
    assert items["client_ca"]["items"][0]["certificates"][0]["subject"]
    assert items["server_cert"]["state"] == "blank"
    if "factory_param" in items:
        fp = items["factory_param"]
        assert fp["state"] == "factory_param" and fp["firmware"]["uart_baudrate"] == 115200
    ble = items.get("ble_data")
    if ble is not None and ble["state"] != "blank":
        assert ble["rows"][0]["uuid"] == "0x2800"
    assert report["problems"] == []
    text = run("inspect", str(image)).output
    assert "client_key at 0x" in text and "not shown" in text
    for key in files["client_key"]:                              # no key material in either form
        body = key.split(b"\n")[1].decode() if key.startswith(b"-----") else key[:16].hex()
        assert body not in text and body not in json.dumps(report)


def test_bare_partitions_and_a_broken_item_in_an_image(tmp_path, raw):
    folder, _files = raw
    out = _build(tmp_path, "esp32-at-v2", "v3.0.0.0", "--pki-dir", str(folder))
    block = _inspect(out / "factory_param.bin")
    assert block["kind"] == "legacy_partition"
    fp = block["legacy"][0]
    assert fp["version"] == 3 and fp["fields"]["module_name"] == "WROOM-32" and fp["fields"]["uart_tx_pin"] == 17
    assert _inspect(out / "client_key.bin")["legacy"][0]["items"][0]["type"] == "key"
    assert _inspect(out / "ble_data.bin")["legacy"][0]["state"] == "ble_data"
    v20 = _build(tmp_path, "esp32-at-v2", "v2.0.0.0")
    assert _inspect(v20 / "factory_param.bin")["legacy"][0]["fields"]["module_id"] == 1

    bad = bytearray((out / "client_cert.bin").read_bytes())
    bad[2] = 9                                                   # item count no longer matches
    (tmp_path / "bad.bin").write_bytes(bytes(bad))
    res = run("inspect", str(tmp_path / "bad.bin"))
    assert res.exit_code == 2 and "items" in res.output and len(res.output.strip().splitlines()) == 1
    image = bytearray((out / "factory_WROOM-32.bin").read_bytes())
    image[0x2A000 + 2] = 9
    (tmp_path / "img.bin").write_bytes(bytes(image))
    report = _inspect(tmp_path / "img.bin")
    cert = next(i for i in report["legacy"] if i["partition"] == "client_cert")
    assert cert["state"] == "not pki" and any("client_cert at 0x2a000" in p for p in report["problems"])
