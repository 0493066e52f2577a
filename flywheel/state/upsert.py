"""Insert-or-ignore and insert-or-replace on both dialects (SQLite and Postgres share the
``ON CONFLICT`` form; SQLAlchemy has one construct per dialect)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite

_DialectInsert = sqlite.Insert | postgresql.Insert
_INSERTS: dict[str, Callable[[Table], _DialectInsert]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def insert_ignore(conn: Connection, table: Table, keys: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING``."""
    return _INSERTS[conn.dialect.name](table).on_conflict_do_nothing(index_elements=list(keys))


def insert_replace(conn: Connection, table: Table, keys: Sequence[str], columns: Sequence[str] | None = None) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of ``columns`` (default: every other column)."""
    insert = _INSERTS[conn.dialect.name](table)
    names = columns if columns is not None else [c.name for c in table.columns if c.name not in keys]
    return insert.on_conflict_do_update(index_elements=list(keys), set_={n: insert.excluded[n] for n in names})
