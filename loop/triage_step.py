"""Triage for the cycle, and which clusters each improver works on this cycle."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flywheel.config import Settings
from flywheel.feedback.store import open_store
from flywheel.llm import make_client
from flywheel.schemas import FailureCluster
from flywheel.state import open_state


def triage_step(settings: Settings, progress: Callable[[int], None] | None = None) -> list[FailureCluster]:
    """Triage everything in the store, as `flywheel triage` and the cycle both do: the configured
    embedder, the LLM classifier when enabled, and the history of failed prompts (fine-tune routing)."""
    from flywheel.embeddings import build_embedder
    from flywheel.triage import TriageInputs, llm_classifier, triage_events

    classify = None
    if settings.triage.infer_with_llm:
        classify = llm_classifier(make_client(settings, purpose="triage with infer_with_llm"), settings.judge_model)
    with open_state(settings.ensure_home()) as state:
        failed = state.prompt_failed_clusters()
    with open_store(settings.resolved_store_url) as store:
        negatives = list(store.events(polarity=-1))
    inputs = TriageInputs(settings.triage, build_embedder(settings), prompt_failed=failed, classify=classify)
    return triage_events(negatives, inputs, progress)


def prompt_clusters(clusters: Sequence[FailureCluster], settings: Settings) -> list[FailureCluster]:
    """The clusters the prompt improver works on this cycle: routed to it, with enough consented
    text, and not already fixed (a prompt for it was promoted after its last negative event; new
    negative feedback re-opens it). Clusters of deferred fixes (passed the gate, not merged) go first."""
    from loop.deferral import deferred_first

    fixed = fixed_clusters(settings, clusters, "prompt")
    chosen = [c for c in clusters if c.route == "prompt" and c.consented >= settings.improve.min_cluster_consented
              and c.category != "other" and c.cluster_id not in fixed]
    with open_state(settings.ensure_home()) as state:
        chosen = deferred_first(chosen, state)
    return chosen[: settings.improve.max_clusters]


def fixed_clusters(settings: Settings, clusters: Sequence[FailureCluster], kind: str) -> set[str]:
    """Clusters whose fix of ``kind`` was promoted after their last negative event: nothing new to
    fix until new negative feedback arrives (a rollback re-opens them)."""
    with open_state(settings.ensure_home()) as state:
        return {c.cluster_id for c in clusters if c.last_seen is not None
                and (at := state.promoted_at(c.cluster_id, kind)) is not None and at > c.last_seen.timestamp()}


def rag_clusters(clusters: Sequence[FailureCluster], settings: Settings) -> list[FailureCluster]:
    """Outdated-knowledge clusters not already fixed by a promoted index version."""
    fixed = fixed_clusters(settings, clusters, "rag")
    return [c for c in clusters if c.route == "rag" and c.cluster_id not in fixed][: settings.improve.max_clusters]


def finetune_clusters(clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
    return [c for c in clusters if c.route == "finetune"]
