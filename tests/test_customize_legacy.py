"""``atfab customize --image`` on legacy (G1/G2) images: every block version, the firmware's power unit,
and the bytes esp-at's ``tools/at.py modify_bin`` (v3.0.0.0) writes, except byte 7 (the firmware reads the
last channel there, reference §10.4). bench/legacy_parity.py --at-py runs the real at.py beside the project."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.image.legacy_factory import decode_block


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def at_py(block: bytes, **opts: object) -> bytes:
    """at.py v3.0.0.0 modify_bin's writes: struct '<HBBBbBB 4c i bbbbbbH 32c 32c', each given field packed."""
    fmt = struct.Struct("<HBBBbBB4si6bH32s32s")
    f = list(fmt.unpack_from(block))
    where = {"tx_power": 3, "uart_num": 4, "start_channel": 5, "channel_number": 6, "baud": 8, "tx_pin": 9,
             "rx_pin": 10, "cts_pin": 11, "rts_pin": 12}
    for name, value in opts.items():
        if name == "country_code":
            f[7] = str(value).encode().ljust(4, b"\0")[:4]
        elif name == "module_name":
            f[17] = str(value).encode().ljust(32, b"\0")[:32]
        else:
            v = int(value)
            f[where[name]] = v if v >= 0 else -1
    return fmt.pack(*f) + block[fmt.size:]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    base = tmp_path_factory.mktemp("legacy-customize")
    out = {}
    for release, module in (("v1.2.0.0", "esp32-at-v1.2"), ("v2.0.0.0", "esp32-at-v2"), ("v2.1.0.0", "esp32-at-v2"),
                            ("v3.0.0.0", "esp32-at-v2"), ("v3.0.0.0", "esp32c2-2mb-at-v3.0")):
        folder = base / f"{module}-{release}"
        res = run("build", "-m", module, "--synthetic-firmware", release, "-o", folder, "--json")
        assert res.exit_code == 0, res.output
        manifest = json.loads(res.output)
        offset = next(int(p["offset"], 16) for p in manifest["partitions"] if p["name"] == "factory_param")
        out[f"{module}@{release}"] = (folder / manifest["factory_image"]["name"], offset)
    return out


CASES = [
    (["--baud", "921600", "--country", "US"], {"baud": 921600, "country_code": "US"}),
    (["--tx-pin", "4", "--rx-pin", "5", "--cts-pin", "-1", "--rts-pin", "-1"],
     {"tx_pin": 4, "rx_pin": 5, "cts_pin": -1, "rts_pin": -1}),
    (["--start-channel", "1", "--channel-num", "11"], {"start_channel": 1, "channel_number": 11}),
]


@pytest.mark.parametrize("key", ["esp32-at-v1.2@v1.2.0.0", "esp32-at-v2@v2.0.0.0", "esp32-at-v2@v2.1.0.0",
                                 "esp32-at-v2@v3.0.0.0", "esp32c2-2mb-at-v3.0@v3.0.0.0"])
def test_every_block_version_matches_at_py(images, tmp_path, key):
    image, offset = images[key]
    data = image.read_bytes()
    block = data[offset:offset + 4096]
    version = block[2]
    cases = list(CASES)
    if version >= 2:
        cases.append((["--uart-num", "0"], {"uart_num": 0}))
    if version == 3:
        cases.append((["--module-name", "MY-MODULE"], {"module_name": "MY-MODULE"}))
    power = 5 if key.endswith("v1.2.0.0") else 60          # G1: a level; G2 (also v2.0's version 1 block): 0.25 dBm
    cases.append((["--tx-power", str(power)], {"tx_power": power}))
    for i, (opts, at_opts) in enumerate(cases):
        out = tmp_path / f"o{i}.bin"
        res = run("customize", "--image", image, "-o", out, *opts)
        assert res.exit_code == 0, (opts, res.output)
        new = out.read_bytes()
        assert new[:offset] == data[:offset] and new[offset + 4096:] == data[offset + 4096:]
        assert new[offset:offset + 4096] == at_py(block, **at_opts), opts


def test_documented_differences_and_refusals(images, tmp_path):
    image, offset = images["esp32-at-v2@v3.0.0.0"]
    block = image.read_bytes()[offset:offset + 4096]
    out = tmp_path / "ch.bin"
    assert run("customize", "--image", image, "-o", out, "--start-channel", "3", "--channel-num", "9").exit_code == 0
    new = out.read_bytes()[offset:offset + 4096]
    theirs = at_py(block, start_channel=3, channel_number=9)
    assert [i for i in range(4096) if new[i] != theirs[i]] == [7] and new[7] == 11 and theirs[7] == 9
    assert decode_block(new)["firmware"]["channels"] == (3, 9)

    g1, g1_off = images["esp32-at-v1.2@v1.2.0.0"]
    for opts, field, text in ((["--tx-power", "60"], "--tx-power", "0..11"),
                              (["--uart-num", "0"], "--uart-num", "without a uart_port"),
                              (["--module-name", "X"], "--module-name", "without a module_name")):
        res = run("customize", "--image", g1, "-o", tmp_path / "no.bin", *opts)
        assert res.exit_code == 2 and field in res.output and text in res.output, res.output
        assert not (tmp_path / "no.bin").exists()
    bare = tmp_path / "factory_param.bin"
    bare.write_bytes(g1.read_bytes()[g1_off:g1_off + 4096])
    res = run("customize", "--image", bare, "-o", tmp_path / "b.bin", "--tx-power", "6")
    assert res.exit_code == 2 and "--module" in res.output                 # version 1: level or 0.25 dBm?
    res = run("customize", "--image", bare, "-o", tmp_path / "b.bin", "--tx-power", "6", "--module", "esp32-at-v1.2")
    assert res.exit_code == 0 and (tmp_path / "b.bin").read_bytes()[4] == 6
    res = run("customize", "--image", images["esp32-at-v2@v2.0.0.0"][0], "-o", tmp_path / "c.bin", "--tx-power", "6")
    assert res.exit_code == 2 and "40..84" in res.output
