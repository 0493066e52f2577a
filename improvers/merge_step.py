"""Merging the clusters' winning prompts into one candidate that keeps every fix it claims.

Only one prompt can be production, so the winners of several clusters must become one prompt or
wait. The merge is held, cluster by cluster, to what the best winner *there* resolved (per-cluster
evidence, not one share per candidate), judged with the noise of a few examples in mind
(:mod:`improvers.merge_evidence`). When no merge keeps every winner's fix, the largest set of
winners whose merge does is found greedily (the winner whose fix was lost, lowest priority first,
is left out and the rest merged again); the winners left out go to the golden set alone and, when
they pass, wait as ``deferred`` for the next cycle (:mod:`loop.gate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from flywheel.candidates import Candidate, ClusterScreening, MergeRecord, PromptPayload
from flywheel.improvers.context import CycleContext, endpoint_errors
from flywheel.improvers.merge_evidence import FixCheck, FixVerdict, check_fix
from flywheel.improvers.prompt import combine_edits, integrity_problems, merge_prompts
from flywheel.improvers.prompt_step import complaint_of, prompt_candidate, register_draft
from flywheel.improvers.screening import FailingExample
from flywheel.improvers.screening_step import failing_examples, screen_template
from flywheel.llm import make_client
from flywheel.replies import ReplyProblem
from flywheel.schemas import FailureCluster, StoredEvent


class MergeOutcome(BaseModel):
    """What the merge step found (cached per cycle and set of winners): the template, or None."""

    template: str | None = None
    members: list[str] = Field(default_factory=list, description="Candidate ids merged into the template.")
    by_cluster: dict[str, ClusterScreening] = Field(default_factory=dict)
    record: MergeRecord = Field(default_factory=MergeRecord)


class _Evidence:
    """The clusters' failing examples (drawn once per size) and screenings of templates on them
    (each template screened once per cluster and sample)."""

    def __init__(self, ctx: CycleContext, clusters: dict[str, FailureCluster]) -> None:
        self.ctx, self.clusters = ctx, clusters
        self._events: dict[str, list[StoredEvent]] = {}
        self._screened: dict[tuple[str, str, int], list[bool]] = {}

    def examples(self, cluster_id: str, limit: int) -> list[FailingExample]:
        if cluster_id not in self._events:
            with self.ctx.feedback() as store:
                self._events[cluster_id] = store.get(self.clusters[cluster_id].event_ids)
        return failing_examples(self._events[cluster_id], limit, complaint=complaint_of(self.clusters[cluster_id]))

    def resolved(self, template: str, cluster_id: str, limit: int) -> list[bool]:
        key = (template, cluster_id, limit)
        if key not in self._screened:
            self._screened[key] = screen_template(self.ctx, template, self.examples(cluster_id, limit)).resolved
        return self._screened[key]


class _Attempt(BaseModel):
    template: str | None = None
    method: str | None = None
    tried: list[dict[str, str]] = Field(default_factory=list)
    checks: list[FixCheck] = Field(default_factory=list)
    lost: list[FixCheck] = Field(default_factory=list)
    by_cluster: dict[str, ClusterScreening] = Field(default_factory=dict, description="The kept merge's evidence.")


def winners_of(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Prompt candidates that resolved, on at least one of their clusters, more than the champion:
    only those fixed something a merge could keep (one that merely tied goes to the golden set alone)."""
    return [c for c in candidates if isinstance(c.payload, PromptPayload) and c.fixed_clusters()]


@endpoint_errors("merging drafts")
def merge_step(
    ctx: CycleContext, candidates: Sequence[Candidate], clusters: Sequence[FailureCluster], protected: Sequence[str]
) -> Candidate | None:
    """One prompt with the largest set of winners whose merge keeps each one's fix, when there are
    two or more winners; the merge record on it says who was left out and why."""
    winners = winners_of(candidates)
    if not ctx.settings.improve.merge or len(winners) < 2:
        return None
    with ctx.state() as state:
        key = "merge:" + ",".join(sorted(c.candidate_id for c in winners))
        cached = state.drafts(ctx.cycle_id, key)
        if cached is None or "record" not in cached:
            cached = largest_merge(ctx, winners, clusters, protected).model_dump(mode="json")
            state.save_drafts(ctx.cycle_id, key, cached)
        found = MergeOutcome.model_validate(cached)
        if found.template is None:
            _note_left_out(state, winners, found.record)
            return None
        members = [c for c in winners if c.candidate_id in found.members]
        by_id = {c.cluster_id: c for c in clusters}
        covered = list({cid: by_id[cid] for m in members for cid in m.cluster_ids if cid in by_id}.values())
        cand = prompt_candidate(
            ctx,
            found.template,
            covered,
            {
                "merged_from": found.members,
                "category": "merged",
                "merge": found.record,
                "fixes": sorted(cid for cid, s in found.by_cluster.items() if s.improves),
                "by_cluster": found.by_cluster,
            },
        )
        cand.version = register_draft(
            ctx,
            found.template,
            f"merge of {len(members)} drafts ({found.record.method}), cycle {ctx.cycle_id}",
            {
                "flywheel.cluster_ids": ",".join(cand.cluster_ids),
                "flywheel.merged_from": ",".join(found.members),
                "flywheel.kept": "true",
            },
        )
        state.add_candidate(cand)
        _note_left_out(state, winners, found.record)
        return state.candidate(cand.candidate_id) or cand


def _note_left_out(state: Any, winners: Sequence[Candidate], record: MergeRecord) -> None:
    """A winner the merge could not keep says so on itself: the gate and the approver read it there."""
    for cand in winners:
        why = record.left_out.get(cand.candidate_id)
        if why and isinstance(cand.payload, PromptPayload):
            stored = state.candidate(cand.candidate_id) or cand
            assert isinstance(stored.payload, PromptPayload)
            stored.payload.left_out_of_merge = why
            state.save_candidate(stored)


def largest_merge(
    ctx: CycleContext, winners: Sequence[Candidate], clusters: Sequence[FailureCluster], protected: Sequence[str]
) -> MergeOutcome:
    """Merge all winners; while the merge loses a fix, leave out the winner that fixed it (the one
    of lowest priority when several fixes were lost) and merge the rest again."""
    by_id = {c.cluster_id: c for c in clusters}
    priority: Callable[[Candidate], float] = lambda c: max(  # noqa: E731
        (by_id[cid].priority for cid in c.fixed_clusters() if cid in by_id), default=0.0
    )
    members = sorted(winners, key=lambda c: (-priority(c), c.candidate_id))
    evidence = _Evidence(ctx, by_id)
    record = MergeRecord()
    while len(members) >= 2:
        attempt = _try_merge(ctx, members, evidence, protected)
        record.tried += attempt.tried
        record.checked_clusters = max(record.checked_clusters, len(attempt.checks))
        if attempt.template is not None:
            record.method = attempt.method
            record.checks = [c.model_dump(mode="json") | {"text": c.text()} for c in attempt.checks]
            return MergeOutcome(
                template=attempt.template,
                members=[m.candidate_id for m in members],
                by_cluster=attempt.by_cluster,
                record=record,
            )
        owners = {c.winner for c in attempt.lost}
        victim = min((m for m in members if m.candidate_id in owners), key=priority, default=members[-1])
        lost_here = [c.text() for c in attempt.lost if c.winner == victim.candidate_id]
        merged_with = (
            f"a merge of {victim.candidate_id} with {', '.join(m.candidate_id for m in members if m is not victim)}"
        )
        record.left_out[victim.candidate_id] = (
            f"{merged_with} loses a fix: " + "; ".join(lost_here)
            if lost_here
            else f"{merged_with} passed no check: " + "; ".join(t["problem"] for t in attempt.tried[-2:])
        )
        members.remove(victim)
    return MergeOutcome(record=record)


def _best_winner(members: Sequence[Candidate], cluster_id: str) -> Candidate:
    def share(c: Candidate) -> float:
        s = c.payload.by_cluster.get(cluster_id) if isinstance(c.payload, PromptPayload) else None
        return s.share if s else -1.0

    return max((m for m in members if cluster_id in m.fixed_clusters()), key=share)


def _try_merge(
    ctx: CycleContext, members: Sequence[Candidate], evidence: _Evidence, protected: Sequence[str]
) -> _Attempt:
    """The drafting model's merge, then the winners' additions combined without a model: the first
    that passes the integrity checks and keeps every member's fix on every cluster it fixed."""
    templates = [m.template or "" for m in members]
    attempts: list[tuple[str, Callable[[], str]]] = [
        (
            "drafting model",
            lambda: merge_prompts(
                make_client(ctx.settings, purpose="drafting"),
                ctx.settings.draft_model,
                ctx.champion_template,
                templates,
            ),
        ),
        ("combined edits", lambda: combine_edits(ctx.champion_template, templates)),
    ]
    fixed = sorted({cid for m in members for cid in m.fixed_clusters() if cid in evidence.clusters})
    out = _Attempt()
    best_lost: list[FixCheck] | None = None
    for method, make in attempts:
        try:
            template = make()
        except ReplyProblem as exc:
            out.tried.append({"method": method, "problem": str(exc)})
            continue
        problems = integrity_problems(template, ctx.champion_template, protected, ctx.settings.improve)
        if problems:
            out.tried.append({"method": method, "problem": "; ".join(problems)})
            continue
        checked = {cid: _check(ctx, evidence, template, _best_winner(members, cid), cid) for cid in fixed}
        checks = [check for check, _ in checked.values()]
        lost = [c for c in checks if c.verdict is FixVerdict.lost]
        if not lost:
            out.template, out.method, out.checks = template, method, checks
            out.by_cluster = {cid: screening for cid, (_, screening) in checked.items()}
            return out
        out.tried.append(
            {"method": method, "problem": "loses what a winner fixed: " + "; ".join(c.text() for c in lost)}
        )
        if best_lost is None or len(lost) < len(best_lost):
            best_lost, out.checks = lost, checks
    out.lost = best_lost or []
    return out


def _check(
    ctx: CycleContext, evidence: _Evidence, template: str, winner: Candidate, cluster_id: str
) -> tuple[FixCheck, ClusterScreening]:
    """The merge against ``winner`` on one cluster: on the examples the winner was screened on, then,
    when the difference is within the noise, on a larger sample of the cluster's failing examples.
    Also the merge's own evidence there (its verdicts and the champion's, on the sample it ended on)."""
    improve = ctx.settings.improve
    assert isinstance(winner.payload, PromptPayload)
    own = winner.payload.by_cluster[cluster_id]
    limit = improve.examples_per_cluster
    examples = evidence.examples(cluster_id, limit)
    if own.n != len(examples):  # drafted on other examples (an older store): screen it again here
        own = ClusterScreening(
            resolved=evidence.resolved(winner.template or "", cluster_id, limit),
            champion_resolved=evidence.resolved(ctx.champion_template, cluster_id, limit),
        )
    merged = evidence.resolved(template, cluster_id, limit)
    larger = limit * improve.merge_redraw
    more = len(evidence.examples(cluster_id, larger)) > len(examples)
    check = check_fix(
        cluster_id,
        winner.candidate_id,
        own.resolved,
        merged,
        own.champion_resolved,
        alpha=improve.merge_alpha,
        final=not more,
    )
    if check.verdict is not FixVerdict.unsure:
        return check, ClusterScreening(resolved=merged, champion_resolved=own.champion_resolved)
    merged = evidence.resolved(template, cluster_id, larger)
    champion = evidence.resolved(ctx.champion_template, cluster_id, larger)
    check = check_fix(
        cluster_id,
        winner.candidate_id,
        evidence.resolved(winner.template or "", cluster_id, larger),
        merged,
        champion,
        alpha=improve.merge_alpha,
        final=True,
    )
    return check.model_copy(update={"redrawn": True}), ClusterScreening(resolved=merged, champion_resolved=champion)
