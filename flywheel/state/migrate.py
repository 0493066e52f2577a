"""The state store's schema on open: its Alembic scripts (``migrations/``) run by the shared
migrator (:mod:`flywheel.schema_migrations`). A ``state.sqlite`` written before Alembic
(``PRAGMA user_version`` 1 to 4) is stamped with the revision of the same schema, then continues:
an existing home upgrades in place with its rows.
"""

from __future__ import annotations

from pathlib import Path

from flywheel.schema_migrations import Schema
from flywheel.state.tables import SCHEMA_REVISION

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

STATE_SCHEMA = Schema(
    what="state store",
    directory=MIGRATIONS_DIR,
    head=SCHEMA_REVISION,
    # Not Alembic's default: on Postgres the state store may share the feedback store's database.
    version_table="flywheel_state_version",
    advisory_lock_key=7_466_519_011,  # any constant other than the feedback store's
    marker_table="cycles",
    legacy_revisions={1: "0001", 2: "0002", 3: "0003", 4: "0004"},
)
