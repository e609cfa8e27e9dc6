"""Secret hygiene (issue 8): no private key leaves memory except into device images.

Every private key made during the run is captured by hooking cryptography's key generation
(``ec.generate_private_key`` / ``rsa.generate_private_key``, which atfab.pki calls), then the
real CLI runs a full ``atfab demo``, a production line (``atfab ca init``, ``atfab run`` on two
virtual modules over their socket ports, ``atfab rotate`` of both), ``atfab build`` and ``atfab
customize`` with a unit key; the line escrows its unit keys to an operator key. Afterwards every
file written and every line printed or logged is searched for PEM private key blocks and for the
DER / base64 / raw bytes of every captured key (tests/secret_scan.py). Allowed: device images (mfg_nvs.bin,
factory images, module flash) and the encrypted CA key; escrow files are scanned like everything
else (they hold only ciphertext). Key, CA and escrow files, and images holding keys, are 0600.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from atfab.cli import main
from atfab.image.nvs.reader import read_nvs
from atfab.image.profiles import load_profile
from tests.conftest import run_with_timeout
from tests.secret_scan import PLAINTEXT_BLOCK, assert_no_private_keys, key_markers

PASS = "hygiene test passphrase 42"
TIMEOUT = 180.0
RECIPE = """
name = "hygiene"
module = "esp32c2-4mb"
[firmware]
synthetic = "v4.1.0.0"
[pki]
ca = "ca"
escrow = {{ recipient = "{recipient}", file = "escrow/{{recipe}}.escrow" }}
[pki.identity]
subject = {{ CN = "{{serial}}", O = "atfab hygiene" }}
days = 30
[[pki.slot]]
set = "client"
cert = "unit"
key = "unit"
ca = ["factory_ca"]
[[pki.slot]]
set = "mqtt"
cert = "unit"
key = "unit"
ca = ["factory_ca"]
[serial]
prefix = "HYG-"
[report]
dir = "reports"
[ledger]
path = "ledger.sqlite"
"""


@pytest.fixture
def captured_keys(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every EC/RSA private key generated in this process while the test runs."""
    keys: list = []

    def hook(original):
        def generate(*args, **kwargs):
            key = original(*args, **kwargs)
            keys.append(key)
            return key
        return generate

    monkeypatch.setattr(ec, "generate_private_key", hook(ec.generate_private_key))
    monkeypatch.setattr(rsa, "generate_private_key", hook(rsa.generate_private_key))
    return keys


def _cli(args: list[str], outputs: list[str], *, env: dict[str, str] | None = None, code: int = 0) -> Result:
    res = run_with_timeout(CliRunner().invoke, TIMEOUT, main, [str(a) for a in args], env=env,
                           catch_exceptions=False)
    outputs.append(res.stdout + res.stderr)
    assert res.exit_code == code, f"atfab {' '.join(map(str, args))}: exit {res.exit_code}\n{res.output}"
    return res


def _device_images(root: Path) -> set[str]:
    """Names of files that are device images by design (they hold the unit key)."""
    return {p.name for p in root.rglob("*") if p.is_file() and (
        p.name == "mfg_nvs.bin" or p.suffix == ".flash" or (p.name.startswith("factory_") and p.suffix == ".bin"))}


def _key_of_unit(module, profile) -> bytes:
    """The client key PEM straight from a virtual module's flash."""
    part = profile.mfg_nvs
    image = read_nvs(module.flash.read(part.offset, part.size))
    entry = image.get("client_key", "client_key")
    assert entry is not None, "the unit has no client key"
    return entry.value


def _self_signed(key) -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hygiene unit")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_value(key) -> int:
    numbers = key.private_numbers()
    return numbers.private_value if hasattr(numbers, "private_value") else numbers.d


def test_no_private_key_outside_device_images(tmp_path: Path, module_pool, captured_keys: list,
                                              caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    caplog.set_level(logging.DEBUG)
    ws = tmp_path / "ws"            # everything atfab writes; user inputs live in tmp_path/"inputs"
    inputs = tmp_path / "inputs"
    ws.mkdir()
    inputs.mkdir()
    monkeypatch.chdir(ws)
    env = {"ATFAB_CA_PASSPHRASE": PASS}
    outputs: list[str] = []

    # 1. the demo: throwaway CA, two virtual modules provisioned, reports and ledger
    _cli(["demo", "--out", ws / "demo", "--count", "2", "--sim-baud", "0"], outputs)

    # 2. a production line: a CA, a recipe with two identities and key escrow to an operator key,
    #    `atfab run` on real (socket) ports
    line = ws / "line"
    _cli(["ca", "init", "--dir", line / "ca", "--cn", "Hygiene Factory CA"], outputs, env=env)
    operator = ec.generate_private_key(ec.SECP256R1())          # the operator's key stays in memory
    (inputs / "operator.pub.pem").write_bytes(operator.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (line / "recipe.toml").write_text(RECIPE.format(recipient=inputs / "operator.pub.pem"))
    profile = load_profile("esp32c2-4mb")
    pool = module_pool(2, firmware=profile.firmware, seed="hygiene")
    ports = [arg for m in pool for arg in ("--port", f"{m.flash_url},{m.at_url}")]
    _cli(["run", line / "recipe.toml", *ports, "--workdir", line, "--station-id", "hyg"], outputs, env=env)
    provisioned = [_key_of_unit(m, profile) for m in pool]

    # 3. rotation of both units (new keys), then a second dry run that reads everything back
    at_ports = [arg for m in pool for arg in ("--port", m.at_url)]
    _cli(["rotate", "--recipe", line / "recipe.toml", "--workdir", line, *at_ports], outputs, env=env)
    _cli(["rotate", "--recipe", line / "recipe.toml", "--workdir", line, *at_ports, "--dry-run", "--json"],
         outputs, env=env)
    rotated = [_key_of_unit(m, profile) for m in pool]
    assert all(a != b for a, b in zip(provisioned, rotated)), "rotation did not change the unit keys"

    # 4. offline tools handed a key: atfab build (with a factory image) and atfab customize
    unit_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = unit_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    cert_pem = _self_signed(unit_key)
    for ns, data in (("client_key", key_pem), ("client_cert", cert_pem)):
        (inputs / "pki" / ns).mkdir(parents=True)
        (inputs / "pki" / ns / f"{ns}.pem").write_bytes(data)
    (inputs / "unit.key").write_bytes(key_pem)
    (inputs / "unit.crt").write_bytes(cert_pem)
    _cli(["build", "-m", "esp32c2-4mb", "--pki-dir", inputs / "pki", "--synthetic-firmware", "v4.1.0.0",
          "-o", ws / "build", "--json"], outputs)
    _cli(["customize", "--image", ws / "build" / "mfg_nvs.bin", "-o", ws / "custom" / "mfg_nvs.bin",
          "--client-key0", inputs / "unit.key", "--client-cert0", inputs / "unit.crt", "--baud", "921600"],
         outputs)
    _cli(["inspect", ws / "custom" / "mfg_nvs.bin"], outputs)
    _cli(["inspect", ws / "build" / f"factory_{profile.module_name}.bin", "--json"], outputs)

    # the escrow (the one place a unit key is kept off the device) holds the provisioned and the
    # rotated keys, encrypted
    from atfab.pki.escrow import decrypt_records

    escrow = line / "escrow" / "hygiene.escrow"
    escrowed = {_private_value(r.key) for r in decrypt_records(escrow, operator)}
    assert {_private_value(serialization.load_pem_private_key(pem, None)) for pem in provisioned + rotated} <= escrowed

    # the hook saw the keys that really went to the units (else the scan below would prove nothing)
    values = {_private_value(k) for k in captured_keys}
    for pem in provisioned + rotated:
        assert _private_value(serialization.load_pem_private_key(pem, None)) in values
    # demo units + CA, line CA, operator, run, rotate, build
    assert len(captured_keys) >= 2 + 1 + 1 + 1 + 2 + 2 + 1, len(captured_keys)

    markers = [m for key in captured_keys for m in key_markers(key)]
    # ... and the markers do find a key where one is by design
    part = profile.mfg_nvs
    assert any(m in pool[0].flash.read(part.offset, part.size) for m in markers)
    assert any(m in (ws / "build" / "mfg_nvs.bin").read_bytes() for m in key_markers(unit_key))
    allowed = _device_images(ws)
    assert {"mfg_nvs.bin", f"factory_{profile.module_name}.bin"} <= allowed
    assert_no_private_keys(ws, allow_images=allowed, allow_encrypted=("ca.key",), secrets=markers)

    # every line printed or logged
    texts = outputs + [caplog.text] + [r.getMessage() for r in caplog.records]
    for text in texts:
        data = text.encode("utf-8", "replace")
        assert not PLAINTEXT_BLOCK.search(data), f"PEM private key block in output:\n{text[:300]}"
        leaked = [m for m in markers if m in data]
        assert not leaked, f"key material in output ({len(leaked)} marker(s)):\n{text[:300]}"

    # key and CA files, and images that hold keys, are readable by the owner only
    private = [p for p in ws.rglob("*") if p.is_file() and (
        p.suffix == ".key" or p.name in allowed or "escrow" in p.name or p.name == "pending-keys.json")]
    assert {"ca.key", "mfg_nvs.bin", "hygiene.escrow"} <= {p.name for p in private}
    for p in private:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, f"{p} has mode {stat.S_IMODE(p.stat().st_mode):o}"
