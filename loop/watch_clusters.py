"""Per failure cluster: did its fix lower the negative rate of the cluster's own queries?

A candidate keeps a sample of each cluster's event ids (``payload.cluster_events``); their query
texts are the cluster's queries. The events with those queries, the cluster's own left out (they
were chosen for being negative), are compared before and after the fix: for a canary, canary arm
against production arm since it started; for a promotion, the period after the move against as
long a period before it. Informational: it never acts.
"""

from __future__ import annotations

from typing import Any

from flywheel.champions import Move
from flywheel.config import Settings
from flywheel.feedback.store import FeedbackStore
from flywheel.loop.cluster_rate import ClusterRate
from flywheel.loop.watch_data import RatedEvents
from flywheel.loop.watch_stats import compare
from flywheel.state import StateStore

DAY = 86400.0


def cluster_rates(
    settings: Settings, state: StateStore, store: FeedbackStore, decided: list[tuple[Any, Move | None]]
) -> list[ClusterRate]:
    w = settings.watch
    out: list[ClusterRate] = []
    cands = {row.candidate_id: state.candidate(row.candidate_id) for row, _ in decided if row.candidate_id}
    for row, _move in decided:
        cand = cands.get(row.candidate_id)
        if cand is None:
            continue
        start = row.since.timestamp()
        for cluster_id, ids in cand.payload.cluster_events.items():
            own = store.get(ids)
            queries = sorted({e.query for e in own})
            if not queries:
                continue
            data = RatedEvents(store.rated(since=start - w.window_days * DAY, queries=queries))
            keep = data.excluding({e.event_id for e in own})
            if row.scope == "canary":
                period = data.between(start, None) & keep
                after, before = period & data.equals("arm", "canary"), period & data.equals("arm", "production")
            else:
                production = data.not_canary() & keep
                after = data.between(start, None) & production
                before = data.between(start - w.window_days * DAY, start) & production
            cap = settings.triage.per_user_cap
            comp = compare(
                data.side(after, cap),
                data.side(before, cap),
                alpha=w.alpha,
                min_events=w.cluster_min_events,
                sequential=w.sequential,
                tau=w.effect_size,
            )
            out.append(
                ClusterRate(
                    cluster_id=cluster_id,
                    candidate_id=cand.candidate_id,
                    kind=row.kind,
                    version=row.version,
                    queries=len(queries),
                    comparison=comp,
                )
            )
    return out
