"""Flywheel's own state (cycles, candidates, drafts, evaluation cache, promotions, cluster
attempts, knowledge-index versions, pointers, fine-tune jobs, golden proposals) on SQLAlchemy
Core by URL: ``tables`` (the schema), ``migrations`` (Alembic), ``store`` (the queries)."""

from __future__ import annotations

from flywheel.state.kb import KbRecord, KbVersion
from flywheel.state.store import (
    STATE_FILE,
    StateStore,
    as_datetime,
    default_state_url,
    open_state,
)

__all__ = ["STATE_FILE", "KbRecord", "KbVersion", "StateStore", "as_datetime", "default_state_url", "open_state"]
