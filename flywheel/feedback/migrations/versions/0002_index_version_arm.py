"""Which index version and which arm (production or canary) served the output (SPEC's optional
fields; the old store's ``PRAGMA user_version`` 2).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("index_version", sa.Text))
    op.add_column("events", sa.Column("arm", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("arm")
        batch.drop_column("index_version")
