"""End to end through the CLI on the virtual module: build -> flash -> verify -> tamper -> FAIL."""

from __future__ import annotations

import json

from click.testing import CliRunner

from atfab.cli import main
from tests.conftest import run_with_timeout

T = 60


def atfab(*args: str):
    """Run ``atfab ARGS`` in-process (bounded in time); the click Result."""
    runner = CliRunner()  # click 8.2+: stdout and stderr kept apart
    return run_with_timeout(runner.invoke, T, main, list(args), catch_exceptions=False)


def test_build_flash_verify_tamper(virtual_module, tmp_path):
    out = tmp_path / "unit"
    r = atfab("build", "-m", "esp32c2-4mb", "-o", str(out), "--synthetic-firmware", "v3.3.0.0")
    assert r.exit_code == 0, r.output

    r = atfab("flash", "--port", virtual_module.flash_url, "--json", str(out))
    assert r.exit_code == 0, r.output
    flashed = json.loads(r.stdout)
    assert flashed["chip"]["mac"] == virtual_module.mac.hex(":")
    assert {x["name"] for x in flashed["regions"] if x["action"] == "written"} >= {"mfg_nvs.bin", "esp-at.bin"}

    r = atfab("verify", "--port", virtual_module.at_url, "--expect", str(out), "--mac-from", virtual_module.flash_url)
    assert r.exit_code == 0, r.output
    assert "PASS" in r.stdout and "FAIL" not in r.stdout

    # flashing again: nothing to write
    r = atfab("flash", "--port", virtual_module.flash_url, str(out))
    assert r.exit_code == 0 and "wrote 0 bytes" in r.stdout

    # tamper one factory parameter in flash through the AT port, straight after the flash session:
    # a command the booting module drops is sent again once it prints ready
    r = atfab("at", "--port", virtual_module.at_url, 'AT+SYSMFG=2,"factory_param","max_tx_power",2,60')
    assert r.exit_code == 0, r.output

    r = atfab("verify", "--port", virtual_module.at_url, "--expect", str(out), "--json")
    assert r.exit_code == 1
    result = json.loads(r.stdout)
    assert result["passed"] is False and result["failed"] == ["factory_param.max_tx_power"]
    assert "factory_param.max_tx_power" in r.stderr


def test_flash_errors_map_to_exit_codes(tmp_path):
    r = atfab("flash", "--port", "socket://127.0.0.1:9", str(tmp_path))
    assert r.exit_code == 2 and "flash_args" in r.stderr       # not a build folder: input error
    out = tmp_path / "unit"
    atfab("build", "-m", "esp32c2-4mb", "-o", str(out))
    r = atfab("flash", "--port", "socket://127.0.0.1:9", str(out))  # nothing listens there
    assert r.exit_code == 3 and "open" in r.stderr
