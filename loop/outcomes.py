"""What the cycle did with each failure cluster, and why: the answer to "why did this cycle produce
nothing?" that used to be readable only in the state store.

One ``ClusterOutcome`` per triaged cluster: the improver its route sends it to, whether that
improver worked on it this cycle (and if not, which setting or fact stopped it), what the prompt
improver's drafting and screening gave, the candidates that cover it with their decision and the
gate's reason (``superseded`` as such), and a note when a candidate targets a cluster whose
category has no golden item (the golden set cannot show that fix working). The CLI prints it, the
``--json`` document and the Prefect report carry it, and it is logged to the cycle's MLflow run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from flywheel.candidates import Candidate, Decision, Outcome
from flywheel.schemas import ClusterOutcome, ClusterStatus, FailureCluster
from flywheel.wording import plural
from loop.context import CycleContext
from loop.golden.coverage import uncovered_note
from loop.prompt_step import DraftingSummary
from loop.rag_step import rag_key
from loop.triage_step import fixed_clusters


# Best first: what a cluster's outcome is when several candidates cover it.
_RANK = [Decision.promoted, Decision.canary, Decision.pending_approval, Decision.deferred, Decision.superseded,
         Decision.rejected, Decision.error]


def _skipped_from_prompt(c: FailureCluster, ctx: CycleContext, fixed: set[str], chosen: set[str]) -> str | None:
    s = ctx.settings.improve
    if c.category == "other":
        if c.diagnosis is not None and c.diagnosis.why_not:
            return c.diagnosis.why_not
        return "category `other`: no prompt revision targets it (feedback with a `reason` routes it)"
    if c.consented < s.min_cluster_consented:
        return (f"{plural(c.consented, 'consented event')}, the prompt improver needs {s.min_cluster_consented} "
                "(`improve.min_cluster_consented`); text without consent is never used")
    if c.cluster_id in fixed:
        return "a prompt fix was promoted after its last negative event; new negative feedback re-opens it"
    if c.cluster_id not in chosen:
        return f"beyond `improve.max_clusters` = {s.max_clusters} higher-priority clusters this cycle"
    return None


def cluster_outcomes(ctx: CycleContext, clusters: Sequence[FailureCluster], *, prompt_chosen: Sequence[FailureCluster],
                     rag_chosen: Sequence[FailureCluster], drafting: Mapping[str, DraftingSummary],
                     candidates: Sequence[Candidate], finetune_notes: Sequence[str]) -> list[ClusterOutcome]:
    """Each cluster's outcome this cycle: ``prompt_chosen`` and ``rag_chosen`` are the clusters the
    flow gave those improvers, ``drafting`` what the prompt improver did on each."""
    chosen_ids = {c.cluster_id for c in prompt_chosen}
    rag_ids = {c.cluster_id for c in rag_chosen}
    fixed = {"prompt": fixed_clusters(ctx.settings, clusters, "prompt"),
             "rag": fixed_clusters(ctx.settings, clusters, "rag")}
    with ctx.state() as state:
        rag_doc = state.drafts(ctx.cycle_id, rag_key(rag_chosen)) if rag_chosen else None
    golden_items = Counter(i.category for i in ctx.golden.items)
    out = []
    for c in clusters:
        mine = [k for k in candidates if c.cluster_id in k.cluster_ids]
        o = ClusterOutcome(cluster_id=c.cluster_id, category=c.category, route=c.route, size=c.size, users=c.users,
                           consented=c.consented, status=ClusterStatus.no_candidate, why="",
                           candidates=[k.candidate_id for k in mine], golden_items=golden_items[c.category],
                           diagnosis=c.diagnosis)
        if mine and not golden_items[c.category]:
            o.note = uncovered_note(c.category)
        skipped = found = None
        if c.route == "prompt":
            skipped = _skipped_from_prompt(c, ctx, fixed["prompt"], chosen_ids)
            if summary := drafting.get(c.cluster_id):
                o.drafts, o.kept = summary.drafts, summary.kept
                o.champion_resolved, o.best_resolved = summary.champion_resolved, summary.best_resolved
                found = summary.outcome
        elif c.route == "rag":
            if c.cluster_id in fixed["rag"]:
                skipped = "an index fix was promoted after its last negative event; new negative feedback re-opens it"
            elif c.cluster_id not in rag_ids:
                skipped = (f"beyond `improve.max_clusters` = {ctx.settings.improve.max_clusters} "
                           "higher-priority outdated-knowledge clusters this cycle")
            elif rag_doc and rag_doc.get("version") is None:
                found = str(rag_doc.get("reason") or "no index candidate")
        else:
            found = next((n for n in finetune_notes if c.cluster_id in n), None)
        if mine:
            best = min(mine, key=lambda k: _RANK.index(k.decision) if k.decision in _RANK else len(_RANK))
            o.status, o.decision, o.why = ClusterStatus.candidate, best.decision, _candidate_why(best, c.cluster_id)
        elif skipped:
            o.status, o.why = ClusterStatus.skipped, skipped
        else:
            o.why = found or f"no {c.route} step ran on it this cycle"
        out.append(o)
    return out


def _candidate_why(cand: Candidate, cluster_id: str) -> str:
    """The gate's reason, and when a prompt candidate resolved none of this cluster's complaints
    more than the champion did, that too (it went on for another cluster, or tied)."""
    reason = cand.reason or "not decided yet"
    if cand.outcome_for(cluster_id, Outcome.pending) is Outcome.no_improvement:
        reason = f"{reason} (its drafts resolved no more of this cluster's complaints than the champion)"
    return f"{cand.candidate_id} {cand.decision or 'undecided'}: {reason}"
