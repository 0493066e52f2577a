"""Incremental triage: the clusters triage found, with their centroids, counts and membership, and
how far through the feedback it has read, so the next triage reads and embeds only what is new.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "triage_meta",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("watermark", sa.Float, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("full_at", sa.Float, nullable=False),
    )
    op.create_table(
        "triage_clusters",
        sa.Column("cluster_id", sa.Text, primary_key=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("withheld", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("vsum", sa.LargeBinary),
        sa.Column("users", sa.Integer, nullable=False),
        sa.Column("capped", sa.Integer, nullable=False),
        sa.Column("strength", sa.Float, nullable=False),
        sa.Column("reasoned", sa.Integer, nullable=False),
        sa.Column("low_conf", sa.Integer, nullable=False),
        sa.Column("consented", sa.Integer, nullable=False),
        sa.Column("usable", sa.Integer, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("examples", sa.Text, nullable=False),
        sa.Column("example_vecs", sa.LargeBinary),
    )
    op.create_table(
        "triage_members",
        sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("cluster_id", sa.Text, nullable=False),
        sa.Column("event_ids", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("triage_members_cluster", "triage_members", ["cluster_id"])
    op.create_table(
        "triage_users",
        sa.Column("cluster_id", sa.Text, primary_key=True),
        sa.Column("user_key", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "triage_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("vec", sa.LargeBinary, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("triage_labels", "triage_users", "triage_members", "triage_clusters", "triage_meta"):
        op.drop_table(table)
