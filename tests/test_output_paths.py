"""Output paths are checked before any work (issue 12), and state files holding keys are 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from atfab.core.errors import InputError
from atfab.core.outputs import check_output
from atfab.sim.flash import NorFlash


def test_check_output_accepts_new_and_existing_places(tmp_path: Path) -> None:
    assert check_output(tmp_path / "a" / "b" / "out.bin", "image") == tmp_path / "a" / "b" / "out.bin"
    (tmp_path / "old.bin").write_bytes(b"x")
    check_output(tmp_path / "old.bin", "image")
    check_output(tmp_path, "folder", kind="dir")
    check_output(tmp_path / "new", "folder", kind="dir")


@pytest.mark.parametrize("where, kind, why", [
    ("file/sub/out", "file", "is a file, not a folder"),
    ("file", "dir", "not a directory"),
    ("dir", "file", "is a directory"),
    ("/proc/self/x", "file", "under /proc"),
    ("/sys/x", "dir", "under /sys"),
    ("/dev/null", "file", "under /dev"),
])
def test_check_output_refuses(tmp_path: Path, where: str, kind: str, why: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    path = Path(where) if where.startswith("/") else tmp_path / where
    with pytest.raises(InputError) as info:
        check_output(path, "thing", kind=kind, field="-o")
    text = str(info.value)
    assert why in text and "cannot write thing" in text and "\n" not in text and str(path) in text


def test_sim_state_file_is_0600(tmp_path: Path) -> None:
    """The virtual module's flash file holds the unit's private key once provisioned."""
    path = tmp_path / "state" / "module-0.flash"
    flash = NorFlash(0x10000, path)
    del flash
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)                    # a state file written before the rule
    NorFlash(0x10000, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
