"""Shared helpers for the PKI tests: quick CAs and an after-test private-key scan of tmp_path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from atfab.pki.ca import CertificateAuthority, create_ca, create_intermediate
from atfab.pki.issue import IdentityTemplate, identity_values, issue_unit
from tests.secret_scan import assert_no_private_keys
from tests.paths import RAW_DATA

PASS = b"correct horse battery staple"
PASS2 = b"another long passphrase"
REF = RAW_DATA
NOW = dt.datetime.now(dt.timezone.utc)


def make_root(directory: Path, name: str = "Factory Root", key_type: str = "ec-p256") -> CertificateAuthority:
    return create_ca(directory, common_name=name, organization="Acme", passphrase=PASS, key_type=key_type)


def make_chain(base: Path) -> tuple[CertificateAuthority, CertificateAuthority]:
    root = make_root(base / "root")
    inter = create_intermediate(root, base / "int", common_name="Factory Line 1", passphrase=PASS2)
    return root, inter


def unit(ca: CertificateAuthority, serial: str = "SN0001", **template):
    tmpl = IdentityTemplate.from_table(template or {"subject": {"CN": "{serial}"}})
    return issue_unit(ca, tmpl, identity_values(serial=serial, mac="24:0a:c4:00:00:01", module="ESP32C2-4MB"))


@pytest.fixture(autouse=True)
def _scan_tmp_path_after_test(request):
    """After every test that used tmp_path: no plaintext private key anywhere in it."""
    yield
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp is not None and Path(tmp).exists():
        assert_no_private_keys(tmp, allow_encrypted=("ca.key", "pending-keys.json", "source-ca.key"))
