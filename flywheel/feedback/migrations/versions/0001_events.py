"""The events table (the old store's ``PRAGMA user_version`` 1).

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
        "events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("ts", sa.Text, nullable=False),
        sa.Column("ts_epoch", sa.Float, nullable=False),
        sa.Column("signal", sa.Text, nullable=False),
        sa.Column("polarity", sa.Integer, nullable=False),
        sa.Column("strength", sa.Float, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("session_id", sa.Text),
        sa.Column("consent", sa.Integer, nullable=False),
        sa.Column("prompt_version", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("confidence", sa.Float),
        sa.Column("reason", sa.Text),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("correction", sa.Text),
        sa.Column("final_text", sa.Text),
        sa.Column("value", sa.Float),
        sa.Column("context_ids", sa.Text),
        sa.Column("metadata", sa.Text),
        sa.Column("pii_scrubbed", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("ingested_at", sa.Float, nullable=False),
    )
    op.create_index("events_polarity_ts", "events", ["polarity", "ts_epoch"])
    op.create_index("events_ingested", "events", ["ingested_at"])


def downgrade() -> None:
    op.drop_table("events")
