"""Helpers of the runner/station tests: a test recipe with its own CA, and report checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

from atfab.pki.ca import create_ca
from atfab.station.recipe import Recipe, load_recipe
from atfab.station.report import SCHEMA, read_report

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = REPO / "recipes" / "esp32c2-4mb-default.toml"
PASSPHRASE = "station test passphrase"


def write_recipe(tmp: Path, *, retry: str | None = None, name: str = "recipe.toml") -> Path:
    """The default recipe with its CA in ``tmp/ca`` (created once), optionally another [retry] table."""
    ca_dir = tmp / "ca"
    if not (ca_dir / "ca.crt").exists():
        create_ca(ca_dir, common_name="Station Test CA", organization="atfab tests", passphrase=PASSPHRASE.encode())
    text = DEFAULT_RECIPE.read_text(encoding="utf-8")
    text = text.replace('ca = "../certs/demo-ca"', f'ca = "{ca_dir}"').replace("demo_ca = true", "demo_ca = false")
    if retry is not None:
        text = re.sub(r"\[retry\]\n(?:[^\[\n].*\n)*", f"[retry]\n{retry}\n\n", text)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp: Path, **kw) -> Recipe:
    return load_recipe(write_recipe(tmp, **kw), workdir=tmp)


def load_ca(tmp: Path):
    from atfab.pki.ca import load_ca as _load

    return _load(tmp / "ca", PASSPHRASE.encode())


REQUIRED = {"schema", "outcome", "error", "attempt_id", "attempt", "retry_of", "started", "ended", "duration_s",
            "recipe", "station", "unit", "firmware", "images", "certificates", "tools", "steps", "measurements",
            "transcript"}


def check_report(path: Path) -> dict:
    """Load a report file and check it against the ``atfab.unit-report/1`` layout; returns the JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == SCHEMA
    assert REQUIRED <= set(data), REQUIRED - set(data)
    assert data["outcome"] in ("PASS", "FAIL", "ERROR", "ABORTED")
    assert set(data["recipe"]) >= {"name", "hash", "path"} and data["recipe"]["hash"].startswith("sha256:")
    assert set(data["unit"]) == {"chip", "mac", "serial"}
    assert set(data["station"]) >= {"id", "operator", "port"}
    for step in data["steps"]:
        assert step["outcome"] in ("ok", "fail", "error", "skipped", "aborted")
        assert step["started"] <= step["ended"]
    for m in data["measurements"]:
        assert set(m) >= {"name", "expected", "measured", "rule", "outcome"}
    for c in data["certificates"]:
        assert re.fullmatch(r"[0-9a-f]{64}", c["fingerprint_sha256"])
    assert "PRIVATE KEY" not in path.read_text(encoding="utf-8")
    rep = read_report(path)                       # the project's own parser accepts it
    assert rep.attempt_id == data["attempt_id"]
    return data
