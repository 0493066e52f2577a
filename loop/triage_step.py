"""Triage for the cycle (which clusters each improver works on is the improver's ``select``)."""

from __future__ import annotations

from collections.abc import Callable

from flywheel.llm import make_client
from flywheel.runtime import Runtime
from flywheel.schemas import FailureCluster


def triage_step(rt: Runtime, progress: Callable[[int], None] | None = None) -> list[FailureCluster]:
    """Triage everything in the store, as `flywheel triage` and the cycle both do: the configured
    embedder, the LLM classifier when enabled, and the history of failed prompts (fine-tune routing),
    all of the process's Runtime ``rt``."""
    from flywheel.triage import TriageInputs, llm_classifier, triage_events

    settings = rt.settings
    classify = None
    if settings.triage.infer_with_llm:
        classify = llm_classifier(make_client(settings, purpose="triage with infer_with_llm"), settings.judge_model)
    failed = rt.state.prompt_failed_clusters()
    negatives = list(rt.feedback.events(polarity=-1))
    inputs = TriageInputs(settings.triage, rt.embedder, prompt_failed=failed, classify=classify)
    return triage_events(negatives, inputs, progress)
