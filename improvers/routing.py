"""Routing helpers every improver's ``select`` can use."""

from __future__ import annotations

from collections.abc import Sequence

from flywheel.schemas import FailureCluster
from flywheel.state import StateStore


def fixed_clusters(state: StateStore, clusters: Sequence[FailureCluster], kind: str) -> set[str]:
    """Clusters whose fix of ``kind`` was promoted after their last negative event: nothing new to
    fix until new negative feedback arrives (a rollback re-opens them)."""
    return {
        c.cluster_id
        for c in clusters
        if c.last_seen is not None
        and (at := state.promoted_at(c.cluster_id, kind)) is not None
        and at > c.last_seen.timestamp()
    }
