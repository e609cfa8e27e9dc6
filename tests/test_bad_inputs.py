"""Bad-input corpus (issue 8): every malformed input gives one error line, exit 2, and writes nothing.

The cases are listed in ``tests/bad_inputs/cases.toml`` (format in its header). Committed inputs
live next to it; binaries, big files and everything key-shaped are made at test time by the
generators in ``tests/bad_input_generators.py`` (``gen = "<name>"``), so no private key is ever committed.

Each case runs through the real CLI (``atfab.cli.main`` under click's CliRunner, standalone mode,
exceptions not caught so a traceback fails the test); :func:`test_subprocess_matches` runs a few
through ``python -m atfab.cli`` and checks the user sees the same line and exit code.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import stat
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from atfab.cli import main

from tests.bad_input_generators import CORPUS, GENERATORS, REPO, _legacy, _write
import tests.bad_input_hostile  # noqa: F401  (registers the hostile generators)
import tests.bad_input_checks  # noqa: F401  (and the recipes only a run would meet)

MANIFEST = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))
SENTINEL = "sentinel: this output existed before the failing command\n"


# ------------------------------------------------------------------------------- harness

ENTRY_KEYS = {"expect", "setup", "gen", "names", "lines", "out_exists", "isolate", "cmd"}
TEMPLATE_KEYS = {"cmd", "setup", "out", "stream", "env", "gen", "names", "isolate"}

#: Every case must end within this many seconds (a hang fails the case instead of the suite).
CASE_TIMEOUT_S = 60.0
#: In process, the peak resident memory may grow by at most this much during a case; an
#: ``isolate = true`` case runs as a subprocess whose address space is capped at ISOLATED_AS.
MEMORY_GROWTH_CAP = 256 << 20
ISOLATED_AS = 2 << 30


def _load_cases() -> dict[str, dict[str, Any]]:
    """Case id "<template>:<key>" -> the template's fields updated by the entry's."""
    cases: dict[str, dict[str, Any]] = {}
    for tname, entries in MANIFEST["cases"].items():
        template = MANIFEST["template"][tname]
        assert set(template) <= TEMPLATE_KEYS, (tname, set(template) - TEMPLATE_KEYS)
        for key, entry in entries.items():
            entry = {"expect": entry} if isinstance(entry, list) else dict(entry)
            assert set(entry) <= ENTRY_KEYS, (tname, key, set(entry) - ENTRY_KEYS)
            case = {**template, **entry}
            source = key.split("#")[0]       # "#label" tells two cases of one input apart
            if source.startswith("gen:"):
                case["gen"] = source[4:]
            else:
                case["file"] = source
            cases[f"{tname}:{key}"] = case
    return cases


CASES = _load_cases()


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (hidden ones too) -> content hash ("dir" for folders)."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        mode = p.lstat().st_mode
        if stat.S_ISLNK(mode):
            out[rel] = "link:" + os.readlink(p)
        elif stat.S_ISDIR(mode):
            out[rel] = "dir"
        elif not stat.S_ISREG(mode):
            out[rel] = f"special:{stat.S_IFMT(mode):o}"      # a FIFO: never opened here
        elif p.stat().st_size > 64 << 20:
            out[rel] = f"big:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _prepare(name: str, case: dict[str, Any], ws: Path) -> tuple[list[str], dict[str, str]]:
    """Build the case's workspace; returns (argv, env)."""
    values: dict[str, Path] = {}
    if "file" in case:
        values["file"] = CORPUS / case["file"]
    if "gen" in case:
        values.update(GENERATORS[case["gen"]](ws))
    setup = case.get("setup", "")
    kind, _, target = setup.partition(":")
    source = values.get("pki_file", values.get("file"))
    if kind == "profile":
        folder = ws / "profile" / "esp32c2-bad"
        shutil.copytree(REPO / "partitions" / "esp32c2-4mb", folder)
        shutil.copyfile(source, folder / target)
        values["profile"] = folder
    elif kind == "pki":
        dest = ws / "pki" / target / Path(source).name
        dest.parent.mkdir(parents=True)
        shutil.copyfile(source, dest)
        values["pki"] = ws / "pki"
    elif setup:
        raise AssertionError(f"{name}: unknown setup {setup!r}")
    out = case.get("out")
    values["out"] = ws / ("OUT" if out != "file" else "out.file")
    if case.get("out_exists"):
        if out == "dir":
            values["out"].mkdir()
            (values["out"] / "sentinel.txt").write_text(SENTINEL)
        else:
            values["out"].write_text(SENTINEL)
    argv = [part.format(**{k: str(v) for k, v in values.items()}) for part in case["cmd"]]
    case["_named"] = case.get("names", Path(values.get("pki_file") or values["file"]).name
                              if "file" in values or "pki_file" in values else "")
    return argv, {k: str(v) for k, v in case.get("env", {}).items()}


def _check_result(name: str, case: dict[str, Any], exit_code: int, stdout: str, stderr: str) -> str:
    """Assert the issue-8 contract on one result; returns the error line(s)."""
    stream = case.get("stream", "stderr")
    text, other = (stderr, stdout) if stream == "stderr" else (stdout, stderr)
    both = stdout + stderr
    assert "Traceback" not in both, f"{name}: traceback\n{both}"
    assert exit_code == case.get("exit", 2), f"{name}: exit {exit_code}\n{both}"
    assert other == "", f"{name}: unexpected output on the other stream: {other!r}"
    lines = text.splitlines()
    assert len(lines) == case.get("lines", 1), f"{name}: expected {case.get('lines', 1)} line(s), got:\n{text}"
    first = lines[0]
    if stream == "stderr":
        assert first.startswith("atfab: error: "), f"{name}: {first!r}"
    named = case["_named"]
    if named:
        assert named in first, f"{name}: the error does not name {named!r}: {first!r}"
    for want in case.get("expect", []):
        assert want in first, f"{name}: {want!r} missing from {first!r}"
    # the problem itself is said: more than the file name and a field
    message = first.removeprefix("atfab: error: ")
    assert len(message.rsplit(": ", 1)[-1]) >= 3, f"{name}: no problem text in {first!r}"
    assert "PRIVATE KEY" not in both and "\x1b" not in both, f"{name}: {both!r}"
    return text


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # Linux: KiB


def _run_guarded(name: str, argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The CLI in process, on a thread that must end within CASE_TIMEOUT_S, growing the peak
    resident memory by at most MEMORY_GROWTH_CAP."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = CliRunner().invoke(main, argv, env=env, catch_exceptions=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            box["exc"] = exc

    peak = _max_rss()
    worker = threading.Thread(target=target, name=f"bad-input {name}", daemon=True)
    worker.start()
    worker.join(CASE_TIMEOUT_S)
    assert not worker.is_alive(), f"{name}: hangs (no exit within {CASE_TIMEOUT_S:.0f} s)"
    if "exc" in box:
        raise box["exc"]
    grown = _max_rss() - peak
    assert grown <= MEMORY_GROWTH_CAP, f"{name}: peak memory grew by {grown >> 20} MiB"
    result = box["result"]
    return result.exit_code, result.stdout, result.stderr


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ISOLATED_AS, ISOLATED_AS))


def _run_isolated(argv: list[str], env: dict[str, str], ws: Path) -> tuple[int, str, str]:
    """``python -m atfab.cli`` with its address space capped and a timeout (a hang or runaway
    memory fails the case, never the test process)."""
    proc = subprocess.run([sys.executable, "-m", "atfab.cli", *argv], cwd=ws, capture_output=True, text=True,
                          timeout=CASE_TIMEOUT_S, preexec_fn=_limit_memory, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env, "PYTHONWARNINGS": "ignore"})
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    case = dict(CASES[name])
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    argv, env = _prepare(name, case, ws)
    before = _snapshot(ws)
    inputs_before = _snapshot(CORPUS) if "file" in case else None
    if case.get("isolate"):
        code, stdout, stderr = _run_isolated(argv, env, ws)
    else:
        code, stdout, stderr = _run_guarded(name, argv, env)
    _check_result(name, case, code, stdout, stderr)
    after = _snapshot(ws)
    assert after == before, f"{name}: the workspace changed: " \
        f"{sorted(set(after.items()) ^ set(before.items()))}"
    if inputs_before is not None:
        assert _snapshot(CORPUS) == inputs_before, f"{name}: the corpus changed"


def test_corpus_count():
    committed = [c for c in CASES.values() if "file" in c]
    generated = [c for c in CASES.values() if "file" not in c]
    kinds = sorted({c.get("file", c.get("gen", "")).split("/")[0] for c in committed})
    print(f"\nbad-input corpus: {len(CASES)} cases ({len(committed)} on committed files, {len(generated)} on "
          f"inputs generated at test time); committed kinds: {', '.join(kinds)}")
    assert len(CASES) >= 100, f"only {len(CASES)} cases"


def test_manifest_is_consistent():
    for name, case in CASES.items():
        if "file" in case:
            assert (CORPUS / case["file"]).is_file(), name
        if "gen" in case:
            assert case["gen"] in GENERATORS, name
        if "{out}" in case["cmd"]:
            assert case.get("out") in ("dir", "file"), name
    # every committed file is a case input or referenced by a recipe case
    used = {c["file"] for c in CASES.values() if "file" in c}
    recipes = "\n".join((CORPUS / u).read_bytes().decode("utf-8", "replace") for u in used if u.endswith(".toml"))
    for p in CORPUS.rglob("*"):
        if not p.is_file() or p.name == "cases.toml":
            continue
        rel = str(p.relative_to(CORPUS))
        assert rel in used or p.name in recipes, f"{rel} is not used by any case"
        data = p.read_bytes()
        assert len(data) <= 20_000, p
        assert b"PRIVATE KEY" not in data, p


def test_legacy_block_with_bad_channel_bytes_can_change_other_fields(tmp_path: Path):
    """Fixed: the invalid channel bytes of an old block used to fail an unrelated --baud change
    (with an error that named no file). They are now kept as they are."""
    image = _write(tmp_path, "legacy.bin", _legacy(b6=10, b7=5))
    out = tmp_path / "out.bin"
    res = CliRunner().invoke(main, ["customize", "--image", str(image), "-o", str(out), "--baud", "921600"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    before, after = image.read_bytes(), out.read_bytes()
    assert [i for i in range(len(before)) if before[i] != after[i]] == [13, 14]   # uart_baudrate bytes only


#: A few cases of each command, run as a user runs them.
SUBPROCESS_CASES = ["check:recipes/fp_tx_power_range.toml", "build_params:params/custom_bad_hex.toml",
                    "profile_primary:partition_csv/overlap.csv", "gatt_check:gatt/notify_without_cccd.csv",
                    "ca_import:pem/cert_garbage_body.pem", "inspect:gen:ptbin_bad_md5",
                    "pki_dir:gen:key_garbled_body", "report_show:reports/garbage.json",
                    "customize:gen:cz_factory_bad_md5", "ledger_list:ledger/garbage.sqlite"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_subprocess_matches(name: str, tmp_path: Path):
    case = dict(CASES[name])
    ws = tmp_path / "ws"
    ws.mkdir()
    argv, env = _prepare(name, case, ws)
    before = _snapshot(ws)
    proc = subprocess.run([sys.executable, "-m", "atfab.cli", *argv], cwd=ws, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env, "PYTHONWARNINGS": "ignore"})
    text = _check_result(name, case, proc.returncode, proc.stdout, proc.stderr)
    assert _snapshot(ws) == before
    in_process = CliRunner().invoke(main, argv, env=env, catch_exceptions=False)
    assert in_process.exit_code == proc.returncode
    assert (in_process.stderr or in_process.stdout) == text
