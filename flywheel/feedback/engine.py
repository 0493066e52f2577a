"""Connecting to the feedback store named by a URL: which URLs, how each dialect is set up, and
how a database failure is told to the user.

One code path serves SQLite and Postgres; what differs between them lives here: SQLite gets WAL,
a busy timeout and transactions that cover DDL (pysqlite's own handling does not), Postgres a
connect and lock timeout. Messages name the database (host, port, name or file), never a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc

from flywheel.errors import FlywheelError, StoreUnavailable, UsageError
from flywheel.masking import MASK, mask_secrets
from flywheel.sqlite_util import write_ahead

# How long a write waits for another writer before the store reports itself unavailable (read
# when an engine is made; tests lower it).
LOCK_TIMEOUT_SECONDS: float = 30
CONNECT_TIMEOUT_SECONDS = 10
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_SCHEMES = {"sqlite", "sqlite+pysqlite"}


def store_url(url: str) -> URL:
    """The SQLAlchemy URL for a store URL: ``sqlite:///PATH``, a plain path, ``postgresql://...`` or
    ``postgresql+psycopg://...`` (psycopg 3 is the driver either way)."""
    if "://" not in url:
        return URL.create("sqlite", database=url)
    scheme = url.split("://", 1)[0].lower()
    if scheme in _POSTGRES_SCHEMES:
        return make_url("postgresql+psycopg://" + url.split("://", 1)[1])
    if scheme in _SQLITE_SCHEMES:
        parsed = make_url(url)
        if not parsed.database:
            raise UsageError("store_url sqlite:// needs a file path: sqlite:///PATH (in-memory stores are not kept)")
        return parsed.set(drivername="sqlite")
    raise UsageError(
        f"store_url scheme '{scheme}' is not supported; use sqlite:///PATH (one host) or "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (several writers)"
    )


def describe(url: URL) -> str:
    """Where the store is, for messages: the file, or the server and database without password or query."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    user = f"{url.username}@" if url.username else ""
    port = f":{url.port}" if url.port else ""
    return f"postgresql://{user}{url.host or 'localhost'}{port}/{url.database or ''}"


def create_store_engine(url: URL, lock_timeout: float = LOCK_TIMEOUT_SECONDS, *, lean_reads: bool = False) -> Engine:
    """An engine set up for the dialect; for SQLite, the file's directory is created. ``lock_timeout``:
    seconds a write waits for another writer's lock before it fails as unavailable (the live service
    waits less than the CLI: a request would rather answer 503 and be retried). ``lean_reads`` (Postgres):
    autocommit and no pre-ping, so a one-statement read is one round trip instead of four (the caller
    retries once after a dropped connection instead)."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, lock_timeout)
    connect_args: dict[str, Any] = {
        "application_name": "flywheel",
        "options": f"-c lock_timeout={int(lock_timeout * 1000)}",
    }
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if lean_reads:
        return create_engine(url, connect_args=connect_args, isolation_level="AUTOCOMMIT")
    # pre-ping: a server restarted between two requests costs one reconnect, not a failed write
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True)


def _sqlite_engine(url: URL, lock_timeout: float) -> Engine:
    Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": lock_timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below), DDL included
        write_ahead(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A writer takes the write lock up front (waiting up to the timeout), so a transaction never
        # fails half-way on an upgrade from reading to writing; readers never block writers (WAL).
        write = connection.get_execution_options().get("flywheel_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def store_errors(url: URL, action: str, what: str = "feedback store") -> Iterator[None]:
    """Database failures as Flywheel errors naming the store (``what``): one that retrying later can
    cure (locked, server down or unreachable) as :class:`StoreUnavailable`, anything else as
    :class:`FlywheelError`."""
    where = describe(url)
    try:
        yield
    except (sa_exc.TimeoutError, sa_exc.DisconnectionError) as exc:  # no connection free, or none alive
        raise StoreUnavailable(f"{what} {where} is unavailable: {_one_line(str(exc), url)}") from None
    except sa_exc.DBAPIError as exc:
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated:
            raise StoreUnavailable(f"{what} {where} is unavailable: {_reason(exc, url)}") from None
        raise FlywheelError(f"{what} {where} cannot be {action}: {_reason(exc, url)}") from None


def _reason(exc: sa_exc.DBAPIError, url: URL) -> str:
    """The driver's message on one line, shortened, with the password (if any) blotted out."""
    return _one_line(str(exc.orig), url) or type(exc.orig).__name__


def _one_line(text: str, url: URL) -> str:
    """``text`` on one line, shortened, with the store's password (if any) blotted out."""
    text = " ".join(text.split())
    if url.password:
        text = text.replace(str(url.password), MASK)
    text = mask_secrets(text)
    return text if len(text) <= 300 else text[:297] + "..."
