"""Deferred fixes: winners that passed the gate but could not join the waiting candidate.

Production holds one prompt, so two fixes that could not be merged cannot both wait. The one not
waiting is ``deferred``: nothing is lost, its clusters go first in the next cycle's drafting,
against the champion that cycle starts from, and it is marked carried once they were redrafted.
Until then `flywheel status` and the cycle report list it with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from flywheel.candidates import Candidate, Decision
from flywheel.schemas import FailureCluster
from flywheel.state import StateStore


class DeferredFix(BaseModel):
    """A deferred candidate still waiting to be redrafted, as status and the report show it."""

    candidate_id: str
    cycle_id: str
    kind: str
    cluster_ids: list[str]
    golden_score: float | None
    reason: str

    @classmethod
    def of(cls, cand: Candidate) -> DeferredFix:
        return cls(
            candidate_id=cand.candidate_id,
            cycle_id=cand.cycle_id,
            kind=cand.kind,
            cluster_ids=cand.cluster_ids,
            golden_score=cand.golden_score,
            reason=cand.reason,
        )


def waiting_deferred(state: StateStore) -> list[Candidate]:
    """Deferred candidates whose clusters no later cycle has redrafted yet."""
    return [c for c in state.candidates(decision=Decision.deferred) if c.carried_to is None]


def deferred_first(clusters: Sequence[FailureCluster], state: StateStore) -> list[FailureCluster]:
    """``clusters`` with those of waiting deferred fixes first (otherwise in their order): a fix
    that passed the gate once is redrafted before anything new is started."""
    carried = {cid for c in waiting_deferred(state) for cid in c.cluster_ids}
    return sorted(clusters, key=lambda c: c.cluster_id not in carried)


def mark_carried(state: StateStore, cycle_id: str) -> list[Candidate]:
    """Deferred candidates of earlier cycles whose clusters this cycle drafted: carried into it."""
    carried = []
    for cand in waiting_deferred(state):
        if cand.cycle_id == cycle_id:
            continue
        if any(state.drafts(cycle_id, cid) is not None for cid in cand.cluster_ids):
            cand.carried_to = cycle_id
            cand.reason = f"{cand.reason}; carried into cycle {cycle_id}, which redrafted its clusters"
            state.save_candidate(cand)
            carried.append(cand)
    return carried
