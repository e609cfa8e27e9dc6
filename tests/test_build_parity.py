"""Every shipped module profile builds the at_customize.bin and mfg_nvs.bin esp-at's own build makes.

The expected images come from :mod:`tests.esp_at_reference` (esp-at's rules, applied to esp-at's
data files in ``tests/data/esp-at`` and the kconfgen sdkconfig of each module build in
``tests/data/esp-at-kconfgen``), not from atfab's builder. Inputs are raw_data trees laid out like
esp-at's, with certificates and keys made at test time:

* ``default``  esp-at's default raw_data set: server x1, client x2, mqtt x1, ble_data, factory_param;
* ``full``     every PKI folder esp-at HEAD ships (+ wpa_ent x1, https x2, wss x2);
* ``full-read`` the full set reduced to what the module's firmware reads (atfab accepts it as it is);
* ``factory``  the default set with other factory_param values in factory_param_data.csv;
* ``params``   the same values given to atfab as params.toml (esp-at: the edited csv);
* ``clients3`` three client cert/key/ca files each.

Where esp-at's build leaves a folder out because the firmware never reads it, atfab refuses the
input naming the ``CONFIG_AT_*`` option, and with ``unread="skip"`` builds esp-at's bytes.
"""

from __future__ import annotations

import csv
import shutil
import tomllib
from pathlib import Path

import pytest

from atfab.core.errors import InputError
from atfab.image.build import build
from atfab.image.profiles import BUILTIN_DIR
from tests import esp_at_reference as ref
from tests.raw_data_support import CLIENTS3, DEFAULT, FULL, Material, raw_tree

#: The G3 (mfg_nvs) profiles; the legacy layouts (firmware_releases) are tests/test_legacy_build.py's.
PROFILES = sorted((t.parent.name, d) for t in BUILTIN_DIR.glob("*/profile.toml")
                  if "firmware_releases" not in (d := tomllib.loads(t.read_text())))
#: Non-default factory_param values valid on every chip (module_name and version stay: the row is chosen by them).
NEW_VALUES = {"max_tx_power": 60, "country_code": "US", "start_channel": 1, "channel_num": 11, "uart_port": 1,
              "uart_baudrate": 921600, "uart_tx_pin": 4, "uart_rx_pin": 5, "uart_cts_pin": -1, "uart_rts_pin": -1,
              "sys_store": 0}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """The raw_data trees of every input set (the same files for esp-at's pipeline and atfab)."""
    base = tmp_path_factory.mktemp("parity")
    material = Material()

    def tree(name: str, layout: dict[str, list[str]], *, factory_param: bool = True) -> Path:
        return raw_tree(base / name, layout, material, factory_param=factory_param)

    out = {"default": tree("default", DEFAULT), "full": tree("full", FULL), "clients3": tree("clients3", CLIENTS3),
           "factory": tree("factory", DEFAULT), "params": tree("params", DEFAULT, factory_param=False)}
    data = out["factory"] / "factory_param" / "factory_param_data.csv"
    rows = list(csv.reader(data.open()))
    for row in rows[1:]:
        for key, value in NEW_VALUES.items():
            row[rows[0].index(key)] = str(value)
    with data.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    params = base / "params.toml"
    params.write_text("[factory_param]\n" + "".join(
        f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n" for k, v in NEW_VALUES.items()))
    out["params.toml"] = params
    return out


def _read_only(full: Path, sdkconfig: str, dest: Path) -> Path:
    """``full`` reduced to the folders esp-at's generator reads for this build (plus factory_param)."""
    if dest.exists():
        return dest
    keep = {p.name for p in ref.folders_read(full, sdkconfig)} | {"factory_param"}
    for sub in full.iterdir():
        if sub.name in keep:
            shutil.copytree(sub, dest / sub.name)
    dest.mkdir(exist_ok=True)
    return dest


def _expected(profile: dict, raw: Path, work: Path) -> tuple[bytes, bytes, list[str]]:
    module_dir = ref.ESP_AT / "module_config" / profile["esp_at_module"]
    sdkconfig = (ref.SDKCONFIGS / f"{profile['esp_at_module']}.sdkconfig").read_text()
    table = module_dir / "at_customize.csv"
    assert f'CONFIG_AT_CUSTOMIZED_PARTITION_TABLE_FILE="module_config/{profile["esp_at_module"]}/at_customize.csv"' \
        in sdkconfig
    text = ref.mfg_nvs_csv(raw, sdkconfig, platform=f"PLATFORM_{profile['chip'].upper()}",
                           module=profile["module_name"].upper())
    image = ref.mfg_nvs_bin(text, ref.partition_size(table, "mfg_nvs"), work)
    return ref.at_customize_bin(table), image, ref.namespaces_of(text)


def _atfab(name: str, out: Path, **kw) -> tuple[bytes, bytes, list[str]]:
    manifest = build(name, out, **kw)
    return (out / "at_customize.bin").read_bytes(), (out / "mfg_nvs.bin").read_bytes(), manifest["namespaces"]


@pytest.mark.parametrize("name, profile", PROFILES, ids=[p[0] for p in PROFILES])
def test_profile_builds_esp_at_images(name: str, profile: dict, trees: dict[str, Path], tmp_path: Path) -> None:
    sdkconfig_file = ref.SDKCONFIGS / f"{profile['esp_at_module']}.sdkconfig"
    sdkconfig = sdkconfig_file.read_text()
    read_full = _read_only(trees["full"], sdkconfig, tmp_path / "full-read")
    cases = [  # (set, raw_data for esp-at, atfab's inputs)
        ("default", trees["default"], {"pki_dir": trees["default"]}),
        ("default+sdkconfig", trees["default"], {"pki_dir": trees["default"], "sdkconfig": sdkconfig_file}),
        ("full", trees["full"], {"pki_dir": trees["full"]}),
        ("full-read", trees["full"], {"pki_dir": read_full}),
        ("factory", trees["factory"], {"pki_dir": trees["factory"]}),
        ("params", trees["factory"], {"pki_dir": trees["params"], "params": trees["params.toml"]}),
        ("clients3", trees["clients3"], {"pki_dir": trees["clients3"]}),
    ]
    expected: dict[Path, tuple[bytes, bytes, list[str]]] = {}
    for set_name, raw, inputs in cases:
        if raw not in expected:
            expected[raw] = _expected(profile, raw, tmp_path / f"esp-at-{set_name}")
        want_customize, want_nvs, want_ns = expected[raw]
        given = {p.name for p in Path(inputs["pki_dir"]).iterdir()} - {"factory_param"}
        skipped = given - set(want_ns)
        out = tmp_path / f"atfab-{set_name}"
        if skipped:   # esp-at's build leaves these out: atfab refuses them unless told to skip them
            with pytest.raises(InputError) as info:
                build(name, out, **inputs)
            assert "never reads" in info.value.message and "CONFIG_AT_" in info.value.message, set_name
            assert info.value.field in skipped and not out.exists()
            inputs = {**inputs, "unread": "skip"}
        got = _atfab(name, out, **inputs)
        assert got[2] == want_ns, set_name
        assert got[0] == want_customize, f"{name} {set_name}: at_customize.bin differs from gen_esp32part's"
        assert got[1] == want_nvs, f"{name} {set_name}: mfg_nvs.bin differs from esp-at's pipeline"


def test_reference_rules_match_the_profile_table() -> None:
    """The profile's [build] table is what esp-at's build of the module enables (its kconfgen
    sdkconfig), option by option (the parity test above also proves it through the bytes)."""
    from atfab.image.build_config import OPTIONS, read_sdkconfig
    from atfab.image.profiles import load_profile
    for name, profile in PROFILES:
        sdkconfig = (ref.SDKCONFIGS / f"{profile['esp_at_module']}.sdkconfig")
        on = {o for o in OPTIONS if f"CONFIG_{o}=y" in sdkconfig.read_text()}
        assert set(profile["build"]["sdkconfig_y"]) == on, name
        assert load_profile(name).build.enabled == read_sdkconfig(sdkconfig).enabled == on, name
