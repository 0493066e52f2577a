"""Bringing a SQL store's schema up to date on open, with Alembic run programmatically; shared by
the feedback store and the state store, each described by a :class:`Schema`.

Alembic's revision table says how far a database has come. A SQLite file made before Alembic
(``PRAGMA user_version`` N) is stamped with the matching revision first, then continues. Several
processes may open a fresh store at once (``serve`` workers, the CLI): the migration runs in one
transaction under a lock (Postgres: an advisory lock; SQLite: ``BEGIN IMMEDIATE``), and the version
is read again once the lock is held. Each store keeps its own revision table, so two stores can
share one Postgres database.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


@dataclass(frozen=True)
class Schema:
    """One store's migrations: where its scripts are and how its old files are recognised."""

    what: str  # "feedback store", for messages
    directory: Path  # the Alembic script directory (env.py, versions/)
    head: str  # the revision the store's tables module describes: known without loading Alembic
    version_table: str  # Alembic's revision table for this store
    advisory_lock_key: int  # Postgres: serialises concurrent migrators of this store
    marker_table: str  # a table every pre-Alembic file of this store has
    legacy_revisions: Mapping[int, str]  # pre-Alembic SQLite ``PRAGMA user_version`` -> same schema's revision


@functools.cache
def _scripts(directory: Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(directory))


def head_revision(schema: Schema) -> str:
    """The newest revision this Flywheel ships for the store."""
    head = _scripts(schema.directory).get_current_head()
    assert head is not None, f"no migrations in {schema.directory}"
    return head


def current_revision(conn: Connection, schema: Schema) -> str | None:
    """The revision in the store's revision table, read with a plain query: reopening a migrated store
    (what every command does) needs no Alembic import."""
    if not inspect(conn).has_table(schema.version_table):
        return None
    return conn.execute(text(f"SELECT version_num FROM {schema.version_table}")).scalar()


def migrate(engine: Engine, where: str, schema: Schema) -> str:
    """Upgrade the store to the head revision (a no-op read when it is there); return the revision."""
    with engine.connect() as conn:
        revision = current_revision(conn, schema)
    if revision == schema.head:  # the head (a test keeps them equal), known without loading Alembic
        return revision
    with engine.connect().execution_options(flywheel_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema.advisory_lock_key})
        revision = current_revision(conn, schema)  # again: another process may have migrated meanwhile
        if revision is None:
            revision = _legacy_revision(conn, where, schema)
            if revision is not None:
                _run(conn, schema, "stamp", revision)
        _check_known(revision, where, schema)
        if revision != head_revision(schema):
            _run(conn, schema, "upgrade", "head")
        return head_revision(schema)


def _run(conn: Connection, schema: Schema, command_name: str, revision: str) -> None:
    """An Alembic command on our connection, inside our transaction (the store's env.py takes it)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(schema.directory))
    config.attributes["connection"] = conn
    config.attributes["version_table"] = schema.version_table
    getattr(command, command_name)(config, revision)


def _legacy_revision(conn: Connection, where: str, schema: Schema) -> str | None:
    """For a store with tables but no Alembic revision (an old SQLite file), the revision its
    ``PRAGMA user_version`` matches; None for an empty database."""
    if not inspect(conn).has_table(schema.marker_table):
        return None
    version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0) if conn.dialect.name == "sqlite" else 0
    if version in schema.legacy_revisions:
        return schema.legacy_revisions[version]
    if version > max(schema.legacy_revisions):
        raise _newer(where, f"version {version}", schema)
    raise FlywheelError(
        f"{schema.what} {where} has a {schema.marker_table} table but no schema version; it was "
        "not made by Flywheel, or was damaged (move it aside to start a new store)"
    )


def _check_known(revision: str | None, where: str, schema: Schema) -> None:
    if revision is None:
        return
    from alembic.util import CommandError

    try:
        _scripts(schema.directory).get_revision(revision)
    except CommandError:
        raise _newer(where, f"revision {revision}", schema) from None


def _newer(where: str, found: str, schema: Schema) -> FlywheelError:
    return FlywheelError(
        f"{schema.what} {where} has schema {found}, newer than this Flywheel understands "
        f"(its newest is revision {head_revision(schema)}); upgrade Flywheel"
    )
