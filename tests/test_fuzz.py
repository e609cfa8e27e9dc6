"""Fuzzing the input side (issue 8): any bytes/text/table -> data, or a typed atfab error.

The owners' files already fuzz the NVS reader (tests/test_nvs_reader.py: random and mutated
images), the AT line parsers and the reply framer (tests/test_at_parse.py) and the partition
table round trip (tests/test_partition_table.py). This file fills the gaps: the partition table
binary decoder and CSV parser on hostile input, GATT cfg strings / gatts_data CSV / TOML
descriptions, ESP app images, the legacy factory_param block, factory_param values, `atfab
inspect` and `atfab customize` on damaged images, the AT client end to end over a port that
answers garbage, recipes and params.toml with fields of the wrong shape, unit reports, and
rotation inventories. Example counts are bounded so the whole file stays well under 20 s.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfab.core.errors import AtfabError, InputError

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _mutate(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in changes:
        out[pos % len(out)] = value
    return bytes(out)


def mutations(size: int = 1 << 30, max_size: int = 8):
    return st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=max_size)


@functools.cache
def _profile(name: str = "esp32c2-4mb"):
    from atfab.image.profiles import load_profile

    return load_profile(name)


@functools.cache
def _mfg_nvs(module: str = "esp32c2-4mb") -> bytes:
    from atfab.image.build import build_unit_images
    from atfab.image.unit_content import unit_content

    profile = _profile(module)
    return build_unit_images(profile, unit_content(profile)).mfg_nvs.image


@functools.cache
def _app() -> bytes:
    from atfab.image.appimage import default_at_core, make_app_image

    return make_app_image(chip="esp32c2", version="v4.1.0.0", at_core=default_at_core("v4.1.0.0", "esp32c2"),
                          idf_ver="v5.0.6")


@functools.cache
def _small_flash() -> bytes:
    """The first 0x3e000 bytes of a c2-4mb flash: bootloader, table, at_customize table, mfg_nvs."""
    from atfab.image.appimage import make_bootloader_image
    from atfab.image.partition_table import encode

    p = _profile()
    data = bytearray(b"\xff" * p.mfg_nvs.end)
    boot = make_bootloader_image(chip="esp32c2")
    data[0:len(boot)] = boot
    data[p.partition_table_offset:p.partition_table_offset + 0xC00] = encode(p.primary, md5=False)
    data[p.at_customize_offset:p.at_customize_offset + 0xC00] = encode(p.at_customize, md5=True)
    data[p.mfg_nvs.offset:p.mfg_nvs.end] = _mfg_nvs()
    return bytes(data)


# ------------------------------------------------------------------------------ partition tables


@QUICK
@given(st.binary(max_size=0xD00) | st.binary(max_size=40).map(lambda b: b"\xaa\x50" + b))
def test_fuzz_partition_table_decode_random(data: bytes):
    from atfab.image.partition_table import PartitionTable, decode

    try:
        table = decode(data)
    except InputError:
        return
    assert isinstance(table, PartitionTable)


@QUICK
@given(st.sampled_from(["esp32c2-4mb", "esp32-wroom-32", "esp32c5-4mb"]), st.booleans(), st.booleans(),
       mutations(0xC00))
def test_fuzz_partition_table_decode_mutated(module: str, primary: bool, md5: bool, changes):
    from atfab.image.partition_table import decode, encode

    p = _profile(module)
    good = encode(p.primary if primary else p.at_customize, md5=md5)
    try:
        table = decode(_mutate(good, changes))
    except InputError:
        return
    for entry in table.entries:     # whatever decodes re-encodes to the same entries
        assert 0 <= entry.type <= 0xFF and 0 <= entry.subtype <= 0xFF


CSV_TOKENS = st.sampled_from(["nvs", "data", "app", "ota_0", "factory", "phy", "0x40", "0", "0x9000", "0x10000",
                              "4K", "1M", "0x1000", "-1", "", " ", ",", "#", "encrypted", "readonly", ":", "0xZZ",
                              "\t", "é", "\x00", "99999999999999999999", "k", "M", "0x", "010"])
CSV_LINE = st.lists(CSV_TOKENS, max_size=8).map(lambda t: ",".join(t))


@QUICK
@given(st.lists(CSV_LINE | st.text(max_size=30), max_size=8))
def test_fuzz_partition_csv(lines: list[str]):
    from atfab.image.partition_table import decode, encode, parse_csv, validate

    try:
        table = parse_csv("\n".join(lines), source="fuzz.csv")
        validate(table, flash_size=0x400000, table_offset=0x8000, source="fuzz.csv")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    try:
        data = encode(table, md5=True)
    except InputError:
        return                        # e.g. a name that is fine as text but too long as UTF-8
    assert decode(data).entries == table.entries


# -------------------------------------------------------------------------------------- GATT

CFG_TOKEN = st.sampled_from(["0", "1", "2", "16", "32", "128", "0x2800", "0x2803", "0x2902", "0x2901", "0xC300",
                             "0x01", "0x11", "0x10", "02", "12", "A002", "0000", "512", "600", "", "0x", "zz",
                             "-1", " 1", "0x0000FFFF", "0x" + "AB" * 16, "é"])
CFG = st.lists(CFG_TOKEN, min_size=5, max_size=9).map(lambda t: ",".join(t)) | st.text(max_size=40)


@QUICK
@given(CFG)
def test_fuzz_gatt_cfg_string(text: str):
    from atfab.image.gatt import GattRow, parse_cfg_string

    try:
        row = parse_cfg_string(text, source="fuzz")
    except InputError:
        return
    assert isinstance(row, GattRow)
    assert row.cfg_string() == text.rstrip("\r\n")      # cfg strings round-trip byte-exact


@functools.cache
def _default_rows() -> tuple[str, ...]:
    from atfab.image.gatt import cfg_strings, load_gatts_csv
    from atfab.image.unit_content import DEFAULT_GATT

    return tuple(cfg_strings(load_gatts_csv(DEFAULT_GATT)))


def _check_rows(rows) -> None:
    from atfab.image.gatt import discover, expected_discovery_lines, validate_rows

    try:
        validate_rows(rows, source="fuzz")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    discover(rows)
    for style in ("c2", "full"):
        expected_discovery_lines(rows, style)


@QUICK
@given(st.data())
def test_fuzz_gatt_table_rows(data):
    """esp-at's default table with rows replaced, dropped or inserted: valid, or one InputError."""
    from atfab.image.gatt import rows_from_cfg_strings

    values = list(_default_rows())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["replace", "drop", "insert", "swap"]))
        i = data.draw(st.integers(0, len(values) - 1)) if values else 0
        if op == "replace" and values:
            values[i] = data.draw(CFG)
        elif op == "drop" and values:
            del values[i]
        elif op == "insert":
            values.insert(i, data.draw(CFG))
        elif values:
            j = data.draw(st.integers(0, len(values) - 1))
            values[i], values[j] = values[j], values[i]
    try:
        rows = rows_from_cfg_strings(values)
    except InputError:
        return
    _check_rows(rows)


@QUICK
@given(st.text(max_size=300) | st.lists(CFG, max_size=12).map("\n".join))
def test_fuzz_gatts_csv_text(text: str):
    from atfab.image.gatt import parse_gatts_csv

    try:
        rows = parse_gatts_csv(text, source="fuzz.csv")
    except InputError:
        return
    _check_rows(rows)


SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.sampled_from(
    ["0xFFE0", "0xFFE1", "0x2902", "0x2901", "read", "write", "notify", "indicate", "0x11", "30", "0000", "hello",
     "", "0xZZ", "fly", "0x" + "12" * 16, "12345678"]), st.text(max_size=6))
DESC_KEYS = ["uuid", "primary", "perm", "properties", "permissions", "max_len", "cur_len", "value", "text",
             "description", "declaration_perm", "characteristic", "descriptor"]


def _tables(children):
    return st.dictionaries(st.sampled_from(DESC_KEYS), children, max_size=6)


DESC_VALUE = st.recursive(SCALAR, lambda c: st.lists(c, max_size=3) | _tables(c), max_leaves=20)


@QUICK
@given(st.dictionaries(st.sampled_from(["service", "title"]), DESC_VALUE | st.lists(_tables(DESC_VALUE), max_size=3),
                       max_size=2))
def test_fuzz_gatt_description(desc: dict[str, Any]):
    from atfab.image.gatt_desc import compile_description

    try:
        rows = compile_description(desc, source="fuzz.toml")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    _check_rows(rows)


# ----------------------------------------------------------------------------------- app images


@QUICK
@given(st.binary(max_size=600).map(lambda b: b"\xe9" + b) | st.binary(max_size=64))
def test_fuzz_app_image_random(data: bytes):
    from atfab.image.appimage import AppInfo, read_app_info, read_image_summary

    for read in (read_app_info, read_image_summary):
        try:
            info = read(data, source="fuzz.bin")
        except InputError:
            continue
        assert not isinstance(info, AppInfo) or info.chip


@QUICK
@given(mutations(), st.integers(1, 1 << 12))
def test_fuzz_app_image_mutated(changes, cut: int):
    from atfab.image.appimage import read_app_info

    data = _mutate(_app(), changes)
    for candidate in (data, data[:cut]):
        try:
            read_app_info(candidate, source="fuzz.bin")
        except InputError:
            pass


# ------------------------------------------------------------------------------- factory_param


@functools.cache
def _legacy_block(version: int) -> bytes:
    from atfab.image.factory_param import encode_legacy_block

    values = dict(_profile().factory_param)
    return encode_legacy_block(values, version, module_id=1 if version < 3 else None)


@QUICK
@given(st.binary(max_size=120).map(lambda b: b"\xfc\xfc" + b) | st.binary(max_size=40))
def test_fuzz_legacy_block_random(data: bytes):
    from atfab.image.factory_param import decode_legacy_block

    try:
        out = decode_legacy_block(data)
    except InputError:
        return
    assert out["version"] in (1, 2, 3)


@QUICK
@given(st.sampled_from([1, 2, 3]), mutations(0x60))
def test_fuzz_legacy_block_mutated(version: int, changes):
    from atfab.image.factory_param import decode_legacy_block

    try:
        out = decode_legacy_block(_mutate(_legacy_block(version), changes))
    except InputError:
        return
    assert "firmware" in out


FP_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 40), 1 << 40), st.integers(-2, 100),
                     st.floats(allow_nan=True), st.text(max_size=40), st.lists(st.integers(), max_size=2),
                     st.sampled_from(["CN", "US", "01", "0x10", "115200", "-1", "7"]))


@QUICK
@given(st.dictionaries(st.sampled_from(["version", "module_name", "max_tx_power", "country_code", "start_channel",
                                        "channel_num", "uart_port", "uart_baudrate", "uart_tx_pin", "uart_rx_pin",
                                        "uart_cts_pin", "uart_rts_pin", "sys_store", "bogus"]), FP_VALUE, max_size=6),
       st.sampled_from([None, "esp32c2", "esp32", "esp32c5"]))
def test_fuzz_factory_param_values(overrides: dict[str, Any], chip: str | None):
    from atfab.image import factory_param as fp

    try:
        values = fp.validate({**_profile().factory_param, **overrides}, chip=chip, file="fuzz.toml")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert set(values) >= set(_profile().factory_param)


# ------------------------------------------------------------------------ inspect / customize


INSPECT_SEEDS = ["table", "nvs", "app", "flash"]


def _seed(kind: str) -> bytes:
    from atfab.image.partition_table import encode

    return {"table": lambda: encode(_profile().at_customize), "nvs": _mfg_nvs, "app": _app,
            "flash": _small_flash}[kind]()


@SLOW
@given(st.sampled_from(INSPECT_SEEDS), mutations(max_size=12), st.integers(1, 1 << 18))
def test_fuzz_inspect(kind: str, changes, cut: int):
    from atfab.image.inspect import inspect_bytes, render_text

    data = _mutate(_seed(kind), changes)
    for candidate in (data, data[:cut]):
        try:
            report = inspect_bytes(candidate, source="fuzz.bin")
        except InputError as exc:
            assert "\n" not in str(exc)
            continue
        render_text(report)
        json.dumps(report)


@QUICK
@given(st.binary(max_size=256) | st.sampled_from([b"\xfe\xff\xff\xff", b"\xaa\x50", b"\xfc\xfc", b"\xe9"]).flatmap(
    lambda head: st.binary(max_size=200).map(lambda b: head + b)))
def test_fuzz_inspect_random(data: bytes):
    from atfab.image.inspect import inspect_bytes

    try:
        inspect_bytes(data, source="fuzz.bin")
    except InputError:
        pass


@SLOW
@given(st.sampled_from(["nvs", "flash", "legacy"]), mutations(max_size=10))
def test_fuzz_customize_image(kind: str, changes):
    """A damaged image is customised, or refused with an InputError; never a traceback."""
    from atfab.customize.image import customize_image
    from atfab.customize.plan import make_request

    seed = _legacy_block(3) if kind == "legacy" else _seed(kind)
    if kind == "flash":   # damage the parts customize reads: tables and mfg_nvs
        p = _profile()
        hot = [p.partition_table_offset, p.at_customize_offset, p.mfg_nvs.offset]
        changes = [(hot[i % 3] + pos % 0x1000, v) for i, (pos, v) in enumerate(changes)]
    data = _mutate(seed, changes)
    request = make_request({"uart_baudrate": 921600})
    try:
        out, result = customize_image(data, request, chip="esp32c2", source="fuzz.bin")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert len(out) == len(data)
    assert [c.key for c in result.changes] in ([], ["uart_baudrate"])


# ------------------------------------------------------------------------------ AT client


class ScriptedPort:
    """A port that answers every write with the next scripted reply (then stays silent)."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = list(replies)
        self.pending = bytearray()
        self.timeout = 0.0

    def write(self, data: bytes) -> int:
        if self.replies:
            self.pending += self.replies.pop(0)
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def read(self, n: int = 1) -> bytes:
        if not self.pending:
            time.sleep(0.001)
            return b""
        chunk = bytes(self.pending[:max(n, 1)])
        del self.pending[:len(chunk)]
        return chunk

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


HELPERS = [
    ("gmr", ()), ("cmd_list", ()), ("uart_def", ()), ("uart_cur", ()), ("rf_power", ()), ("country", ()),
    ("sta_mac", ()), ("sysflash_partitions", ()), ("sysmfg_namespaces", ()), ("sysmfg_keys", ("factory_param",)),
    ("sysmfg_read", ("factory_param", "uart_baudrate")), ("sysmfg_read", ("client_cert", "client_cert.0")),
    ("sysflash_read", ("mfg_nvs", 0, 64)), ("gatts_services", ()), ("gatts_chars", ()), ("ble_addr", ()),
]
WIRE_PIECE = st.one_of(
    st.sampled_from([b"OK\r\n", b"\r\nOK\r\n", b"ERROR\r\n", b"busy p...\r\n", b"ERR CODE:0x01090000\r\n", b"\r\n",
                     b"+SYSMFG:", b'+SYSMFG:"factory_param","uart_baudrate",6,4,115200\r\n',
                     b'+SYSMFG:"client_cert","client_cert.0",8,5,', b"+SYSFLASH:64,",
                     b'+SYSFLASH:"mfg_nvs",1,2,0x1f000,0x1f000\r\n',
                     b"AT version:4.1.0.0(s-3b13d04 - ESP32C2 - May  8 2024 08:50:59)\r\n",
                     b'+CMD:0,"AT",0,0,0,1\r\n',
                     b"+UART_DEF:115200,8,1,0,1\r\n", b"+RFPOWER:78\r\n", b'+CWCOUNTRY:0,"CN",1,13\r\n',
                     b'+CIPSTAMAC:"24:0a:c4:00:00:01"\r\n', b"+BLEGATTSSRV:1,1,0xA002,1\r\n",
                     b'+BLEGATTSCHAR:"char",1,1,0xC300,0x02\r\n', b'+SYSMFG:"factory_param"\r\n', b"ready\r\n", b">"]),
    st.binary(max_size=16))


@SLOW
@given(st.integers(0, len(HELPERS) - 1), st.lists(st.lists(WIRE_PIECE, max_size=6).map(b"".join), max_size=3))
def test_fuzz_at_client_helpers(which: int, replies: list[bytes]):
    """The AT client's typed helpers over a port that answers anything: data, or a typed AtfabError."""
    from atfab.link.at.client import AtClient
    from atfab.core.firmware import firmware_for

    name, args = HELPERS[which]
    client = AtClient(ScriptedPort(replies), firmware=firmware_for("esp32c2"), timeout=0.05, busy_retries=1,
                      busy_delay=0.0, poll=0.001)
    client.resync = lambda *a, **k: b""     # nothing to wait for: the port is scripted
    try:
        getattr(client, name)(*args)
    except AtfabError as exc:
        assert str(exc).strip()
    for entry in client.transcript:
        assert "PRIVATE KEY" not in entry.text


# -------------------------------------------------------------- recipes, params.toml, reports


def _toml(value: Any, key: str = "") -> str:
    """A tiny TOML writer for the fuzzed tables (inline tables and arrays only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if value == value and abs(value) != float("inf") else '"nan"'
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _dump(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in doc.items())


@functools.cache
def _shipped(name: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads((Path(__file__).parent.parent / "recipes" / f"{name}.toml").read_text(encoding="utf-8"))


ANY_VALUE = st.recursive(st.one_of(st.none().map(lambda _: ""), st.booleans(), st.integers(-3, 1 << 33),
                                   st.floats(-1e3, 1e3), st.text(max_size=12),
                                   st.sampled_from(["unit", "factory_ca", "client", "v4.1.0.0", "ec-p256", "gatt",
                                                    "../x.csv", "{serial}", "counter", "mac", "ERROR"])),
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                         max_leaves=8)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _set(doc: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


@SLOW
@given(name=st.sampled_from(["esp32c2-4mb-default", "esp32c2-ble-sensor", "esp32-wroom-32"]), data=st.data())
def test_fuzz_recipe_fields(name: str, data, tmp_path_factory: pytest.TempPathFactory):
    """A shipped recipe with fields replaced by values of any shape: a list of one-line problems."""
    from atfab.station.recipe import check_recipe

    doc = json.loads(json.dumps(_shipped(name)))
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        _set(doc, data.draw(st.sampled_from(paths)), data.draw(ANY_VALUE))
    folder = tmp_path_factory.mktemp("recipe")
    path = folder / f"{name}.toml"
    path.write_text(_dump(doc), encoding="utf-8")
    problems = check_recipe(path, workdir=folder)
    for p in problems:
        assert isinstance(p, InputError) and "\n" not in str(p)
    assert not list(folder.glob("*.sqlite")), "check wrote a ledger"


@SLOW
@given(doc=st.dictionaries(st.sampled_from(["factory_param", "custom", "extra"]),
                       st.dictionaries(st.sampled_from(["uart_baudrate", "module_name", "max_tx_power", "my_ns",
                                                        "x" * 20, "ble_data", "k"]),
                                       ANY_VALUE | st.dictionaries(st.sampled_from(["type", "value", "hex", "k"]),
                                                                   ANY_VALUE, max_size=3), max_size=3), max_size=3))
def test_fuzz_params_toml(doc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    from atfab.image.unit_content import load_params, unit_content

    path = tmp_path_factory.mktemp("params") / "params.toml"
    path.write_text(_dump(doc), encoding="utf-8")
    try:
        unit_content(_profile(), params=load_params(path))
    except InputError as exc:
        assert "\n" not in str(exc)


@QUICK
@given(st.dictionaries(st.sampled_from(["schema", "outcome", "recipe", "unit", "steps", "measurements", "started",
                                        "attempt_id", "certificates", "images", "station", "transcript", "error"]),
                       ANY_VALUE, max_size=8), st.booleans())
def test_fuzz_unit_report(doc: dict[str, Any], schema: bool):
    from atfab.station.report import SCHEMA, UnitReport

    if schema:
        doc["schema"] = SCHEMA
    try:
        UnitReport.from_dict(doc, source="fuzz.json")
    except InputError as exc:
        assert "\n" not in str(exc)


INVENTORY_TOKEN = st.sampled_from(["port", "mac", "serial", "name", "socket://127.0.0.1:9", "24:0a:c4:00:00:01", "zz",
                                   "", '"', "[[module]]", "port = 1", 'port = "x"', "#"]) | st.text(max_size=8)


@SLOW
@given(name=st.sampled_from(["inv.csv", "inv.toml"]),
       text=st.lists(st.lists(INVENTORY_TOKEN, max_size=4).map(",".join), max_size=5).map("\n".join))
def test_fuzz_rotate_inventory(name: str, text: str, tmp_path_factory: pytest.TempPathFactory):
    from atfab.rotation.inventory import load_inventory

    path = tmp_path_factory.mktemp("inv") / name
    path.write_text(text, encoding="utf-8")
    try:
        targets = load_inventory(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert targets and all(t.port for t in targets)


