"""What the cycle did with each failure cluster, and why: the answer to "why did this cycle produce
nothing?" that used to be readable only in the state store.

One ``ClusterOutcome`` per triaged cluster: the improver its route sends it to, whether that
improver worked on it this cycle (and if not, which setting or fact stopped it), what its drafting
and screening gave (:meth:`improvers.base.Improver.cluster_work`), the candidates that cover it
with their decision and the gate's reason (``superseded`` as such), and a note when a candidate targets a cluster whose
category has no golden item (the golden set cannot show that fix working). The CLI prints it, the
``--json`` document and the Prefect report carry it, and it is logged to the cycle's MLflow run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from flywheel.candidates import Candidate, Decision, Outcome
from flywheel.improvers.base import ClusterWork, ImproverRun
from flywheel.improvers.registry import improver
from flywheel.loop.context import CycleContext
from flywheel.loop.golden.coverage import uncovered_note
from flywheel.schemas import ClusterOutcome, ClusterStatus, FailureCluster

# Best first: what a cluster's outcome is when several candidates cover it.
_RANK = [
    Decision.promoted,
    Decision.canary,
    Decision.pending_approval,
    Decision.deferred,
    Decision.superseded,
    Decision.rejected,
    Decision.error,
]


def cluster_work(
    ctx: CycleContext, clusters: Sequence[FailureCluster], runs: Sequence[ImproverRun]
) -> dict[str, ClusterWork]:
    """What the improver each cluster is routed to says of it this cycle (skipped, or what it found)."""
    by_kind = {r.kind: r for r in runs}
    out = {}
    for c in clusters:
        run = by_kind.get(c.route)
        out[c.cluster_id] = (
            improver(run.kind).cluster_work(ctx, c, run.chosen, run.proposal)
            if run is not None
            else ClusterWork(found=f"no improver takes the route {c.route!r}")
        )
    return out


def cluster_outcomes(
    ctx: CycleContext,
    clusters: Sequence[FailureCluster],
    work: Mapping[str, ClusterWork],
    candidates: Sequence[Candidate],
) -> list[ClusterOutcome]:
    """Each cluster's outcome this cycle: its candidates' best decision, else what its improver
    said of it (``work``, from :func:`cluster_work`)."""
    golden_items = Counter(i.category for i in ctx.golden.items)
    out = []
    for c in clusters:
        mine = [k for k in candidates if c.cluster_id in k.cluster_ids]
        o = ClusterOutcome(
            cluster_id=c.cluster_id,
            category=c.category,
            route=c.route,
            size=c.size,
            users=c.users,
            consented=c.consented,
            status=ClusterStatus.no_candidate,
            why="",
            candidates=[k.candidate_id for k in mine],
            golden_items=golden_items[c.category],
            diagnosis=c.diagnosis,
        )
        if mine and not golden_items[c.category]:
            o.note = uncovered_note(c.category)
        w = work.get(c.cluster_id) or ClusterWork()
        o.drafts, o.kept, o.champion_resolved, o.best_resolved = w.drafts, w.kept, w.champion_resolved, w.best_resolved
        if mine:
            best = min(mine, key=lambda k: _RANK.index(k.decision) if k.decision in _RANK else len(_RANK))
            o.status, o.decision, o.why = ClusterStatus.candidate, best.decision, _candidate_why(best, c.cluster_id)
        elif w.skipped:
            o.status, o.why = ClusterStatus.skipped, w.skipped
        else:
            o.why = w.found or f"no {c.route} step ran on it this cycle"
        out.append(o)
    return out


def _candidate_why(cand: Candidate, cluster_id: str) -> str:
    """The gate's reason, and when a prompt candidate resolved none of this cluster's complaints
    more than the champion did, that too (it went on for another cluster, or tied)."""
    reason = cand.reason or "not decided yet"
    if cand.outcome_for(cluster_id, Outcome.pending) is Outcome.no_improvement:
        reason = f"{reason} (its drafts resolved no more of this cluster's complaints than the champion)"
    return f"{cand.candidate_id} {cand.decision or 'undecided'}: {reason}"
