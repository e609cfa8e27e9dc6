"""GATT tables: CSV ⇄ rows ⇄ cfg strings ⇄ description, validation, expected discovery lines."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.core.errors import InputError
from atfab.image.gatt import (
    GATTS_MAX_ROWS, GattRow, cfg_strings, discover, dump_gatts_csv, expected_discovery_lines, load_gatts_csv,
    parse_cfg_string, parse_gatts_csv, validate_rows,
)
from atfab.image.gatt_desc import compile_description, decompile, dump_description, load_description
from tests.paths import RAW_DATA

DEFAULT_CSV = RAW_DATA / "ble_data" / "gatts_data.csv"

# §7: what ESP32/C3 print for the default table
FULL_SRV = ["+BLEGATTSSRV:1,1,0xA002,1", "+BLEGATTSSRV:2,1,0xA003,1"]
FULL_CHAR = """\
+BLEGATTSCHAR:"char",1,1,0xC300,0x02
+BLEGATTSCHAR:"desc",1,1,1,0x2901
+BLEGATTSCHAR:"char",1,2,0xC301,0x02
+BLEGATTSCHAR:"desc",1,2,1,0x2901
+BLEGATTSCHAR:"char",1,3,0xC302,0x08
+BLEGATTSCHAR:"desc",1,3,1,0x2901
+BLEGATTSCHAR:"char",1,4,0xC303,0x04
+BLEGATTSCHAR:"desc",1,4,1,0x2901
+BLEGATTSCHAR:"char",1,5,0xC304,0x08
+BLEGATTSCHAR:"char",1,6,0xC305,0x10
+BLEGATTSCHAR:"desc",1,6,1,0x2902
+BLEGATTSCHAR:"char",1,7,0xC306,0x20
+BLEGATTSCHAR:"desc",1,7,1,0x2902
+BLEGATTSCHAR:"char",1,8,0xC307,0x02
+BLEGATTSCHAR:"desc",1,8,1,0x2901
+BLEGATTSCHAR:"char",2,1,0xC400,0x02
+BLEGATTSCHAR:"desc",2,1,1,0x2901
+BLEGATTSCHAR:"char",2,2,0xC401,0x02
+BLEGATTSCHAR:"desc",2,2,1,0x2901""".splitlines()


@pytest.fixture(scope="module")
def default_rows() -> list[GattRow]:
    return load_gatts_csv(DEFAULT_CSV)


def test_default_table_round_trips_exactly(default_rows, tmp_path):
    text = DEFAULT_CSV.read_text()
    assert len(default_rows) == 31
    validate_rows(default_rows, source=str(DEFAULT_CSV))
    # cfg strings are the CSV fields joined, line for line
    data_lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert cfg_strings(default_rows) == data_lines
    assert default_rows[0].cfg_string() == "0,16,0x2800,0x01,2,2,A002"
    assert default_rows[2].cfg_string() == "2,16,0xC300,0x01,1,1,30"
    # CSV -> rows -> description (TOML text) -> rows -> CSV
    desc_text = dump_description(decompile(default_rows))
    rows2 = compile_description(tomllib.loads(desc_text))
    assert rows2 == default_rows
    assert cfg_strings(rows2) == data_lines
    assert dump_gatts_csv(rows2) == text
    # and through files
    p = tmp_path / "d.toml"
    p.write_text(desc_text)
    assert dump_gatts_csv(load_description(p)) == text


def test_cfg_string_round_trip(default_rows):
    for row in default_rows:
        assert parse_cfg_string(row.cfg_string()) == row
    assert parse_cfg_string("5,16,0xC301,0x01,512,512,").value == ""


def test_expected_lines_match_reference(default_rows):
    full = expected_discovery_lines(default_rows, "full")
    assert full.services == FULL_SRV
    assert full.chars == FULL_CHAR
    c2 = expected_discovery_lines(default_rows, "c2")
    assert c2.services == FULL_SRV
    assert c2.chars[0] == '+BLEGATTSCHAR:"char",1,1,0xC300'
    assert c2.chars[-1] == '+BLEGATTSCHAR:"char",2,2,0xC401'
    assert len(c2.chars) == 10 and all('"desc"' not in line for line in c2.chars)
    services = discover(default_rows)
    assert [s.uuid for s in services] == ["0xA002", "0xA003"]
    assert services[0].chars[5].descriptors == ["0x2902"]


def _grow(rows, copies):
    """``rows`` plus ``copies`` more copies of the last service (0xA003, 7 rows), renumbered."""
    grown = list(rows) + list(rows[24:]) * copies
    return [replace(x, index=str(i)) for i, x in enumerate(grown)]


def _mutate(rows, pos, **changes):
    rows = list(rows)
    rows[pos] = replace(rows[pos], **changes)
    return rows


BAD_CASES = {
    "empty": (lambda r: [], "table", "no rows"),
    "not_primary_first": (lambda r: _mutate(r, 0, uuid="0x2801"), "cfg0.uuid", "primary service"),
    "value_without_decl": (lambda r: r[:1] + r[2:3], "cfg1.index", "out of order"),
    "value_without_decl2": (lambda r: [replace(x, index=str(i)) for i, x in enumerate(r[:1] + r[2:3])],
                            "cfg1.uuid", "without a 0x2803"),
    "decl_last": (lambda r: r[:2][:1] + [replace(r[1])], "cfg1.uuid", "last row"),
    "decl_then_descriptor": (lambda r: _mutate(r, 2, uuid="0x2901"), "cfg2.uuid", "followed by its value"),
    "read_prop_no_read_perm": (lambda r: _mutate(r, 2, perm="0x10"), "cfg2.perm", "read permission"),
    "write_prop_no_write_perm": (lambda r: _mutate(r, 8, perm="0x01"), "cfg8.perm", "write permission"),
    "write_no_rsp_no_write_perm": (lambda r: _mutate(r, 11, perm="0x01"), "cfg11.perm", "write permission"),
    "notify_no_cccd": (lambda r: _mutate(r, 17, uuid="0x2901"), "cfg16.uuid", "CCCD"),
    "indicate_no_cccd": (lambda r: _mutate(r, 20, uuid="0x2903"), "cfg19.uuid", "CCCD"),
    "cur_gt_max": (lambda r: _mutate(r, 23, val_max_len="1", val_cur_len="2", value="3030"),
                   "cfg23.val_cur_len", "exceeds"),
    "value_len_mismatch": (lambda r: _mutate(r, 2, value="3031"), "cfg2.value", "2 bytes"),
    "value_not_hex": (lambda r: _mutate(r, 2, value="3G"), "cfg2.value", "hex"),
    "max_over_512": (lambda r: _mutate(r, 5, val_max_len="513"), "cfg5.val_max_len", "512"),
    "uuid_len_16_with_8_digits": (lambda r: _mutate(r, 2, uuid="0x0000C300"), "cfg2.uuid", "needs 4"),
    "uuid_len_128_with_4_digits": (lambda r: _mutate(r, 2, uuid_len="128"), "cfg2.uuid", "needs 32"),
    "uuid_len_bad": (lambda r: _mutate(r, 2, uuid_len="24"), "cfg2.uuid_len", "16, 32 or 128"),
    "uuid_not_hex": (lambda r: _mutate(r, 2, uuid="0xZZ00"), "cfg2.uuid", "hex"),
    "index_out_of_order": (lambda r: _mutate(r, 3, index="7"), "cfg3.index", "out of order"),
    "too_many_rows": (lambda r: _grow(r, 5), "table", "exceed"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_each_check_rejects_its_bad_case(default_rows, name):
    make, field, words = BAD_CASES[name]
    rows = make(default_rows)
    with pytest.raises(InputError) as info:
        validate_rows(rows, source="t.csv")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("t.csv")
    assert info.value.field == field, msg
    assert words in msg


def test_row_limit_is_configurable(default_rows):
    rows = _grow(default_rows, 4)
    assert len(rows) == 59
    validate_rows(rows)
    more = _grow(default_rows, 5)
    assert len(more) == 66 > GATTS_MAX_ROWS
    with pytest.raises(InputError):
        validate_rows(more)
    validate_rows(more, max_rows=len(more))


HAND_WRITTEN = """
[[service]]
uuid = "0x181A"

[[service.characteristic]]
uuid = "0x2A6E"
properties = ["read", "notify"]
permissions = ["read"]
value = "E803"
description = "Temperature"

[[service.characteristic]]
uuid = "0x6E400002B5A3F393E0A9E50E24DCCA9E"
properties = ["write", "write_no_rsp"]
permissions = ["write"]
max_len = 244

[[service]]
uuid = "0x6E400001B5A3F393E0A9E50E24DCCA9E"
primary = false
"""


def test_hand_written_description_compiles():
    rows = compile_description(tomllib.loads(HAND_WRITTEN), source="h.toml")
    validate_rows(rows)
    assert cfg_strings(rows) == [
        "0,16,0x2800,0x01,2,2,181A",
        "1,16,0x2803,0x01,1,1,12",
        "2,16,0x2A6E,0x01,2,2,E803",
        "3,16,0x2902,0x11,2,2,0000",
        "4,16,0x2901,0x01,11,11,54656D7065726174757265",
        "5,16,0x2803,0x01,1,1,0C",
        "6,128,0x6E400002B5A3F393E0A9E50E24DCCA9E,0x10,244,0,",
        "7,16,0x2801,0x01,16,16,6E400001B5A3F393E0A9E50E24DCCA9E",
    ]
    lines = expected_discovery_lines(rows, "full")
    assert lines.services == ["+BLEGATTSSRV:1,1,0x181A,1", "+BLEGATTSSRV:2,1,0x6E400001B5A3F393E0A9E50E24DCCA9E,0"]
    assert lines.chars == ['+BLEGATTSCHAR:"char",1,1,0x2A6E,0x12', '+BLEGATTSCHAR:"desc",1,1,1,0x2902',
                           '+BLEGATTSCHAR:"desc",1,1,2,0x2901',
                           '+BLEGATTSCHAR:"char",1,2,0x6E400002B5A3F393E0A9E50E24DCCA9E,0x0C']
    # and back
    assert compile_description(decompile(rows)) == rows


def test_default_permissions_follow_properties():
    rows = compile_description(tomllib.loads(
        '[[service]]\nuuid = 0xA00A\n'
        '[[service.characteristic]]\nuuid = "0xC3A0"\nproperties = ["read", "write_no_rsp"]\nmax_len = 20\n'
        '[[service.characteristic]]\nuuid = "0xC3A1"\nproperties = ["indicate"]\nvalue = "00"\n'))
    validate_rows(rows)
    assert cfg_strings(rows) == ["0,16,0x2800,0x01,2,2,A00A", "1,16,0x2803,0x01,1,1,06",
                                 "2,16,0xC3A0,0x11,20,0,", "3,16,0x2803,0x01,1,1,20",
                                 "4,16,0xC3A1,0x01,1,1,00", "5,16,0x2902,0x11,2,2,0000"]
    from atfab.core.firmware import firmware_for
    assert expected_discovery_lines(rows, firmware_for("esp32c3")).chars[-1] == '+BLEGATTSCHAR:"desc",1,2,1,0x2902'


@pytest.mark.parametrize("snippet,field", [
    ('[[service]]\n[[service.characteristic]]\nuuid="0xC300"', "service[0].uuid"),
    ('[[service]]\nuuid="0xA002"\n[[service.characteristic]]\nuuid="0xC300"\nproperties=["reed"]',
     "service[0].characteristic[0].properties"),
    ('[[service]]\nuuid="0xA002"\n[[service.characteristic]]\nuuid="0xC300"\nvalue="3"',
     "service[0].characteristic[0].value"),
    ('[[service]]\nuuid="0xA0020"', "service[0].uuid"),
    ('[[service]]\nuuid="0xA002"\n[[service.characteristic]]\nuuid="0xC300"\npermissions=["rw"]',
     "service[0].characteristic[0].permissions"),
    ("x = 1", "service"),
])
def test_description_errors_name_the_field(snippet, field):
    with pytest.raises(InputError) as info:
        compile_description(tomllib.loads(snippet), source="d.toml")
    assert info.value.field == field
    assert str(info.value).startswith("d.toml: ")


def test_csv_parsing_skips_comments_and_rejects_short_rows():
    rows = parse_gatts_csv("# index,uuid_len,uuid,perm,val_max_len,val_cur_len,value\r\n"
                           "# service\r\n0,16,0x2800,0x01,2,2,A002\r\n\r\n")
    assert len(rows) == 1 and rows[0].line == 3
    with pytest.raises(InputError) as info:
        parse_gatts_csv("0,16,0x2800,0x01,2,2\n", source="s.csv")
    assert str(info.value).startswith("s.csv:1: row: ")


@pytest.mark.parametrize("line, problem", [
    ("   ", "a line of spaces"), ("\t", "a line of spaces"), ("  # comment", "an indented comment"),
    ("index,uuid_len,uuid,perm,val_max_len,val_cur_len,value", "the header line without its #"),
])
def test_csv_lines_esp_at_would_keep_are_refused(line, problem):
    """esp-at's mfg_nvs.py keeps every csv row whose first field does not start with '#': these lines
    would become cfg rows there (the parity research measured it), so atfab refuses them."""
    text = "# header\n0,16,0x2800,0x01,2,2,A002\n" + line + "\n1,16,0x2803,0x01,1,1,02\n"
    with pytest.raises(InputError) as info:
        parse_gatts_csv(text, source="g.csv")
    assert str(info.value).startswith(f"g.csv:3: row: {problem}: esp-at's build would write it as GATT row cfg1")


def test_cli_check_compile_export(default_rows, tmp_path):
    runner = CliRunner()
    toml_path = tmp_path / "gatt.toml"
    csv_path = tmp_path / "out.csv"
    r = runner.invoke(main, ["gatt", "export", str(DEFAULT_CSV), "-o", str(toml_path)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["gatt", "compile", str(toml_path), "-o", str(csv_path)])
    assert r.exit_code == 0, r.output
    assert csv_path.read_text() == DEFAULT_CSV.read_text()
    r = runner.invoke(main, ["gatt", "check", str(csv_path), "--style", "full"])
    assert r.exit_code == 0 and FULL_CHAR[0] in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text(DEFAULT_CSV.read_text().replace("2,16,0xC300,0x01,1,1,30", "2,16,0xC300,0x10,1,1,30"))
    r = runner.invoke(main, ["gatt", "check", str(bad)])
    assert r.exit_code == 2
    assert "read permission" in r.output and f"{bad}:4: cfg2.perm:" in r.output
