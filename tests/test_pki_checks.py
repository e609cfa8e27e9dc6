"""Every pre-use check rejects its bad case with a one-line InputError naming file and field."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from atfab.core.errors import InputError
from atfab.core.firmware import firmware_for
from atfab.image.mfg_nvs import PkiFile, UnitContent, build_mfg_nvs
from atfab.pki.ca import create_ca, import_ca
from atfab.pki.checks import (
    check_cert_file, check_chain, check_fits, check_key_file, check_pki_content, estimate_mfg_nvs_pages,
    parse_pem_certs, parse_private_key,
)
from atfab.pki.issue import IdentityTemplate, identity_values, issue_unit, sign_unit_certificate
from atfab.pki.slots import parse_slots, plan_slots
from atfab.image.profiles import load_profile
from tests.pki_helpers import PASS, REF, _scan_tmp_path_after_test, make_root, unit  # noqa: F401

AT_2025 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)   # the esp-at test certs are valid 2019-2029
NOW = dt.datetime.now(dt.timezone.utc)


def _err(fn, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return info.value


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("ca") / "ca")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("other") / "ca", name="Other CA")


def _ref(name: str) -> bytes:
    return (REF / name).read_bytes()


# ------------------------------------------------------------------------------ pair / chain

def test_key_and_certificate_must_belong_together(ca):
    a, b = unit(ca, "A"), unit(ca, "B")
    pki = {"client_cert": [PkiFile("client_cert_00.crt", a.cert_pem)],
           "client_key": [PkiFile("client_key_00.key", b.private_key_pem_for_mfg())]}
    e = _err(check_pki_content, pki, at=NOW)
    assert e.file == "client_key_00.key" and e.field == "client_key[0]" and "does not match" in str(e)
    pki["client_key"] = [PkiFile("client_key_00.key", a.private_key_pem_for_mfg())]
    check_pki_content(pki, at=NOW)


def _plan_ref_client_slot(**files: Path):
    """Plan one static client slot from esp-at-shaped reference files."""
    slot = {"set": "client", **{k: str(v) for k, v in files.items()}}
    return plan_slots(parse_slots([slot]), firmware=firmware_for("esp32c2"), at=AT_2025)


def test_static_slot_pair_from_files():
    cert, good, bad = REF / "client_cert" / "client_cert_00.crt", REF / "client_key" / "client_key_00.key", \
        REF / "client_key" / "client_key_01.key"
    _plan_ref_client_slot(cert=cert, key=good)
    e = _err(_plan_ref_client_slot, cert=cert, key=bad)
    assert e.file == str(bad) and e.field == "pki.slot[0].key"


def test_chain_to_the_given_ca(ca, other_ca):
    ident = unit(ca)
    assert check_chain(ident.cert, [ca.cert]) == [ident.cert, ca.cert]
    e = _err(check_chain, ident.cert, [other_ca.cert], file="unit.crt", field="client_cert[0]")
    assert str(e).startswith("unit.crt: client_cert[0]: ") and "not signed by the given CA" in str(e)
    # same subject name, different key: the signature check catches it
    impostor = create_ca.__wrapped__ if hasattr(create_ca, "__wrapped__") else None
    assert impostor is None


def test_chain_same_name_different_key(tmp_path, ca):
    twin = create_ca(tmp_path / "twin", common_name="Factory Root", organization="Acme", passphrase=PASS)
    assert twin.cert.subject == ca.cert.subject
    e = _err(check_chain, unit(ca).cert, [twin.cert])
    assert "not signed" in str(e)


def test_static_cert_chain_via_issuer_file():
    cert, key, issuer = REF / "client_cert" / "client_cert_00.crt", REF / "client_key" / "client_key_00.key", \
        REF / "server_ca" / "server_ca.crt"
    _plan_ref_client_slot(cert=cert, key=key, issuer=issuer)
    wrong = REF / "mqtt_ca" / "mqtt_ca.crt"
    e = _err(_plan_ref_client_slot, cert=cert, key=key, issuer=wrong)
    assert e.file == str(cert) and e.field == "pki.slot[0].cert" and "not signed" in str(e)


def test_unit_identity_chain_check(ca, other_ca):
    fw = firmware_for("esp32c2")
    plan = plan_slots(parse_slots([{"set": "client", "cert": "unit", "key": "unit"}]), firmware=fw,
                      factory_ca=[ca.cert])
    plan.check_identity(unit(ca))
    e = _err(plan.check_identity, unit(other_ca))
    assert e.field == "certificate" and "not signed" in str(e)


# ------------------------------------------------------------------------------------ validity

def test_not_expired_and_not_yet_valid(ca):
    past = NOW - dt.timedelta(days=400)
    old = issue_unit(ca, IdentityTemplate(days=30), identity_values(serial="OLD"), now=NOW)
    e = _err(check_cert_file, old.cert_pem, at=NOW + dt.timedelta(days=40), file="old.crt", field="client_cert[0]")
    assert "expired on" in str(e) and str(e).startswith("old.crt: client_cert[0]: ")
    e = _err(check_cert_file, old.cert_pem, at=past, file="old.crt", field="client_cert[0]")
    assert "not valid before" in str(e)
    check_cert_file(old.cert_pem, at=NOW)
    # a CA file in a slot that has expired at provisioning time
    e = _err(check_pki_content, {"client_ca": [PkiFile("ca.crt", ca.cert_pem())]}, at=NOW + dt.timedelta(days=4000))
    assert e.field == "client_ca[0]" and "expired" in str(e)


def test_ref_certs_expire(tmp_path):
    data = _ref("client_ca/client_ca_00.crt")
    check_cert_file(data, at=AT_2025)
    e = _err(check_cert_file, data, at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), file="client_ca_00.crt",
             field="client_ca[0]")
    assert "expired on 2029-06-18" in str(e)


# ---------------------------------------------------------------------------------- key types

@pytest.mark.parametrize("make,words", [
    (lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519 key is not supported"),
    (lambda: x25519.X25519PrivateKey.generate(), "X25519 key is not supported"),
    (lambda: ec.generate_private_key(ec.SECP256K1()), "EC curve secp256k1 key is not supported"),
    (lambda: ec.generate_private_key(ec.SECP521R1()), "EC curve secp521r1 key is not supported"),
])
def test_unsupported_key_types(make, words):
    e = _err(check_key_file, _pem(make()), file="dev.key", field="client_key[0]")
    assert words in str(e) and "RSA 1024-4096 or EC P-256/P-384" in str(e)
    assert e.file == "dev.key" and e.field == "client_key[0]"


def test_supported_key_types():
    for key in (ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
                rsa.generate_private_key(public_exponent=65537, key_size=1024)):
        check_key_file(_pem(key))
    check_key_file(_ref("client_key/client_key_00.key"))     # PKCS#1 "RSA PRIVATE KEY"


def test_certificate_with_unsupported_key(ca):
    ed = ed25519.Ed25519PrivateKey.generate()
    cert = sign_unit_certificate(ca, ed.public_key(), x509.Name([]), None, days=10)
    e = _err(check_cert_file, cert.public_bytes(serialization.Encoding.PEM), at=NOW, file="ed.crt",
             field="client_cert[0]")
    assert "Ed25519 key is not supported" in str(e)


def test_ca_import_rejects_ed25519(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Ed CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, None))
    (tmp_path / "ed.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "source-ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    e = _err(import_ca, tmp_path / "ca", tmp_path / "ed.crt", tmp_path / "source-ca.key", passphrase=PASS,
             key_passphrase=b"pw")
    assert "Ed25519" in str(e) and e.file == str(tmp_path / "source-ca.key")


# ------------------------------------------------------------------------------- PEM well formed

@pytest.fixture(scope="module")
def good_cert(ca):
    return unit(ca).cert_pem


@pytest.mark.parametrize("mutate,words", [
    (lambda c: b"hello world\n", "no -----BEGIN"),
    (lambda c: x509.load_pem_x509_certificate(c).public_bytes(serialization.Encoding.DER), "binary/DER"),
    (lambda c: c.replace(b"-----END CERTIFICATE-----", b""), "do not pair up"),
    (lambda c: c[:200] + c[260:], "malformed PEM certificate"),
    (lambda c: c + _pem(ec.generate_private_key(ec.SECP256R1())), "holds a PRIVATE KEY block"),
    (lambda c: c.replace(b"CERTIFICATE", b"X509 CRL"), "holds a X509 CRL block"),
])
def test_malformed_certificate_pem(good_cert, mutate, words):
    e = _err(parse_pem_certs, mutate(good_cert), file="client_cert_00.crt", field="client_cert[0]")
    assert words in str(e) and str(e).startswith("client_cert_00.crt: client_cert[0]: ")


@pytest.mark.parametrize("make,words", [
    (lambda k: b"", "no -----BEGIN"),
    (lambda k: _pem(k) + _pem(k), "exactly one private key block"),
    (lambda k: _pem(k).replace(b"PRIVATE KEY", b"PUBLIC KEY"), "exactly one private key block"),
    (lambda k: _pem(k)[:60] + _pem(k)[90:], "malformed PEM private key"),
    (lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"pw")), "encrypted"),
    (lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.BestAvailableEncryption(b"pw")), "encrypted"),
])
def test_malformed_key_pem(make, words):
    key = ec.generate_private_key(ec.SECP256R1())
    e = _err(parse_private_key, make(key), file="client_key_00.key", field="client_key[0]")
    assert words in str(e) and e.file == "client_key_00.key"


def test_pki_content_set_must_pair_up(ca):
    a, b = unit(ca, "A"), unit(ca, "B")
    pki = {"client_cert": [PkiFile("c0", a.cert_pem), PkiFile("c1", b.cert_pem)],
           "client_key": [PkiFile("k0", a.private_key_pem_for_mfg())]}
    e = _err(check_pki_content, pki, at=NOW)
    assert "sets must pair up" in str(e) and e.field == "client_key"


# ------------------------------------------------------------------------------ mfg_nvs size

@pytest.fixture(scope="module")
def profile():
    return load_profile("esp32c2-4mb")


def _min_size(content, fw) -> int:
    for pages in range(3, 64):
        try:
            build_mfg_nvs(content, pages * 4096, firmware=fw)
            return pages
        except InputError:
            continue
    raise AssertionError("does not fit 64 pages")


@pytest.mark.parametrize("sizes", [[], [1164], [1164, 1675, 1164], [3000] * 4, [4000, 4096, 100, 4030],
                                   [50] * 30, [10000, 7], [4064, 4064, 4064]])
def test_estimate_matches_the_generator(profile, sizes):
    rng = os.urandom
    pki = {"client_ca": [PkiFile(f"f{i}", rng(n)) for i, n in enumerate(sizes)]} if sizes else {}
    ble = [f"{i},16,0x2803,0x01,1,1,02" for i in range(31)]
    content = UnitContent(dict(profile.factory_param), pki, ble,
                          {"app": {"token": ("blob", rng(700)), "name": ("string", "x" * 90), "n": ("u32", 7)}})
    assert estimate_mfg_nvs_pages(content) == _min_size(content, profile.firmware)


def test_set_must_fit_the_partition(profile):
    big = [PkiFile(f"ca{i}.crt", os.urandom(3900)) for i in range(40)]
    content = UnitContent(dict(profile.factory_param), {"client_ca": big}, [])
    e = _err(check_fits, content, profile.mfg_nvs.size, source="recipe.toml")
    assert e.field == "mfg_nvs" and "0x1f000" in str(e) and str(e).startswith("recipe.toml: mfg_nvs: ")
    with pytest.raises(InputError):          # the final proof
        build_mfg_nvs(content, profile.mfg_nvs.size, firmware=profile.firmware)
    small = UnitContent(dict(profile.factory_param), {"client_ca": big[:3]}, [])
    assert check_fits(small, profile.mfg_nvs.size) <= profile.mfg_nvs.size
