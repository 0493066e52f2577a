"""Golden-set proposals by content id (the old state store's ``PRAGMA user_version`` 4).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "golden_proposals",
        sa.Column("proposal_id", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float),
    )
    op.create_index("golden_proposals_status", "golden_proposals", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("golden_proposals")
