"""verify reads the complete namespace list of mfg_nvs (AT+SYSMFG?, ground truth §6) and FAILs on any
namespace the build did not write, naming it (issue 13: an injected trusted CA must not PASS).
End to end through the CLI on the virtual module."""

from __future__ import annotations

import json

from click.testing import CliRunner

from atfab.cli import main
from tests.conftest import run_with_timeout

T = 120


def _invoke(args: list, **kw):
    return run_with_timeout(CliRunner().invoke, T, main, [str(a) for a in args], **kw)


# -- must show: a unit with an injected extra CA namespace FAILs naming it ----------------------------
def test_injected_trusted_ca_namespace_fails_naming_it(virtual_module, tmp_path):
    from tests.pki_helpers import make_root
    out = tmp_path / "unit"
    assert _invoke(["build", "-m", "esp32c2-4mb", "-o", out, "--synthetic-firmware", "v4.1.0.0"]).exit_code == 0
    assert _invoke(["flash", "--port", virtual_module.flash_url, out]).exit_code == 0
    res = _invoke(["verify", "--port", virtual_module.at_url, "--expect", out, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["passed"] is True

    # an attacker (or a wrong customize) adds a trusted CA the firmware will use for HTTPS
    rogue = make_root(tmp_path / "rogue", name="Rogue Root")
    res = _invoke(["customize", "--port", virtual_module.at_url, "--module", "esp32c2-4mb", "--add-missing",
                   "--allow-unread", "--https-ca0", rogue.directory / "ca.crt"])
    assert res.exit_code == 0, res.output
    # and a custom namespace of its own (a numeric key is enough to create it)
    assert _invoke(["at", "--port", virtual_module.at_url, 'AT+SYSMFG=2,"backdoor","on",1,1']).exit_code == 0

    res = _invoke(["verify", "--port", virtual_module.at_url, "--expect", out, "--json"])
    assert res.exit_code == 1, res.output
    result = json.loads(res.stdout)
    assert result["failed"] == ["mfg_nvs.namespaces", "mfg_nvs.backdoor.keys", "mfg_nvs.https_ca.keys"]
    by_name = {m["name"]: m for m in result["measurements"]}
    census = by_name["mfg_nvs.namespaces"]
    assert census["expected"] == ["factory_param"]
    assert census["measured"] == ["backdoor", "factory_param", "https_ca"]
    assert census["detail"] == "not in the build: backdoor, https_ca"
    injected = by_name["mfg_nvs.https_ca.keys"]
    assert injected["expected"] is None and injected["rule"] == "absent"
    assert [k.endswith(":blob") for k in injected["measured"]] == [True]
    assert injected["detail"] == "namespace 'https_ca' is on the unit but not in the build"
    assert "https_ca" in res.stderr and "backdoor" in res.stderr


def test_sysmfg_query_bytes_of_the_core_parse_to_namespaces():
    """Ground truth §6: ``+SYSMFG:"%s"\\r\\n`` per namespace, then OK; blank mfg_nvs: ERROR."""
    import pytest
    from atfab.link.at.errors import AtError
    from atfab.link.at.framing import ReplyParser
    from atfab.link.at.parse import parse_sysmfg_namespace

    p = ReplyParser("AT+SYSMFG?")
    assert p.feed(b'AT+SYSMFG?\r\n+SYSMFG:"factory_param"\r\n+SYSMFG:"https_ca"\r\n\r\nOK\r\n')
    assert [parse_sysmfg_namespace(ln) for ln in p.lines] == ["factory_param", "https_ca"]
    with pytest.raises(AtError):
        ReplyParser("AT+SYSMFG?").feed(b"AT+SYSMFG?\r\n\r\nERROR\r\n")
