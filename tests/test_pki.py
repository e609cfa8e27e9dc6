"""Factory CA, unit issuance, external-CA CSRs, slot mapping into mfg_nvs, key escrow, CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import stat

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.core.firmware import firmware_for
from atfab.image.mfg_nvs import UnitContent, build_mfg_nvs
from atfab.image.nvs.reader import read_nvs
from atfab.pki import escrow
from atfab.pki.ca import import_ca, load_ca, read_passphrase, show_ca
from atfab.pki.csr import emit_csr_batch, ingest_signed, load_csr_batch, read_cert_dir, write_csr_batch
from atfab.pki.issue import IdentityTemplate, identity_values, issue_unit, render, sign_unit_certificate
from atfab.pki.keys import spki_der
from atfab.pki.slots import namespace_for, parse_slots, plan_slots
from atfab.image.profiles import load_profile
from tests.pki_helpers import PASS, PASS2, REF, _scan_tmp_path_after_test, make_chain, make_root, unit  # noqa: F401
from tests.secret_scan import key_markers, scan_tree


def _one_line(exc: InputError) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------------------- CA

@pytest.mark.parametrize("key_type,cls,size", [("ec-p256", ec.EllipticCurvePrivateKey, 256),
                                               ("ec-p384", ec.EllipticCurvePrivateKey, 384),
                                               ("rsa-2048", rsa.RSAPrivateKey, 2048),
                                               ("rsa-3072", rsa.RSAPrivateKey, 3072)])
def test_ca_init_key_types_encrypted_0600(tmp_path, key_type, cls, size):
    ca = make_root(tmp_path / "ca", key_type=key_type)
    key_file = tmp_path / "ca" / "ca.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY" b"-----")
    loaded = load_ca(tmp_path / "ca", PASS)
    assert isinstance(loaded.key, cls) and loaded.key.key_size == size
    assert loaded.cert == ca.cert
    bc = loaded.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca
    loaded.cert.verify_directly_issued_by(loaded.cert)
    info = show_ca(tmp_path / "ca")
    assert info["self_signed"] and info["key_file"]["encrypted"] and info["key_file"]["mode"] == "0600"


def test_ca_wrong_passphrase_and_existing(tmp_path):
    make_root(tmp_path / "ca")
    with pytest.raises(InputError) as info:
        load_ca(tmp_path / "ca", b"wrong passphrase!")
    assert info.value.field == "passphrase" and "ca.key" in _one_line(info.value)
    with pytest.raises(InputError) as info:
        make_root(tmp_path / "ca")
    assert "already exists" in str(info.value)


def test_read_passphrase_env_prompt_and_errors():
    assert read_passphrase("X_PW", environ={"X_PW": "from-env-123456"}) == b"from-env-123456"
    assert read_passphrase("X_PW", lambda: "from-prompt-1234", environ={}) == b"from-prompt-1234"
    with pytest.raises(InputError) as info:
        read_passphrase("X_PW", None, environ={})
    assert "$X_PW" in str(info.value)
    with pytest.raises(InputError) as info:
        read_passphrase("X_PW", environ={"X_PW": "short"}, new=True)
    assert "at least" in str(info.value)


def test_intermediate_chain(tmp_path):
    root, inter = make_chain(tmp_path)
    inter.cert.verify_directly_issued_by(root.cert)
    assert inter.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    loaded = load_ca(tmp_path / "int", PASS2)
    assert loaded.chain == [root.cert]
    ident = unit(loaded)
    ident.cert.verify_directly_issued_by(inter.cert)
    # the device's cert file carries leaf + intermediate (not the root)
    certs = x509.load_pem_x509_certificates(ident.cert_file_pem())
    assert certs == [ident.cert, inter.cert]
    assert show_ca(tmp_path / "int")["chain"] == [root.cert.subject.rfc4514_string()]


def test_import_existing_ca(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Legacy CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=100))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))
    src = tmp_path / "src"
    src.mkdir()
    (src / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (src / "source-ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"old")))
    imported = import_ca(tmp_path / "ca", src / "ca.pem", src / "source-ca.key", passphrase=PASS, key_passphrase=b"old")
    assert imported.cert == cert
    assert load_ca(tmp_path / "ca", PASS).cert == cert
    # a leaf certificate is refused as CA
    leaf = unit(imported)
    (src / "leaf.pem").write_bytes(leaf.cert_pem)
    with pytest.raises(InputError) as info:
        import_ca(tmp_path / "ca2", src / "leaf.pem", src / "source-ca.key", passphrase=PASS, key_passphrase=b"old")
    assert info.value.field == "basicConstraints"
    # key of another CA
    other = make_root(tmp_path / "other")
    with pytest.raises(InputError) as info:
        import_ca(tmp_path / "ca3", tmp_path / "other" / "ca.crt", src / "source-ca.key", passphrase=PASS,
                  key_passphrase=b"old")
    assert "does not match" in str(info.value)
    assert other


# ----------------------------------------------------------------------------------- issuance

def test_issued_certificate_fields(tmp_path):
    ca = make_root(tmp_path / "ca")
    tmpl = IdentityTemplate.from_table({
        "subject": {"CN": "{serial}", "O": "Acme", "OU": "{module}"},
        "san_dns": ["{serial}.dev.acme.example"], "san_uri": ["urn:acme:mac:{mac_hex}"], "days": 30})
    values = identity_values(serial="ACME-42", mac=bytes.fromhex("240ac4000001"), module="ESP32C2-4MB")
    ident = issue_unit(ca, tmpl, values, usages=("clientAuth", "serverAuth"))
    cert = ident.cert
    cert.verify_directly_issued_by(ca.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ACME-42"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "ESP32C2-4MB"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ACME-42.dev.acme.example"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:acme:mac:240AC4000001"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 29 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 31
    assert isinstance(ident.public_key, ec.EllipticCurvePublicKey) and ident.public_key.curve.name == "secp256r1"
    assert spki_der(cert) == spki_der(ident.public_key)
    info = ident.public_info()
    assert info["san"] == ["ACME-42.dev.acme.example", "urn:acme:mac:240AC4000001"]
    assert "PRIVATE" not in repr(ident) + str(ident) + json.dumps(info)
    assert ident.private_key_pem_for_mfg().startswith(b"-----BEGIN PRIVATE KEY" b"-----")


def test_serials_random_and_key_types(tmp_path):
    ca = make_root(tmp_path / "ca")
    serials = {unit(ca, f"SN{i}").serial for i in range(20)}
    assert len(serials) == 20 and all(0 < s < 2 ** 160 for s in serials)
    assert max(s.bit_length() for s in serials) > 150     # drawn from 159 random bits
    p384 = unit(ca, subject={"CN": "{serial}"}, key_type="ec-p384")
    assert p384.public_key.curve.name == "secp384r1"
    p384.cert.verify_directly_issued_by(ca.cert)
    r = unit(ca, subject={"CN": "{serial}"}, key_type="rsa-2048")
    assert r.public_key.key_size == 2048
    assert r.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


@pytest.mark.parametrize("table,field,words", [
    ({"subject": {"CN": "{serail}"}}, "pki.identity.subject.CN", "unknown placeholder {serail}"),
    ({"subject": {"CN": "{0}"}}, "pki.identity.subject.CN", "plain name"),
    ({"subject": {"XX": "a"}}, "pki.identity.subject.XX", "unknown subject attribute"),
    ({"san_dns": ["{nope}.x"]}, "pki.identity.san_dns[0]", "unknown placeholder {nope}"),
    ({"san_ip": ["not-an-ip"]}, "pki.identity.san_ip[0]", "not-an-ip"),
    ({"key_type": "ed25519"}, "pki.identity.key_type", "unknown key type"),
    ({"days": 0}, "pki.identity.days", "positive"),
    ({"colour": 1}, "pki.identity.colour", "unknown field"),
])
def test_template_errors(tmp_path, table, field, words):
    ca = make_root(tmp_path / "ca")
    with pytest.raises(InputError) as info:
        tmpl = IdentityTemplate.from_table(table, source="recipe.toml")
        issue_unit(ca, tmpl, identity_values(serial="S1", mac="240ac4000001"))
    assert info.value.field == field
    assert words in _one_line(info.value) and str(info.value).startswith("recipe.toml: ")


def test_render_format_spec():
    assert render("{serial:>08}", {"serial": "42"}) == "00000042"


# ------------------------------------------------------------------------------- CSR round trip

def _external_sign(ext_ca, csr: x509.CertificateSigningRequest) -> bytes:
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    cert = sign_unit_certificate(ext_ca, csr.public_key(), csr.subject, san, days=365)
    return cert.public_bytes(serialization.Encoding.PEM) + ext_ca.intermediates_pem()


def test_csr_batch_round_trip(tmp_path):
    _root, ext_ca = make_chain(tmp_path / "external")
    tmpl = IdentityTemplate.from_table({"subject": {"CN": "{serial}"}, "san_dns": ["{serial}.dev.example"]})
    units = {f"SN{i:03d}": identity_values(serial=f"SN{i:03d}") for i in range(4)}
    batch = emit_csr_batch(units, tmpl)
    write_csr_batch(batch, tmp_path / "batch", PASS)
    assert stat.S_IMODE((tmp_path / "batch" / "pending-keys.json").stat().st_mode) == 0o600
    loaded = load_csr_batch(tmp_path / "batch", PASS)
    assert set(loaded.units) == set(units)
    for uid, pending in loaded.units.items():
        assert spki_der(pending.key) == spki_der(batch.units[uid].key)
        assert pending.csr.subject.rfc4514_string() == f"CN={uid}"
    # the external CA signs 3 of 4, returned under unrelated names and in shuffled order
    signed = tmp_path / "signed"
    signed.mkdir()
    order = list(loaded.units)[:3]
    random.Random(1).shuffle(order)
    for n, uid in enumerate(order):
        csr = x509.load_pem_x509_csr((tmp_path / "batch" / "csr" / f"{uid}.csr").read_bytes())
        (signed / f"cert-{n}.pem").write_bytes(_external_sign(ext_ca, csr))
    result = ingest_signed(loaded, read_cert_dir(signed), anchors=[_root.cert])
    assert sorted(result.identities) == sorted(order)
    assert result.missing == ["SN003"]
    for uid, ident in result.identities.items():
        assert ident.cert.subject.rfc4514_string() == f"CN={uid}"
        assert spki_der(ident.cert) == spki_der(loaded.units[uid].key)
        ident.cert.verify_directly_issued_by(ext_ca.cert)
        assert x509.load_pem_x509_certificates(ident.cert_file_pem())[1] == ext_ca.cert


def test_csr_ingest_errors(tmp_path):
    root = make_root(tmp_path / "ca")
    other = make_root(tmp_path / "other", name="Other CA")
    tmpl = IdentityTemplate.from_table({"subject": {"CN": "{serial}"}, "san_dns": ["{serial}.x"]})
    batch = emit_csr_batch({"A1": identity_values(serial="A1")}, tmpl)
    stranger = unit(root, "ZZ")
    with pytest.raises(InputError) as info:
        ingest_signed(batch, {"stranger.pem": stranger.cert_pem})
    assert info.value.file == "stranger.pem" and "matches no key" in _one_line(info.value)
    good = _external_sign(root, batch.units["A1"].csr)
    with pytest.raises(InputError) as info:
        ingest_signed(batch, {"a.pem": good, "b.pem": good})
    assert "second certificate" in str(info.value)
    with pytest.raises(InputError) as info:
        ingest_signed(batch, {"a.pem": good}, anchors=[other.cert])
    assert "not signed by the given CA" in str(info.value)
    with pytest.raises(InputError) as info:
        ingest_signed(batch, {"a.pem": good}, at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400))
    assert "expired" in str(info.value)
    write_csr_batch(batch, tmp_path / "b", PASS)
    with pytest.raises(InputError) as info:
        load_csr_batch(tmp_path / "b", b"wrong wrong wrong")
    assert "pending-keys.json" in str(info.value)


# ----------------------------------------------------------------------------- slots → mfg_nvs

def test_slot_namespaces_and_enterprise_naming():
    fw = firmware_for("esp32c2")
    assert namespace_for("client", "cert", fw) == "client_cert"
    assert namespace_for("wpa_ent", "key", fw) == "wpa_ent_key"
    assert namespace_for("wpa2", "ca", fw) == "wpa_ent_ca"
    legacy = fw.with_overrides({"enterprise_namespace": "wpa2"})
    assert namespace_for("wpa_ent", "cert", legacy) == "wpa2_cert"


def test_unit_identity_into_mfg_nvs(tmp_path):
    profile = load_profile("esp32c2-4mb")
    root, inter = make_chain(tmp_path)
    cloud_ca = REF / "client_ca" / "client_ca_00.crt"
    slots = parse_slots([
        {"set": "client", "index": 0, "cert": "unit", "key": "unit", "ca": [str(cloud_ca)]},
        {"set": "client", "index": 1, "ca": "factory_ca"},
        {"set": "server", "cert": "unit", "key": "unit", "ca": ["factory_ca"]},
        {"set": "wpa2", "ca": str(cloud_ca)},
    ], source="recipe.toml")
    plan = plan_slots(slots, firmware=profile.firmware, factory_ca=inter.chain_certs())
    assert plan.usages == ("clientAuth", "serverAuth")
    ident = issue_unit(inter, IdentityTemplate(), identity_values(serial="SN9"), usages=plan.usages)
    plan.check_identity(ident)
    pki = plan.pki_for(ident)
    assert list(pki) == ["server_cert", "server_key", "server_ca", "client_cert", "client_key", "client_ca",
                         "wpa_ent_ca"]
    assert [f.name for f in pki["client_ca"]] == ["client_ca_00.crt", "client_ca_01.crt"]
    assert pki["client_ca"][0].data == cloud_ca.read_bytes()
    assert x509.load_pem_x509_certificates(pki["client_ca"][1].data) == [inter.cert, root.cert]
    content = UnitContent(dict(profile.factory_param), pki, [])
    built = build_mfg_nvs(content, profile.mfg_nvs.size, firmware=profile.firmware)
    image = read_nvs(built.image)
    assert image.get("client_cert", "client_cert").value == ident.cert_file_pem()
    assert image.get("client_key", "client_key").value == ident.private_key_pem_for_mfg()
    assert image.get("client_ca", "client_ca.1").value == pki["client_ca"][1].data
    assert image.get("server_key", "server_key") is not None
    assert b"PRIVATE KEY" not in built.csv.encode()
    locs = {(loc.family, loc.index, loc.kind): (loc.namespace, loc.key) for loc in plan.locations()}
    assert locs[("client", 0, "cert")] == ("client_cert", "client_cert")
    assert locs[("client", 1, "ca")] == ("client_ca", "client_ca.1")
    assert locs[("wpa_ent", 0, "ca")] == ("wpa_ent_ca", "wpa_ent_ca")
    indexed = profile.firmware.with_overrides({"pki_key_naming": "indexed"})
    plan2 = plan_slots(slots, firmware=indexed, factory_ca=inter.chain_certs())
    assert {(l.namespace, l.key) for l in plan2.locations()} >= {("client_cert", "client_cert.0")}


@pytest.mark.parametrize("tables,field,words", [
    ([{"set": "bluetooth", "ca": "x"}], "pki.slot[0].set", "unknown set"),
    ([{"set": "server", "index": 1, "ca": "x"}], "pki.slot[0].index", "0..0"),
    ([{"set": "client", "index": 2, "ca": "x"}], "pki.slot[0].index", "0..1"),
    ([{"set": "client", "cert": "unit"}], "pki.slot[0].key", "together"),
    ([{"set": "client", "cert": "unit", "key": "k.pem"}], "pki.slot[0].key", "unit key"),
    ([{"set": "client", "ca": "a"}, {"set": "client", "ca": "b"}], "pki.slot[1]", "twice"),
    ([{"set": "client"}], "pki.slot[0]", "neither"),
    ([{"set": "client", "ca": "x", "usage": ["codeSigning"]}], "pki.slot[0].usage", "clientAuth"),
    ([{"set": "client", "ca": "x", "colour": 1}], "pki.slot[0].colour", "unknown field"),
])
def test_slot_spec_errors(tables, field, words):
    with pytest.raises(InputError) as info:
        parse_slots(tables, source="recipe.toml")
    assert info.value.field == field and words in _one_line(info.value)


def test_slot_gap_and_missing_identity(tmp_path):
    fw = firmware_for("esp32c2")
    root = make_root(tmp_path / "ca")
    slots = parse_slots([{"set": "client", "index": 1, "cert": "unit", "key": "unit"}])
    with pytest.raises(InputError) as info:
        plan_slots(slots, firmware=fw, factory_ca=[root.cert])
    assert "without gaps" in _one_line(info.value)
    plan = plan_slots(parse_slots([{"set": "client", "cert": "unit", "key": "unit"}]), firmware=fw)
    with pytest.raises(InputError):
        plan.pki_for(None)
    with pytest.raises(InputError) as info:
        plan_slots(parse_slots([{"set": "client", "ca": "factory_ca"}]), firmware=fw)
    assert "no factory CA" in str(info.value)


# ------------------------------------------------------------------------------------- escrow

@pytest.mark.parametrize("operator", ["ec-p256", "rsa-2048"])
def test_escrow_round_trip(tmp_path, operator):
    ca = make_root(tmp_path / "ca")
    op_key = ec.generate_private_key(ec.SECP256R1()) if operator == "ec-p256" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub_file = tmp_path / "operator.pub"
    pub_file.write_bytes(op_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    recipient = escrow.load_recipient(pub_file)
    idents = {f"SN{i}": unit(ca, f"SN{i}") for i in range(3)}
    path = escrow.write_escrow(tmp_path / "batch1.escrow", recipient, dict(list(idents.items())[:2]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    writer = escrow.EscrowWriter(path, recipient)
    writer.add("SN2", idents["SN2"])
    text = path.read_text()
    assert "PRIVATE KEY" not in text
    header = json.loads(text.splitlines()[0])
    assert header["format"] == "atfab.key-escrow/1"
    assert header["scheme"] == (escrow.ECIES if operator == "ec-p256" else escrow.RSA_OAEP)
    assert [r["unit"] for r in escrow.list_escrow(path)] == ["SN0", "SN1", "SN2"]
    keys = escrow.decrypt_escrow(path, op_key)
    for uid, ident in idents.items():
        assert spki_der(keys[uid]) == spki_der(ident.cert)
    markers = [m for ident in idents.values() for m in key_markers(ident.private_key_object_for_escrow())]
    assert scan_tree(tmp_path, secrets=markers) == []
    # wrong operator key, altered record
    with pytest.raises(InputError) as info:
        escrow.decrypt_escrow(path, ec.generate_private_key(ec.SECP256R1()))
    assert "another operator key" in str(info.value)
    lines = text.splitlines()
    rec = json.loads(lines[1])
    rec["unit"] = "SN7"                       # move a record to another unit
    (tmp_path / "t.escrow").write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    with pytest.raises(InputError) as info:
        escrow.decrypt_escrow(tmp_path / "t.escrow", op_key)
    assert "does not decrypt" in _one_line(info.value)


def test_escrow_recipient_checks(tmp_path):
    priv = tmp_path / "op.key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    priv.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
                     .replace(b"PUBLIC KEY", b"PRIVATE KEY"))  # looks like a private key file
    with pytest.raises(InputError) as info:
        escrow.load_recipient(priv)
    assert "PUBLIC key" in str(info.value)
    priv.unlink()
    with pytest.raises(InputError):
        escrow.scheme_for(ed25519.Ed25519PrivateKey.generate().public_key())


# ----------------------------------------------------------------------------------------- CLI

def test_cli_ca_workflow(tmp_path):
    runner = CliRunner()
    env = {"ATFAB_CA_PASSPHRASE": PASS.decode(), "INT_PW": PASS2.decode()}
    r = runner.invoke(main, ["ca", "init", "--dir", str(tmp_path / "root"), "--cn", "CLI Root", "--key-type",
                             "ec-p384", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["key"] == "EC P-384"
    r = runner.invoke(main, ["ca", "init", "--dir", str(tmp_path / "root"), "--cn", "again"], env=env)
    assert r.exit_code == 2 and "already exists" in r.output
    r = runner.invoke(main, ["ca", "intermediate", "--parent", str(tmp_path / "root"), "--dir", str(tmp_path / "int"),
                             "--cn", "CLI Int", "--passphrase-env", "INT_PW"], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["ca", "show", "--dir", str(tmp_path / "int"), "--json"])
    info = json.loads(r.output)
    assert info["issuer"] == "CN=CLI Root" and info["key_file"]["mode"] == "0600"
    tmpl = tmp_path / "recipe.toml"
    tmpl.write_text('[pki.identity]\nsubject = { CN = "{serial}", O = "Acme" }\nsan_uri = ["urn:x:{mac_hex}"]\n')
    r = runner.invoke(main, ["ca", "issue-test", "--dir", str(tmp_path / "int"), "--template", str(tmpl),
                             "--serial", "SN1", "--mac", "24:0a:c4:00:00:01", "-o", str(tmp_path / "sn1.crt"),
                             "--passphrase-env", "INT_PW", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["san"] == ["urn:x:240AC4000001"]
    x509.load_pem_x509_certificate((tmp_path / "sn1.crt").read_bytes()).verify_directly_issued_by(
        load_ca(tmp_path / "int", PASS2).cert)
    r = runner.invoke(main, ["ca", "show", "--dir", str(tmp_path / "int")], env={"ATFAB_CA_PASSPHRASE": ""})
    assert r.exit_code == 0 and "encrypted" in r.output
    r = runner.invoke(main, ["ca", "issue-test", "--dir", str(tmp_path / "int"), "--serial", "x"],
                      env={"ATFAB_CA_PASSPHRASE": "wrong passphrase"})
    assert r.exit_code == 2 and "passphrase" in r.output
    # import the root (cert + its encrypted key) into a new folder under a new passphrase
    r = runner.invoke(main, ["ca", "import", "--dir", str(tmp_path / "imported"), "--cert",
                             str(tmp_path / "root" / "ca.crt"), "--key", str(tmp_path / "root" / "ca.key"),
                             "--key-passphrase-env", "ATFAB_CA_PASSPHRASE", "--passphrase-env", "INT_PW", "--json"],
                      env=env)
    assert r.exit_code == 0, r.output
    assert load_ca(tmp_path / "imported", PASS2).cert == load_ca(tmp_path / "root", PASS).cert
    r = runner.invoke(main, ["ca", "import", "--dir", str(tmp_path / "imp2"), "--cert",
                             str(tmp_path / "root" / "ca.crt"), "--key", str(tmp_path / "root" / "ca.key")], env=env)
    assert r.exit_code == 2 and "no passphrase was given" in r.output
    # external CA mode through the CLI (only {serial} is known there)
    r = runner.invoke(main, ["ca", "csr-emit", "--template", str(tmpl), "--serial", "U1", "-o", str(tmp_path / "b0")],
                      env=env)
    assert r.exit_code == 2 and "unknown placeholder {mac_hex}" in r.output
    tmpl.write_text('[pki.identity]\nsubject = { CN = "{serial}" }\nsan_dns = ["{serial}.dev.example"]\n')
    r = runner.invoke(main, ["ca", "csr-emit", "--template", str(tmpl), "--serial", "U1", "--serial", "U2",
                             "-o", str(tmp_path / "batch")], env=env)
    assert r.exit_code == 0, r.output
    ext = load_ca(tmp_path / "int", PASS2)
    (tmp_path / "signed").mkdir()
    csr = x509.load_pem_x509_csr((tmp_path / "batch" / "csr" / "U2.csr").read_bytes())
    (tmp_path / "signed" / "whatever.crt").write_bytes(_external_sign(ext, csr))
    r = runner.invoke(main, ["ca", "csr-ingest", str(tmp_path / "batch"), str(tmp_path / "signed"),
                             "--ca-cert", str(tmp_path / "root" / "ca.crt"), "--json"], env=env)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert list(data["matched"]) == ["U2"] and data["missing"] == ["U1"]
    assert sorted(os.listdir(tmp_path / "batch" / "csr")) == ["U1.csr", "U2.csr"]
