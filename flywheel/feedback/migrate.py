"""Bringing a feedback store's schema up to date on open, with Alembic run programmatically.

Alembic's revision table says how far a database has come. A SQLite file made before Alembic
(``PRAGMA user_version`` 1 or 2) is stamped with the matching revision first, then continues.
Several processes may open a fresh store at once (``serve`` workers, the CLI): the migration runs
in one transaction under a lock (Postgres: an advisory lock; SQLite: ``BEGIN IMMEDIATE``), and the
version is read again once the lock is held.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from flywheel.errors import FlywheelError
from flywheel.feedback.tables import SCHEMA_REVISION

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The pre-Alembic SQLite store's PRAGMA user_version -> the revision with the same schema.
LEGACY_REVISIONS = {1: "0001", 2: "0002"}
_ADVISORY_LOCK_KEY = 7_466_519_010  # any constant: "flywheel feedback migrations"
_VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    """The newest revision this Flywheel ships."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision in Alembic's table, read with a plain query: reopening a migrated store (what
    every command does) needs no Alembic import."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()


def migrate(engine: Engine, where: str) -> str:
    """Upgrade the store to the head revision (a no-op read when it is there); return the revision."""
    with engine.connect() as conn:
        revision = current_revision(conn)
    if revision == SCHEMA_REVISION:  # the head (a test keeps them equal), known without loading Alembic
        return revision
    with engine.connect().execution_options(flywheel_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        revision = current_revision(conn)  # again: another process may have migrated meanwhile
        if revision is None:
            revision = _legacy_revision(conn, where)
            if revision is not None:
                _run(conn, "stamp", revision)
        _check_known(revision, where)
        if revision != head_revision():
            _run(conn, "upgrade", "head")
        return head_revision()


def _run(conn: Connection, command_name: str, revision: str) -> None:
    """An Alembic command on our connection, inside our transaction (migrations/env.py takes it)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    getattr(command, command_name)(config, revision)


def _legacy_revision(conn: Connection, where: str) -> str | None:
    """For a store with tables but no Alembic revision (the old SQLite store), the revision its
    ``PRAGMA user_version`` matches; None for an empty database."""
    if not inspect(conn).has_table("events"):
        return None
    version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0) if conn.dialect.name == "sqlite" else 0
    if version in LEGACY_REVISIONS:
        return LEGACY_REVISIONS[version]
    if version > max(LEGACY_REVISIONS):
        raise _newer(where, f"version {version}")
    raise FlywheelError(f"feedback store {where} has an events table but no schema version; it was not made "
                        "by Flywheel, or was damaged (move it aside to start a new store)")


def _check_known(revision: str | None, where: str) -> None:
    if revision is None:
        return
    from alembic.util import CommandError

    try:
        _scripts().get_revision(revision)
    except CommandError:
        raise _newer(where, f"revision {revision}") from None


def _newer(where: str, found: str) -> FlywheelError:
    return FlywheelError(f"feedback store {where} has schema {found}, newer than this Flywheel understands "
                         f"(its newest is revision {head_revision()}); upgrade Flywheel")
