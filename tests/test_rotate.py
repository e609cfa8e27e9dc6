"""Certificate rotation on virtual modules (atfab.station.fleet): parallel fleet, journal recovery, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from atfab.link.at.client import AtClient
from atfab.image.build import build_unit_images, synthetic_firmware_files
from atfab.cli import main
from atfab.core.errors import InputError
from atfab.image.gatt import cfg_strings
from atfab.station.ledger import Ledger
from atfab.image.mfg_nvs import UnitContent
from atfab.image.nvs.reader import read_nvs
from atfab.pki.ca import create_ca, load_ca
from atfab.pki.issue import issue_unit
from atfab.pki.keys import cert_sha256, spki_sha256
from atfab.pki.slots import plan_slots
from atfab.station.recipe import check_recipe, load_recipe
from atfab.station.fleet import ROTATION_SCHEMA, RotateOptions, rotate_fleet
from atfab.rotation.device import leaf_certificate
from atfab.rotation.inventory import RotateTarget, load_inventory, targets_from_ports
from atfab.core.mac import normalize_mac
from atfab.link.transport import open_port
from tests.conftest import run_with_timeout
from tests.secret_scan import assert_no_private_keys, key_markers

PASS = "correct horse battery staple"
RUN_TIMEOUT = 60.0

RECIPE = """
name = "rot-test"
module = "{module}"
[firmware]
synthetic = "v4.1.0.0"{firmware_extra}
[pki]
ca = "ca"
[pki.identity]
subject = {{ CN = "{{serial}}", O = "atfab test" }}
days = 30
[[pki.slot]]
set = "client"
cert = "unit"
key = "unit"
ca = ["factory_ca"]
[serial]
prefix = "ROT-"
[report]
dir = "reports"
{extra}
"""


class Env:
    """A recipe, its CA, a ledger and helpers to provision / inspect virtual modules."""

    def __init__(self, tmp: Path, extra: str = "", module: str = "esp32c2-4mb", firmware_extra: str = "") -> None:
        self.tmp = tmp
        create_ca(tmp / "ca", common_name="Rotation Test CA", passphrase=PASS.encode())
        (tmp / "r.toml").write_text(RECIPE.format(extra=extra, module=module, firmware_extra=firmware_extra))
        self.recipe = load_recipe(tmp / "r.toml", workdir=tmp)
        self.ca = load_ca(tmp / "ca", PASS.encode())
        self.ledger = Ledger(self.recipe.ledger)
        self.profile = self.recipe.profile
        self.plan = plan_slots(list(self.recipe.pki.slots), firmware=self.profile.firmware,
                               factory_ca=self.ca.chain_certs())
        self.keys: list = []        # every private key the test made or found (for the leak scan)

    def provision(self, module) -> None:
        """Flash a unit the way the station would: firmware, at_customize, mfg_nvs with an identity."""
        mac = normalize_mac(module.mac)
        unit = self.ledger.reserve_identity(mac, self.recipe)
        ident = issue_unit(self.ca, self.recipe.pki.identity, self.recipe.identity_values(serial=unit.serial, mac=mac))
        self.keys.append(ident.private_key_object_for_escrow())
        self.ledger.record_certificate(mac, "client.0", issuer=ident.cert.issuer.rfc4514_string(),
                                       cert_serial=ident.serial, fingerprint=ident.fingerprint_sha256,
                                       key_fingerprint=spki_sha256(ident.cert))
        rows = cfg_strings(self.recipe.gatt.rows()) if self.recipe.gatt else []
        content = UnitContent(factory_param=dict(self.recipe.factory_param), pki=self.plan.pki_for(ident),
                              ble_rows=rows)
        images = build_unit_images(self.profile, content, allow_unread=self.recipe.firmware.allow_unread)
        flash = module.flash
        flash.erase_all()
        for offset, data in synthetic_firmware_files(self.profile, version="v4.1.0.0").values():
            flash.program(offset, data)
        flash.program(self.profile.at_customize_offset, images.at_customize)
        flash.program(self.profile.mfg_nvs.offset, images.mfg_nvs.image)
        module.power_cycle()

    def device_pair(self, module):
        """(cert fp, cert spki, key spki) straight from the module's flash (independent of atfab.station.fleet)."""
        mfg = self.profile.mfg_nvs
        image = read_nvs(module.flash.read(mfg.offset, mfg.size))
        cert = leaf_certificate(image.get("client_cert", "client_cert").value)
        key = serialization.load_pem_private_key(image.get("client_key", "client_key").value, None)
        self.keys.append(key)
        return cert_sha256(cert), spki_sha256(cert), spki_sha256(key)

    def rotate(self, ports, **kw):
        targets = ports if ports and isinstance(ports[0], RotateTarget) else targets_from_ports(ports)
        opts = RotateOptions(**kw)
        return run_with_timeout(rotate_fleet, RUN_TIMEOUT, self.recipe, targets,
                                ca=None if opts.dry_run else self.ca, ledger=self.ledger, options=opts)

    def reports(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.tmp / "reports" / "rotations").glob("*.json"))]

    @staticmethod
    def report(module_result) -> dict:
        return json.loads(Path(module_result.report_path).read_text())

    def scan(self) -> None:
        markers = [m for k in self.keys for m in key_markers(k)]
        assert_no_private_keys(self.tmp, allow_encrypted=("ca.key",), secrets=markers)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.ledger.close()


def _pool(module_pool, env, count):
    pool = module_pool(count, firmware=env.profile.firmware, seed="rot")
    for m in pool:
        env.provision(m)
    return pool


def test_rotate_ten_modules_in_parallel(env, module_pool):
    pool = _pool(module_pool, env, 10)
    before = [env.device_pair(m) for m in pool]
    fleet = env.rotate([m.at_url for m in pool])
    assert fleet.exit_code == 0, [m.line() for m in fleet.modules]
    assert fleet.counts == {"PASS": 10, "FAIL": 0, "ERROR": 0}
    for m, old, res in zip(pool, before, fleet.modules):
        cert_fp, cert_spki, key_spki = env.device_pair(m)
        assert cert_spki == key_spki                       # key matches the certificate's public key
        assert cert_fp != old[0] and key_spki != old[2]    # new pair
        (slot,) = res.slots
        assert (slot.action, slot.state, slot.new_cert_fp) == ("rotate", "done", cert_fp)
        mac = normalize_mac(m.mac)
        (rot,) = env.ledger.rotations_for(mac)
        assert (rot.state, rot.old_cert_fp, rot.new_cert_fp, rot.new_key_fp) == ("done", old[0], cert_fp, key_spki)
        assert env.ledger.certificates_for(mac, "client.0")[-1].fingerprint == cert_fp
    reports = env.reports()
    assert len(reports) == 10 and {r["schema"] for r in reports} == {ROTATION_SCHEMA}
    rep = reports[0]
    assert rep["outcome"] == "PASS" and rep["rotations"][0]["state"] == "done"
    assert [s["name"] for s in rep["steps"]] == ["connect", "identify", "rotate client.0", "restart"]
    assert all(m["outcome"] == "pass" for m in rep["measurements"])
    tr = rep["transcript"]
    key_raws = [t["text"] for t in tr if t["kind"] == "raw" and '"client_key"' in t["text"]]
    payloads = [t["text"] for t in tr if t["kind"] == "payload"]
    assert len(key_raws) == 2 and all("<redacted " in t for t in key_raws)       # old key read, read-back
    # staged key copy (atfab_key/stage_key), key, cert
    assert all(p.startswith("<redacted ") for p in payloads[:2]) and not payloads[2].startswith("<redacted")
    env.scan()


def _arm(module, how):
    def progress(port, slot, event):
        if event == "key_written" and port == module.at_url:
            if how == "drop_rx":
                module.faults.at.drop_after_rx = 1      # the next byte from the host closes the link
            elif how == "drop_tx":
                module.faults.at.drop_after_tx = 1      # the next reply byte closes the link
            else:
                module.faults.stall_reply_seconds = 1.0  # the prompt comes after the client gave up
    return progress


@pytest.mark.parametrize("how", ["drop_rx", "drop_tx", "power_loss", "stall"])
def test_interrupted_between_key_and_cert_is_repaired_next_run(env, module_pool, how):
    pool = _pool(module_pool, env, 2)
    old = [env.device_pair(m) for m in pool]
    victim = pool[0]
    if how == "power_loss":
        victim.faults.power_loss_after_writes = 2      # the staged key copy, the key: then the power goes
    fleet = env.rotate([m.at_url for m in pool], progress=None if how == "power_loss" else _arm(victim, how),
                       timeout=0.3 if how == "stall" else None)
    assert fleet.exit_code == 3
    bad, good = fleet.modules
    assert bad.outcome == "ERROR" and good.outcome == "PASS"
    assert "left pending" in bad.slots[0].message
    cert_fp, _, key_spki = env.device_pair(victim)
    assert cert_fp == old[0][0] and key_spki != old[0][2]          # new key, old certificate
    (pending,) = env.ledger.pending_rotations(normalize_mac(victim.mac))
    assert pending.new_key_fp == key_spki
    assert pending.state == ("intent" if how == "power_loss" else "key_written")

    dry = env.rotate([victim.at_url], dry_run=True)
    (plan,) = dry.modules[0].slots                 # the slot is completed, not rotated again
    assert (plan.action, plan.unit_holds, plan.state) == ("resume", "new_key_old_cert", pending.state)
    assert "would write the journalled certificate" in plan.message
    assert env.ledger.rotation(pending.id).state == pending.state

    fleet2 = env.rotate([victim.at_url])
    assert fleet2.exit_code == 0, fleet2.modules[0].line()
    (slot,) = fleet2.modules[0].slots
    assert (slot.action, slot.state, slot.rotation_id) == ("resume", "done", pending.id)
    cert_fp, cert_spki, key_spki2 = env.device_pair(victim)
    assert key_spki2 == key_spki == cert_spki and cert_fp == pending.new_cert_fp
    assert env.ledger.rotation(pending.id).state == "done"
    assert env.ledger.certificates_for(normalize_mac(victim.mac))[-1].fingerprint == cert_fp
    rep = env.report(fleet2.modules[0])
    assert rep["outcome"] == "PASS" and rep["rotations"][0]["action"] == "resume"
    env.scan()


@pytest.mark.parametrize("fault", ["error_next_write", "stored_other_bytes"])
def test_write_error_keeps_old_pair(env, module_pool, fault):
    (m,) = _pool(module_pool, env, 1)
    old = env.device_pair(m)
    progress = None
    if fault == "error_next_write":
        m.faults.error_next_write = True                   # the key write answers ERROR
    else:
        def progress(port, slot, event):                    # the unit stores other certificate bytes:
            if event == "key_written":                      # the same wrong bytes on both read-backs
                m.faults.store_corrupt_next_write = True
    fleet = env.rotate([m.at_url], progress=progress)
    assert fleet.exit_code == 1
    (res,) = fleet.modules
    assert res.outcome == "FAIL" and res.slots[0].state == "rolled_back"
    assert env.device_pair(m) == old
    (rot,) = env.ledger.rotations_for(normalize_mac(m.mac))
    assert rot.state == "rolled_back" and not env.ledger.pending_rotations()
    rep = env.report(res)
    assert rep["outcome"] == "FAIL"
    assert [s["outcome"] for s in rep["steps"] if s["name"] == "rotate client.0"] == ["fail"]
    assert "restart" not in [s["name"] for s in rep["steps"]]
    # the next run rotates normally
    assert env.rotate([m.at_url]).exit_code == 0
    assert env.device_pair(m)[0] != old[0]
    env.scan()


def test_one_corrupted_readback_is_link_noise_not_a_fail(env, module_pool):
    """G3 (AT+SYSMFG) under the one re-read rule: one flipped byte on the certificate read-back is
    read again - a clean re-read completes the rotation (noted); two reads that disagree with each
    other are link noise: ERROR, the rotation left pending and completed on the next contact."""
    (m,) = _pool(module_pool, env, 1)
    old = env.device_pair(m)

    def progress(port, slot, event):
        if event == "cert_written":
            m.faults.corrupt_next_read = True
    fleet = env.rotate([m.at_url], progress=progress)
    (res,) = fleet.modules
    assert fleet.exit_code == 0 and res.outcome == "PASS" and res.slots[0].state == "done"
    assert any("re-read did (link noise)" in t["text"] for t in env.report(res)["transcript"])
    assert env.device_pair(m)[0] != old[0]

    # the read-back and its re-read each damaged, differently: nothing concluded, left pending
    rotated = env.device_pair(m)

    def progress2(port, slot, event):
        if event == "cert_written":
            m.faults.corrupt_next_reads = 3            # cert, key; the re-read cert (another byte)
    fleet = env.rotate([m.at_url], progress=progress2)
    (res,) = fleet.modules
    assert fleet.exit_code == 3 and res.outcome == "ERROR"
    assert env.ledger.pending_rotations()
    assert env.rotate([m.at_url]).exit_code == 0 and not env.ledger.pending_rotations()
    assert env.device_pair(m)[0] not in (old[0], rotated[0])
    env.scan()


def test_unknown_state_is_an_error_and_stays_pending(env, module_pool):
    (m,) = _pool(module_pool, env, 1)
    old = env.device_pair(m)
    mac = normalize_mac(m.mac)
    # the ledger's current certificate is another one than the unit holds
    env.ledger.record_certificate(mac, "client.0", issuer="CN=elsewhere", cert_serial=99, fingerprint="99" * 32)
    rot = env.ledger.journal_rotation(mac, "client.0", new_cert_fp="ab" * 32, new_key_fp="cd" * 32,
                                      old_cert_fp="ef" * 32, old_key_fp="01" * 32)
    fleet = env.rotate([m.at_url])
    assert fleet.exit_code == 3
    (res,) = fleet.modules
    (slot,) = res.slots                                         # no new rotation of that slot
    assert res.outcome == "ERROR" and slot.action == "resume" and res.error is None
    assert "neither the old pair" in slot.message
    assert env.ledger.rotation(rot.id).state == "intent"
    assert env.device_pair(m) == old                            # nothing written
    assert env.report(res)["outcome"] == "ERROR"


def test_pending_with_old_pair_is_rolled_back_then_rotated(env, module_pool):
    (m,) = _pool(module_pool, env, 1)
    old = env.device_pair(m)
    mac = normalize_mac(m.mac)
    rot = env.ledger.journal_rotation(mac, "client.0", new_cert_fp="ab" * 32, new_key_fp="cd" * 32,
                                      old_cert_fp=old[0], old_key_fp=old[2])
    fleet = env.rotate([m.at_url])
    assert fleet.exit_code == 0, fleet.modules[0].line()
    resumed, rotated = fleet.modules[0].slots
    assert (resumed.action, resumed.state) == ("resume", "rolled_back")
    assert (rotated.action, rotated.state) == ("rotate", "done")
    assert env.ledger.rotation(rot.id).state == "rolled_back"
    assert env.device_pair(m)[0] == rotated.new_cert_fp


def test_recertify_keeps_the_key(tmp_path, module_pool):
    env = Env(tmp_path, extra='[rotate]\nmode = "recertify"\nrestart = false\n')
    try:
        (m,) = _pool(module_pool, env, 1)
        old = env.device_pair(m)
        fleet = env.rotate([m.at_url])
        assert fleet.exit_code == 0, fleet.modules[0].line()
        cert_fp, cert_spki, key_spki = env.device_pair(m)
        assert cert_fp != old[0] and key_spki == old[2] == cert_spki
        (rot,) = env.ledger.rotations_for(normalize_mac(m.mac))
        assert rot.state == "done" and rot.new_key_fp == rot.old_key_fp
        assert "restart" not in [s["name"] for s in env.report(fleet.modules[0])["steps"]]
    finally:
        env.ledger.close()


def test_new_key_rotation_escrows_the_new_key(tmp_path, tmp_path_factory, module_pool):
    """[pki] escrow: each key a new-key rotation generates is appended to the recipe's escrow file
    (context "rotation") before the first AT write; the record decrypts to the key on the unit."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from atfab.pki import escrow

    operator = ec.generate_private_key(ec.SECP256R1())       # the operator's key: memory only
    pub = tmp_path_factory.mktemp("operator") / "op.pub.pem"
    pub.write_bytes(operator.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    env = Env(tmp_path)
    try:
        recipe = tmp_path / "r.toml"
        recipe.write_text(recipe.read_text().replace(
            'ca = "ca"\n', f'ca = "ca"\nescrow = {{ recipient = "{pub}", file = "escrow/{{recipe}}-{{station}}.escrow" }}\n', 1))
        env.recipe = load_recipe(recipe, workdir=tmp_path)
        pool = _pool(module_pool, env, 2)
        path = tmp_path / "escrow" / "rot-test-st9.escrow"
        at_intent: list[tuple[str, set]] = []

        def progress(port, slot, event):
            if event == "intent":      # journalled after issuance, before the first AT write
                at_intent.append((port, {r["info"]["mac"] for r in escrow.list_escrow(path)}))

        fleet = env.rotate([m.at_url for m in pool], station_id="st9", progress=progress)
        assert fleet.exit_code == 0, [m.line() for m in fleet.modules]
        assert fleet.escrow == str(path) and fleet.to_json()["escrow"] == str(path)
        macs = {m.at_url: normalize_mac(m.mac) for m in pool}
        assert len(at_intent) == 2 and all(macs[port] in escrowed for port, escrowed in at_intent)
        records = escrow.decrypt_records(path, operator)
        assert len(records) == 2
        by_mac = {r.info["mac"]: r for r in records}
        for m, res in zip(pool, fleet.modules):
            cert_fp, _cert_spki, key_spki = env.device_pair(m)
            unit_key = env.keys[-1]
            rec = by_mac[normalize_mac(m.mac)]
            (slot,) = res.slots
            assert rec.unit == rec.info["serial"] == res.serial
            assert (rec.info["context"], rec.info["slots"], rec.info["station"]) == ("rotation", "client.0", "st9")
            assert rec.info["cert_serial"] == slot.certificate["serial"]
            assert rec.cert_sha256 == cert_fp == slot.new_cert_fp and spki_sha256(rec.key) == key_spki
            assert rec.key.private_numbers() == unit_key.private_numbers()
        env.scan()                      # the escrow holds ciphertext only; no key anywhere else either
        # recertify keeps the unit's key: nothing new to escrow
        again = env.rotate([pool[0].at_url], station_id="st9", mode="recertify")
        assert again.exit_code == 0 and again.escrow is None
        assert len(escrow.list_escrow(path)) == 2
    finally:
        env.ledger.close()


def test_ble_only_module_is_identified_by_its_base_mac(tmp_path, module_pool):
    # the BLE-only build has no SSL (it never reads client_*): the slot is written anyway, this test is
    # about finding the unit by its base MAC
    env = Env(tmp_path, module="esp32c2-2mb-ble", firmware_extra="\nallow_unread = true")
    try:
        assert not env.profile.firmware.wifi
        (m,) = _pool(module_pool, env, 1)
        fleet = env.rotate([m.at_url])
        assert fleet.exit_code == 0, fleet.modules[0].line()
        assert fleet.modules[0].mac == normalize_mac(m.mac)
        assert env.device_pair(m)[0] == fleet.modules[0].slots[0].new_cert_fp
    finally:
        env.ledger.close()


def test_dry_run_changes_nothing(env, module_pool):
    pool = _pool(module_pool, env, 2)
    old = [env.device_pair(m) for m in pool]
    fleet = env.rotate([m.at_url for m in pool], dry_run=True)
    assert fleet.exit_code == 0 and fleet.dry_run
    assert all(s.action == "plan" and s.state is None for mod in fleet.modules for s in mod.slots)
    assert "would issue a new key" in fleet.modules[0].slots[0].message
    assert [env.device_pair(m) for m in pool] == old
    assert all(not env.ledger.rotations_for(normalize_mac(m.mac)) for m in pool)
    assert not (env.tmp / "reports").exists()


def test_inventory_expectations(env, module_pool):
    pool = _pool(module_pool, env, 2)
    old = env.device_pair(pool[1])
    serial0 = env.ledger.unit(normalize_mac(pool[0].mac)).serial
    inv = env.tmp / "inv.csv"
    inv.write_text("# rotation batch\nport,mac,serial,name\n"
                   f"{pool[0].at_url},{pool[0].mac.hex()},{serial0},first\n"
                   f"{pool[1].at_url},02:00:00:00:00:99,,second\n")
    fleet = env.rotate(load_inventory(inv))
    first, second = fleet.modules
    assert first.outcome == "PASS" and first.name == "first"
    assert second.outcome == "ERROR" and "inventory expects 02:00:00:00:00:99" in second.error
    assert env.device_pair(pool[1]) == old


def test_inventory_formats_and_errors(tmp_path):
    toml = tmp_path / "inv.toml"
    toml.write_text('[[module]]\nport = "socket://127.0.0.1:1"\nmac = "240AC4000001"\nserial = "S1"\n'
                    '[[module]]\nport = "/dev/ttyUSB1"\nname = "b"\n')
    a, b = load_inventory(toml)
    assert (a.port, a.mac, a.serial, b.name) == ("socket://127.0.0.1:1", "24:0a:c4:00:00:01", "S1", "b")
    cases = {
        "port,colour\nx,red\n": ("colour", 1),
        "mac\n24:0a:c4:00:00:01\n": ("port", 1),
        "# c\nport,mac\nx,nonsense\n": ("mac", 3),
        "port\nx\nx\n": ("port", None),
        "port,name\n,x\n": ("port", 2),
        "port\nx,y\n": (None, 2),
    }
    for text, (field, line) in cases.items():
        p = tmp_path / "bad.csv"
        p.write_text(text)
        with pytest.raises(InputError) as info:
            load_inventory(p)
        assert (info.value.field, info.value.line, info.value.file) == (field, line, str(p)), text
    bad = tmp_path / "bad.toml"
    bad.write_text('[[module]]\nport = "x"\ncolour = "red"\n')
    with pytest.raises(InputError, match="unknown field"):
        load_inventory(bad)


def test_recipe_rotate_table_checks(tmp_path):
    create_ca(tmp_path / "ca", common_name="CA", passphrase=PASS.encode())
    (tmp_path / "r.toml").write_text(RECIPE.format(extra='[rotate]\nmode = "sideways"\nslots = ["mqtt.0"]\n',
                                                   module="esp32c2-4mb", firmware_extra=""))
    fields = {p.field for p in check_recipe(tmp_path / "r.toml", workdir=tmp_path)}
    assert fields == {"rotate.mode", "rotate.slots[0]"}


def test_cli_rotate(env, module_pool, monkeypatch):
    pool = _pool(module_pool, env, 2)
    inv = env.tmp / "inv.toml"
    inv.write_text("".join(f'[[module]]\nport = "{m.at_url}"\n' for m in pool))
    monkeypatch.setenv("ATFAB_CA_PASSPHRASE", PASS)
    args = ["rotate", "--recipe", str(env.tmp / "r.toml"), "--workdir", str(env.tmp), "--inventory", str(inv)]
    runner = CliRunner()
    dry = run_with_timeout(runner.invoke, RUN_TIMEOUT, main, args + ["--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["dry_run"] is True
    res = run_with_timeout(runner.invoke, RUN_TIMEOUT, main, args + ["--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["counts"] == {"PASS": 2, "FAIL": 0, "ERROR": 0}
    assert all(mod["slots"][0]["state"] == "done" for mod in data["modules"])
    text = run_with_timeout(runner.invoke, RUN_TIMEOUT, main, args[:5] + ["--port", pool[0].at_url, "--slot", "mqtt.0"])
    assert text.exit_code == 2 and "mqtt.0" in text.output
    both = runner.invoke(main, args + ["--port", "x"])
    assert both.exit_code == 2


def test_transcript_redacts_key_namespaces(env, module_pool):
    """The AT client's transcript hides *_key payloads, in both directions."""
    (m,) = _pool(module_pool, env, 1)
    port = open_port(m.at_url)
    try:
        client = AtClient(port, firmware=env.profile.firmware, timeout=5.0)
        key = run_with_timeout(client.sysmfg_read, 10, "client_key", "client_key")
        run_with_timeout(client.sysmfg_write, 10, "client_key", "client_key", 8, key)
    finally:
        port.close()
    env.keys.append(serialization.load_pem_private_key(key, None))
    text = "\n".join(e.text for e in client.transcript)
    assert "PRIVATE KEY" not in text and key.splitlines()[1].decode() not in text
    assert text.count("redacted") >= 2


def test_rotation_interrupted_then_reprovisioned_is_superseded(env, module_pool):
    """Killed after key_written, then the unit is provisioned again (a new pair, recorded in the
    ledger): the pending rotation is superseded by the ledger's current pair, not blocking forever."""
    (m,) = _pool(module_pool, env, 1)
    fleet = env.rotate([m.at_url], progress=_arm(m, "drop_rx"))
    assert fleet.exit_code == 3
    mac = normalize_mac(m.mac)
    (pending,) = env.ledger.pending_rotations(mac)
    assert pending.state == "key_written"
    env.provision(m)                                      # re-provisioned: the ledger's current pair
    current = env.device_pair(m)
    assert env.ledger.certificates_for(mac, "client.0")[-1].fingerprint == current[0]

    dry = env.rotate([m.at_url], dry_run=True)
    resumed, planned = dry.modules[0].slots
    assert (resumed.unit_holds, resumed.outcome, planned.action) == ("ledger_pair", "PASS", "plan")
    assert env.ledger.rotation(pending.id).state == "key_written"

    fleet2 = env.rotate([m.at_url])
    assert fleet2.exit_code == 0, fleet2.modules[0].line()
    resumed, rotated = fleet2.modules[0].slots
    assert (resumed.action, resumed.state, resumed.unit_holds) == ("resume", "rolled_back", "ledger_pair")
    assert "superseded" in resumed.message
    assert (rotated.action, rotated.state) == ("rotate", "done")
    assert env.ledger.rotation(pending.id).state == "rolled_back" and not env.ledger.pending_rotations()
    cert_fp, cert_spki, key_spki = env.device_pair(m)
    assert cert_fp == rotated.new_cert_fp != current[0] and cert_spki == key_spki
    assert env.rotate([m.at_url]).exit_code == 0          # and later rotations go on normally
    env.scan()


def _other_ledger_rotate(env, ledger, m, **kw):
    return run_with_timeout(rotate_fleet, RUN_TIMEOUT, env.recipe, targets_from_ports([m.at_url]),
                            ca=None if kw.get("dry_run") else env.ca, ledger=ledger, options=RotateOptions(**kw))


@pytest.mark.parametrize("case", ["unknown_mac", "other_serial"])
def test_rotating_against_another_ledger_is_refused(env, module_pool, tmp_path, case):
    """A unit provisioned against ledger A, rotated against ledger B: never re-serialised."""
    pool = _pool(module_pool, env, 2)
    m = pool[1]                                           # ROT-000002 in ledger A
    old = env.device_pair(m)
    other = Ledger(tmp_path / "other.sqlite")
    try:
        if case == "other_serial":                        # B knows the MAC under another serial
            other.reserve_identity("02:00:00:00:00:01", env.recipe)
            other.reserve_identity("02:00:00:00:00:02", env.recipe)
            other.reserve_identity(normalize_mac(m.mac), env.recipe)          # ROT-000003 in B
        for dry_run in (True, False):
            fleet = _other_ledger_rotate(env, other, m, dry_run=dry_run)
            assert fleet.exit_code == 3
            (res,) = fleet.modules
            assert res.outcome == "ERROR" and "not touched" in res.error, res.line()
            assert "CN=ROT-000002" in res.error
            if case == "other_serial":
                assert "serial ROT-000003" in res.error
            else:
                assert "does not know its MAC" in res.error
        assert env.device_pair(m) == old                  # nothing written
        assert other.rotations_for(normalize_mac(m.mac)) == []
        known = other.unit(normalize_mac(m.mac))
        assert (known is None) == (case == "unknown_mac")  # not registered in B either
        # against its own ledger the same unit rotates
        assert env.rotate([m.at_url]).exit_code == 0
    finally:
        other.close()


def test_unknown_unit_with_a_foreign_certificate_is_registered(env, module_pool, tmp_path):
    """A unit whose certificate is not the factory CA's (e.g. esp-at's test certificate) and that
    the ledger does not know is registered and rotated, as before."""
    (m,) = _pool(module_pool, env, 1)
    create_ca(tmp_path / "other-ca", common_name="Someone Else CA", passphrase=PASS.encode())
    other_env = Env.__new__(Env)
    other_env.__dict__.update(env.__dict__)
    other_env.ca = load_ca(tmp_path / "other-ca", PASS.encode())
    other_env.ledger = Ledger(tmp_path / "scratch.sqlite")
    try:
        other_env.provision(m)                            # a certificate from another CA
    finally:
        other_env.ledger.close()
    fresh = Ledger(tmp_path / "fresh.sqlite")
    try:
        fleet = _other_ledger_rotate(env, fresh, m)
        assert fleet.exit_code == 0, fleet.modules[0].line()
        assert fresh.unit(normalize_mac(m.mac)).serial == fleet.modules[0].serial == "ROT-000001"
    finally:
        fresh.close()


def test_a_certificate_of_another_mac_is_refused(tmp_path, module_pool):
    """The ledger knows the MAC with the right serial, but the certificate on the unit names another
    MAC in its SAN (copied from another unit) and was never recorded for this one."""
    e = Env(tmp_path)
    text = (tmp_path / "r.toml").read_text().replace("days = 30", 'days = 30\nsan_uri = ["urn:atfab:mac:{mac_hex}"]')
    (tmp_path / "r.toml").write_text(text)
    e.recipe = load_recipe(tmp_path / "r.toml", workdir=tmp_path)
    try:
        (m,) = module_pool(1, firmware=e.profile.firmware, seed="san")
        e.provision(m)
        mac = normalize_mac(m.mac)
        old = e.device_pair(m)
        # a ledger that knows the MAC under the same serial but none of its certificates: only the
        # template (subject and SAN) can vouch for the unit
        bare = Ledger(tmp_path / "bare.sqlite")
        e.ledger.close()
        e.ledger = bare
        assert bare.reserve_identity(mac, e.recipe).serial == "ROT-000001"
        assert e.rotate([m.at_url]).exit_code == 0                   # its own MAC in the SAN: rotated
        new = e.device_pair(m)
        other_ledger_unit = Ledger(tmp_path / "bare2.sqlite")
        e.ledger = other_ledger_unit
        other_ledger_unit.reserve_identity(mac, e.recipe)
        # now give the unit a certificate made for another MAC (same serial)
        other = issue_unit(e.ca, e.recipe.pki.identity,
                           e.recipe.identity_values(serial="ROT-000001", mac="02:00:00:00:00:99"))
        e.keys.append(other.private_key_object_for_escrow())
        client = AtClient(open_port(m.at_url), firmware=e.profile.firmware, timeout=3)
        try:
            client.sysmfg_write("client_key", "client_key", 8, other.private_key_pem_for_mfg())
            client.sysmfg_write("client_cert", "client_cert", 8, other.cert_file_pem())
        finally:
            client.close()
        bare.close()
        fleet = e.rotate([m.at_url])
        assert fleet.exit_code == 3
        (res,) = fleet.modules
        assert "not touched" in res.error and "urn:atfab:mac:020000000099" in res.error, res.error
        assert e.device_pair(m)[0] == cert_sha256(other.cert) and new != old
    finally:
        e.ledger.close()
