"""The built-in prompt improver as a plugin: reflective drafting per cluster, screened on the
cluster's own complaints, the winners merged (entry point ``flywheel.improvers: prompt``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from flywheel.candidates import BasePayload, Candidate, ChampionKind, PromptPayload
from flywheel.improvers.base import BaseImprover, ClusterWork, Proposal
from flywheel.improvers.context import CycleContext
from flywheel.improvers.deferral import deferred_first
from flywheel.improvers.routing import fixed_clusters
from flywheel.schemas import FailureCluster
from flywheel.wording import plural


class PromptImprover(BaseImprover):
    name: ClassVar[str] = "prompt"
    slot: ClassVar[ChampionKind] = ChampionKind.prompt
    payload_model: ClassVar[type[BasePayload]] = PromptPayload
    title: ClassVar[str] = "prompt revision"
    built_on: ClassVar[str] = "drafted from"

    def select(self, ctx: CycleContext, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
        """Routed to it, with enough consented text, and not already fixed (a prompt for it was
        promoted after its last negative event; new negative feedback re-opens it). Clusters of
        deferred fixes (passed the gate, not merged) go first."""
        settings = ctx.settings
        with ctx.state() as state:
            fixed = fixed_clusters(state, clusters, self.name)
            chosen = [
                c
                for c in clusters
                if c.route == self.name
                and c.category != "other"
                and c.cluster_id not in fixed
                and c.consented >= settings.improve.min_cluster_consented
            ]
            chosen = deferred_first(chosen, state)
        return chosen[: settings.improve.max_clusters]

    def units(self, clusters: Sequence[FailureCluster]) -> list[list[FailureCluster]]:
        return [[c] for c in clusters]  # one drafting task per cluster

    def propose(self, ctx: CycleContext, clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Proposal:
        from flywheel.improvers.prompt_step import improve_prompt_step

        return Proposal(candidates=[c for cluster in clusters for c in improve_prompt_step(ctx, cluster, protected)])

    def combine(
        self,
        ctx: CycleContext,
        proposals: Sequence[Proposal],
        clusters: Sequence[FailureCluster],
        protected: Sequence[str],
    ) -> Proposal:
        """Identical drafts folded into one candidate, plus the merge of the winners when it keeps every fix."""
        from flywheel.improvers.merge_step import merge_step
        from flywheel.improvers.prompt_step import unique_candidates

        candidates = unique_candidates(ctx, [c for p in proposals for c in p.candidates])
        merged = merge_step(ctx, candidates, clusters, protected)
        return Proposal(candidates=candidates + ([merged] if merged is not None else []))

    def artifacts(self, cand: Candidate) -> dict[str, str]:
        from flywheel.improvers.records import diff_markdown

        p = cand.payload
        assert isinstance(p, PromptPayload)
        return {
            "prompt.txt": p.template,
            "critique.txt": p.critique,
            "prompt.diff.md": diff_markdown(f"{cand.title()} against its parent, prompt v{cand.parent}", p.diff),
        }

    def cycle_notes(self, ctx: CycleContext) -> list[str]:
        """A screening judge that said the same thing to every draft could not rank them."""
        from flywheel.improvers.screening_notes import cycle_drafting, screening_judge_note, screening_verdicts

        note = screening_judge_note(screening_verdicts(cycle_drafting(ctx)))
        return [note] if note else []

    def cluster_work(
        self, ctx: CycleContext, cluster: FailureCluster, chosen: Sequence[FailureCluster], proposal: Proposal
    ) -> ClusterWork:
        from flywheel.improvers.prompt_step import drafting_summary

        summary = drafting_summary(ctx, cluster.cluster_id)
        work = ClusterWork(skipped=self._skipped(ctx, cluster, chosen), detail=summary)
        if summary is not None:
            work.drafts, work.kept = summary.drafts, summary.kept
            work.champion_resolved, work.best_resolved = summary.champion_resolved, summary.best_resolved
            work.found = summary.outcome
        return work

    def _skipped(self, ctx: CycleContext, c: FailureCluster, chosen: Sequence[FailureCluster]) -> str | None:
        s = ctx.settings.improve
        if c.category == "other":
            if c.diagnosis is not None and c.diagnosis.why_not:
                return c.diagnosis.why_not
            return "category `other`: no prompt revision targets it (feedback with a `reason` routes it)"
        if c.consented < s.min_cluster_consented:
            return (
                f"{plural(c.consented, 'consented event')}, the prompt improver needs {s.min_cluster_consented} "
                "(`improve.min_cluster_consented`); text without consent is never used"
            )
        with ctx.state() as state:
            fixed = fixed_clusters(state, [c], self.name)
        if c.cluster_id in fixed:
            return "a prompt fix was promoted after its last negative event; new negative feedback re-opens it"
        if c.cluster_id not in {k.cluster_id for k in chosen}:
            return f"beyond `improve.max_clusters` = {s.max_clusters} higher-priority clusters this cycle"
        return None


IMPROVER = PromptImprover()
