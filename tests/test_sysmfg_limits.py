"""AT+SYSMFG write limits (ground truth §6) on the client side and up front in atfab rotate,
customize and check: strings/blobs are 1..8191 bytes (ERROR before the prompt on the module), numbers
are truncated by the firmware (u8 300 is stored as 44), so the client refuses them instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.core.firmware import firmware_profile
from atfab.link.at.limits import check_sysmfg_length, sysmfg_length_problem, truncated
from atfab.pki.ca import create_ca, create_intermediate
from tests.conftest import run_with_timeout

T = 120
PASS = "correct horse battery staple"


def _invoke(args: list, **kw):
    return run_with_timeout(CliRunner().invoke, T, main, [str(a) for a in args], **kw)


def test_string_and_blob_lengths_are_1_to_8191():
    fw = firmware_profile("v5.0.1.0", "esp32c2")
    assert fw.sysmfg_value_max == 8191
    assert sysmfg_length_problem(1, fw) is None and sysmfg_length_problem(8191, fw) is None
    for n in (0, 8192):
        assert "1..8191" in sysmfg_length_problem(n, fw)
    with pytest.raises(InputError, match="8192 bytes"):
        check_sysmfg_length(8192, fw, field="https_ca.0")


def test_numeric_writes_are_truncated_by_the_firmware():
    assert truncated(300, 1) == 44 and truncated(200, 2) == -56 and truncated(-1, 1) == 255   # u8, i8
    assert truncated(0x12345, 3) == 0x2345 and truncated(0x80000000, 6) == -0x80000000


def test_client_refuses_before_sending(virtual_module):
    from atfab.link.at.client import AtClient
    from atfab.link.transport import open_port
    with AtClient(open_port(virtual_module.at_url, timeout=1.0), firmware=virtual_module.firmware) as at:
        before = len(at.transcript)
        for value, type_, match in ((b"x" * 8192, "blob", "1..8191"), (b"", "blob", "0 bytes"),
                                    (300, "u8", "0..255"), (-129, "i8", "-128..127")):
            with pytest.raises(InputError, match=match):
                at.sysmfg_write("my_app", "k", type_, value)
        assert len(at.transcript) == before          # nothing went out


def _long_chain(tmp_path: Path, levels: int = 14):
    ca = create_ca(tmp_path / "root", common_name="Root", passphrase=PASS.encode())
    for i in range(levels):
        last = i == levels - 1
        ca = create_intermediate(ca, tmp_path / ("ca" if last else f"int{i}"), common_name=f"Line CA level {i} " + "x" * 20,
                                 passphrase=PASS.encode(), path_length=None)
    return ca


RECIPE = """
name = "big-chain"
module = "esp32c2-4mb"
[firmware]
synthetic = "v4.1.0.0"
[pki]
ca = "ca"
[pki.identity]
subject = { CN = "{serial}" }
[[pki.slot]]
set = "client"
cert = "unit"
key = "unit"
ca = ["factory_ca"]
[report]
dir = "reports"
"""


def test_check_and_rotate_refuse_a_certificate_chain_over_8191_bytes(tmp_path, monkeypatch):
    ca = _long_chain(tmp_path)
    assert len(ca.intermediates_pem()) > 8191 - 900
    (tmp_path / "r.toml").write_text(RECIPE)
    res = _invoke(["check", tmp_path / "r.toml", "--workdir", tmp_path])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if "1..8191" in ln]
    assert lines and all("pki.slot" in ln for ln in lines), res.output
    monkeypatch.setenv("ATFAB_CA_PASSPHRASE", PASS)
    res = _invoke(["rotate", "--recipe", tmp_path / "r.toml", "--workdir", tmp_path, "--port", "socket://127.0.0.1:9"])
    assert res.exit_code == 2, res.output
    (line,) = res.stderr.strip().splitlines()
    assert "pki.slot" in line and "1..8191" in line     # the recipe never loads: nothing is touched


def test_customize_refuses_a_ca_file_over_8191_bytes_before_writing(virtual_module, tmp_path):
    ca = _long_chain(tmp_path, levels=13)
    big = tmp_path / "bundle.pem"
    big.write_bytes(ca.intermediates_pem() + (ca.directory / "ca.crt").read_bytes())
    assert len(big.read_bytes()) > 8191
    out = tmp_path / "unit"
    assert _invoke(["build", "-m", "esp32c2-4mb", "-o", out, "--synthetic-firmware", "v4.1.0.0"]).exit_code == 0
    assert _invoke(["flash", "--port", virtual_module.flash_url, out]).exit_code == 0
    res = _invoke(["customize", "--port", virtual_module.at_url, "--module", "esp32c2-4mb", "--add-missing",
                   "--allow-unread", "--https-ca0", big])
    assert res.exit_code == 2, res.output
    (line,) = res.stderr.strip().splitlines()
    assert "bundle.pem" in line and "--https-ca0" in line and "1..8191" in line
    res = _invoke(["verify", "--port", virtual_module.at_url, "--expect", out])
    assert res.exit_code == 0, res.output                  # nothing was written
