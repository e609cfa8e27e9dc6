"""build_mfg_nvs: esp-at parity (csv + byte-identical with the generator CLI), round trips, errors."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfab.core.errors import InputError
from atfab.core.firmware import FirmwareProfile, firmware_for
from atfab.image.mfg_nvs import PkiFile, UnitContent, build_mfg_nvs, load_pki_dir, pki_key_names, pki_namespaces
from atfab.image.nvs import read_nvs
from tests.paths import RAW_DATA

RAW = RAW_DATA
FW = firmware_for("esp32c2")
SIZE = 0x1F000

# ESP32C2-4MB row of factory_param_data.csv
C2_4MB = {"version": 4, "module_name": "ESP32C2-4MB", "max_tx_power": 78, "uart_port": 1, "start_channel": 1,
          "channel_num": 13, "country_code": "CN", "uart_baudrate": 115200, "uart_tx_pin": 7, "uart_rx_pin": 6,
          "uart_cts_pin": 5, "uart_rts_pin": 4, "sys_store": 1}


def gatts_lines() -> list[str]:
    text = (RAW / "ble_data" / "gatts_data.csv").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def expected_csv() -> str:
    """What esp-at's build writes (§8.2-§8.5), written from the rules, not from esp-at code."""
    r = RAW
    lines = [
        "key,type,encoding,value",
        # PKI namespaces in dependency-file order; bare name for a single file, ns.i otherwise
        "server_cert,namespace,,",
        f"server_cert,file,binary,{r}/server_cert/server_cert.crt",
        "server_key,namespace,,",
        f"server_key,file,binary,{r}/server_key/server.key",
        "server_ca,namespace,,",
        f"server_ca,file,binary,{r}/server_ca/server_ca.crt",
        "client_cert,namespace,,",
        f"client_cert.0,file,binary,{r}/client_cert/client_cert_00.crt",
        f"client_cert.1,file,binary,{r}/client_cert/client_cert_01.crt",
        "client_key,namespace,,",
        f"client_key.0,file,binary,{r}/client_key/client_key_00.key",
        f"client_key.1,file,binary,{r}/client_key/client_key_01.key",
        "client_ca,namespace,,",
        f"client_ca.0,file,binary,{r}/client_ca/client_ca_00.crt",
        f"client_ca.1,file,binary,{r}/client_ca/client_ca_01.crt",
        "mqtt_cert,namespace,,",
        f"mqtt_cert,file,binary,{r}/mqtt_cert/mqtt_client.crt",
        "mqtt_key,namespace,,",
        f"mqtt_key,file,binary,{r}/mqtt_key/mqtt_client.key",
        "mqtt_ca,namespace,,",
        f"mqtt_ca,file,binary,{r}/mqtt_ca/mqtt_ca.crt",
        # factory_param in factory_param_type.csv order, strings quoted
        "factory_param,namespace,,",
        "version,data,i8,4",
        'module_name,data,string,"ESP32C2-4MB"',
        "max_tx_power,data,i8,78",
        'country_code,data,string,"CN"',
        "start_channel,data,u8,1",
        "channel_num,data,u8,13",
        "uart_port,data,i8,1",
        "uart_baudrate,data,i32,115200",
        "uart_tx_pin,data,i32,7",
        "uart_rx_pin,data,i32,6",
        "uart_cts_pin,data,i32,5",
        "uart_rts_pin,data,i32,4",
        "sys_store,data,u8,1",
        "ble_data,namespace,,",
    ]
    lines += [f'cfg{i},data,string,"{row}"' for i, row in enumerate(gatts_lines())]
    return "\n".join(lines) + "\n"


def esp_at_content() -> UnitContent:
    dirs = ["client_cert", "client_key", "client_ca", "server_cert", "server_key", "server_ca",
            "mqtt_cert", "mqtt_key", "mqtt_ca"]          # deliberately not in esp-at order
    return UnitContent(dict(C2_4MB), {d: load_pki_dir(RAW / d) for d in dirs}, gatts_lines())


def csv_expectation(text: str) -> list[tuple[str, str, str, object]]:
    """(namespace, key, type, value) per data row of an mfg_nvs.csv, read with the csv module."""
    out, ns = [], ""
    for row in csv.DictReader(io.StringIO(text)):
        if row["type"] == "namespace":
            ns = row["key"]
        elif row["type"] == "file":
            out.append((ns, row["key"], "blob", Path(row["value"]).read_bytes()))
        elif row["encoding"] == "string":
            out.append((ns, row["key"], "string", row["value"]))
        else:
            out.append((ns, row["key"], row["encoding"], int(row["value"])))
    return out


def test_esp_at_parity(tmp_path):
    mfg = build_mfg_nvs(esp_at_content(), SIZE, firmware=FW, source="ESP32C2-4MB")
    expected = expected_csv()
    assert mfg.csv == expected
    rows = csv_expectation(expected)
    assert mfg.keys == [(ns, key, t) for ns, key, t, _ in rows]
    img = read_nvs(mfg.image)
    assert img.problems == []
    assert [(e.namespace, e.key, e.type, e.value) for e in img.entries] == rows
    assert img.namespaces() == ["server_cert", "server_key", "server_ca", "client_cert", "client_key", "client_ca",
                                "mqtt_cert", "mqtt_key", "mqtt_ca", "factory_param", "ble_data"]
    # byte-identical with the generator's own CLI run on the expected csv
    (tmp_path / "expected.csv").write_text(expected)
    subprocess.run([sys.executable, "-m", "esp_idf_nvs_partition_gen", "generate", "expected.csv", "out.bin",
                    hex(SIZE)], cwd=tmp_path, check=True, timeout=120, capture_output=True)
    assert (tmp_path / "out.bin").read_bytes() == mfg.image


def test_size_exact_and_last_page_reserved():
    mfg = build_mfg_nvs(UnitContent(dict(C2_4MB)), SIZE, firmware=FW)
    assert len(mfg.image) == SIZE
    assert mfg.image[-0x1000:] == b"\xff" * 0x1000
    assert [e.key for e in read_nvs(mfg.image).entries][:2] == ["version", "module_name"]


def test_pki_key_names():
    indexed = replace(FW, pki_key_naming="indexed")
    assert pki_key_names("server_cert", 1, FW) == ["server_cert"]
    assert pki_key_names("client_cert", 2, FW) == ["client_cert.0", "client_cert.1"]
    assert pki_key_names("server_cert", 1, indexed) == ["server_cert.0"]
    assert "wpa_ent_cert" in pki_namespaces(FW)
    assert pki_namespaces(replace(FW, enterprise_namespace="wpa2"))[6:9] == ("wpa2_cert", "wpa2_key", "wpa2_ca")


def test_indexed_naming_and_enterprise_order():
    fw = replace(FW, pki_key_naming="indexed", enterprise_namespace="wpa2")
    content = UnitContent(dict(C2_4MB), {"mqtt_ca": [PkiFile("ca.pem", b"C")], "wpa2_key": [PkiFile("k.pem", b"K")],
                                         "client_cert": [PkiFile("c.pem", b"X")]})
    mfg = build_mfg_nvs(content, SIZE, firmware=fw)
    assert mfg.keys[:3] == [("client_cert", "client_cert.0", "blob"), ("wpa2_key", "wpa2_key.0", "blob"),
                            ("mqtt_ca", "mqtt_ca.0", "blob")]
    with pytest.raises(InputError, match="wpa_ent_key"):
        build_mfg_nvs(UnitContent(dict(C2_4MB), {"wpa_ent_key": [PkiFile("k", b"K")]}), SIZE, firmware=fw)


def test_private_key_bytes_never_in_csv():
    secret = b"-----BEGIN PRIVATE KEY" b"-----\nSECRETSECRET\n-----END PRIVATE KEY" b"-----\n"
    content = UnitContent(dict(C2_4MB), {"client_key": [PkiFile("unit.key", secret)]},
                          custom={"my_key_ns": {"k": ("blob", secret)}, "app": {"b": ("blob", b"\x01\x02")}})
    mfg = build_mfg_nvs(content, SIZE, firmware=FW)
    assert "SECRET" not in mfg.csv and secret.hex() not in mfg.csv
    assert "client_key,file,binary,unit.key" in mfg.csv
    assert "b,data,hex2bin,0102" in mfg.csv
    assert "SECRET" not in repr(content.pki) and "SECRET" not in repr(read_nvs(mfg.image).entries)
    assert read_nvs(mfg.image).get("my_key_ns", "k").value == secret


def test_custom_namespaces_and_extra_factory_keys():
    content = UnitContent(dict(C2_4MB), ble_rows=["0,16,0x2800,0x01,2,2,A002"],
                          custom={"factory_param": {"device_sn": ("string", "SN-1")},
                                  "my_app_config": {"timeout": ("i32", 5000), "raw": ("blob", b"\x00" * 10)}})
    mfg = build_mfg_nvs(content, SIZE, firmware=FW)
    img = read_nvs(mfg.image)
    assert img.namespaces() == ["factory_param", "ble_data", "my_app_config"]
    assert [e.key for e in img.keys("factory_param")][-2:] == ["sys_store", "device_sn"]
    assert img.get("my_app_config", "timeout").value == 5000
    assert 'device_sn,data,string,"SN-1"' in mfg.csv


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_errors_are_one_line_and_named():
    with pytest.raises(InputError) as exc:
        build_mfg_nvs(UnitContent(dict(C2_4MB), custom={"app": {"sixteen_chars_xx": ("u8", 1)}}), SIZE,
                      firmware=FW, source="unit7")
    assert "unit7" in one_line(exc) and "sixteen_chars_xx" in one_line(exc)
    with pytest.raises(InputError) as exc:
        build_mfg_nvs(UnitContent(dict(C2_4MB), custom={"app": {"k": ("u8", 300)}}), SIZE, firmware=FW, source="u")
    assert "app/k" in one_line(exc) and "u8" in one_line(exc)
    with pytest.raises(InputError) as exc:
        build_mfg_nvs(UnitContent({**C2_4MB, "uart_baudrate": "7a"}), SIZE, firmware=FW, source="params.toml")
    assert "params.toml: uart_baudrate: '7a' is not an integer" == one_line(exc)
    with pytest.raises(InputError) as exc:
        build_mfg_nvs(UnitContent({k: v for k, v in C2_4MB.items() if k != "sys_store"}), SIZE, firmware=FW)
    assert "sys_store" in one_line(exc)
    with pytest.raises(InputError) as exc:
        build_mfg_nvs(UnitContent(dict(C2_4MB), custom={"sixteen_chars_ns": {"k": ("u8", 1)}}), SIZE, firmware=FW)
    assert "sixteen_chars_ns" in one_line(exc)
    with pytest.raises(InputError, match="size"):
        build_mfg_nvs(UnitContent(dict(C2_4MB)), 0x1F001, firmware=FW)
    with pytest.raises(InputError, match="size"):
        build_mfg_nvs(UnitContent(dict(C2_4MB)), 0x2000, firmware=FW)
    with pytest.raises(InputError, match="limit"):
        build_mfg_nvs(UnitContent(dict(C2_4MB), ble_rows=["x" * 3968]), SIZE, firmware=FW)


def test_overflow_names_sizes():
    pki = {"client_cert": [PkiFile(f"c{i}.pem", bytes([i]) * 3000) for i in range(3)],
           "client_key": [PkiFile(f"k{i}.pem", b"k" * 3000) for i in range(3)]}
    with pytest.raises(InputError) as exc:
        build_mfg_nvs(UnitContent(dict(C2_4MB), pki), 0x5000, firmware=FW, source="mfg_nvs")
    text = one_line(exc)
    assert text.startswith("mfg_nvs: ") and "content needs 0x" in text and "partition is 0x5000" in text
    need = int(text.split("needs ")[1].split()[0], 16)
    assert len(build_mfg_nvs(UnitContent(dict(C2_4MB), pki), need, firmware=FW).image) == need


FACTORY = st.fixed_dictionaries({
    "version": st.integers(-128, 127),
    "module_name": st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=32),
    "max_tx_power": st.integers(40, 84),
    "country_code": st.sampled_from(["CN", "US", "JP", "DEU", "01"]),
    "start_channel": st.integers(1, 7),
    "channel_num": st.integers(1, 7),
    "uart_port": st.integers(-1, 1),
    "uart_baudrate": st.one_of(st.just(-1), st.integers(80, 5_000_000)),
    "uart_tx_pin": st.just(1), "uart_rx_pin": st.just(2), "uart_cts_pin": st.sampled_from([-1, 3]),
    "uart_rts_pin": st.sampled_from([-1, 4]),
    "sys_store": st.integers(0, 1),
})


TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FACTORY, st.lists(st.binary(max_size=8192), max_size=3), st.lists(TEXT, max_size=8))
def test_round_trip(factory, blobs, ble_rows):
    pki = {"client_cert": [PkiFile(f"c{i}", b) for i, b in enumerate(blobs)]} if blobs else {}
    mfg = build_mfg_nvs(UnitContent(factory, pki, ble_rows), SIZE, firmware=FW)
    img = read_nvs(mfg.image)
    assert img.problems == []
    got = [(e.namespace, e.key, e.type, e.value) for e in img.entries]
    want = [("client_cert", k, "blob", b) for k, b in zip(pki_key_names("client_cert", len(blobs), FW), blobs)]
    from atfab.image.factory_param import FACTORY_KEYS
    want += [("factory_param", k.name, k.type, factory[k.name]) for k in FACTORY_KEYS]
    want += [("ble_data", f"cfg{i}", "string", row) for i, row in enumerate(ble_rows)]
    assert got == want
    assert mfg.keys == [(ns, k, t) for ns, k, t, _ in want]


def test_default_firmware_profile_works():
    assert build_mfg_nvs(UnitContent(dict(C2_4MB)), 0x3000, firmware=FirmwareProfile()).image
