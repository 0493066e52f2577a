"""Candidates: a proposed change of one kind, its typed payload, its evidence and its decision.

A candidate is stored as JSON in the state store and read back across processes (a resumed cycle,
the CLI approving what a flow proposed), so everything here is a pydantic model or a string enum:
the payload is a discriminated union on ``kind``, decisions and per-cluster outcomes are enums.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, model_validator


class CandidateKind(StrEnum):
    """The built-in kinds of fix (each an improver plugin, see :mod:`flywheel.plugins`). A candidate's
    kind is any registered improver's name; ``finetune`` candidates move the model champion."""

    prompt = "prompt"
    rag = "rag"
    finetune = "finetune"

    @property
    def champion(self) -> ChampionKind:
        return ChampionKind.model if self is CandidateKind.finetune else ChampionKind(self.value)


class ChampionKind(StrEnum):
    """What production serves, one champion each (SPEC's `rollback prompt|rag|model`)."""

    prompt = "prompt"
    rag = "rag"  # the active knowledge index version
    model = "model"

    @property
    def noun(self) -> str:
        """How a version of it is named: ``prompt v7``, ``index v3``, ``model ft:...``."""
        return "index" if self is ChampionKind.rag else self.value

    @property
    def event_field(self) -> str:
        """The feedback event's field that says which version of it served the output (the watch's column)."""
        return {ChampionKind.prompt: "prompt_version", ChampionKind.rag: "index_version", ChampionKind.model: "model"}[
            self
        ]


class Decision(StrEnum):
    """The gate's or a person's decision on a candidate."""

    promoted = "promoted"
    pending_approval = "pending_approval"
    rejected = "rejected"
    # Passed the policy but lost to a better candidate of its kind (or a newer one waits).
    superseded = "superseded"
    # Its evaluation could not be completed (the endpoint failed): never scored, proves nothing.
    error = "error"
    # Approved as a canary: served to a share of users until promoted or rolled back (by hand or the watch).
    canary = "canary"
    # Passed the policy and fixes something the waiting candidate does not, but could not be merged
    # with it: carried into the next cycle and redrafted against the new champion.
    deferred = "deferred"


class Outcome(StrEnum):
    """What one attempt meant for one failure cluster (the state store's ``cluster_attempts``)."""

    pending = "pending"
    promoted = "promoted"
    canary = "canary"  # served to a share of users, not yet promoted
    rejected = "rejected"
    superseded = "superseded"
    error = "error"
    rolled_back = "rolled_back"
    no_improvement = "no_improvement"  # prompt drafts screened and none resolved more than the champion
    already_resolved = "already_resolved"  # the champion already resolves the complaints
    drafting_failed = "drafting_failed"  # no usable draft: says nothing about the cluster
    failed = "failed"  # a fine-tune job failed
    deferred = "deferred"  # its fix passed but could not join the waiting candidate: redrafted next cycle

    @classmethod
    def of(cls, decision: Decision | None) -> Outcome:
        """The outcome a decision means for the candidate's clusters."""
        if decision is None:
            return cls.rejected
        return cls.pending if decision is Decision.pending_approval else cls(decision.value)


class ChampionSet(BaseModel):
    """The production combination a candidate was evaluated against: the prompt version, the index
    version and the model version ("base" before any fine-tune). Promotion is refused once any of
    them moved, since production would then run a combination nobody evaluated."""

    prompt: str | None = None
    index: str | None = None
    model: str = "base"

    def of(self, kind: ChampionKind) -> str | None:
        return {ChampionKind.prompt: self.prompt, ChampionKind.rag: self.index, ChampionKind.model: self.model}[kind]


class RetrievalMetrics(BaseModel):
    n: int
    recall_at_k: float
    mrr: float


class RetrievalValidation(BaseModel):
    """An index candidate's retrieval, active vs candidate, on the checks it was validated with."""

    k: int
    active: dict[str, RetrievalMetrics]  # "all", "affected", "unaffected"
    candidate: dict[str, RetrievalMetrics]
    passed: bool
    reason: str

    def flat(self) -> dict[str, float]:
        """Metrics for MLflow: retrieval.<version>.<subset>.<metric>."""
        out: dict[str, float] = {}
        for side, metrics in (("active", self.active), ("candidate", self.candidate)):
            for subset, m in metrics.items():
                out[f"retrieval.{side}.{subset}.recall_at_{self.k}"] = m.recall_at_k
                out[f"retrieval.{side}.{subset}.mrr"] = m.mrr
        return out


class BasePayload(BaseModel):
    """What every kind of change records: when each cluster's first negative event was seen (loop
    velocity) and whether the change was rolled back."""

    # Ignore what older versions stored that is no longer kept (a store upgrades in place).
    model_config = ConfigDict(extra="ignore")

    kind: str = Field(description="The improver's name: which payload model reads it back.")
    cluster_first_seen: dict[str, str] = Field(default_factory=dict, description="cluster id -> ISO time")
    cluster_events: dict[str, list[str]] = Field(
        default_factory=dict, description="cluster id -> a sample of its event ids (the watch's per-cluster rates)"
    )
    rolled_back_at: datetime | None = None
    rolled_back_by: str | None = None

    def why_not_merged(self) -> str | None:
        """Why the cycle could not merge this fix with the others of its slot (None: not said)."""
        return None


class MergeRecord(BaseModel):
    """How a merged prompt was made and what was checked (each method tried, and why it lost)."""

    method: str | None = None
    tried: list[dict[str, str]] = Field(default_factory=list)
    checked_clusters: int = 0
    checks: list[dict[str, Any]] = Field(
        default_factory=list, description="Per cluster of the kept merge: what the best winner and the merge resolved."
    )
    left_out: dict[str, str] = Field(
        default_factory=dict, description="Winner candidate id -> why it could not join the merge."
    )


class ClusterScreening(BaseModel):
    """What one prompt resolved on one cluster's failing examples, beside the champion on the same
    examples, verdict by verdict: a candidate drafted for several clusters (identical drafts folded
    into one) keeps one of these per cluster, so a merge is held to what it really fixed there."""

    resolved: list[bool] = Field(default_factory=list, description="Per failing example, in the cluster's order.")
    champion_resolved: list[bool] = Field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.resolved)

    @property
    def share(self) -> float:
        return round(sum(self.resolved) / len(self.resolved), 4) if self.resolved else 0.0

    @property
    def champion_share(self) -> float:
        return round(sum(self.champion_resolved) / len(self.champion_resolved), 4) if self.champion_resolved else 0.0

    @property
    def improves(self) -> bool:
        return self.share > self.champion_share


class PromptPayload(BasePayload):
    kind: Literal["prompt"] = "prompt"
    template: str
    diff: str = ""
    critique: str = ""
    category: str | None = None
    cluster_summary: str | None = None
    round: int | None = None
    screening: float | None = Field(None, description="Share of its failing examples the draft resolved.")
    champion_screening: float | None = Field(None, description="The champion's share on the same examples.")
    fixes: list[str] | None = Field(
        None, description="Clusters whose complaints it resolved more than the champion (None: not screened)."
    )
    merged_from: list[str] = Field(default_factory=list)
    merge: MergeRecord | None = None
    by_cluster: dict[str, ClusterScreening] = Field(
        default_factory=dict, description="cluster id -> what it resolved there (every cluster it covers)."
    )
    left_out_of_merge: str | None = Field(
        None, description="Why the cycle's merged prompt could not keep this winner's fix (it went on alone)."
    )

    def why_not_merged(self) -> str | None:
        return self.left_out_of_merge

    def improves_screening(self) -> bool:
        return (self.screening or 0.0) > (self.champion_screening or 0.0)


class RagPayload(BasePayload):
    kind: Literal["rag"] = "rag"
    template: str
    index_version: str
    changed_documents: list[str] = Field(default_factory=list)
    provenance: dict[str, dict[str, Any]] = Field(default_factory=dict, description="chunk id -> where it came from")
    retrieval: RetrievalValidation | None = None
    diff: str = ""


class FinetunePayload(BasePayload):
    kind: Literal["finetune"] = "finetune"
    model: str = Field(description="The provider's name of the fine-tuned model.")
    base_model: str
    job_id: str
    dataset_version: str
    dataset_path: str | None = None
    model_run_id: str | None = None
    champion_model: str = ""
    examples: int | None = None
    train: int | None = None
    validation: int | None = None
    preference_pairs: int | None = None
    excluded: dict[str, int] | None = None


class CanaryOutcome(StrEnum):
    promoted = "promoted"
    rolled_back = "rolled_back"


class CanaryRecord(BaseModel):
    """A candidate's time as a canary: the share of users, who started and ended it, and how it ended."""

    percent: float
    started_at: datetime
    started_by: str
    ended_at: datetime | None = None
    ended_by: str | None = None
    outcome: CanaryOutcome | None = None
    figures: dict[str, Any] | None = Field(None, description="The watch's figures when the watch ended it.")


def _typed_payload(value: Any) -> Any:
    """A stored payload read back as its improver's model (the registry is the discriminated union:
    an improver plugin brings its own payload model)."""
    if isinstance(value, BasePayload):
        return value
    if isinstance(value, dict):
        from flywheel.plugins import spec

        return spec(str(value.get("kind", ""))).payload_model.model_validate(value)
    return value


# Serialized as the payload's own model (every field of its kind), not as the base.
Payload = Annotated[SerializeAsAny[BasePayload], BeforeValidator(_typed_payload)]


class Candidate(BaseModel):
    """A proposed change, its evidence and its decision (SPEC.md's candidate, plus provenance)."""

    candidate_id: str
    cycle_id: str
    kind: str = Field(description="The improver that proposed it (a `flywheel.improvers` entry point).")
    cluster_ids: list[str]
    parent: str | None = Field(None, description="The champion it was drafted from (e.g. prompt version).")
    version: str | None = Field(None, description="What promotion would point at (e.g. the new prompt version).")
    payload: Payload = Field(description="The change itself: template, diff, provenance.")
    golden_score: float | None = None
    champion_score: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    per_category: dict[str, float] = Field(default_factory=dict)
    category_deltas: dict[str, float] = Field(default_factory=dict)
    per_segment: dict[str, float] = Field(default_factory=dict, description="Score per user segment of the golden set.")
    segment_deltas: dict[str, float] = Field(default_factory=dict)
    decision: Decision | None = None
    evaluated_against: ChampionSet | None = Field(
        None, description="The champion combination (prompt, index, model) it was evaluated against."
    )
    reason: str = ""
    mlflow_run_id: str | None = None
    first_seen: datetime | None = Field(None, description="Earliest negative event of its clusters (loop velocity).")
    created_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    note: str | None = None
    canary: CanaryRecord | None = Field(None, description="Set once served to a share of users as a canary.")
    carried_to: str | None = Field(
        None, description="A deferred candidate: the cycle that redrafted its clusters against the new champion."
    )
    verified_at: datetime | None = Field(
        None,
        description="When `flywheel watch` first saw its version's negative rate significantly lower than "
        "what it replaced: the fix verified on live traffic (verified loop velocity).",
    )

    @model_validator(mode="before")
    @classmethod
    def _payload_kind(cls, data: Any) -> Any:
        # The payload's kind is the candidate's: callers (and rows stored before payloads were
        # typed) give the payload without it.
        if isinstance(data, dict) and isinstance(data.get("payload"), dict) and "kind" not in data["payload"]:
            data = {**data, "payload": {**data["payload"], "kind": str(data.get("kind", ""))}}
        return data

    @model_validator(mode="after")
    def _kinds_agree(self) -> Candidate:
        if self.payload.kind != self.kind:
            raise ValueError(f"a {self.kind} candidate cannot carry a {self.payload.kind} payload")
        return self

    @property
    def template(self) -> str | None:
        """The prompt template it serves with (a fine-tune keeps the champion's)."""
        return getattr(self.payload, "template", None)

    @property
    def slot(self) -> ChampionKind:
        """The champion it would move (its improver's slot)."""
        from flywheel.plugins import spec

        return spec(self.kind).slot

    def target_name(self) -> str:
        """What promotion would point at: ``prompt v7``, ``index v3``, ``model ft:...``."""
        slot = self.slot
        if self.version and slot is not ChampionKind.model:
            return f"{slot.noun} v{self.version}"
        return f"{slot.noun} {self.version or getattr(self.payload, 'model', '') or ''}".strip()

    def short_title(self) -> str:
        """``prompt v7 (prompt-cf2b43)``: the start of :meth:`title`, for a line that must stay short."""
        return f"{self.target_name()} ({self.candidate_id})"

    def title(self, clusters: int = 3) -> str:
        """How an approver knows it: kind, what promotion would point at (prompt or index version,
        model name), the clusters it fixes (a prompt's screened fixes; "for" the clusters it
        was drafted for when nothing screened them per cluster) and its id, e.g.
        ``prompt v7: fixes tone-1, fmt-2 (prompt-cf2b43)``."""
        target = self.target_name()
        fixes = self.fixed_clusters()
        named, verb = (fixes, "fixes") if fixes else (self.cluster_ids, "for")  # others are not screened per cluster
        shown = ", ".join(named[:clusters]) + (f" and {len(named) - clusters} more" if len(named) > clusters else "")
        return f"{target}: {verb} {shown} ({self.candidate_id})" if shown else f"{target} ({self.candidate_id})"

    def fixed_clusters(self) -> list[str]:
        """The clusters whose complaints it resolved more than the champion did (prompt drafts only:
        other kinds are not screened per cluster)."""
        return (self.payload.fixes or []) if isinstance(self.payload, PromptPayload) else []

    def gains(self, category_gain: float) -> set[str]:
        """What it fixes: the clusters it resolved more of than the champion, and the golden categories
        it raised by at least ``category_gain``. A candidate supersedes another only when its gains
        include all of the other's."""
        return {f"cluster {cid}" for cid in self.fixed_clusters()} | {
            f"golden category {cat}" for cat, d in self.category_deltas.items() if d >= category_gain
        }

    def outcome_for(self, cluster_id: str, outcome: Outcome) -> Outcome:
        """What this candidate's ``outcome`` means for one of its clusters. A prompt draft that resolved
        none of the cluster's own complaints more than the champion did fixed nothing there, whatever
        the golden set thought of it (it may help another failure): prompts failed on that cluster."""
        fixes = self.payload.fixes if isinstance(self.payload, PromptPayload) else None
        if fixes is not None and cluster_id not in fixes and outcome is not Outcome.error:
            return Outcome.no_improvement
        return outcome

    def public(self) -> dict[str, Any]:
        """The SPEC fields first, then the rest; of the payload, a prompt's merge evidence (which
        cluster held a merge back, and by how much) and the fixes it claims per cluster."""
        spec = (
            "candidate_id",
            "kind",
            "cluster_ids",
            "golden_score",
            "champion_score",
            "delta",
            "ci_low",
            "ci_high",
            "per_category",
            "decision",
            "reason",
            "mlflow_run_id",
        )
        doc = self.model_dump(mode="json")
        out = {k: doc[k] for k in spec} | {k: v for k, v in doc.items() if k not in spec and k != "payload"}
        if isinstance(self.payload, PromptPayload):
            p = doc["payload"]
            out["fixes"] = p["fixes"]
            out["resolved_by_cluster"] = {
                cid: {
                    "resolved": sum(s["resolved"]),
                    "champion": sum(s["champion_resolved"]),
                    "examples": len(s["resolved"]),
                }
                for cid, s in p["by_cluster"].items()
            }
            out |= {k: p[k] for k in ("merge", "left_out_of_merge") if p[k]}
        return out
