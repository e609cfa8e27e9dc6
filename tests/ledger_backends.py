"""Ledgers on both backends for tests: a SQLite file in a temporary folder, or a PostgreSQL
schema of its own in the machine's server (``tests.services.require_postgres``), dropped after."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from tests.services import require_postgres


def pg_url(schema: str) -> str:
    """A ``postgresql://`` URL of the test database whose tables live in ``schema``."""
    conninfo = dict(part.split("=", 1) for part in require_postgres().split())
    options = quote(f"-csearch_path={schema}")
    return f"postgresql://{conninfo['host']}:{conninfo['port']}/{conninfo['dbname']}?options={options}"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema in the test database: yields its ledger URL, drops it afterwards."""
    import psycopg

    conninfo = require_postgres()
    name = f"atfab_t_{secrets.token_hex(6)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield pg_url(name)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextmanager
def ledger_location(backend: str, tmp_path: Path) -> Iterator[str]:
    """The location of an empty ledger on ``backend`` (``sqlite`` or ``postgresql``)."""
    if backend == "sqlite":
        yield str(tmp_path / "line.sqlite")
    else:
        with pg_schema() as url:
            yield url


def terminate_backends(*pids: int) -> int:
    """Cut the server connections of the ledgers opened by processes ``pids`` (default: this
    one) — what a PostgreSQL restart does to its clients, without touching anyone else's
    connections; returns how many were cut."""
    import psycopg

    names = [f"atfab-{pid}" for pid in (pids or (os.getpid(),))]
    with psycopg.connect(require_postgres(), autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                            " AND application_name = ANY(%s)", (names,)).fetchall()
    return len(rows)
