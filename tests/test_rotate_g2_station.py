"""End to end through the CLI with the shipped G2 recipe (recipes/esp32-at-v2-g2.toml, ESP-AT v2.4.0.0):
`atfab run` provisions three virtual modules (real esptool over socket://, per-item partitions), then
`atfab rotate` rotates client.0 and mqtt.0 with a power loss between a key partition's erase and write on
one unit and a link drop inside a key write on another (exit 3), and again (exit 0): the pending rotations
are completed from the journal and the unit, and every slot holds the pair the ledger records."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from atfab.cli import main
from atfab.core.mac import normalize_mac
from atfab.image.profiles import load_profile
from atfab.pki.ca import create_ca
from atfab.sim.server import ModulePool
from atfab.station.ledger import Ledger
from tests.conftest import run_with_timeout
from tests.g2_fleet_support import cert_fingerprints, key_fingerprint, pki_items

ROOT = Path(__file__).resolve().parents[1]


def atfab(*args: object):
    return run_with_timeout(CliRunner().invoke, 120, main, [str(a) for a in args], catch_exceptions=False,
                            env={"ATFAB_CA_PASSPHRASE": "g2 station test"})


def test_station_provisioned_g2_units_rotate_through_faults(tmp_path):
    text = (ROOT / "recipes" / "esp32-at-v2-g2.toml").read_text()
    recipe = tmp_path / "r.toml"
    recipe.write_text(text.replace('ca = "../certs/demo-ca"', 'ca = "ca"').replace("demo_ca = true", ""))
    create_ca(tmp_path / "ca", common_name="G2 station CA", passphrase=b"g2 station test")
    profile = load_profile("esp32-at-v2")
    pool = ModulePool(3, chip=profile.chip, flash_size=profile.flash_size, firmware=profile.firmware,
                      seed="g2-station").start()
    try:
        ports = [a for m in pool for a in ("--port", f"{m.flash_url},{m.at_url}")]
        r = atfab("run", recipe, "--workdir", tmp_path, *ports)
        assert r.exit_code == 0, r.output[-2000:]
        pool[1].faults.power_loss_after_flash_ops = 3         # client_key: staged, head erased, power gone
        pool[2].faults.drop_in_flash_write = 2                # inside the client_key head write
        at_ports = [a for m in pool for a in ("--port", m.at_url)]
        r = atfab("rotate", "--recipe", recipe, "--workdir", tmp_path, *at_ports)
        assert r.exit_code == 3, r.output
        r = atfab("rotate", "--recipe", recipe, "--workdir", tmp_path, *at_ports)
        assert r.exit_code == 0, r.output
        assert r.output.count("resume done") == 2, r.output
        ledger = Ledger(tmp_path / "ledger.sqlite")
        try:
            for m in pool:
                mac = normalize_mac(m.mac)
                assert ledger.pending_rotations(mac) == []
                for family in ("client", "mqtt"):
                    cert = profile.at_customize.find(f"{family}_cert")
                    key = profile.at_customize.find(f"{family}_key")
                    fp, spki = cert_fingerprints(pki_items(m.flash.read(cert.offset, cert.size))[0])
                    assert key_fingerprint(pki_items(m.flash.read(key.offset, key.size))[0]) == spki
                    assert ledger.certificates_for(mac, f"{family}.0")[-1].fingerprint == fp
        finally:
            ledger.close()
    finally:
        pool.stop()
