"""Offline pre-programming (atfab batch): reserved identities, per-unit images and a manifest, no
half batch after a fault, and pre-programmed virtual modules bound to their MAC by `atfab run`."""

from __future__ import annotations

import csv
import hashlib
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.image.nvs.reader import read_nvs
from atfab.pki.keys import cert_sha256
from atfab.rotation.device import leaf_certificate
from atfab.station import batch as batch_mod
from atfab.station.batch import BatchIndex, is_placeholder, make_batch, placeholder_mac
from atfab.station.ledger import Ledger
from atfab.station.firmware_images import firmware_images
from atfab.station.station import Station, parse_port
from tests.conftest import run_with_timeout
from tests.secret_scan import assert_no_private_keys
from tests.station_support import PASSPHRASE, check_report, load, load_ca, write_recipe

T = 120.0


def _batch(tmp_path: Path, n: int, out: str = "batch", **kw):
    recipe = load(tmp_path)
    with Ledger(recipe.ledger) as ledger:
        result = run_with_timeout(make_batch, T, recipe, n, tmp_path / out, ca=load_ca(tmp_path), ledger=ledger,
                                  firmware=firmware_images(recipe), **kw)
    return recipe, result


def test_cli_batch_writes_images_manifest_and_reserves_identities(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path)
    res = CliRunner().invoke(main, ["batch", str(recipe_path), "-n", "7", "-o", str(tmp_path / "b"), "--json",
                                    "--workers", "2", "--workdir", str(tmp_path)],
                             env={"ATFAB_CA_PASSPHRASE": PASSPHRASE}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["count"], out["workers"]) == (7, 2)
    folder = tmp_path / "b"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema"] == "atfab.batch-manifest/1" and len(manifest["units"]) == 7
    serials = [u["serial"] for u in manifest["units"]]
    assert len(set(serials)) == 7 and serials[0] == out["first_serial"]
    recipe = load(tmp_path)
    offsets = {f["file"]: f["offset"] for f in manifest["common"]}
    assert offsets["common/at_customize.bin"] == recipe.profile.at_customize_offset
    for f in manifest["common"]:
        assert hashlib.sha256((folder / f["file"]).read_bytes()).hexdigest() == f["sha256"]
    with Ledger(recipe.ledger) as ledger:
        for u in manifest["units"]:
            (f,) = u["files"]
            path = folder / f["file"]
            data = path.read_bytes()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600                  # it holds the unit's key
            assert (f["offset"], f["size"]) == (recipe.profile.mfg_nvs.offset, len(data))
            assert hashlib.sha256(data).hexdigest() == f["sha256"] and hashlib.md5(data).hexdigest() == f["md5"]
            cert = leaf_certificate(read_nvs(data).get("client_cert", "client_cert").value)
            assert f"CN={u['serial']}" in cert.subject.rfc4514_string().split(",")
            assert cert_sha256(cert) == u["certificate"]["sha256"]
            reserved = ledger.unit(u["placeholder"])
            assert reserved.serial == u["serial"] and is_placeholder(reserved.mac)
            (rec,) = ledger.certificates_for(u["placeholder"], "client.0")
            assert rec.fingerprint == u["certificate"]["sha256"]
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    assert len(rows) == 7 * (len(manifest["common"]) + 1)
    assert {r["serial"] for r in rows} == set(serials)
    assert_no_private_keys(folder / "manifest.json")
    assert_no_private_keys(folder / "common")
    assert not list(tmp_path.glob(".b.batch-*"))


def test_fault_mid_batch_leaves_nothing_and_rolls_back(tmp_path: Path, monkeypatch) -> None:
    real = batch_mod._build_chunk
    calls = []

    def failing(chunk):
        calls.append(chunk)
        if len(calls) == 2:
            raise OSError("disk full (test)")
        return real(chunk)

    monkeypatch.setattr(batch_mod, "_build_chunk", failing)
    recipe = load(tmp_path)
    with Ledger(recipe.ledger) as ledger:
        with pytest.raises(OSError, match="disk full"):
            make_batch(recipe, 40, tmp_path / "b", ca=load_ca(tmp_path), ledger=ledger,
                       firmware=firmware_images(recipe), workers=1)
        assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))
        assert ledger.units() == []                                          # reservations rolled back
        monkeypatch.setattr(batch_mod, "_build_chunk", real)
        again = make_batch(recipe, 3, tmp_path / "b", ca=load_ca(tmp_path), ledger=ledger,
                           firmware=firmware_images(recipe), workers=1)
    assert again.first_serial != "C2D-000001"                               # serials never handed out twice


def test_batch_bad_input(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    runner = CliRunner()
    env = {"ATFAB_CA_PASSPHRASE": PASSPHRASE}
    res = runner.invoke(main, ["batch", str(recipe_path), "-n", "2", "-o", str(tmp_path / "full")], env=env)
    assert res.exit_code == 2 and "--out" in res.output and "empty" in res.output
    text = recipe_path.read_text()
    assert 'CN = "{serial}"' in text
    mac_recipe = tmp_path / "mac.toml"
    mac_recipe.write_text(text.replace('CN = "{serial}"', 'CN = "{serial}-{mac_hex}"', 1))
    res = runner.invoke(main, ["batch", str(mac_recipe), "-n", "2", "-o", str(tmp_path / "m")], env=env)
    assert res.exit_code == 2 and "pki.identity" in res.output and "MAC" in res.output, res.output
    assert not (tmp_path / "m").exists()


def test_preprogrammed_units_are_bound_on_first_contact(tmp_path: Path, module_pool) -> None:
    recipe, result = _batch(tmp_path, 3)
    index = BatchIndex.load(result.out_dir)
    manifest = json.loads(result.manifest.read_text())
    pool = module_pool(3, firmware=recipe.profile.firmware, seed="batch")
    chosen = manifest["units"][:2]
    for m, unit in zip(pool, chosen):                                    # the gang programmer's job
        m.flash.erase_all()
        for f in manifest["common"] + unit["files"]:
            m.flash.program(f["offset"], (result.out_dir / f["file"]).read_bytes())
        m.power_cycle()
    ports = [parse_port(f"u{i}={m.flash_url},{m.at_url}") for i, m in enumerate(pool)]
    station = Station(recipe, ports, ca=load_ca(tmp_path), station_id="line", batch=result.out_dir)
    summary = run_with_timeout(station.run, T)
    assert summary.exit_code == 0, [(r.port, r.error) for r in summary.results]
    by_port = {r.port: r for r in summary.finals}
    with Ledger(recipe.ledger) as ledger:
        for i, (m, unit) in enumerate(zip(pool, chosen)):
            mac = m.mac.hex(":")
            r = by_port[f"u{i}"]
            assert r.serial == unit["serial"]                                # the reserved identity
            assert ledger.unit(mac).serial == unit["serial"] and ledger.unit(unit["placeholder"]) is None
            (cert,) = ledger.certificates_for(mac, "client.0")
            assert cert.fingerprint == unit["certificate"]["sha256"]         # no new certificate issued
            report = check_report(r.report)
            steps = {s["name"]: s for s in report["steps"]}
            assert steps["certificate"]["outcome"] == "skipped" and "pre-programmed" in steps["identity"]["detail"]
            assert "mfg_nvs.bin" not in steps["flash"]["detail"]                 # the unit kept its image
            assert report["certificates"][0]["fingerprint_sha256"] == unit["certificate"]["sha256"]
        # the third unit was blank: it got a fresh identity, after the batch's serials
        fresh = by_port["u2"]
        assert fresh.serial not in {u["serial"] for u in manifest["units"]}
        (cert,) = ledger.certificates_for(pool[2].mac.hex(":"), "client.0")
        assert cert.fingerprint not in {u["certificate"]["sha256"] for u in manifest["units"]}
        assert ledger.unit(manifest["units"][2]["placeholder"]) is not None  # still reserved, unbound
    # a second contact keeps the identity (bound already)
    again = run_with_timeout(Station(recipe, ports[:1], ca=load_ca(tmp_path), station_id="line",
                                     batch=result.out_dir).run, T)
    assert again.exit_code == 0 and again.finals[0].serial == chosen[0]["serial"]
    assert index.units and len(index.units) == 3
    assert_no_private_keys(recipe.report.dir)


def test_placeholder_macs_are_never_unit_macs() -> None:
    mac = placeholder_mac(0xBEEF, 5)
    assert mac == "0f:be:ef:00:00:05" and is_placeholder(mac)
    assert int(mac[:2], 16) & 1                                              # the multicast bit


def test_cli_verify_binds_a_preprogrammed_unit(tmp_path: Path, module_pool) -> None:
    recipe, result = _batch(tmp_path, 2)
    manifest = json.loads(result.manifest.read_text())
    unit = manifest["units"][1]
    (m,) = module_pool(1, firmware=recipe.profile.firmware, seed="verify-batch")
    m.flash.erase_all()
    for f in manifest["common"] + unit["files"]:
        m.flash.program(f["offset"], (result.out_dir / f["file"]).read_bytes())
    m.power_cycle()
    args = ["verify", "--port", m.at_url, "--batch", str(result.out_dir), "--ledger", str(recipe.ledger), "--json"]
    res = run_with_timeout(CliRunner().invoke, T, main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    mac = m.mac.hex(":")
    assert (out["mac"], out["serial"]) == (mac, unit["serial"]) and out["passed"]
    with Ledger(recipe.ledger) as ledger:
        assert ledger.unit(mac).serial == unit["serial"] and ledger.unit(unit["placeholder"]) is None
        (cert,) = ledger.certificates_for(mac, "client.0")
        assert cert.fingerprint == unit["certificate"]["sha256"]
    again = run_with_timeout(CliRunner().invoke, T, main, args, catch_exceptions=False)   # bound already: same
    assert again.exit_code == 0 and json.loads(again.output)["serial"] == unit["serial"]
    # a unit of another batch is refused (exit 2), nothing bound
    _, second = _batch(tmp_path, 1, out="second")
    foreign = json.loads(second.manifest.read_text())
    (other,) = module_pool(1, firmware=recipe.profile.firmware, seed="not-in-batch")
    other.flash.erase_all()
    for f in foreign["common"] + foreign["units"][0]["files"]:
        other.flash.program(f["offset"], (second.out_dir / f["file"]).read_bytes())
    other.power_cycle()
    res = run_with_timeout(CliRunner().invoke, T, main, ["verify", "--port", other.at_url, "--batch",
                                                         str(result.out_dir), "--ledger", str(recipe.ledger)])
    assert res.exit_code == 2 and "not in batch" in res.output, res.output
    with Ledger(recipe.ledger) as ledger:
        assert ledger.unit(other.mac.hex(":")) is None


def test_merged_images_hold_every_region_at_its_offset(tmp_path: Path) -> None:
    recipe, result = _batch(tmp_path, 2, merged=True, workers=2)
    manifest = json.loads(result.manifest.read_text())
    for u in manifest["units"]:
        own, full = u["files"]
        data = (result.out_dir / full["file"]).read_bytes()
        assert full["offset"] == 0 and len(data) == recipe.profile.flash_size == full["size"]
        assert stat.S_IMODE((result.out_dir / full["file"]).stat().st_mode) == 0o600
        assert hashlib.sha256(data).hexdigest() == full["sha256"]
        for f in manifest["common"] + [own]:
            part = (result.out_dir / f["file"]).read_bytes()
            assert data[f["offset"]:f["offset"] + len(part)] == part, f["file"]
    rows = list(csv.DictReader((result.out_dir / "manifest.csv").open()))
    assert {r["file"].rsplit(".", 2)[-2] for r in rows if r["file"].startswith("units/")} == {"mfg_nvs"}


def test_batch_keys_are_escrowed_when_the_recipe_asks(tmp_path: Path, tmp_path_factory) -> None:
    from cryptography.hazmat.primitives import serialization

    from atfab.pki import escrow
    from atfab.pki.keys import spki_sha256
    from tests.test_escrow_station import escrow_recipe, operator_files

    pub, _priv, op_key = operator_files(tmp_path_factory.mktemp("operator"))
    recipe_path = escrow_recipe(tmp_path, pub)
    res = CliRunner().invoke(main, ["batch", str(recipe_path), "-n", "4", "-o", str(tmp_path / "b"), "--workers", "2",
                                    "--workdir", str(tmp_path)], env={"ATFAB_CA_PASSPHRASE": PASSPHRASE},
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    path = tmp_path / "escrow" / f"{load(tmp_path).name}.escrow"
    assert f"unit keys escrowed to {path}" in res.output and stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    records = {r.unit: r for r in escrow.decrypt_records(path, op_key)}
    assert sorted(records) == sorted(u["serial"] for u in manifest["units"])
    for u in manifest["units"]:
        rec = records[u["serial"]]
        image = read_nvs((tmp_path / "b" / u["files"][0]["file"]).read_bytes())
        key = serialization.load_pem_private_key(image.get("client_key", "client_key").value.rstrip(b"\0"), None)
        assert spki_sha256(rec.key) == spki_sha256(key) == u["certificate"]["spki_sha256"]
        assert (rec.info["context"], rec.info["mac"], rec.info["batch"]) == ("batch", u["placeholder"],
                                                                             manifest["batch_id"])
    assert_no_private_keys(path)
