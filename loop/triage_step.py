"""Triage for the cycle (which clusters each improver works on is the improver's ``select``)."""

from __future__ import annotations

from collections.abc import Callable

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
    with open_state(settings) as state:
        failed = state.prompt_failed_clusters()
    with open_store(settings.resolved_store_url) as store:
        negatives = list(store.events(polarity=-1))
    inputs = TriageInputs(settings.triage, build_embedder(settings), prompt_failed=failed, classify=classify)
    return triage_events(negatives, inputs, progress)
