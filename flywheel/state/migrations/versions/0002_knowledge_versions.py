"""Knowledge index versions and pointers (the old state store's ``PRAGMA user_version`` 2).

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
    op.create_table(
        "kb_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("parent", sa.Integer),
        sa.Column("source", sa.Text),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("provenance", sa.Text),
    )
    op.create_table(
        "kb_records",
        sa.Column("record_id", sa.Text, primary_key=True),
        sa.Column("chunk_id", sa.Text, nullable=False),
        sa.Column("doc_id", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("updated_at", sa.Text),
    )
    op.create_table(
        "kb_members",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.Text, primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "pointers",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("pointers", "kb_members", "kb_records", "kb_versions"):
        op.drop_table(table)
