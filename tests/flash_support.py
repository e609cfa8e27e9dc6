"""Flashing helpers shared by the flasher tests (our virtual module and the independent ROM loader)."""

from __future__ import annotations

from pathlib import Path

from atfab.image.flash_set import load_flash_set
from atfab.link.flasher import Flasher
from tests.conftest import run_with_timeout

T = 60


def flash_url(url: str, folder: Path, **kwargs):
    """``Flasher(url).flash(set in folder)`` bounded in time (``force``/``baud`` and Flasher options)."""
    force = kwargs.pop("force", False)
    flasher = Flasher(url, baud=kwargs.pop("baud", 460800), **kwargs)
    return run_with_timeout(flasher.flash, T, load_flash_set(folder), force=force)


def actions(result) -> dict[str, str]:
    """Region name -> "written"/"skipped" of a flash result."""
    return {r.name: r.action for r in result.regions}
