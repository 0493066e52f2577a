"""The cycle's diagnosis step: clusters triage left in ``other`` get a root cause and a category.

Triage cannot place most thumbs-downs without a reason, and ``other`` is a dead end (no improver
targets it), so before routing the cycle asks the drafting model to read each such cluster's
consented, scrubbed examples (:mod:`improvers.diagnosis`). A cluster it diagnoses takes the named
category and that category's route, keeps its id (so its history, fixes and drafts stay attached)
and carries the diagnosis; the prompt improver then drafts against the root cause, which stands in
for the reason no user gave. A cluster it cannot diagnose stays ``other`` with what was missing.

Diagnoses are stored per cycle in the state store before the cycle goes on: a resumed cycle asks
nothing again, and the weekly review shows the last cycle's diagnoses without asking anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from flywheel.config import Settings
from flywheel.feedback.store import FeedbackStore
from flywheel.improvers.diagnosis import diagnose
from flywheel.improvers.screening_step import failing_examples
from flywheel.llm import make_client
from flywheel.loop.context import endpoint_errors
from flywheel.runtime import runtime_for
from flywheel.schemas import ClusterDiagnosis, FailureCluster, StoredEvent
from flywheel.state import StateStore
from flywheel.triage import route_for
from flywheel.wording import plural


def diagnosis_key(cluster_id: str) -> str:
    """Where a cluster's diagnosis is kept in the cycle's drafts (beside its prompt drafts)."""
    return f"diagnosis:{cluster_id}"


def signal_counts(events: Sequence[StoredEvent]) -> dict[str, int]:
    """How the cluster's users said they were unhappy, as counts (statistics of every event, with or
    without consent; no text): ``thumbs_down``, ``rating 1``, ``outcome failure``..."""

    def label(e: StoredEvent) -> str:
        if e.signal == "outcome":
            return "outcome failure" if e.value == 0 else "outcome"
        if e.value is not None and e.signal in ("rating", "expert_review"):
            return f"{e.signal} {e.value:g}"
        return e.signal

    return dict(Counter(label(e) for e in events))


def apply_diagnosis(cluster: FailureCluster, diagnosis: ClusterDiagnosis) -> FailureCluster:
    """The cluster with its diagnosis; when a category was named, that category and its route."""
    if not diagnosis.diagnosed or diagnosis.category is None:
        return cluster.model_copy(update={"diagnosis": diagnosis})
    category = diagnosis.category
    summary = cluster.summary
    if summary.startswith(f"{cluster.category}:"):
        summary = f"{category} (diagnosed, no reason given):" + summary[len(cluster.category) + 1 :]
    return cluster.model_copy(
        update={
            "category": category,
            "summary": summary,
            "diagnosis": diagnosis,
            "route": route_for(category, prompt_failed=cluster.prompt_failed, finetune_gap=cluster.finetune_gap),
        }
    )


def _not_diagnosed(why: str, **fields: object) -> ClusterDiagnosis:
    return ClusterDiagnosis.model_validate({"diagnosed": False, "why_not": why, **fields})


def _diagnose_one(
    settings: Settings, cluster: FailureCluster, events: Sequence[StoredEvent], client: object
) -> ClusterDiagnosis:
    consented = [e for e in events if e.consent]
    if not consented:
        return _not_diagnosed(
            f"no consented examples: none of its {plural(cluster.size, 'event')} from {plural(cluster.users, 'user')} "
            "has consent, and text without consent is never sent to a model"
        )
    examples = failing_examples(consented, settings.improve.examples_per_cluster)
    readable = [e for e in examples if any(t.strip() for t in (e.query, e.output, e.comment or "", e.better or ""))]
    if not readable:
        return _not_diagnosed(
            f"no text to read: its {plural(len(consented), 'consented event')} have an empty query and answer and "
            "no comment, correction or edit",
            examples=0,
        )
    return diagnose(client, settings.draft_model, readable, signal_counts(events))


@endpoint_errors("diagnosis")
def diagnose_step(
    settings: Settings, state: StateStore, store: FeedbackStore, cycle_id: str, clusters: Sequence[FailureCluster]
) -> list[FailureCluster]:
    """``clusters`` with each one in ``other`` diagnosed (by priority, at most ``triage.max_diagnoses``);
    the others unchanged, the order kept. Each diagnosis is saved before the next is asked."""
    s = settings.triage
    out: list[FailureCluster] = []
    asked = 0
    client: object | None = None
    for cluster in clusters:
        if cluster.category != "other":
            out.append(cluster)
            continue
        key = diagnosis_key(cluster.cluster_id)
        cached = state.drafts(cycle_id, key)
        if cached is not None:
            diagnosis = ClusterDiagnosis.model_validate(cached)
        elif not s.diagnose:
            diagnosis = _not_diagnosed("not diagnosed: `triage.diagnose` is off, and no reason was given")
        elif asked >= s.max_diagnoses:
            diagnosis = _not_diagnosed(
                f"not diagnosed: beyond `triage.max_diagnoses` = {s.max_diagnoses} "
                "higher-priority clusters in `other` this cycle"
            )
        else:
            asked += 1
            if client is None:
                client = make_client(settings, purpose="diagnosing feedback without a reason")
            diagnosis = _diagnose_one(settings, cluster, store.get(cluster.event_ids), client)
            state.save_drafts(cycle_id, key, diagnosis.model_dump(mode="json"))
        out.append(apply_diagnosis(cluster, diagnosis))
    return out


def last_diagnoses(settings: Settings, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
    """``clusters`` with the diagnoses the last finished cycle made of those in ``other`` (nothing is
    asked): what the weekly review shows, so a cluster left ``other`` is read by a person."""
    with runtime_for(settings).borrow_state() as state:
        cycle_id = state.last_finished_cycle()
        if cycle_id is None:
            return list(clusters)
        out = []
        for cluster in clusters:
            cached = state.drafts(cycle_id, diagnosis_key(cluster.cluster_id)) if cluster.category == "other" else None
            out.append(apply_diagnosis(cluster, ClusterDiagnosis.model_validate(cached)) if cached else cluster)
        return out
