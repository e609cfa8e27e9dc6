"""End to end through the CLI for every legacy (G1/G2) profile (the ESP32-C3 one on the virtual C3): build (with certificates and keys) -> flash with
the real esptool to the virtual module -> verify PASS (per-item partitions read back with AT+SYSFLASH);
an erased certificate partition is a FAIL naming it."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.image.profiles import load_profile
from atfab.sim.module import VirtualModule
from tests.conftest import run_with_timeout
from tests.legacy_support import make_raw_data

T = 120
PROFILES = ("esp32-at-v1.1", "esp32-at-v1.2", "esp32-at-v2", "esp32c3-at-v2", "esp32c2-4mb-at-v3.0",
            "esp32c2-2mb-at-v3.0")


def atfab(*args: object):
    return run_with_timeout(CliRunner().invoke, T, main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def raw() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="atfab-e2e-legacy-")) / "raw_data"
    atexit.register(shutil.rmtree, folder.parent, True)
    make_raw_data(folder, factory=None, partitions=("client_cert", "client_key", "client_ca"))
    return folder


@pytest.mark.parametrize("module", PROFILES)
def test_build_flash_verify_per_legacy_profile(tmp_path, raw, module):
    prof = load_profile(module)
    out = tmp_path / "unit"
    r = atfab("build", "-m", module, "--synthetic-firmware", prof.firmware.release, "--pki-dir", raw,
              "--allow-unread", "-o", out)
    assert r.exit_code == 0, r.output
    vm = VirtualModule(chip=prof.chip, flash_size=prof.flash_size, firmware=prof.firmware).start()
    try:
        r = atfab("flash", "--port", vm.flash_url, "--json", out)
        assert r.exit_code == 0, r.output
        written = {x["name"] for x in json.loads(r.stdout)["regions"] if x["action"] == "written"}
        assert {"client_cert.bin", "client_key.bin", "esp-at.bin"} <= written
        r = atfab("verify", "--port", vm.at_url, "--expect", out, "--mac-from", vm.flash_url, "--json")
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        names = {m["name"] for m in result["measurements"]}
        assert result["passed"] and {"partition.client_cert", "partition.client_key", "sysflash.table",
                                     "gmr.module_name", "sta_mac"} <= names
        if module == "esp32-at-v2":          # tamper: erase the certificates through the AT port -> FAIL
            r = atfab("at", "--port", vm.at_url, 'AT+SYSFLASH=0,"client_cert",0,4096')
            assert r.exit_code == 0, r.output
            r = atfab("verify", "--port", vm.at_url, "--expect", out, "--json")
            assert r.exit_code == 1
            assert json.loads(r.stdout)["failed"] == ["partition.client_cert"]
    finally:
        vm.stop()
