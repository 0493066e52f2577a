"""The live service's ask ledger: asks per user and UTC day, and opt-outs (``POST /v1/ask``,
``POST /v1/opt-out``), shared by every ``serve`` worker.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serve_ask_counts",
        sa.Column("user_key", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("asks", sa.Integer, nullable=False),
    )
    op.create_table(
        "serve_opt_outs",
        sa.Column("user_key", sa.String(64), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serve_opt_outs")
    op.drop_table("serve_ask_counts")
