"""Key escrow in recipes: the station appends every issued unit key, encrypted to the operator's
public key, before flashing; `atfab ca escrow-decrypt` gets them back (only into a 0600 file)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.image.nvs.reader import read_nvs
from atfab.pki import escrow
from atfab.pki.keys import spki_sha256
from atfab.image.profiles import load_profile
from atfab.station.recipe import check_recipe, load_recipe
from atfab.station.station import Station, parse_port
from tests.conftest import run_with_timeout
from tests.secret_scan import assert_no_private_keys, key_markers
from tests.station_support import load_ca, write_recipe

T = 60
OP_PASSPHRASE = "operator escrow passphrase"


def operator_files(keydir: Path, kind: str = "ec") -> tuple[Path, Path, object]:
    """An operator key pair: public PEM (for the recipe), encrypted private PEM (for decrypting)."""
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    pub = keydir / "operator-escrow.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    priv = keydir / "operator-escrow.key"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(OP_PASSPHRASE.encode())))
    os.chmod(priv, 0o600)
    return pub, priv, key


def escrow_recipe(tmp: Path, pub: Path, extra: str = "") -> Path:
    path = write_recipe(tmp)
    text = path.read_text().replace("[pki]\n", f'[pki]\nescrow = {{ recipient = "{pub}"{extra} }}\n', 1)
    path.write_text(text)
    return path


def unit_pair(module) -> tuple[x509.Certificate, object]:
    """The certificate and key the station wrote into the module's mfg_nvs (read from its flash)."""
    part = load_profile("esp32c2-4mb").mfg_nvs
    image = read_nvs(module.flash.read(part.offset, part.size))
    (cert,) = image.keys("client_cert")
    (key,) = image.keys("client_key")
    return (x509.load_pem_x509_certificate(cert.value.rstrip(b"\0")),
            serialization.load_pem_private_key(key.value.rstrip(b"\0"), None))


def test_station_escrows_every_unit_key_before_flashing(module_pool, tmp_path: Path, tmp_path_factory) -> None:
    keydir = tmp_path_factory.mktemp("operator")       # the operator's key lives outside the station's tree
    pub, priv, op_key = operator_files(keydir)
    recipe = load_recipe(escrow_recipe(tmp_path, pub), workdir=tmp_path)
    assert recipe.pki.escrow.recipient == pub
    pool = module_pool(2)
    ports = [parse_port(f"m{i}={m.flash_url},{m.at_url}") for i, m in enumerate(pool)]
    summary = run_with_timeout(Station(recipe, ports, ca=load_ca(tmp_path), station_id="esc").run, T)
    assert summary.counts["PASS"] == 2
    path = tmp_path / "escrow" / f"{recipe.name}.escrow"
    assert str(path) in summary.outputs and stat.S_IMODE(path.stat().st_mode) == 0o600
    records = escrow.decrypt_records(path, op_key)
    assert len(records) == 2
    by_mac = {r.info["mac"]: r for r in records}
    for module, result in zip(pool, sorted(summary.finals, key=lambda r: r.port)):
        cert, key = unit_pair(module)
        rec = by_mac[module.mac.hex(":")]
        assert rec.unit == rec.info["serial"] == result.serial
        assert rec.info["slots"] == "client.0" and rec.info["attempt_id"] == str(result.attempt_id)
        assert rec.info["context"] == "provision" and rec.info["station"] == "esc"
        assert rec.cert_sha256 == cert.fingerprint(cert.signature_hash_algorithm.__class__()).hex()
        assert spki_sha256(rec.key) == spki_sha256(cert) == spki_sha256(key)
        assert rec.key.private_numbers() == key.private_numbers()
    # no plaintext key anywhere the station wrote (reports, ledger, escrow, logs)
    markers = [m for r in records for m in key_markers(r.key)]
    assert_no_private_keys(tmp_path, secrets=markers)
    # the CLI: keys only into a 0600 file, or to stdout when asked explicitly
    env = {"OPK": OP_PASSPHRASE}
    cli = CliRunner()
    res = cli.invoke(main, ["ca", "escrow-decrypt", str(path), "--key", str(priv), "--passphrase-env", "OPK"], env=env)
    assert res.exit_code == 2 and "PRIVATE KEY" not in res.output and "-o FILE" in res.output
    out = keydir / "keys.pem"
    res = cli.invoke(main, ["ca", "escrow-decrypt", str(path), "--key", str(priv), "--passphrase-env", "OPK",
                            "-o", str(out), "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert "PRIVATE KEY" not in res.output and len(json.loads(res.output)["keys"]) == 2
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert text.count("-----BEGIN PRIVATE KEY" "-----") == 2 and f"# unit {records[0].unit} " in text
    res = cli.invoke(main, ["ca", "escrow-decrypt", str(path), "--key", str(priv), "--passphrase-env", "OPK",
                            "--stdout"], env=env)
    assert res.exit_code == 0 and res.output == text
    res = cli.invoke(main, ["ca", "escrow-decrypt", str(path), "--key", str(priv), "--passphrase-env", "NOPE",
                            "-o", str(out)], env={"NOPE": "wrong passphrase"})
    assert res.exit_code == 2 and "wrong passphrase" in res.output


def test_a_second_run_appends_and_a_torn_record_is_cut(module_pool, tmp_path: Path, tmp_path_factory) -> None:
    pub, _priv, op_key = operator_files(tmp_path_factory.mktemp("operator"), "rsa")
    recipe = load_recipe(escrow_recipe(tmp_path, pub, ', file = "keys/{station}-{recipe}.escrow"'),
                         workdir=tmp_path)
    pool = module_pool(1)
    ports = [parse_port(f"m0={pool[0].flash_url},{pool[0].at_url}")]
    run_with_timeout(Station(recipe, ports, ca=load_ca(tmp_path), station_id="s1").run, T)
    path = tmp_path / "keys" / f"s1-{recipe.name}.escrow"
    with path.open("ab") as f:                  # what a writer killed in the middle of an append leaves
        f.write(b'{"unit":"C2D-0000')
    summary = run_with_timeout(Station(recipe, ports, ca=load_ca(tmp_path), station_id="s1").run, T)
    assert summary.counts["PASS"] == 1
    records = escrow.decrypt_records(path, op_key)
    assert [r.unit for r in records] == ["C2D-000001", "C2D-000001"]      # one record per issued key
    assert records[0].cert_sha256 != records[1].cert_sha256
    _cert, key = unit_pair(pool[0])
    assert spki_sha256(records[-1].key) == spki_sha256(key)               # the unit holds the newest


def test_escrow_recipe_problems(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed = tmp_path / "ed.pub.pem"
    ed.write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cases = {
        f'"{ed}"': "pki.escrow: must be a table",
        f'{{ recipient = "{ed}" }}': "pki.escrow.recipient: " + str(ed) + ": operator key Ed25519 cannot receive",
        f'{{ recipient = "{tmp_path / "none.pem"}" }}': "cannot read operator public key",
        '{ file = "x.escrow" }': "pki.escrow.recipient: required field is missing",
        f'{{ recipient = "{ed}", file = "{{serial}}.escrow" }}': "pki.escrow.file: unknown placeholder {serial}",
        f'{{ recipient = "{ed}", keep = true }}': "pki.escrow.keep: unknown field",
    }
    base = write_recipe(tmp_path).read_text()
    for value, wanted in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(base.replace("[pki]\n", f"[pki]\nescrow = {value}\n", 1))
        problems = [str(p) for p in check_recipe(path, workdir=tmp_path)]
        assert any(wanted in p for p in problems), (value, problems)
        assert all("\n" not in p for p in problems)


def test_operator_key_loading(tmp_path: Path) -> None:
    pub, priv, _key = operator_files(tmp_path)
    with pytest.raises(InputError, match="encrypted"):
        escrow.load_operator_key(priv)
    assert escrow.load_operator_key(priv, lambda: OP_PASSPHRASE.encode()) is not None
    with pytest.raises(InputError, match="not a PEM private key"):
        escrow.load_operator_key(pub)


def test_cli_escrow_decrypt_names_the_operator_key_passphrase(tmp_path: Path) -> None:
    _pub, priv, _key = operator_files(tmp_path)
    path = tmp_path / "empty.escrow"
    escrow.EscrowWriter(path, escrow.load_recipient(_pub))
    base = ["ca", "escrow-decrypt", str(path), "--key", str(priv), "-o", str(tmp_path / "keys.pem")]
    for extra, wanted in (([], "give --passphrase-env VAR"), (["--passphrase-env", "OPK_UNSET"], "set $OPK_UNSET")):
        res = CliRunner().invoke(main, base + extra, input="\n", env={"OPK_UNSET": None})
        assert res.exit_code == 2, res.output
        (line,) = [x for x in res.output.splitlines() if "error" in x]
        assert "no operator key passphrase" in line and wanted in line and "CA" not in line
    res = CliRunner().invoke(main, base + ["--passphrase-env", "OPK"], env={"OPK": "not it"})
    assert res.exit_code == 2 and "operator key: wrong passphrase" in res.output and "CA" not in res.output


def test_cli_escrow_decrypt_runs_as_a_process(tmp_path: Path) -> None:
    """Smoke test of the real entry point: refuses to print keys without -o or --stdout."""
    pub, priv, _key = operator_files(tmp_path)
    path = tmp_path / "empty.escrow"
    escrow.EscrowWriter(path, escrow.load_recipient(pub))
    proc = subprocess.run([sys.executable, "-m", "atfab.cli", "ca", "escrow-decrypt", str(path), "--key", str(priv)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "OPK": OP_PASSPHRASE})
    assert proc.returncode == 2 and "-o FILE" in proc.stderr + proc.stdout
