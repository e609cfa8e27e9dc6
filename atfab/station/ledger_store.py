"""The ledger's handle: the database connection, its schema checked (or migrated) when opened,
and transactions as functions (:class:`LedgerStore`). The parts of :class:`atfab.station.ledger.Ledger`
build on it, one idea each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import InputError
from .ledger_db import Database, DatabaseError, is_database_url, open_database, redact_url
from .ledger_records import LedgerError
from .ledger_schema import SCHEMA_VERSION, migrate, schema_version


class LedgerStore:
    """A handle on one ledger: a SQLite file path or a ``postgresql://`` URL. Thread-safe; share
    one per process or open one per worker.

    ``create=False`` refuses a missing SQLite file (:class:`InputError`) instead of making a new
    ledger. ``timeout`` is how long a transaction keeps trying while the database is busy or
    away (another writer holds the lock, PostgreSQL restarts) before :class:`LedgerError`.
    """

    def __init__(self, location: str | Path, *, create: bool = True, timeout: float = 30.0) -> None:
        self.url = str(location) if is_database_url(location) else None
        self.path = None if self.url else Path(location)
        self.location = redact_url(self.url) if self.url else str(self.path)
        self._db: Database = open_database(location, create=create, timeout=timeout)
        self._dialect = self._db.dialect
        try:
            version = schema_version(self._db)
            if not create and version == 0 and self.path is not None:
                raise InputError("not an atfab ledger (no ledger tables in it)", file=self.path)
            if version > SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.location} has schema {version}; this atfab knows up to {SCHEMA_VERSION}")
            if version < SCHEMA_VERSION:
                if self.url is not None and version > 0:
                    raise LedgerError(f"ledger {self.location} has schema {version}; this atfab needs "
                                      f"{SCHEMA_VERSION}: run `atfab ledger --ledger URL migrate` first")
                migrate(self._db)
        except DatabaseError as exc:
            self._db.close()
            if self.path is not None and "not a database" in str(exc):
                raise InputError(f"not a ledger: {exc.__cause__}", file=self.path) from None
            raise
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def migrate(cls, location: str | Path, *, timeout: float = 30.0) -> tuple[int, int]:
        """Bring the ledger at ``location`` to this atfab's schema; (version before, after)."""
        db = open_database(location, create=True, timeout=timeout)
        try:
            return migrate(db)
        finally:
            db.close()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect.name

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> "LedgerStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, work: Any, *, timeout: float | None = None) -> Any:
        return self._db.write(work, timeout=timeout)

    def _read(self, work: Any, *, snapshot: bool = False) -> Any:
        return self._db.read(work, snapshot=snapshot)

    @property
    def timeout(self) -> float:
        """Seconds a transaction keeps trying while the database is busy or away."""
        return self._db.timeout


__all__ = ["LedgerStore"]
