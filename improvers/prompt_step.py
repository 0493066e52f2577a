"""The prompt improver in the cycle: drafts per cluster registered as prompt versions, one
candidate per distinct draft (identical drafts of several clusters fold into one that keeps each
cluster's own evidence); :mod:`improvers.merge_step` merges the clusters' winners."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from difflib import unified_diff
from typing import Any

from pydantic import BaseModel, Field

from flywheel.candidates import Candidate, ClusterScreening, Outcome, PromptPayload
from flywheel.evals.tracking import PARENT
from flywheel.improvers.context import CycleContext, cluster_events, earliest_seen, endpoint_errors, short_hash
from flywheel.improvers.prompt import DraftingResult, propose
from flywheel.improvers.screening_step import answer_queries, failing_examples, judge_resolutions
from flywheel.llm import make_client
from flywheel.registry import register_prompt
from flywheel.schemas import FailureCluster
from flywheel.wording import plural


def draft_id(cycle_id: str, template: str) -> str:
    return short_hash(cycle_id, template)


def register_draft(ctx: CycleContext, template: str, message: str, provenance: dict[str, str]) -> str:
    """Register a drafted prompt as a registry version exactly once, even across a crash: the
    version is found again by its ``flywheel.draft_id`` tag before a new one is created. The version
    is tagged ``flywheel.parent_version`` (the champion it was drafted from) because the registry's
    Compare view defaults to the previous version, which is rarely the one to compare with."""
    did = draft_id(ctx.cycle_id, template)
    client = ctx.mlflow
    for pv in client.search_prompt_versions(ctx.settings.prompt_name):
        tags = getattr(pv, "tags", None) or {}
        if tags.get("flywheel.draft_id") == did:
            # Two clusters of one category can draft the same text: the one that kept it names it.
            if provenance.get("flywheel.kept") == "true" and tags.get("flywheel.kept") != "true":
                for key in ("flywheel.kept", "flywheel.cluster_ids", "flywheel.screening"):
                    if key in provenance:
                        client.set_prompt_version_tag(ctx.settings.prompt_name, pv.version, key, provenance[key])
            return str(pv.version)
    # The draft id goes last: versions are found again by it, so a crash between tags leaves an
    # untagged version, never one found again with half its provenance.
    ref = register_prompt(
        ctx.settings,
        template,
        message,
        {"flywheel.cycle_id": ctx.cycle_id, PARENT: ctx.champion_version, **provenance, "flywheel.draft_id": did},
    )
    return ref.version


def prompt_candidate(
    ctx: CycleContext, template: str, clusters: Sequence[FailureCluster], payload: dict[str, Any]
) -> Candidate:
    first_seen, by_cluster = earliest_seen(clusters)
    return Candidate(
        candidate_id=f"prompt-{draft_id(ctx.cycle_id, template)}",
        cycle_id=ctx.cycle_id,
        kind="prompt",
        cluster_ids=[c.cluster_id for c in clusters],
        parent=ctx.champion_version,
        first_seen=first_seen,
        created_at=datetime.now(UTC),
        payload={
            "template": template,
            "diff": prompt_diff(ctx.champion_template, template, ctx.champion_version),
            "cluster_first_seen": by_cluster,
            "cluster_events": cluster_events(clusters),
            **payload,
        },
    )


def prompt_diff(before: str, after: str, parent_version: str) -> str:
    wrap = lambda t: [s + "\n" for s in t.replace(". ", ".\n").splitlines()]  # noqa: E731 - one sentence a line
    return "".join(unified_diff(wrap(before), wrap(after), f"prompt v{parent_version} (champion)", "candidate"))


def complaint_of(cluster: FailureCluster) -> str | None:
    """A diagnosed cluster's root cause: the complaint its drafts and their screening read where
    the users gave no reason."""
    d = cluster.diagnosis
    return d.root_cause if d is not None and d.diagnosed else None


@endpoint_errors("drafting")
def improve_prompt_step(ctx: CycleContext, cluster: FailureCluster, protected: Sequence[str]) -> list[Candidate]:
    """One cluster through the prompt improver; drafts and candidates are stored as they are made.
    Only kept drafts become prompt versions in the registry; the rest stay in the cycle's record."""
    with ctx.state() as state:
        cached = state.drafts(ctx.cycle_id, cluster.cluster_id)
        if cached is None:
            with ctx.feedback() as store:
                examples = failing_examples(
                    store.get(cluster.event_ids),
                    ctx.settings.improve.examples_per_cluster,
                    complaint=complaint_of(cluster),
                )
            result = propose(
                cluster_id=cluster.cluster_id,
                category=cluster.category,
                champion=ctx.champion_template,
                examples=examples,
                client=make_client(ctx.settings, purpose="drafting"),
                model=ctx.settings.draft_model,
                run_queries=lambda t, qs: answer_queries(ctx.settings, t, qs, ctx.index_version, ctx.champion_model),
                judge=lambda exs, outs: judge_resolutions(ctx.settings, ctx.runtime.state, exs, outs),
                protected=protected,
                settings=ctx.settings.improve,
            )
            cached = result.model_dump(mode="json")
            state.save_drafts(ctx.cycle_id, cluster.cluster_id, cached)
        result = DraftingResult.model_validate(cached)
        provenance = {"flywheel.cluster_ids": cluster.cluster_id}
        for idx in result.kept:
            draft = result.drafts[idx]
            if cached["drafts"][idx].get("version") is None:
                cached["drafts"][idx]["version"] = register_draft(
                    ctx,
                    draft.template,
                    f"draft {idx + 1} (round {draft.round}) for {cluster.cluster_id} ({cluster.category}), cycle "
                    f"{ctx.cycle_id}: resolved {draft.screening:.0%} of its failing examples, champion "
                    f"{result.champion_screening:.0%}",
                    {
                        **provenance,
                        "flywheel.screening": str(draft.screening),
                        "flywheel.kept": "true",
                        "flywheel.round": str(draft.round),
                    },
                )
                state.save_drafts(ctx.cycle_id, cluster.cluster_id, cached)
        if not result.kept:
            # No draft resolved as much as the champion: prompts failed here. No usable draft at all
            # (the drafting model refused or answered garbage) says nothing about the cluster, and
            # neither does a champion that already resolves the complaints.
            screened = any(d.screening is not None for d in result.drafts)
            outcome = "no_improvement" if screened else "already_resolved" if result.rounds == 0 else "drafting_failed"
            state.record_attempt(cluster.cluster_id, ctx.cycle_id, "prompt", f"drafts-{ctx.cycle_id}", Outcome(outcome))
        out = []
        for idx in result.kept:
            draft = result.drafts[idx]
            here = ClusterScreening(resolved=draft.resolved, champion_resolved=result.champion_resolved)
            cand = prompt_candidate(
                ctx,
                draft.template,
                [cluster],
                {
                    "critique": result.critique,
                    "screening": draft.screening,
                    "champion_screening": result.champion_screening,
                    "category": cluster.category,
                    "cluster_summary": cluster.summary,
                    "round": draft.round,
                    # A draft that only tied the champion goes to the golden set, but fixes nothing here.
                    "fixes": [cluster.cluster_id]
                    if (draft.screening or 0.0) > (result.champion_screening or 0.0)
                    else [],
                    "by_cluster": {cluster.cluster_id: here},
                },
            )
            cand.version = cached["drafts"][idx]["version"]
            state.add_candidate(cand)
            stored = state.candidate(cand.candidate_id)
            if stored is not None:  # the same prompt drafted for another cluster first: it covers this one too
                _absorb(stored, cand)
            out.append(stored or cand)
        return out


class DraftingSummary(BaseModel):
    """What the prompt improver did on one cluster this cycle (the report's "drafting")."""

    rounds: int
    rollouts: int
    champion_resolved: float | None
    best_resolved: float | None
    drafts: int
    kept: int
    problems: list[str]
    stopped: str
    outcome: str = Field(description="One line: what came of the drafting.")


def drafting_summary(ctx: CycleContext, cluster_id: str) -> DraftingSummary | None:
    """What the prompt improver did on a cluster, for the cycle's output and report."""
    with ctx.state() as state:
        doc = state.drafts(ctx.cycle_id, cluster_id)
    if doc is None:
        return None
    result = DraftingResult.model_validate(doc)
    if result.kept:
        why = f"{plural(len(result.kept), 'draft')} went to the golden set"
    elif result.rounds == 0:
        why = result.stopped
    elif any(d.screening is not None for d in result.drafts):
        why = (
            f"no draft resolved as much as the champion ({result.champion_screening:.0%}; best "
            f"{result.best_screening:.0%})"
        )
    else:
        why = "no usable draft: " + ("; ".join(result.problems[:3]) or "every draft failed the integrity checks")
    return DraftingSummary(
        rounds=result.rounds,
        rollouts=result.rollouts,
        champion_resolved=result.champion_screening,
        best_resolved=result.best_screening,
        drafts=len(result.drafts),
        kept=len(result.kept),
        problems=result.problems
        + [
            f"draft {i + 1} (round {d.round}): {'; '.join(d.problems)}"
            for i, d in enumerate(result.drafts)
            if d.problems
        ],
        stopped=result.stopped,
        outcome=why,
    )


def _absorb(seen: Candidate, cand: Candidate) -> None:
    """``seen`` (the same prompt as ``cand``) also covers ``cand``'s clusters, fixes and first-seen times."""
    for cid in cand.cluster_ids:
        if cid not in seen.cluster_ids:
            seen.cluster_ids.append(cid)
    assert isinstance(seen.payload, PromptPayload) and isinstance(cand.payload, PromptPayload)
    seen.payload.fixes = sorted(set(seen.payload.fixes or []) | set(cand.payload.fixes or []))
    for cid, screening in cand.payload.by_cluster.items():  # each cluster keeps its own evidence
        seen.payload.by_cluster.setdefault(cid, screening)
    seen.payload.cluster_first_seen.update(cand.payload.cluster_first_seen)
    seen.payload.cluster_events.update(cand.payload.cluster_events)
    if cand.first_seen and (seen.first_seen is None or cand.first_seen < seen.first_seen):
        seen.first_seen = cand.first_seen


def unique_candidates(ctx: CycleContext, cands: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per id: clusters of one category can draft the same prompt, which is then one
    candidate covering all of them (their ids and first-seen times are merged and saved)."""
    by_id: dict[str, Candidate] = {}
    for cand in cands:
        seen = by_id.get(cand.candidate_id)
        if seen is None:
            by_id[cand.candidate_id] = cand.model_copy(deep=True)
        else:
            _absorb(seen, cand)
    merged = list(by_id.values())
    if len(merged) < len(cands):
        client = ctx.mlflow
        with ctx.state() as state:
            for cand in merged:
                state.save_candidate(cand)
                if cand.kind == "prompt" and cand.version and len(cand.cluster_ids) > 1:
                    client.set_prompt_version_tag(
                        ctx.settings.prompt_name, cand.version, "flywheel.cluster_ids", ",".join(cand.cluster_ids)
                    )
    return merged
