"""The checkout stands alone: tests read nothing beside it, and no private key is committed."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from tests.paths import DATA, MODULE_CONFIG, RAW_DATA, REPO
from tests.secret_scan import PLAINTEXT_BLOCK

#: A path to the reference material beside the checkout (``../shared``, ``/work/shared``,
#: ``parents[2] / "shared"``) or the variable that used to point there.
OUTSIDE = re.compile(r"""\.\./shared|/work/shared|["']shared["']\s*\)?\s*/|/\s*["']shared["']|ATFAB_SHARED""")


def _ignored_patterns() -> list[tuple[str, bool]]:
    """(pattern, anchored at the top) of .gitignore's plain lines (negations are not needed here)."""
    out = [(".git", True)]
    for line in (REPO / ".gitignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            out.append((line.strip("/"), line.startswith("/")))
    return out


def _tree_files(root: Path):
    """The files of ``root`` that git would commit (what .gitignore leaves; CI's copy has no .git)."""
    patterns = _ignored_patterns()
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(REPO).parts
        if any(fnmatch.fnmatch(parts[0] if anchored else part, pattern)
               for pattern, anchored in patterns for part in parts):
            continue
        if path.is_file() and not path.is_symlink():
            yield path


def test_tests_read_nothing_beside_the_checkout():
    offenders = [f"{p.relative_to(REPO)}:{n}: {line.strip()}"
                 for p in _tree_files(REPO / "tests") if p.suffix == ".py" and p.name != Path(__file__).name
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert offenders == []


def test_reference_data_is_inside_the_checkout():
    assert DATA.is_relative_to(REPO) and MODULE_CONFIG.is_relative_to(REPO)
    assert len(list(MODULE_CONFIG.glob("*/*.csv"))) == 40
    assert (RAW_DATA / "client_key" / "client_key_00.key").is_file()       # made at test time
    assert not RAW_DATA.is_relative_to(REPO)


def test_no_private_key_is_committed():
    """No plaintext PEM private-key block in any file of the checkout (keys are made at test time)."""
    found = [str(p.relative_to(REPO)) for p in _tree_files(REPO) if PLAINTEXT_BLOCK.search(p.read_bytes())]
    assert found == []
