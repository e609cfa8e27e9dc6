"""tests/services.py: a missing service skips locally and fails under CI; a CI session with a skip fails."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import services
from tests.paths import REPO


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]          # nobody listens once it is closed


def test_missing_service_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setenv("ATFAB_TEST_MQTT_PORT", str(_closed_port()))
    monkeypatch.delenv(services.CI_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="MQTT broker .* not reachable"):
        services.require_mqtt()
    monkeypatch.setenv(services.CI_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="ATFAB_CI=1"):
        services.require_mqtt()


def test_reachable_service_is_returned(monkeypatch):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        monkeypatch.setenv("ATFAB_TEST_PG_PORT", str(srv.getsockname()[1]))
        monkeypatch.setenv(services.CI_ENV, "1")
        assert services.require_postgres() == f"host=127.0.0.1 port={srv.getsockname()[1]} dbname=test"


def test_missing_tool_and_data(monkeypatch, tmp_path):
    monkeypatch.setenv(services.CI_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-browser-42"):
        monkeypatch.setenv("ATFAB_TEST_BROWSER", "no-such-browser-42")
        services.require_browser()
    with pytest.raises(pytest.fail.Exception, match="reference file"):
        services.require((tmp_path / "nope").exists(), "reference file nope is missing")
    services.require(True, "never said")


@pytest.mark.parametrize("ci, code, workers", [("", 0, "0"), ("1", 1, "0"), ("1", 1, "2")])
def test_a_ci_session_with_a_skip_fails(tmp_path: Path, ci: str, code: int, workers: str):
    """The conftest hook: the same suite passes locally (one skip) and fails under ATFAB_CI=1,
    in one process and on pytest-xdist workers (the suite's default)."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    (tests / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tests / "services.py").write_text((REPO / "tests" / "services.py").read_text())
    (tests / "test_one.py").write_text(textwrap.dedent("""
        import pytest
        def test_ok(): pass
        def test_skipped(): pytest.skip("some data is missing")
    """))
    env = {"PATH": "/usr/bin:/bin", "ATFAB_CI": ci, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-n", workers, "--rootdir", str(tmp_path), str(tests)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    if code:
        assert "1 test(s) skipped, CI fails on any skip" in proc.stdout
        assert "test_skipped: some data is missing" in proc.stdout
