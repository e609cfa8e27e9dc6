"""The ledger's schema as versioned migrations, the same on SQLite and PostgreSQL.

A ledger records its schema version in ``meta``. :func:`migrate` brings a database of any
older version (0: empty) to :data:`SCHEMA_VERSION` in one transaction, running every step in
order; a step is a statement for both engines (types written as ``{id}``/``{ref}``/``{real}``,
filled in by :meth:`~atfab.station.ledger_db.Dialect.ddl`) or a pair of engine-specific ones.
On PostgreSQL the migrating transaction holds an advisory lock, so two stations that migrate at
once take turns (the second finds nothing left to do).

Versions: 1 units, attempts, certificates, rotations, counters. 2 ``certificate_slots`` (one
certificate installed in several slots of its unit). 3 attempt ownership: ``owner`` (the
station process that runs the attempt), ``lease_until`` (database clock, seconds since 1970;
renewed while the attempt runs; once past, another station may close the attempt) and
``report_dir`` (where its report goes, so whoever closes it can write the report).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Union

from .ledger_db import Cursor, Database, DatabaseError

SCHEMA_VERSION = 3

#: A statement for both engines, or {"sqlite": ..., "postgresql": ...}.
Step = Union[str, Mapping[str, str]]

MIGRATIONS: dict[int, tuple[Step, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, next BIGINT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS units (
            id {id},
            mac TEXT NOT NULL UNIQUE,
            serial TEXT NOT NULL UNIQUE,
            recipe TEXT NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            last_outcome TEXT)""",
        """CREATE TABLE IF NOT EXISTS attempts (
            id {id},
            mac TEXT,
            serial TEXT,
            attempt INTEGER NOT NULL,
            recipe TEXT NOT NULL,
            station TEXT NOT NULL,
            port TEXT NOT NULL,
            operator TEXT,
            started TEXT NOT NULL,
            ended TEXT,
            outcome TEXT CHECK (outcome IS NULL OR outcome IN ('PASS', 'FAIL', 'ERROR', 'ABORTED')),
            report_path TEXT,
            retry_of {ref} REFERENCES attempts(id),
            detail TEXT)""",
        "CREATE INDEX IF NOT EXISTS attempts_by_mac ON attempts(mac)",
        """CREATE TABLE IF NOT EXISTS certificates (
            id {id},
            mac TEXT NOT NULL REFERENCES units(mac),
            slot TEXT NOT NULL,
            issuer TEXT NOT NULL,
            cert_serial TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            key_fingerprint TEXT,
            not_before TEXT,
            not_after TEXT,
            attempt_id {ref} REFERENCES attempts(id),
            created TEXT NOT NULL,
            UNIQUE (issuer, cert_serial))""",
        "CREATE INDEX IF NOT EXISTS certificates_by_mac ON certificates(mac)",
        """CREATE TABLE IF NOT EXISTS rotations (
            id {id},
            mac TEXT NOT NULL,
            slot TEXT NOT NULL,
            old_cert_fp TEXT,
            old_key_fp TEXT,
            new_cert_fp TEXT NOT NULL,
            new_key_fp TEXT,
            state TEXT NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            detail TEXT)""",
        "CREATE UNIQUE INDEX IF NOT EXISTS rotations_one_pending ON rotations(mac, slot)"
        " WHERE state NOT IN ('done', 'rolled_back')",
    ),
    2: (
        {"sqlite": """CREATE TABLE IF NOT EXISTS certificate_slots (
            certificate_id INTEGER NOT NULL REFERENCES certificates(id),
            slot TEXT NOT NULL,
            attempt_id INTEGER REFERENCES attempts(id),
            created TEXT NOT NULL,
            PRIMARY KEY (certificate_id, slot))""",
         "postgresql": """CREATE TABLE IF NOT EXISTS certificate_slots (
            certificate_id BIGINT NOT NULL REFERENCES certificates(id),
            slot TEXT NOT NULL,
            attempt_id BIGINT REFERENCES attempts(id),
            created TEXT NOT NULL,
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            PRIMARY KEY (certificate_id, slot))"""},
        # every certificate of a version-1 ledger was recorded for exactly one slot, its certificates.slot
        "INSERT INTO certificate_slots (certificate_id, slot, attempt_id, created)"
        " SELECT id, slot, attempt_id, created FROM certificates WHERE 1 = 1 ON CONFLICT DO NOTHING",
    ),
    3: (
        "ALTER TABLE attempts ADD COLUMN owner TEXT",
        "ALTER TABLE attempts ADD COLUMN lease_until {real}",
        "ALTER TABLE attempts ADD COLUMN report_dir TEXT",
        "CREATE INDEX IF NOT EXISTS attempts_open ON attempts(ended, lease_until)",
    ),
}

_PG_MIGRATION_LOCK = 0x61746661  # "atfa": pg_advisory_xact_lock key of schema changes


def schema_version(db: Database) -> int:
    """The schema version recorded in the database (0: no ledger tables yet)."""
    if not db.has_table("meta"):
        return 0
    return db.read(_read_version)


def _read_version(c: Cursor) -> int:
    row = c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return int(row["value"]) if row is not None else 0


def migrate(db: Database, *, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the database to ``target`` in one transaction; returns (version before, after).

    A database newer than this atfab knows is refused (:class:`DatabaseError`).
    """

    def work(c: Cursor) -> tuple[int, int]:
        if c.dialect.name == "postgresql":
            c.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
            has_meta = c.execute("SELECT to_regclass('meta') IS NOT NULL AS found").fetchone()["found"]
        else:
            has_meta = c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                                 ).fetchone() is not None
        current = _read_version(c) if has_meta else 0
        if current > target:
            raise DatabaseError(f"ledger {db.location} has schema {current}; this atfab knows up to {target}")
        for version in range(current + 1, target + 1):
            for step in MIGRATIONS[version]:
                text = step if isinstance(step, str) else step[c.dialect.name]
                c.execute(c.dialect.ddl(text))
        if current < target:
            c.execute("INSERT INTO meta (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE"
                      " SET value = excluded.value", (str(target),))
        return current, target

    return db.write(work)


__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "migrate", "schema_version"]
