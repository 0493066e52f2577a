"""Fine-tune jobs, one per dataset version and base model (the old state store's
``PRAGMA user_version`` 3).

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
        "finetune_jobs",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("dataset_version", sa.Text, nullable=False),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("cycle_id", sa.Text),
        sa.Column("cluster_ids", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("fine_tuned_model", sa.Text),
        sa.Column("model_version", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("finetune_jobs_dataset", "finetune_jobs", ["dataset_version", "base_model"], unique=True)


def downgrade() -> None:
    op.drop_table("finetune_jobs")
