"""customize --image writes only inside the mfg_nvs region of an image whose layout it proved (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from atfab.cli import main
from atfab.customize.layout import declared_flash_size, unchanged_outside
from atfab.image.locate import locate
from atfab.image.profiles import load_profile

from tests.bad_input_generators import _factory_image


def _outside(before: bytes, after: bytes, start: int, end: int) -> list[int]:
    """Offsets outside ``start..end`` where the two images differ (every byte compared)."""
    assert len(before) == len(after)
    return [i for i in range(len(before)) if (i < start or i >= end) and before[i] != after[i]]


@pytest.mark.parametrize("module, options", [
    ("esp32c2-4mb", ["--baud", "921600", "--tx-power", "60", "--country", "US"]),
    ("esp32c2-2mb", ["--module-name", "ACME-C2", "--start-channel", "1", "--channel-num", "11"]),
])
def test_every_byte_outside_mfg_nvs_is_unchanged(tmp_path: Path, module: str, options: list[str]) -> None:
    profile = load_profile(module)
    before = _factory_image(module)
    src, out = tmp_path / "factory.bin", tmp_path / "out.bin"
    src.write_bytes(before)
    res = CliRunner().invoke(main, ["customize", "--image", str(src), "-o", str(out), *options],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    after = out.read_bytes()
    mfg = profile.mfg_nvs
    assert len(after) == len(before) == profile.flash_size
    assert _outside(before, after, mfg.offset, mfg.end) == []        # byte by byte, the whole flash
    assert before[mfg.offset:mfg.end] != after[mfg.offset:mfg.end]
    assert unchanged_outside(before, after, mfg.offset, mfg.size)
    assert src.read_bytes() == before                                  # the input is never touched


def test_the_flash_size_comes_from_the_image_headers() -> None:
    data = _factory_image("esp32c2-4mb")
    assert declared_flash_size(data, locate(data)) == 0x400000
    assert declared_flash_size(b"\xff" * 0x10000) is None


def test_a_garbage_primary_table_is_refused_not_taken_for_a_bare_mfg_nvs(tmp_path: Path) -> None:
    """The brick of issue 12: the whole image was taken as a bare mfg_nvs and rewritten (exit 0)."""
    data = bytearray(_factory_image("esp32c2-4mb"))
    data[0x8000:0x8C00] = bytes((i * 131 + 7) & 0xFF for i in range(0xC00))
    src, out = tmp_path / "factory.bin", tmp_path / "out.bin"
    src.write_bytes(bytes(data))
    res = CliRunner().invoke(main, ["customize", "--image", str(src), "-o", str(out), "--baud", "921600"])
    assert res.exit_code == 2 and "cannot be proven" in res.stderr and len(res.stderr.splitlines()) == 1
    assert not out.exists() and src.read_bytes() == bytes(data)
