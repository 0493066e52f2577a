"""The improver plugin: one kind of fix, end to end.

An improver is an object registered under the entry-point group ``flywheel.improvers`` (see
:mod:`flywheel.plugins`); the cycle, the gate, approval, canary, watch, rollback, status and the
service call it through :func:`improvers.registry.improvers` and never name a kind. What an improver
decides, and why it is the improver's to decide:

- **routing** (:meth:`Improver.select`): which triaged clusters it works on this cycle, since only it
  knows what it can fix (an index refresh fixes outdated knowledge, a fine-tune needs 1000 examples);
- **proposing** (:meth:`Improver.units`, :meth:`Improver.propose`, :meth:`Improver.combine`): its
  work cut into units the flow runs as separate, cached, retried tasks, then combined (the prompt
  improver merges its per-cluster drafts);
- **evaluating** (:meth:`Improver.variant`, :meth:`Improver.check`): what the product runs for one
  of its candidates, and a check of its own that can reject one the golden set would pass;
- **its champion** (``slot``): the champion its candidates move. Promotion, canary, serving, the
  watch's comparison and rollback are the slot's (:mod:`flywheel.champions`), so an improver that
  writes a new prompt version (``slot = prompt``) is served, canaried, watched and rolled back like
  the built-in prompt improver's; the three slots are what ``GET /v1/champion`` serves;
- **reporting** (``title``, :meth:`Improver.mlflow_params`, :meth:`Improver.artifacts`,
  :meth:`Improver.cluster_work`): how its candidates and the clusters it skipped are shown.

:class:`BaseImprover` gives every hook a default, so a plugin writes only what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from flywheel.candidates import BasePayload, Candidate, ChampionKind
from flywheel.config import Settings
from flywheel.evals.pipeline import Variant
from flywheel.improvers.context import CycleContext
from flywheel.schemas import FailureCluster
from flywheel.state import StateStore


class Proposal(BaseModel):
    """What one unit of an improver's work gave: its candidates, and what an operator should read
    (a fine-tune job still running, why nothing came of a cluster)."""

    candidates: list[Candidate] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list,
        description="Plain sentences; a note naming a cluster is "
        "shown as that cluster's outcome when no candidate covers it.",
    )
    report: BaseModel | None = Field(None, description="The improver's own section of the cycle report.")


class ImproverRun(BaseModel):
    """What one improver did in a cycle: the clusters it took and its combined proposal."""

    kind: str
    chosen: list[FailureCluster]
    proposal: Proposal


class KindCheck(BaseModel):
    """An improver's own check of a candidate beside the golden set (an index's retrieval)."""

    passed: bool
    reason: str


class ClusterWork(BaseModel):
    """What an improver says of one cluster routed to it: why it was skipped, or what it found."""

    skipped: str | None = None  # a setting or a fact stopped it (the cluster is `skipped`)
    found: str | None = None  # it worked on the cluster and found nothing to propose
    drafts: int | None = None
    kept: int | None = None
    champion_resolved: float | None = None
    best_resolved: float | None = None
    detail: BaseModel | None = Field(None, description="Shown as the cluster's `drafting` in the cycle's output.")


@runtime_checkable
class Improver(Protocol):
    """One kind of fix. ``name`` is its candidates' kind (MLflow's ``flywheel.kind``, the cycle's
    JSON); ``slot`` the champion they move; ``payload_model`` how a stored candidate is read back."""

    name: str
    slot: ChampionKind
    payload_model: type[BasePayload]
    title: str  # a human name: "prompt revision", "index refresh"
    built_on: str  # how a candidate relates to the champion it was made from: "drafted from"
    stage: str  # the cycle stage (and deadline, `deadlines.<stage>`) its proposing runs under

    def select(self, ctx: CycleContext, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
        """The clusters it works on this cycle (routing): a cluster may be taken by several improvers.
        ``ctx`` gives the settings and the process's stores (``ctx.state()``)."""
        ...

    def units(self, clusters: Sequence[FailureCluster]) -> list[list[FailureCluster]]:
        """Its work cut into independent units, each one task of the flow (cached and retried alone)."""
        ...

    def propose(self, ctx: CycleContext, clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Proposal:
        """Candidates for one unit. ``protected``: texts a candidate must never copy (the golden set)."""
        ...

    def combine(
        self,
        ctx: CycleContext,
        proposals: Sequence[Proposal],
        clusters: Sequence[FailureCluster],
        protected: Sequence[str],
    ) -> Proposal:
        """The units' proposals as one (deduplicated, merged)."""
        ...

    def variant(self, ctx: CycleContext, cand: Candidate) -> Variant:
        """What the product runs on the golden set for ``cand``: the champion with its change."""
        ...

    def check(self, cand: Candidate) -> KindCheck | None:
        """Its own check of ``cand``: failed, it is rejected whatever its golden score; passed, its
        reason joins the policy's (None: the policy alone decides)."""
        ...

    def mlflow_params(self, cand: Candidate) -> dict[str, str]:
        """Params of its MLflow run beyond the common ones."""
        ...

    def mlflow_metrics(self, cand: Candidate) -> dict[str, float]:
        """Metrics of its MLflow run beyond the golden scores."""
        ...

    def artifacts(self, cand: Candidate) -> dict[str, str]:
        """What an approver reads on its MLflow run: file name -> text."""
        ...

    def cluster_work(
        self, ctx: CycleContext, cluster: FailureCluster, chosen: Sequence[FailureCluster], proposal: Proposal
    ) -> ClusterWork:
        """Why a cluster routed to it got no candidate (skipped, or what it found)."""
        ...

    def cycle_notes(self, ctx: CycleContext) -> list[str]:
        """Setup smells only it can see, as plain sentences (a screening judge that said one thing)."""
        ...

    def status(self, settings: Settings, state: StateStore) -> dict[str, Any] | None:
        """Its section of `flywheel status --json` under its name (None: nothing to say)."""
        ...

    def status_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        """Its :meth:`status` section as rows of the `flywheel status` table."""
        ...

    def report_lines(self, section: dict[str, Any]) -> list[str]:
        """Its section of a cycle's result as lines the demo prints."""
        ...


class BaseImprover:
    """Defaults for every hook but :meth:`propose`: one unit for all selected clusters, combining by
    concatenation, the champion with the candidate's prompt template, no check of its own, the payload's fields
    as the record."""

    name: ClassVar[str]
    slot: ClassVar[ChampionKind]
    payload_model: ClassVar[type[BasePayload]]
    title: ClassVar[str] = ""
    built_on: ClassVar[str] = "made from"
    stage: ClassVar[str] = "drafting"

    def select(self, ctx: CycleContext, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
        return [c for c in clusters if c.route == self.name][: ctx.settings.improve.max_clusters]

    def units(self, clusters: Sequence[FailureCluster]) -> list[list[FailureCluster]]:
        return [list(clusters)] if clusters else []

    def propose(self, ctx: CycleContext, clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Proposal:
        raise NotImplementedError

    def combine(
        self,
        ctx: CycleContext,
        proposals: Sequence[Proposal],
        clusters: Sequence[FailureCluster],
        protected: Sequence[str],
    ) -> Proposal:
        return Proposal(
            candidates=[c for p in proposals for c in p.candidates],
            notes=[n for p in proposals for n in p.notes],
            report=proposals[0].report if len(proposals) == 1 else None,
        )

    def variant(self, ctx: CycleContext, cand: Candidate) -> Variant:
        return Variant(
            label=cand.candidate_id,
            prompt_template=cand.template or ctx.champion_template,
            prompt_version=cand.version if cand.template else ctx.champion_version,
            model=ctx.champion_model or ctx.settings.target_model,
            index_version=ctx.index_version,
            pipeline=ctx.settings.eval.pipeline or "builtin",
        )

    def check(self, cand: Candidate) -> KindCheck | None:
        return None

    def mlflow_params(self, cand: Candidate) -> dict[str, str]:
        return {}

    def mlflow_metrics(self, cand: Candidate) -> dict[str, float]:
        return {}

    def artifacts(self, cand: Candidate) -> dict[str, str]:
        return {f"{self.name}.json": cand.payload.model_dump_json(indent=2)}

    def cluster_work(
        self, ctx: CycleContext, cluster: FailureCluster, chosen: Sequence[FailureCluster], proposal: Proposal
    ) -> ClusterWork:
        if cluster.cluster_id not in {c.cluster_id for c in chosen}:
            return ClusterWork(skipped=f"not taken by the {self.title or self.name} improver this cycle")
        return ClusterWork(found=next((n for n in proposal.notes if cluster.cluster_id in n), None))

    def cycle_notes(self, ctx: CycleContext) -> list[str]:
        return []

    def status(self, settings: Settings, state: StateStore) -> dict[str, Any] | None:
        return None

    def status_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        return []

    def report_lines(self, section: dict[str, Any]) -> list[str]:
        return []
