"""Local services and tools a test needs: skip when one is missing, FAIL under CI.

On a developer's machine a test whose PostgreSQL, Mosquitto, browser or data is not there is
skipped with a clear reason. Under CI (``ATFAB_CI=1``, set by ``.ci/run``) the same test fails
instead, so a run never goes green by skipping what it was meant to prove. Use these helpers
instead of ``pytest.skip`` for anything the machine may lack::

    from tests.services import require_postgres, require_mqtt, require_browser, require

    def test_shared_ledger():
        dsn = require_postgres()            # "host=127.0.0.1 port=5432 dbname=test"
    def test_publish():
        host, port = require_mqtt()
    def test_page():
        chromium = require_browser()        # Path of the browser executable

Addresses can be moved with ``ATFAB_TEST_PG_HOST/PORT/DB``, ``ATFAB_TEST_MQTT_HOST/PORT`` and
``ATFAB_TEST_BROWSER``. ``tests/conftest.py`` also fails a CI session that skipped any test.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import NoReturn

import pytest

CI_ENV = "ATFAB_CI"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "firefox")


def in_ci() -> bool:
    """True when CI asked that a missing service or file fails the test (``ATFAB_CI=1``)."""
    return os.environ.get(CI_ENV, "") not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it under CI."""
    if in_ci():
        pytest.fail(f"{reason} ({CI_ENV}=1: CI must not skip this test)", pytrace=False)
    pytest.skip(reason)


def require(condition: object, reason: str) -> None:
    """:func:`missing` unless ``condition`` holds (e.g. a data file or an optional package)."""
    if not condition:
        missing(reason)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> tuple[str, int]:
    """``(host, port)`` of a local service that accepts TCP connections; else :func:`missing`."""
    if not reachable(host, port):
        missing(f"{name} is not reachable at {host}:{port}")
    return host, port


def require_postgres() -> str:
    """The libpq conninfo of the machine's PostgreSQL (trust auth, database ``test``)."""
    host = os.environ.get("ATFAB_TEST_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("ATFAB_TEST_PG_PORT", "5432"))
    db = os.environ.get("ATFAB_TEST_PG_DB", "test")
    require_service("PostgreSQL", host, port)
    return f"host={host} port={port} dbname={db}"


def require_mqtt() -> tuple[str, int]:
    """``(host, port)`` of the machine's Mosquitto broker."""
    return require_service("the MQTT broker (Mosquitto)",
                           os.environ.get("ATFAB_TEST_MQTT_HOST", "127.0.0.1"),
                           int(os.environ.get("ATFAB_TEST_MQTT_PORT", "1883")))


def require_executable(name: str, *, env: str | None = None) -> Path:
    """The path of program ``name`` (or of ``$env`` when set) on PATH; else :func:`missing`."""
    chosen = os.environ.get(env, "") if env else ""
    found = shutil.which(chosen or name)
    if found is None:
        missing(f"{chosen or name} is not installed (not on PATH)")
    return Path(found)


def require_browser() -> Path:
    """A headless-capable browser executable: ``$ATFAB_TEST_BROWSER``, else the first of
    :data:`BROWSERS` on PATH."""
    chosen = os.environ.get("ATFAB_TEST_BROWSER")
    if chosen:
        return require_executable(chosen)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return Path(found)
    missing(f"no browser found (looked for {', '.join(BROWSERS)}; set ATFAB_TEST_BROWSER)")
