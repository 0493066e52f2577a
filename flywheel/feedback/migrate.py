"""The feedback store's schema on open: its Alembic scripts (``migrations/``) run by the shared
migrator (:mod:`flywheel.schema_migrations`). A SQLite file made before Alembic
(``PRAGMA user_version`` 1 or 2) is stamped with the matching revision first, then continues.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine

from flywheel import schema_migrations
from flywheel.feedback.tables import SCHEMA_REVISION

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The pre-Alembic SQLite store's PRAGMA user_version -> the revision with the same schema.
LEGACY_REVISIONS = {1: "0001", 2: "0002"}

FEEDBACK_SCHEMA = schema_migrations.Schema(
    what="feedback store",
    directory=MIGRATIONS_DIR,
    head=SCHEMA_REVISION,
    version_table="alembic_version",  # Alembic's default, which stores made so far carry
    advisory_lock_key=7_466_519_010,  # any constant: "flywheel feedback migrations"
    marker_table="events",
    legacy_revisions=LEGACY_REVISIONS,
)


def head_revision() -> str:
    """The newest revision this Flywheel ships."""
    return schema_migrations.head_revision(FEEDBACK_SCHEMA)


def current_revision(conn: Connection) -> str | None:
    """The revision in Alembic's table (None: not migrated yet)."""
    return schema_migrations.current_revision(conn, FEEDBACK_SCHEMA)


def migrate(engine: Engine, where: str) -> str:
    """Upgrade the store to the head revision (a no-op read when it is there); return the revision."""
    return schema_migrations.migrate(engine, where, FEEDBACK_SCHEMA)
