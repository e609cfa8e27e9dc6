"""Recipes: shipped recipes load; every bad field is its own `file: field: problem` line; `atfab check`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.station.recipe import RecipeError, RetryPolicy, check_recipe, load_recipe, slot_name
from atfab.station.serials import SerialScheme

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "recipes").glob("*.toml"))

BASE = """\
name = "t"
module = "esp32c2-4mb"

[firmware]
synthetic = "v4.1.0.0"

[factory_param]
max_tx_power = 78
country_code = "CN"

[pki]
ca = "ca"
demo_ca = true

[pki.identity]
subject = { CN = "{serial}" }
key_type = "ec-p256"

[[pki.slot]]
set = "client"
index = 0
cert = "unit"
key = "unit"
ca = ["factory_ca"]

[serial]
scheme = "counter"
prefix = "T-"
width = 4

[verify]
boot_timeout_s = 5

[retry]
attempts = 2
"""


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_recipes_exist() -> None:
    assert {p.name for p in SHIPPED} >= {"esp32c2-4mb-default.toml", "esp32c2-ble-sensor.toml", "esp32-wroom-32.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipes_load(path: Path, tmp_path: Path) -> None:
    assert check_recipe(path, workdir=tmp_path) == []
    recipe = load_recipe(path, workdir=tmp_path)
    assert recipe.path.is_absolute() and recipe.hash.startswith("sha256:")
    assert recipe.report.dir.is_relative_to(tmp_path) and recipe.ledger == tmp_path / "ledger.sqlite"
    if recipe.profile.nonos is not None:          # ESP8266 NONOS AT: only the UART baud (tests/test_nonos.py)
        assert set(recipe.factory_param) == {"uart_baudrate"} and recipe.verify.at_version == recipe.profile.firmware.release
        return
    if recipe.profile.legacy:                     # G1/G2: the release's 0xFCFC block (tests/test_station_legacy.py)
        assert recipe.profile.firmware.release == recipe.firmware.version == recipe.verify.at_version
        assert {"module_id", "max_tx_power", "uart_baudrate"} <= set(recipe.factory_param)
        return
    assert set(recipe.factory_param) >= {"module_name", "max_tx_power", "uart_baudrate", "sys_store"}
    assert recipe.firmware.kind == "synthetic" and recipe.verify.at_version == "v4.1.0.0"
    if recipe.pki is not None:
        assert recipe.pki.ca_dir.is_absolute() and recipe.pki.ca_dir.is_relative_to(REPO / "certs")
    if recipe.gatt is not None:
        assert recipe.gatt.file.is_file() and recipe.gatt.rows()


def test_ble_sensor_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes" / "esp32c2-ble-sensor.toml", workdir=tmp_path)
    assert recipe.profile.chip == "esp32c2" and recipe.profile.firmware.ble
    rows = recipe.gatt.rows()
    assert rows[0].uuid == "0x2800" and rows[0].value.upper() == "FFE0"
    assert any(r.uuid == "0x2902" for r in rows)  # notify characteristic carries a CCCD
    assert "rf_power" not in recipe.verify.checks and "gatt" in recipe.verify.checks
    assert recipe.serial.render(mac="24:0a:c4:00:00:01") == "BLES-240AC4000001"


def test_wroom_recipe_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes" / "esp32-wroom-32.toml", workdir=tmp_path)
    assert recipe.gatt is not None and recipe.gatt.default  # BLE module: esp-at's default table
    assert [slot_name(s) for s in recipe.pki.slots] == ["client.0", "mqtt.0"]
    assert recipe.factory_param["country_code"] == "US" and recipe.factory_param["uart_tx_pin"] == 17
    values = recipe.identity_values(serial="W32-0000001", mac="24:0a:c4:00:00:01")
    subject = recipe.pki.identity.subject_name(values).rfc4514_string()
    assert subject == "O=atfab demo,OU=WROOM-32,CN=W32-0000001"
    assert recipe.pki.needs_ca and recipe.pki.needs_identity
    assert "rf_power" in recipe.verify.checks and "gatt" in recipe.verify.checks


def test_base_recipe_is_valid(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, BASE), workdir=tmp_path)
    assert recipe.name == "t" and recipe.retry == RetryPolicy(2, ("ERROR",), 0.0)
    assert recipe.report.junit == tmp_path / "reports" / "junit.xml"
    assert recipe.pki.ca_dir == tmp_path / "ca"


BAD_FIELDS = [
    ('module = "esp32c2-4mb"', 'module = "esp32c9-1mb"', "module"),
    ('synthetic = "v4.1.0.0"', 'synthetic = "4.1"', "firmware.synthetic"),
    ('synthetic = "v4.1.0.0"', 'synthetic = "v2.2.0.0"', "firmware.synthetic"),
    ('synthetic = "v4.1.0.0"', 'synthetic = "v4.1.0.0"\nbuild_dir = "b"', "firmware"),
    ('synthetic = "v4.1.0.0"', 'build_dir = "nope"', "firmware.build_dir"),
    ('max_tx_power = 78', 'max_tx_power = 100', "factory_param.max_tx_power"),
    ('max_tx_power = 78', 'uart_tx_pin = 33', "factory_param.uart_tx_pin"),
    ('max_tx_power = 78', 'uart_port = 5', "factory_param.uart_port"),
    ('max_tx_power = 78', 'start_channel = 10\nchannel_num = 13', "factory_param.channel_num"),
    ('max_tx_power = 78', 'uart_cts_pin = 7', "factory_param.uart_cts_pin"),
    ('country_code = "CN"', 'country_code = "China"', "factory_param.country_code"),
    ('country_code = "CN"', 'colour = "red"', "factory_param.colour"),
    ('demo_ca = true', 'demo_ca = false', "pki.ca"),
    ('key_type = "ec-p256"', 'key_type = "dsa-1024"', "pki.identity.key_type"),
    ('CN = "{serial}"', 'CN = "{serial}/{colour}"', "pki.identity.subject.CN"),
    ('ca = ["factory_ca"]', 'ca = ["factory_ca"]\nflavour = 1', "pki.slot[0].flavour"),
    ('ca = "ca"\n', '', "pki.ca"),
    ('set = "client"', 'set = "ftp"', "pki.slot[0].set"),
    ('set = "client"\nindex = 0', 'set = "server"\nindex = 1', "pki.slot[0].index"),
    ('index = 0', 'index = 1', "pki.slot"),
    ('prefix = "T-"', 'prefix = "T #"', "serial.prefix"),
    ('scheme = "counter"', 'scheme = "random"', "serial.scheme"),
    ('width = 4', 'width = 40', "serial.width"),
    ('width = 4', 'width = 2\nstart = 100', "serial.start"),
    ('boot_timeout_s = 5', 'boot_timeout_s = 0', "verify.boot_timeout_s"),
    ('boot_timeout_s = 5', 'checks = ["gmr", "gatt"]', "verify.checks"),
    ('boot_timeout_s = 5', 'checks = ["telepathy"]', "verify.checks[0]"),
    ('boot_timeout_s = 5', 'mac_prefixes = ["xx:yy"]', "verify.mac_prefixes[0]"),
    ('boot_timeout_s = 5', 'at_version = "latest"', "verify.at_version"),
    ('attempts = 2', 'attempts = 0', "retry.attempts"),
    ('attempts = 2', 'on = ["PASS"]', "retry.on"),
    ('attempts = 2', 'attempts = "two"', "retry.attempts"),
    ('name = "t"', 'name = "has space"', "name"),
    ('name = "t"', 'name = "t"\ncolour = 1', "colour"),
    ('[retry]', '[gatt]\nfile = "g.csv"\n\n[retry]', "gatt"),
]


@pytest.mark.parametrize("old,new,field", BAD_FIELDS, ids=[c[2] + ":" + c[1][:20] for c in BAD_FIELDS])
def test_each_bad_field_is_one_line(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    problems = check_recipe(path, workdir=tmp_path)
    lines = [str(p) for p in problems]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {field}: "), lines
    assert "\n" not in lines[0]
    with pytest.raises(RecipeError) as err:
        load_recipe(path, workdir=tmp_path)
    assert isinstance(err.value, InputError) and str(err.value) == lines[0]
    assert err.value.problems[0].field == field and err.value.exit_code == 2


def test_all_problems_are_collected(tmp_path: Path) -> None:
    fields = ["firmware.synthetic", "factory_param.max_tx_power", "pki.slot[0].set", "serial.prefix",
              "retry.attempts"]
    text = BASE
    for field in fields:
        old, new, _ = next(c for c in BAD_FIELDS if c[2] == field)
        text = text.replace(old, new, 1)
    problems = check_recipe(write(tmp_path, text), workdir=tmp_path)
    assert {p.field for p in problems} == set(fields)
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "r.toml", workdir=tmp_path)
    assert len(err.value.problems) == 5


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    (p,) = check_recipe(write(tmp_path, 'name = "x"\nmodule = = 3\n'))
    assert p.file == str(tmp_path / "r.toml") and p.line is not None and "TOML" in str(p)
    (p,) = check_recipe(tmp_path / "none.toml")
    assert "no such recipe" in str(p)


def test_missing_required_tables(tmp_path: Path) -> None:
    problems = check_recipe(write(tmp_path, 'name = "x"\n'))
    assert {p.field for p in problems} == {"module", "firmware"}


def test_gatt_file_problems(tmp_path: Path) -> None:
    ble = BASE.replace('module = "esp32c2-4mb"', 'module = "esp32c2-2mb-ble"').split("[pki]")[0]
    ble += "\n[gatt]\nfile = \"gatt.toml\"\n"
    (p,) = check_recipe(write(tmp_path, ble), workdir=tmp_path)
    assert p.field == "gatt.file" and "no such file" in str(p)
    (tmp_path / "gatt.toml").write_text('[[service]]\nuuid = "0xFFE0"\n[[service.characteristic]]\nproperties = ["read"]\n')
    (p,) = check_recipe(tmp_path / "r.toml", workdir=tmp_path)
    assert p.file == str(tmp_path / "gatt.toml") and "uuid" in p.field
    (tmp_path / "gatt.toml").write_text('[[service]]\nuuid = "0xFFE0"\n[[service.characteristic]]\nuuid = "0xFFE1"\n'
                                        'properties = ["read"]\npermissions = ["read"]\nvalue = "00"\n')
    assert check_recipe(tmp_path / "r.toml", workdir=tmp_path) == []


def test_factory_image_checks(tmp_path: Path) -> None:
    text = BASE.replace('synthetic = "v4.1.0.0"', 'factory_image = "factory.bin"')
    path = write(tmp_path, text)
    (tmp_path / "factory.bin").write_bytes(b"\xff" * (4 * 1024 * 1024 + 1))
    (p,) = check_recipe(path, workdir=tmp_path)
    assert p.field == "firmware.factory_image" and "flash" in str(p)
    (tmp_path / "factory.bin").write_bytes(b"\xff" * 0x10000)
    problems = check_recipe(path, workdir=tmp_path)
    assert problems and all(p.field == "firmware.factory_image" for p in problems)


def test_mfg_nvs_must_fit(tmp_path: Path) -> None:
    bundle = _ca_cert(tmp_path) * 25   # a large trust bundle per slot
    (tmp_path / "bundle.pem").write_bytes(bundle)
    slots = "".join(f'\n[[pki.slot]]\nset = "{s}"\nindex = {i}\ncert = "unit"\nkey = "unit"\nca = ["bundle.pem"]\n'
                    for s, i in (("client", 1), ("server", 0), ("mqtt", 0)))
    text = BASE.replace('module = "esp32c2-4mb"', 'module = "esp32c2-2mb"').replace("[serial]", slots + "\n[serial]")
    text = text.replace('key_type = "ec-p256"', 'key_type = "rsa-4096"')
    problems = check_recipe(write(tmp_path, text), workdir=tmp_path)
    assert [p.field for p in problems][:1] == ["pki"] and "does not fit" in str(problems[0])
    # each slot's 25-certificate bundle is also more than one AT+SYSMFG write can carry (1..8191 bytes)
    assert {p.field for p in problems[1:]} == {"pki.slot"} and all("1..8191" in str(p) for p in problems[1:])


def _ca_cert(tmp_path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_ca_folder_checks(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("demo_ca = true", "demo_ca = false"))
    (p,) = check_recipe(path, workdir=tmp_path)
    assert p.field == "pki.ca" and "no CA folder" in str(p)
    (tmp_path / "ca").mkdir()
    (p,) = check_recipe(path, workdir=tmp_path)
    assert p.field == "pki.ca" and "ca.crt" in str(p)
    (tmp_path / "ca" / "ca.crt").write_bytes(b"not a certificate")
    (p,) = check_recipe(path, workdir=tmp_path)
    assert p.field == "pki.ca" and p.file.endswith("ca.crt")
    (tmp_path / "ca" / "ca.crt").write_bytes(_ca_cert(tmp_path))
    (p,) = check_recipe(path, workdir=tmp_path)
    assert p.field == "pki.ca" and "ca.key" in str(p)
    (tmp_path / "ca" / "ca.key").write_text("(stands for the encrypted CA key)")
    (p,) = check_recipe(path, workdir=tmp_path)            # a run could not load it (issue 12)
    assert p.field == "pki.ca" and "not a PEM private key" in str(p) and p.file.endswith("ca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca" / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    problems = [str(x) for x in check_recipe(path, workdir=tmp_path)]
    assert any("not encrypted" in x for x in problems) and any("does not match" in x for x in problems)
    (tmp_path / "ca" / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"test-ca-passphrase")))
    assert check_recipe(path, workdir=tmp_path) == []        # encrypted; no passphrase: cannot compare
    (p,) = check_recipe(path, workdir=tmp_path, passphrase=b"test-ca-passphrase")
    assert "does not match" in str(p) and p.file.endswith("ca.key")   # not this certificate's key
    before = load_recipe(path, workdir=tmp_path).hash
    (tmp_path / "ca" / "ca.crt").write_bytes(_ca_cert(tmp_path))
    assert load_recipe(path, workdir=tmp_path).hash != before  # the hash covers the CA certificate


def test_static_slot_files(tmp_path: Path) -> None:
    text = BASE.replace('ca = ["factory_ca"]', 'ca = ["factory_ca"]\n\n[[pki.slot]]\nset = "mqtt"\nca = ["cloud.pem"]')
    path = write(tmp_path, text)
    (p,) = check_recipe(path, workdir=tmp_path)
    assert p.field.startswith("pki.slot") and "cloud.pem" in str(p)
    (tmp_path / "cloud.pem").write_bytes(_ca_cert(tmp_path))
    recipe = load_recipe(path, workdir=tmp_path)
    assert [slot_name(s) for s in recipe.pki.slots] == ["client.0", "mqtt.0"]
    assert recipe.pki.slots[1].ca == (str(tmp_path / "cloud.pem"),)


def test_retry_policy_and_serials() -> None:
    policy = RetryPolicy(attempts=3, retry_on=("ERROR",))
    assert policy.should_retry("ERROR", 1) and policy.should_retry("ERROR", 2)
    assert not policy.should_retry("ERROR", 3) and not policy.should_retry("FAIL", 1)
    assert SerialScheme("counter", prefix="SN", width=5).render(counter=42) == "SN00042"
    with pytest.raises(InputError):
        SerialScheme("counter", width=2).render(counter=100)


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["check", *map(str, SHIPPED), "--workdir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count(": ok (") == len(SHIPPED)
    text = BASE.replace('max_tx_power = 78', 'max_tx_power = 100').replace('width = 4', 'width = 40')
    bad = write(tmp_path, text)
    res = runner.invoke(main, ["check", str(bad), "--workdir", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.splitlines() == [f"{bad}: serial.width: must be 1..18 digits, not 40",
                                       f"{bad}: factory_param.max_tx_power: 100 is out of range 40..84 (0.25 dBm units)"]
    res = runner.invoke(main, ["check", str(bad), "--json"])
    assert res.exit_code == 2 and '"ok": false' in res.output


def test_real_firmware_sources(tmp_path: Path) -> None:
    from atfab.image.build import merge_factory_image, synthetic_firmware_files, write_synthetic_firmware
    from atfab.image.profiles import load_profile

    c2, wroom = load_profile("esp32c2-4mb"), load_profile("esp32-wroom-32")
    write_synthetic_firmware(c2, tmp_path / "fw-c2", version="v4.1.0.0")
    write_synthetic_firmware(wroom, tmp_path / "fw-esp32", version="v4.1.0.0")
    parts = synthetic_firmware_files(wroom, version="v4.1.0.0").values()
    (tmp_path / "factory-esp32.bin").write_bytes(merge_factory_image(wroom, list(parts)))
    base = 'module = "esp32c2-4mb"\n[firmware]\n'
    assert check_recipe(write(tmp_path, base + 'build_dir = "fw-c2"\n'), workdir=tmp_path) == []
    (p,) = check_recipe(write(tmp_path, base + 'build_dir = "fw-esp32"\n'), workdir=tmp_path)
    assert "0x1000" in str(p) and "esp32c2-4mb" in str(p)
    problems = check_recipe(write(tmp_path, base + 'factory_image = "factory-esp32.bin"\n'), workdir=tmp_path)
    assert problems and all(p.field == "firmware.factory_image" for p in problems)
    wroom_recipe = write(tmp_path, base.replace("esp32c2-4mb", "esp32-wroom-32") + 'factory_image = "factory-esp32.bin"\n')
    recipe = load_recipe(wroom_recipe, workdir=tmp_path)
    assert recipe.firmware.kind == "factory_image" and recipe.firmware.path == tmp_path / "factory-esp32.bin"
    assert recipe.verify.at_version is None
