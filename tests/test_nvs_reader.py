"""read_nvs against images made by esp-idf-nvs-partition-gen, hand-damaged images and fuzz."""

from __future__ import annotations

import io
import os
import struct

import pytest
from esp_idf_nvs_partition_gen import nvs_partition_gen as gen
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfab.core.errors import InputError
from atfab.image.nvs import NvsImage, read_nvs
from atfab.image.nvs import format as f


def generate(rows: list[tuple[str, str, object]], size: int = 0x6000) -> bytes:
    """Image from the generator's own API: rows of (key, encoding, value); encoding
    "namespace" opens a namespace. Last page reserved, as the CLI does."""
    out = io.BytesIO()
    nvs = gen.nvs_open(out, size - 0x1000, gen.Page.VERSION2)
    for key, encoding, value in rows:
        if encoding == "namespace":
            gen.write_entry(nvs, key, "namespace", "", "")
        else:
            nvs.write_entry(key, value, encoding)
    gen.nvs_close(nvs)
    return out.getvalue()


def entry_offset(page: int, index: int) -> int:
    return page * f.PAGE_SIZE + f.FIRST_ENTRY_OFFSET + index * f.ENTRY_SIZE


def set_entry_state(img: bytearray, page: int, index: int, state: int) -> None:
    pos = page * f.PAGE_SIZE + f.BITMAP_OFFSET + index // 4
    shift = (index % 4) * 2
    img[pos] = (img[pos] & ~(3 << shift)) | (state << shift)


def find_entry(img: bytes, key: str, code: int | None = None) -> tuple[int, int]:
    raw = key.encode().ljust(16, b"\x00")
    for page in range(len(img) // f.PAGE_SIZE):
        for i in range(f.ENTRY_COUNT):
            off = entry_offset(page, i)
            if img[off + 8:off + 24] == raw and (code is None or img[off + 1] == code):
                return page, i
    raise AssertionError(f"{key} not found")


ALL_TYPES = [
    ("u8", 0), ("u8", 255), ("i8", -128), ("i8", 127), ("u16", 65535), ("i16", -32768),
    ("u32", 0xFFFFFFFF), ("i32", -1), ("u64", 2**64 - 1), ("i64", -(2**63)),
]


def test_blank_image_is_empty():
    img = read_nvs(b"\xff" * 0x3000)
    assert img.entries == [] and img.problems == [] and img.namespaces() == []


@pytest.mark.parametrize("data", [b"", b"\xff" * 100, os.urandom(0x3000), b"\x00" * 0x2000])
def test_not_nvs_is_input_error(data):
    with pytest.raises(InputError) as exc:
        read_nvs(data, source="x.bin")
    assert "x.bin" in str(exc.value) and "\n" not in str(exc.value)


def test_all_types_round_trip():
    rows = [("ns", "namespace", None)]
    rows += [(f"k{i}", t, v) for i, (t, v) in enumerate(ALL_TYPES)]
    rows += [("s", "string", "hello"), ("empty", "string", ""), ("long", "string", "x" * 3967)]
    rows += [("ns2", "namespace", None), ("b", "binary", b"\x00\x01\xff" * 5)]
    img = read_nvs(generate(rows))
    assert img.problems == []
    assert img.namespaces() == ["ns", "ns2"]
    assert [(e.key, e.type, e.value) for e in img.keys("ns")] == (
        [(f"k{i}", t, v) for i, (t, v) in enumerate(ALL_TYPES)]
        + [("s", "string", "hello"), ("empty", "string", ""), ("long", "string", "x" * 3967)])
    assert img.get("ns2", "b").value == b"\x00\x01\xff" * 5
    assert img.get("ns2", "missing") is None


def test_multi_page_blob():
    blob = os.urandom(10_000)
    img = read_nvs(generate([("ns", "namespace", None), ("a", "u8", 1), ("big", "binary", blob), ("z", "u8", 2)]))
    assert img.problems == []
    assert [e.key for e in img.entries] == ["a", "big", "z"]
    assert img.get("ns", "big").value == blob


def test_duplicate_key_later_wins():
    img = read_nvs(generate([("ns", "namespace", None), ("a", "u8", 1), ("b", "u8", 9), ("a", "i32", -5)]))
    assert [(e.key, e.type, e.value) for e in img.entries] == [("b", "u8", 9), ("a", "i32", -5)]


def test_erased_entry_is_ignored():
    data = bytearray(generate([("ns", "namespace", None), ("a", "u8", 1), ("s", "string", "abc" * 20)]))
    page, i = find_entry(data, "s")
    for j in range(i, i + data[entry_offset(page, i) + 2]):
        set_entry_state(data, page, j, f.ENTRY_ERASED)
    img = read_nvs(bytes(data))
    assert [e.key for e in img.entries] == ["a"] and img.problems == []


def test_bad_entry_crc_skipped_and_recorded():
    data = bytearray(generate([("ns", "namespace", None), ("a", "u8", 1), ("b", "u8", 2)]))
    page, i = find_entry(data, "a")
    data[entry_offset(page, i) + 24] ^= 0x01          # value changed, CRC now wrong
    img = read_nvs(bytes(data))
    assert [e.key for e in img.entries] == ["b"]
    assert any("bad entry CRC" in p for p in img.problems)


def test_bad_string_data_crc_skipped():
    data = bytearray(generate([("ns", "namespace", None), ("s", "string", "hello world"), ("b", "u8", 2)]))
    page, i = find_entry(data, "s")
    data[entry_offset(page, i + 1)] ^= 0x20
    img = read_nvs(bytes(data))
    assert [e.key for e in img.entries] == ["b"]
    assert any("bad data CRC" in p for p in img.problems)


def test_interrupted_string_write_skipped():
    data = bytearray(generate([("ns", "namespace", None), ("a", "u8", 1), ("s", "string", "y" * 100)]))
    page, i = find_entry(data, "s")
    set_entry_state(data, page, i + 2, f.ENTRY_EMPTY)     # data entries not all marked written
    img = read_nvs(bytes(data))
    assert [e.key for e in img.entries] == ["a"]
    assert any("interrupted" in p for p in img.problems)


def test_missing_blob_chunk_skipped():
    blob = os.urandom(6000)
    data = bytearray(generate([("ns", "namespace", None), ("big", "binary", blob)]))
    page, i = find_entry(data, "big", f.TYPE_BLOB_DATA)
    set_entry_state(data, page, i, f.ENTRY_ERASED)
    img = read_nvs(bytes(data))
    assert img.get("ns", "big") is None
    assert any("incomplete" in p for p in img.problems)


def test_bad_page_header_crc_skips_page():
    rows = [("ns", "namespace", None)] + [(f"k{i}", "u32", i) for i in range(200)]
    data = bytearray(generate(rows))
    data[4] ^= 0xFF                                       # sequence number of page 0
    img = read_nvs(bytes(data))
    assert any("page 0: bad header CRC" in p for p in img.problems)
    # namespace entry was on page 0: the rest of page 1 has an undeclared namespace
    assert img.entries == []


def test_pages_ordered_by_sequence_number():
    rows = [("ns", "namespace", None), ("a", "u8", 1)] + [(f"k{i}", "u8", 0) for i in range(130)] + [("a", "u8", 2)]
    data = generate(rows, size=0x4000)
    swapped = data[0x1000:0x2000] + data[0x0000:0x1000] + data[0x2000:]
    for image in (data, swapped):
        img = read_nvs(image)
        assert img.problems == []
        assert img.get("ns", "a").value == 2
        assert [e.key for e in img.entries][-1] == "a"


def test_unknown_page_state_recorded():
    data = bytearray(generate([("ns", "namespace", None), ("a", "u8", 1)]))
    data[0x1000:0x1004] = struct.pack("<I", 0x12345678)   # page 1 garbage, page 0 fine
    img = read_nvs(bytes(data))
    assert img.get("ns", "a").value == 1
    assert any("unknown page state" in p for p in img.problems)


def test_blob_version_1_entry():
    payload = b"legacy blob"
    data = bytearray(b"\xff" * 0x3000)
    data[0:32] = f.pack_page_header(f.PAGE_ACTIVE, 0, f.PAGE_VERSION_1)
    entries = f.pack_entry(0, f.TYPE_U8, 1, f.CHUNK_ANY, b"ns", f.pack_primitive("u8", 1))
    entries += f.pack_entry(1, f.TYPE_BLOB, 2, f.CHUNK_ANY, b"old", f.varlen_data(len(payload), f.crc32(payload)))
    entries += payload.ljust(32, b"\xff")
    data[64:64 + len(entries)] = entries
    for i in range(3):
        set_entry_state(data, 0, i, f.ENTRY_WRITTEN)
    img = read_nvs(bytes(data))
    assert img.problems == [] and img.get("ns", "old").value == payload


VALID = generate([("ns", "namespace", None), ("a", "u8", 1), ("s", "string", "text" * 30),
                  ("b", "binary", bytes(range(256)) * 20), ("ns2", "namespace", None), ("c", "i32", -7)], size=0x5000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=3 * 4096) | st.integers(1, 3).flatmap(
    lambda n: st.binary(min_size=n * 4096, max_size=n * 4096)))
def test_fuzz_random_bytes(data):
    try:
        result = read_nvs(data)
    except InputError:
        return
    assert isinstance(result, NvsImage)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=12))
def test_fuzz_mutated_valid_image(changes):
    data = bytearray(VALID)
    for pos, value in changes:
        data[pos] = value
    try:
        result = read_nvs(bytes(data))
    except InputError:
        return
    assert isinstance(result, NvsImage)
    for e in result.entries:
        assert e.type in f.VALUE_TYPES
