"""NvsEditor: firmware-like in-place edits on NOR flash, read back with read_nvs."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfab.core.errors import InputError
from atfab.image.nvs import NvsEditor, NvsFull, read_nvs
from atfab.image.nvs import format as f
from atfab.sim.flash import NorFlash
from tests.test_nvs_reader import generate


class PowerLoss(Exception):
    pass


def make(image: bytes | None = None, size: int = 0x6000, *, offset: int = 0x2000, fail_after: int | None = None):
    """A flash holding ``image`` at ``offset`` and an editor on that region. NorFlash.program
    reports bits that did not take; ``fail_after`` simulates a power loss on the Nth program."""
    flash = NorFlash(offset + size + 0x1000)
    if image is not None:
        assert flash.program(offset, image)
    calls = {"n": 0}

    def program(addr: int, data: bytes) -> bool:
        calls["n"] += 1
        if fail_after is not None and calls["n"] > fail_after:
            raise PowerLoss()
        return flash.program(offset + addr, data)

    editor = NvsEditor(lambda a, n: flash.read(offset + a, n), program,
                       lambda a: flash.erase(offset + a, f.PAGE_SIZE), size)

    def region() -> bytes:
        return flash.read(offset, size)

    return flash, editor, region


BASE = [("ns1", "namespace", None), ("a", "u8", 5), ("b", "i32", -1), ("s", "string", "hello"),
        ("ns2", "namespace", None), ("big", "binary", bytes(range(256)) * 40)]


def values(data: bytes) -> dict[tuple[str, str], tuple[str, object]]:
    img = read_nvs(data)
    assert img.problems == [], img.problems
    return {(e.namespace, e.key): (e.type, e.value) for e in img.entries}


def test_edits_on_generator_image():
    _, ed, region = make(generate(BASE))
    ed.set("ns1", "a", "u8", 7)
    ed.set("ns1", "b", "string", "now text")        # type change: old i32 erased
    ed.set("ns3", "new", "u16", 513)                # new namespace appended
    v = values(region())
    assert v[("ns1", "a")] == ("u8", 7)
    assert v[("ns1", "b")] == ("string", "now text")
    assert v[("ns3", "new")] == ("u16", 513)
    assert v[("ns2", "big")] == ("blob", bytes(range(256)) * 40)
    assert read_nvs(region()).namespaces() == ["ns1", "ns2", "ns3"]
    # the edited image is still a clean NVS for another editor / parse
    _, ed2, region2 = make(region())
    ed2.set("ns1", "a", "u8", 8)
    assert values(region2())[("ns1", "a")] == ("u8", 8)


def test_set_appends_then_erases_old():
    _, ed, region = make(generate(BASE))
    ed.set("ns1", "a", "u8", 9)
    img = read_nvs(region())
    assert [e.key for e in img.keys("ns1")] == ["b", "s", "a"]   # rewritten key moves to the end


def test_identical_write_changes_nothing():
    _, ed, region = make(generate(BASE))
    before = region()
    ed.set("ns1", "s", "string", "hello")
    ed.set("ns2", "big", "blob", bytes(range(256)) * 40)
    assert region() == before


def test_multi_page_blob_rewrites():
    _, ed, region = make(generate(BASE, 0x8000), size=0x8000)
    for n in (9000, 12, 5000, 0, 7777):
        blob = os.urandom(n)
        ed.set("ns2", "big", "blob", blob)
        assert values(region())[("ns2", "big")] == ("blob", blob)


def test_overwrite_until_pages_roll_over():
    _, ed, region = make(generate(BASE, 0x4000), size=0x4000)
    for i in range(600):                              # far more entries than the region holds
        ed.set("ns1", "counter", "u32", i)
        if i % 7 == 0:
            ed.set("ns1", "s", "string", f"text {i} " * 5)
    v = values(region())
    assert v[("ns1", "counter")] == ("u32", 599)
    assert v[("ns1", "s")] == ("string", "text 595 " * 5)
    assert v[("ns2", "big")] == ("blob", bytes(range(256)) * 40)


def test_blank_region_gets_initialised():
    _, ed, region = make(None, size=0x3000)
    ed.set("cfg", "k", "i8", -3)
    assert values(region()) == {("cfg", "k"): ("i8", -3)}


def test_erase_key_and_namespace():
    _, ed, region = make(generate(BASE))
    assert ed.erase_key("ns2", "big") is True
    assert ed.erase_key("ns2", "big") is False
    assert ed.erase_key("nope", "x") is False
    assert ed.erase_namespace("ns1") == 3
    img = read_nvs(region())
    assert img.entries == [] and img.problems == []
    assert img.namespaces() == ["ns1", "ns2"]           # namespaces stay declared
    assert ed.erase_namespace("ns1") == 0


def test_full_region_raises_nvs_full():
    _, ed, region = make(None, size=0x3000)
    with pytest.raises(NvsFull):
        for i in range(1000):
            ed.set("ns", f"k{i}", "u32", i)
    # what was written before is intact
    img = read_nvs(region())
    assert img.problems == [] and img.get("ns", "k0").value == 0
    with pytest.raises(NvsFull):
        ed.set("ns", "blob", "blob", os.urandom(20000))


def test_invalid_values_rejected():
    _, ed, _ = make(generate(BASE))
    with pytest.raises(InputError, match="does not fit u8"):
        ed.set("ns1", "a", "u8", 256)
    with pytest.raises(InputError):
        ed.set("ns1", "sixteen_chars_xx", "u8", 1)
    with pytest.raises(InputError):
        ed.set("ns1", "s", "string", "x" * 4000)
    with pytest.raises(InputError):
        ed.set("ns1", "s", "float", 1)


@pytest.mark.parametrize("kind", ["u32", "string", "blob"])
def test_power_loss_leaves_old_or_new(kind):
    old_value = {"u32": 1, "string": "old", "blob": b"o" * 4500}[kind]
    new_value = {"u32": 2, "string": "new" * 50, "blob": b"n" * 6000}[kind]
    base = generate([("ns", "namespace", None), ("x", {"u32": "u32", "string": "string", "blob": "binary"}[kind],
                      old_value), ("y", "u8", 1)])
    n = 0
    while True:
        _, ed, region = make(base, fail_after=n)
        try:
            ed.set("ns", "x", kind, new_value)
            done = True
        except PowerLoss:
            done = False
        img = read_nvs(region())
        got = img.get("ns", "x")
        assert got is not None and got.value in (old_value, new_value), n
        assert img.get("ns", "y").value == 1
        # the firmware (a fresh editor) carries on from whatever was left
        _, ed2, region2 = make(region())
        ed2.set("ns", "x", kind, new_value)
        assert values(region2())[("ns", "x")] == (kind, new_value)
        if done:
            break
        n += 1


OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(["n1", "n2"]), st.sampled_from(["a", "b", "c"]),
              st.sampled_from(["u8", "i32", "string", "blob"]), st.integers(0, 3000)),
    st.tuples(st.just("erase"), st.sampled_from(["n1", "n2"]), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("erase_ns"), st.sampled_from(["n1", "n2"])),
), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_random_operations_match_model(ops):
    _, ed, region = make(None, size=0x5000)
    model: dict[tuple[str, str], tuple[str, object]] = {}
    for op in ops:
        if op[0] == "set":
            _, ns, key, kind, n = op
            value = {"u8": n % 256, "i32": -n, "string": "s" * (n % 200), "blob": bytes([n % 256]) * n}[kind]
            ed.set(ns, key, kind, value)
            model[(ns, key)] = (kind, value)
        elif op[0] == "erase":
            assert ed.erase_key(op[1], op[2]) == ((op[1], op[2]) in model)
            model.pop((op[1], op[2]), None)
        else:
            gone = [k for k in model if k[0] == op[1]]
            assert ed.erase_namespace(op[1]) == len(gone)
            for k in gone:
                del model[k]
        assert values(region()) == model
