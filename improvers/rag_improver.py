"""The built-in RAG improver as a plugin: a new knowledge index version from corrected knowledge,
retrieval re-validated (entry point ``flywheel.improvers: rag``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from flywheel.candidates import BasePayload, Candidate, ChampionKind, RagPayload
from flywheel.evals.pipeline import Variant
from flywheel.improvers.base import BaseImprover, ClusterWork, KindCheck, Proposal
from flywheel.improvers.context import CycleContext
from flywheel.improvers.routing import fixed_clusters
from flywheel.schemas import FailureCluster


class RagImprover(BaseImprover):
    name: ClassVar[str] = "rag"
    slot: ClassVar[ChampionKind] = ChampionKind.rag
    payload_model: ClassVar[type[BasePayload]] = RagPayload
    title: ClassVar[str] = "index refresh"
    built_on: ClassVar[str] = "built on"

    def select(self, ctx: CycleContext, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
        """Outdated-knowledge clusters not already fixed by a promoted index version."""
        with ctx.state() as state:
            fixed = fixed_clusters(state, clusters, self.name)
        return [c for c in clusters if c.route == self.name and c.cluster_id not in fixed][
            : ctx.settings.improve.max_clusters
        ]

    def propose(self, ctx: CycleContext, clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Proposal:
        from flywheel.improvers.rag_step import improve_rag_step

        cand = improve_rag_step(ctx, clusters)
        return Proposal(candidates=[cand] if cand is not None else [])

    def variant(self, ctx: CycleContext, cand: Candidate) -> Variant:
        """The champion's prompt over the candidate index version."""
        return Variant(
            label=cand.candidate_id,
            prompt_template=ctx.champion_template,
            prompt_version=ctx.champion_version,
            model=ctx.champion_model or ctx.settings.target_model,
            index_version=cand.version,
            pipeline=ctx.settings.eval.pipeline or "builtin",
        )

    def check(self, cand: Candidate) -> KindCheck | None:
        """Retrieval on the golden set's and the clusters' checks must not get worse."""
        retrieval = cand.payload.retrieval if isinstance(cand.payload, RagPayload) else None
        return KindCheck(passed=retrieval.passed, reason=retrieval.reason) if retrieval else None

    def mlflow_metrics(self, cand: Candidate) -> dict[str, float]:
        retrieval = cand.payload.retrieval if isinstance(cand.payload, RagPayload) else None
        return retrieval.flat() if retrieval else {}

    def artifacts(self, cand: Candidate) -> dict[str, str]:
        from flywheel.improvers.records import diff_markdown

        p = cand.payload
        assert isinstance(p, RagPayload)
        return {
            "index.diff.md": diff_markdown(f"Index change of {cand.title()}", p.diff),
            "index_changes.json": p.model_dump_json(indent=2, include={"changed_documents", "provenance", "retrieval"}),
        }

    def cluster_work(
        self, ctx: CycleContext, cluster: FailureCluster, chosen: Sequence[FailureCluster], proposal: Proposal
    ) -> ClusterWork:
        from flywheel.improvers.rag_step import rag_key

        with ctx.state() as state:
            fixed = fixed_clusters(state, [cluster], self.name)
        if cluster.cluster_id in fixed:
            return ClusterWork(
                skipped="an index fix was promoted after its last negative event; new negative feedback re-opens it"
            )
        if cluster.cluster_id not in {c.cluster_id for c in chosen}:
            return ClusterWork(
                skipped=f"beyond `improve.max_clusters` = {ctx.settings.improve.max_clusters} "
                "higher-priority outdated-knowledge clusters this cycle"
            )
        with ctx.state() as state:
            doc = state.drafts(ctx.cycle_id, rag_key(chosen))
        if doc and doc.get("version") is None:
            return ClusterWork(found=str(doc.get("reason") or "no index candidate"))
        return ClusterWork()


IMPROVER = RagImprover()
