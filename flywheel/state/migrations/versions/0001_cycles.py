"""Cycles, candidates, drafts, the evaluation cache, promotions, cluster attempts (the old state
store's ``PRAGMA user_version`` 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cycles",
        sa.Column("cycle_id", sa.Text, primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("golden_version", sa.Text),
        sa.Column("champion_score", sa.Float),
        sa.Column("summary", sa.Text),
    )
    op.create_table(
        "candidates",
        sa.Column("candidate_id", sa.Text, primary_key=True),
        sa.Column("cycle_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("decision", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("candidates_cycle", "candidates", ["cycle_id"])
    op.create_table(
        "drafts",
        sa.Column("cycle_id", sa.Text, primary_key=True),
        sa.Column("cluster_id", sa.Text, primary_key=True),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_table(
        "eval_cache",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_version", sa.Text),
        sa.Column("to_version", sa.Text, nullable=False),
        sa.Column("candidate_id", sa.Text),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("by", sa.Text),
        sa.Column("note", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "cluster_attempts",
        sa.Column("cluster_id", sa.Text, primary_key=True),
        sa.Column("cycle_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("candidate_id", sa.Text, primary_key=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("cluster_attempts", "promotions", "eval_cache", "drafts", "candidates", "cycles"):
        op.drop_table(table)
