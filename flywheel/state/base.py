"""The state store's connection: a SQLAlchemy engine for its URL (a SQLite file in WAL mode by
default, Postgres for several hosts), migrated on open, and the two ways a query runs: a read, or
a write transaction that holds the write lock from its start.

Every failure to reach the database is a :class:`~flywheel.errors.StoreUnavailable` naming the state
store; any other database failure a :class:`~flywheel.errors.FlywheelError`. No sqlite3 or psycopg
exception leaves this package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection

from flywheel.feedback.engine import (
    LOCK_TIMEOUT_SECONDS,
    create_store_engine,
    describe,
    store_errors,
    store_url,
)
from flywheel.schema_migrations import current_revision, migrate
from flywheel.state.migrate import STATE_SCHEMA

WHAT = "state store"


class StateConnection:
    """The engine and its guarded connections; the store's query modules build on it."""

    def __init__(self, where: Path | str, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        """``where``: a file path (SQLite) or a store URL (``sqlite:///PATH``, ``postgresql://...``)."""
        self.url = store_url(str(where))
        self.where = describe(self.url)
        self.path = Path(str(self.url.database)) if self.url.get_backend_name() == "sqlite" else None
        self._engine = create_store_engine(self.url, lock_timeout)
        try:
            with store_errors(self.url, "opened", WHAT):
                migrate(self._engine, self.where, STATE_SCHEMA)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def schema_version(self) -> str | None:
        """The Alembic revision the database is at."""
        with self._read() as conn:
            return current_revision(conn, STATE_SCHEMA)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with store_errors(self.url, "read", WHAT), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with store_errors(self.url, "written", WHAT), self._engine.connect() as conn:
            conn = conn.execution_options(flywheel_write=True)
            with conn.begin():
                yield conn

    def close(self) -> None:
        self._engine.dispose()
