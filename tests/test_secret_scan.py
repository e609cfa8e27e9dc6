"""The private-key scan itself, and a full PKI workflow whose output tree it finds clean."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from atfab.cli import main
from atfab.core.fsutil import atomic_write
from atfab.image.mfg_nvs import UnitContent, build_mfg_nvs
from atfab.pki import escrow
from atfab.pki.ca import load_ca
from atfab.pki.csr import emit_csr_batch, load_csr_batch, write_csr_batch
from atfab.pki.issue import IdentityTemplate, identity_values, issue_unit
from atfab.pki.slots import parse_slots, plan_slots
from atfab.image.profiles import load_profile
from tests.pki_helpers import PASS, PASS2, REF, _scan_tmp_path_after_test  # noqa: F401
from tests.secret_scan import key_markers, scan_tree


def _plain(key, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def test_scanner_finds_planted_keys(tmp_path_factory):
    # planted keys go to a folder outside tmp_path (the autouse scan would rightly refuse them)
    root = tmp_path_factory.mktemp("planted")
    try:
        ec_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        (root / "a" / ".hidden").mkdir(parents=True)
        (root / "a" / ".hidden" / "x.txt").write_bytes(b"log line\n" + _plain(ec_key))
        (root / "rsa.pem").write_bytes(_plain(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL))
        (root / "report.json").write_text(json.dumps({"key": _plain(ec_key).decode()}))
        enc = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(b"pw"))
        (root / "backup.key").write_bytes(enc)                       # encrypted, but not an allowed file
        (root / "ca.key").write_bytes(_plain(ec_key).replace(b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"))
        raw = ec_key.private_numbers().private_value.to_bytes(32, "big")
        (root / "dump.bin").write_bytes(b"\x00" * 10 + raw + b"\xff" * 10)
        findings = [str(f) for f in scan_tree(root, secrets=key_markers(ec_key))]
        text = "\n".join(findings)
        assert ".hidden/x.txt: plaintext PRIVATE KEY block" in text
        assert "rsa.pem: plaintext RSA PRIVATE KEY block" in text
        assert "report.json: plaintext PRIVATE KEY block" in text
        assert "backup.key: ENCRYPTED PRIVATE KEY block outside an allowed key file" in text
        assert "ca.key: block labelled ENCRYPTED loads without a passphrase" in text
        assert "dump.bin: contains known key material" in text
        # a genuinely encrypted ca.key is allowed; images named by the caller are skipped
        (root / "ca.key").write_bytes(enc)
        (root / "backup.key").unlink()
        after = "\n".join(map(str, scan_tree(root, secrets=key_markers(ec_key), allow_images=("dump.bin",))))
        assert "ca.key" not in after and "dump.bin" not in after and "backup.key" not in after
    finally:
        shutil.rmtree(root)


def test_full_pki_workflow_leaves_no_plaintext_key(tmp_path):
    """CA + intermediate via the CLI, units issued and built into mfg_nvs, CSR batch, escrow, GATT files."""
    runner = CliRunner()
    env = {"ATFAB_CA_PASSPHRASE": PASS.decode(), "LINE_PW": PASS2.decode()}
    assert runner.invoke(main, ["ca", "init", "--dir", str(tmp_path / "pki" / "root"), "--cn", "Root"],
                         env=env).exit_code == 0
    assert runner.invoke(main, ["ca", "intermediate", "--parent", str(tmp_path / "pki" / "root"), "--dir",
                                str(tmp_path / "pki" / "line1"), "--cn", "Line 1", "--passphrase-env", "LINE_PW"],
                         env=env).exit_code == 0
    line = load_ca(tmp_path / "pki" / "line1", PASS2)
    secrets = key_markers(line.key) + key_markers(load_ca(tmp_path / "pki" / "root", PASS).key)

    profile = load_profile("esp32c2-4mb")
    slots = parse_slots([{"set": "client", "cert": "unit", "key": "unit",
                          "ca": [str(REF / "client_ca" / "client_ca_00.crt")]},
                         {"set": "server", "ca": "factory_ca"}])
    plan = plan_slots(slots, firmware=profile.firmware, factory_ca=line.chain_certs())
    op_key = ec.generate_private_key(ec.SECP256R1())
    writer = escrow.EscrowWriter(tmp_path / "out" / "batch.escrow", op_key.public_key())
    tmpl = IdentityTemplate.from_table({"subject": {"CN": "{serial}"}, "san_dns": ["{serial}.x.example"]})
    for n in range(3):
        serial = f"SN{n:04d}"
        ident = issue_unit(line, tmpl, identity_values(serial=serial, mac=bytes(6)), usages=plan.usages)
        secrets += key_markers(ident.private_key_object_for_escrow())
        built = build_mfg_nvs(UnitContent(dict(profile.factory_param), plan.pki_for(ident), []),
                              profile.mfg_nvs.size, firmware=profile.firmware)
        unit_dir = tmp_path / "out" / serial
        atomic_write(unit_dir / "mfg_nvs.bin", built.image)
        atomic_write(unit_dir / "mfg_nvs.csv", built.csv)
        atomic_write(unit_dir / "report.json", json.dumps({"identity": ident.public_info(),
                                                           "repr": repr(ident)}))
        atomic_write(unit_dir / "client_cert.crt", ident.cert_file_pem())
        writer.add(serial, ident)

    batch = emit_csr_batch({"C1": identity_values(serial="C1")}, tmpl)
    secrets += key_markers(batch.units["C1"].key)
    write_csr_batch(batch, tmp_path / "csr-batch", PASS)
    assert load_csr_batch(tmp_path / "csr-batch", PASS).units["C1"].csr == batch.units["C1"].csr

    gatt_csv = REF / "ble_data" / "gatts_data.csv"
    assert runner.invoke(main, ["gatt", "export", str(gatt_csv), "-o", str(tmp_path / "gatt.toml")]).exit_code == 0
    assert runner.invoke(main, ["gatt", "compile", str(tmp_path / "gatt.toml"), "-o",
                                str(tmp_path / "gatts.csv")]).exit_code == 0

    # the only files allowed to hold a unit key are the device images; encrypted keys only in ca.key
    # and pending-keys.json; the escrow file holds ciphertext only
    assert scan_tree(tmp_path, secrets=secrets, allow_images=("mfg_nvs.bin",)) == []
    # ... and the scan does see keys where they are: inside the mfg_nvs images
    found = scan_tree(tmp_path, secrets=secrets)
    assert found and all(f.path.name == "mfg_nvs.bin" for f in found)
    assert len(escrow.decrypt_escrow(tmp_path / "out" / "batch.escrow", op_key)) == 3
    # remove the device images so the autouse scan (no image allowance) sees a clean tree too
    for image in tmp_path.rglob("mfg_nvs.bin"):
        image.unlink()
