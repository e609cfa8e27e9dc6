"""Byte transcripts of the real ESP-AT core, per release (tests/transcripts/<release>.toml).

Each transcript was written by hand from the ground-truth text (what the core's objects print,
docs/virtual-module.md "Ground truth"), never captured from the simulator. The simulator must
reproduce them byte for byte (tests/test_sim_transcripts.py) and the AT client must parse them.

File format: ``[firmware]`` (release, chip, factory module, base MAC) and ``[[transcript]]``
tables (name, ground-truth rows pinned, setup, steps of ``send``/``expect``). Strings are TOML
basic strings; the bytes are ``text.encode("latin-1")``. ``expect`` is everything the module
writes after ``send``, echo included (ATE1 is the default). Setups: ``factory`` = flashed as
``atfab build`` writes the module's images; ``blank_mfg`` = the same with mfg_nvs erased.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

TRANSCRIPTS = Path(__file__).parent / "transcripts"
SETUPS = ("factory", "blank_mfg")


@dataclass(frozen=True)
class Step:
    send: bytes
    expect: bytes


@dataclass(frozen=True)
class Transcript:
    release: str
    chip: str
    module: str
    mac: bytes
    name: str
    rows: tuple[str, ...]
    setup: str
    steps: tuple[Step, ...]
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.release}-{self.chip}-{self.name}"


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


def load_file(path: Path) -> list[Transcript]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    fw = data["firmware"]
    mac = bytes.fromhex(fw["mac"].replace(":", ""))
    out = []
    for t in data.get("transcript", []):
        setup = t.get("setup", "factory")
        assert setup in SETUPS, f"{path.name}: {t['name']}: unknown setup {setup!r}"
        steps = tuple(Step(_bytes(s.get("send", "")), _bytes(s["expect"])) for s in t["steps"])
        out.append(Transcript(fw["release"], t.get("chip", fw["chip"]), t.get("module", fw["module"]), mac,
                              t["name"], tuple(t.get("rows", ())), setup, steps, t.get("note", "")))
    return out


def load_release(release: str) -> list[Transcript]:
    return load_file(TRANSCRIPTS / f"{release}.toml")


def load_all() -> list[Transcript]:
    out: list[Transcript] = []
    for path in sorted(TRANSCRIPTS.glob("*.toml")):
        out += load_file(path)
    return out


__all__ = ["Step", "Transcript", "SETUPS", "TRANSCRIPTS", "load_all", "load_release", "load_file"]
