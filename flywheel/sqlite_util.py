"""Opening SQLite files the same way everywhere: WAL journal, numbered migrations, clear errors.

A failure that waiting can cure (another writer's lock past the timeout, a file that cannot be opened
now, an I/O error) is a :class:`~flywheel.errors.StoreUnavailable`, as the feedback store's are, so
the faces catch one type; anything else (a corrupt file, a bug in a statement) stays what it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flywheel.errors import FlywheelError, StoreUnavailable

# Primary result codes that mean "not now" rather than "never": busy or locked by another connection,
# cannot open the file, I/O or disk full, a WAL protocol race.
_NOT_NOW = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_FULL,
    }
)


def not_now(exc: sqlite3.Error) -> bool:
    """Whether SQLite's error is one that retrying later can cure."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _NOT_NOW


@contextmanager
def sqlite_errors(what: str, path: Path) -> Iterator[None]:
    """SQLite's "not now" failures inside the block as :class:`StoreUnavailable` naming the file."""
    try:
        yield
    except sqlite3.Error as exc:
        if not_now(exc):
            raise StoreUnavailable(f"{what} {path} is unavailable: {exc}") from exc
        raise


class GuardedConnection:
    """A connection whose statements and commits raise :class:`StoreUnavailable` when the database
    cannot serve now; used like ``sqlite3.Connection`` (``execute``, ``with db:`` for a transaction)."""

    def __init__(self, db: sqlite3.Connection, what: str, path: Path) -> None:
        self._db, self._what, self._path = db, what, path

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        with sqlite_errors(self._what, self._path):
            return self._db.execute(sql, parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        with sqlite_errors(self._what, self._path):
            return self._db.executemany(sql, rows)

    def __enter__(self) -> GuardedConnection:
        self._db.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        with sqlite_errors(self._what, self._path):
            self._db.__exit__(*exc)

    def close(self) -> None:
        self._db.close()


def open_migrated(path: Path, migrations: Sequence[str], what: str) -> GuardedConnection:
    """Connect, switch to WAL and apply the migrations this file has not seen (``PRAGMA user_version``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError as exc:
        if not_now(exc):
            raise StoreUnavailable(f"{what} {path} cannot be opened now: {exc}") from exc
        raise FlywheelError(f"{what} {path} cannot be opened: {exc}") from exc
    if version > len(migrations):
        db.close()
        raise FlywheelError(
            f"{what} {path} has schema version {version}, newer than this Flywheel understands "
            f"({len(migrations)}); upgrade Flywheel"
        )
    with sqlite_errors(what, path):
        for number in range(version + 1, len(migrations) + 1):
            db.executescript(f"BEGIN; {migrations[number - 1]}; PRAGMA user_version = {number}; COMMIT;")
    return GuardedConnection(db, what, path)


_WAL_FILES: set[str] = set()


def wal_for_foreign_engine(path: Path) -> None:
    """WAL journal and ``synchronous=NORMAL`` on every SQLAlchemy connection this process opens to
    ``path``, for a SQLite file whose engine another library builds (MLflow's tracking store).

    Why: in SQLite's default rollback journal every commit waits for the disk (about 10 ms here), and
    MLflow commits once per trace, run, metric batch and alias; with WAL and NORMAL a commit is a
    write to the log (about 0.03 ms), and a crash of the process still loses nothing committed.
    Readers (``mlflow ui``, the service) no longer block the cycle's writes either."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not _WAL_FILES:
        event.listen(Engine, "connect", _wal_if_listed)
    _WAL_FILES.add(str(path.resolve()))


def write_ahead(dbapi_connection: sqlite3.Connection) -> None:
    """The journal every SQLite file Flywheel writes through SQLAlchemy runs in: WAL, and
    ``synchronous=NORMAL`` (a commit is a write to the log; a crashed process loses nothing committed)."""
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _wal_if_listed(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    row = dbapi_connection.execute("PRAGMA database_list").fetchone()  # (seq, "main", file)
    if row is not None and row[2] in _WAL_FILES:
        write_ahead(dbapi_connection)
