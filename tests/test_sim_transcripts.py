"""The virtual module reproduces the hand-written ground-truth transcripts byte for byte.

Each transcript (tests/transcripts/<release>.toml, see tests/transcript_support.py) is played
against a module flashed as ``atfab build`` would flash the transcript's factory module at that
release; every reply must be exactly the transcript's bytes, and nothing more may follow.
"""

from __future__ import annotations

import pytest

from atfab.image.profiles import load_profile
from atfab.sim.flash import NorFlash
from tests.sim_at_support import FakeHost, Session, build_flash
from tests.transcript_support import Transcript, load_all

#: esp-at factory module -> the atfab module profile with its flash layout.
MODULE_PROFILES = {"ESP32C2-4MB": "esp32c2-4mb", "ESP32C2-2MB-BLE": "esp32c2-2mb-ble",
                   "ESP32C2-BLE-2MB": "esp32c2-2mb-ble"}

TRANSCRIPTS = load_all()


def flash_for(t: Transcript) -> tuple[NorFlash, object]:
    """A module flashed with the transcript's build (factory content), and its firmware profile."""
    profile = load_profile(MODULE_PROFILES[t.module])
    flash = build_flash(profile.for_release(t.release), mfg=t.setup != "blank_mfg", release=t.release)
    return flash, profile.firmware     # the module profile's default release: the sim must serve the flashed one


def test_transcripts_cover_the_supported_releases():
    assert {t.release for t in TRANSCRIPTS} >= {"v3.3.0.0", "v4.1.0.0", "v5.0.1.0", "master"}


@pytest.mark.parametrize("t", TRANSCRIPTS, ids=lambda t: t.id)
def test_sim_reproduces_transcript(t: Transcript):
    flash, firmware = flash_for(t)
    s = Session(FakeHost(flash=flash, firmware=firmware, mac=t.mac, chip=t.chip))
    try:
        assert s.boot_out == b"\r\nready\r\n"
        for i, step in enumerate(t.steps):
            if step.send:
                s.send(step.send)
            got = s.read_exact(len(step.expect))
            assert got == step.expect, f"step {i} ({step.send!r})"
        assert s.quiet(0.1) == b"", "bytes after the transcript's last reply"
    finally:
        s.close()
