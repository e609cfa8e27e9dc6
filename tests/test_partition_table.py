"""Partition tables: CSV parsing, binary encode/decode (§11.1), validation errors naming file:line."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atfab.core.errors import InputError
from atfab.image.partition_table import (
    Partition, PartitionTable, decode, encode, load_csv, parse_csv, to_csv, validate,
)
from tests.paths import MODULE_CONFIG

REF = MODULE_CONFIG
REF_CSVS = sorted(REF.glob("*/*.csv"))


def _independent_encode(rows: list[tuple[str, int, int, int, int, int]], md5: bool) -> bytes:
    """§11.1 written out again, to compare byte for byte."""
    out = b"".join(struct.pack("<2sBBLL16sL", b"\xaa\x50", t, s, o, z, n.encode().ljust(16, b"\0"), f)
                   for n, t, s, o, z, f in rows)
    if md5:
        out += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(out).digest()
    return out + b"\xff" * (0xC00 - len(out))


def test_all_reference_tables_present():
    assert len(REF_CSVS) == 40


@pytest.mark.parametrize("path", REF_CSVS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reference_table_byte_exact(path: Path):
    table = load_csv(path)
    rows = [(p.name, p.type, p.subtype, p.offset, p.size, p.flags) for p in table.entries]
    for md5 in (True, False):
        blob = encode(table, md5=md5)
        assert len(blob) == 0xC00
        assert blob == _independent_encode(rows, md5)
        back = decode(blob, source=str(path))
        assert back == table and back.has_md5 is md5
        assert decode(blob + b"\xff" * 0x400) == table  # a whole 4 KB sector


def test_c2_reference_values():
    primary = load_csv(REF / "module_esp32c2_default/partitions_at.csv")
    custom = load_csv(REF / "module_esp32c2_default/at_customize.csv")
    at = primary.find("at_customize")
    assert (at.type, at.subtype, at.offset, at.size) == (0x40, 0, 0x1E000, 0x42000)
    assert [p.name for p in primary] == ["otadata", "phy_init", "nvs", "at_customize", "ota_0", "ota_1"]
    assert primary.find("ota_1").subtype == 0x11
    mfg = custom.find("mfg_nvs")
    assert (mfg.offset, mfg.size) == (0x1F000, 124 * 1024)
    assert custom.find("fs_storage").subtype == 0xFF
    blob = encode(custom)
    # the pattern esp-at's at.py searches for (§10.4)
    assert blob.startswith(b"\xaa\x50\x01\x02" + struct.pack("<II", 0x1F000, 0x1F000) + b"mfg_nvs\0")
    validate(primary, flash_size=4 << 20, table_offset=0x8000)
    validate(custom, within=at)


def test_csv_syntax():
    text = """
# comment
  # indented comment
nvs,      data, nvs,      ,        0x6000
phy_init, data, phy,      ,        4K
factory,  app,  factory,  ,        1M
ota_3,    app,  ota_3,    ,        1M, readonly
raw,      0x41, 0x22,     0x400000, 65536, encrypted:readonly
cd,       data, coredump, ,        64K
x,        2,    0,        0x500000, 0x1000
"""
    t = parse_csv(text, source="t.csv")
    nvs, phy, fac, ota3, raw, cd, x = t.entries
    assert (nvs.offset, nvs.size, nvs.line) == (0x9000, 0x6000, 4)
    assert (phy.offset, phy.size) == (0xF000, 0x1000)
    assert (fac.type, fac.subtype, fac.offset, fac.size) == (0, 0, 0x10000, 0x100000)
    assert (ota3.subtype, ota3.offset, ota3.flags) == (0x13, 0x110000, 2)
    assert (raw.type, raw.subtype, raw.size, raw.flags) == (0x41, 0x22, 0x10000, 3)
    assert (cd.subtype, cd.offset) == (3, 0x410000)
    assert (x.type, x.type_name) == (2, "bootloader")
    assert parse_csv(to_csv(t)) == t


def test_csv_table_offset_moves_first_free():
    t = parse_csv("nvs, data, nvs, , 0x1000\n", table_offset=0xC000)
    assert t.entries[0].offset == 0xD000


@pytest.mark.parametrize("line, field, needle", [
    ("a, data, nvs, 0x9000", "line", "at least 5"),
    (", data, nvs, 0x9000, 0x1000", "name", "empty"),
    ("a, blah, nvs, 0x9000, 0x1000", "type", "not a number"),
    ("a, data, ota_0, 0x9000, 0x1000", "subtype", "unknown subtype"),
    ("a, app, , 0x10000, 0x1000", "subtype", "needs a subtype"),
    ("a, data, nvs, 0x9z00, 0x1000", "offset", "not a number"),
    ("a, data, nvs, 0x9000, ", "size", "empty"),
    ("a, data, nvs, 0x9000, 0", "size", "is 0"),
    ("a, data, nvs, 0x9000, -4K", "size", "negative"),
    ("a, data, nvs, 0x9000, 0x1000, secret", "flags", "unknown flag"),
    ("a, 0x1ff, 0, 0x9000, 0x1000", "type", "out of range"),
])
def test_csv_syntax_errors(line: str, field: str, needle: str):
    with pytest.raises(InputError) as ei:
        parse_csv(f"# header\n{line}\n", source="bad.csv")
    err = ei.value
    assert (err.file, err.line, err.field) == ("bad.csv", 2, field)
    assert needle in err.message
    assert str(err).startswith(f"bad.csv:2: {field}: ")


def _validate_error(text: str, **kw) -> InputError:
    table = parse_csv(text, source="p.csv")
    with pytest.raises(InputError) as ei:
        validate(table, source="p.csv", **kw)
    assert "\n" not in str(ei.value)
    return ei.value


def test_validate_overlap_names_later_line():
    err = _validate_error("a, data, nvs, 0x9000, 0x6000\nb, data, phy, 0xe000, 0x1000\n")
    assert (err.line, err.field) == (2, "offset") and "overlaps 'a'" in err.message
    assert str(err).startswith("p.csv:2: offset: ")


def test_validate_17_byte_name():
    err = _validate_error("abcdefghijklmnopq, data, nvs, 0x9000, 0x6000\n")
    assert (err.line, err.field) == (1, "name") and "17 bytes" in err.message
    _validate_error("x" * 16 + ", data, nvs, 0x9000, 0x6000\n" + "é" * 9 + ", data, nvs, 0xf000, 0x1000\n")


def test_validate_16_byte_name_ok_and_round_trips():
    t = parse_csv("abcdefghijklmnop, data, nvs, 0x9000, 0x6000\n")
    validate(t)
    assert decode(encode(t)).entries[0].name == "abcdefghijklmnop"


def test_validate_duplicate_name():
    err = _validate_error("a, data, nvs, 0x9000, 0x1000\na, data, nvs, 0xa000, 0x1000\n")
    assert (err.line, err.field) == (2, "name") and "duplicate" in err.message


@pytest.mark.parametrize("text, line", [
    ("a, data, nvs, 0x9800, 0x1000\n", 1),
    ("a, data, nvs, 0x9000, 0x1000\nb, app, ota_0, 0x18000, 0x10000\n", 2),
])
def test_validate_misalignment(text: str, line: int):
    err = _validate_error(text)
    assert (err.line, err.field) == (line, "offset") and "not aligned" in err.message


def test_validate_outside_flash():
    err = _validate_error("a, data, nvs, 0x9000, 0x1000\nb, app, ota_0, 0x100000, 0x180000\n", flash_size=2 << 20)
    assert (err.line, err.field) == (2, "size") and "beyond the flash size" in err.message


def test_validate_below_table():
    err = _validate_error("a, data, nvs, 0x8000, 0x1000\n", table_offset=0x8000)
    assert (err.line, err.field) == (1, "offset")


def test_validate_outside_at_customize_region():
    region = Partition("at_customize", 0x40, 0, 0x1E000, 0x42000)
    ok = "mfg_nvs, data, nvs, 0x1f000, 124K\n"
    validate(parse_csv(ok), within=region)
    err = _validate_error(ok + "fs, data, fat, 0x5f000, 0x2000\n", within=region)
    assert (err.line, err.field) == (2, "offset") and "outside the at_customize region" in err.message
    err = _validate_error("mfg_nvs, data, nvs, 0x1e000, 0x3000\n", within=region)  # on the table's own sector
    assert err.line == 1


def test_decode_errors():
    good = encode(parse_csv("a, data, nvs, 0x9000, 0x6000\n"))
    with pytest.raises(InputError, match="magic") as ei:
        decode(b"\xab\x50" + good[2:], source="x.bin")
    assert ei.value.file == "x.bin" and ei.value.field == "magic"
    with pytest.raises(InputError, match="shorter than one entry"):
        decode(good[:20])
    with pytest.raises(InputError, match="without an end entry"):
        decode(good[:64])  # entry + MD5 entry, cut before the end marker
    corrupt = bytearray(good)
    corrupt[10] ^= 1
    with pytest.raises(InputError) as ei:
        decode(bytes(corrupt))
    assert ei.value.field == "md5"
    with pytest.raises(InputError, match="no end entry"):
        decode(good[:32] * 96)


def test_decode_tolerates_missing_md5():
    t = parse_csv("a, data, nvs, 0x9000, 0x6000\n")
    back = decode(encode(t, md5=False))
    assert back == t and not back.has_md5


def test_too_many_partitions():
    rows = "".join(f"p{i}, data, nvs, 0x{0x10000 + i * 0x1000:x}, 0x1000\n" for i in range(95))
    t = parse_csv(rows)
    with pytest.raises(InputError, match="do not fit"):
        encode(t)
    assert len(encode(t, md5=False)) == 0xC00  # 95 entries fit without the MD5 entry
    t94 = PartitionTable(t.entries[:94])
    assert decode(encode(t94)) == t94


# ------------------------------------------------------------------------------ hypothesis

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=16)
_kinds = st.sampled_from([
    (0, 0x00), (0, 0x10), (0, 0x1F), (0, 0x20), (1, 0x00), (1, 0x01), (1, 0x02), (1, 0x06), (1, 0x81),
    (1, 0x83), (1, 0xFF), (0x40, 0x00), (0x40, 0x07), (0x22, 0x33),
])


@st.composite
def tables(draw):
    names = draw(st.lists(_names, min_size=1, max_size=30, unique=True))
    offset = 0x9000
    entries = []
    for name in names:
        ptype, subtype = draw(_kinds)
        align = 0x10000 if ptype == 0 else 0x1000
        offset += draw(st.integers(0, 4)) * 0x1000
        offset = (offset + align - 1) // align * align
        size = draw(st.integers(1, 64)) * 0x1000 + draw(st.sampled_from([0, 0, 0x10, 0x800]))
        flags = draw(st.integers(0, 3))
        entries.append(Partition(name, ptype, subtype, offset, size, flags))
        offset += size
    order = draw(st.permutations(entries))
    return PartitionTable(list(order))


@settings(max_examples=150, deadline=None)
@given(tables(), st.booleans())
def test_round_trip_csv_bin_table(table: PartitionTable, md5: bool):
    validate(table, flash_size=1 << 30, table_offset=0x8000)
    text = to_csv(table)
    parsed = parse_csv(text, source="gen.csv")
    assert parsed == table
    assert [p.line for p in parsed.entries] == list(range(2, len(table.entries) + 2))
    blob = encode(parsed, md5=md5)
    assert len(blob) == 0xC00
    back = decode(blob)
    assert back == table and back.has_md5 == md5
    assert encode(back, md5=md5) == blob
