"""The Prefect flow ``golden-review``: propose golden items (optional), then pause with a form that
lists the pending proposals, one accept switch each; what is switched on is accepted into a new
golden version with the reviewer recorded. The logic is :mod:`loop.golden`; this orchestrates,
builds the form and publishes what was decided."""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

import flywheel.flows  # noqa: F401 - run by file path (a deployment): the flow-run face first (masking, expected errors)
from flywheel.config import Settings, load_settings_for_flow
from flywheel.loop.golden.markdown import proposals_markdown
from flywheel.loop.golden.propose import propose
from flywheel.loop.golden.versions import accept, pending
from flywheel.proposals import GoldenProposal

REVIEW_KEY = "flywheel-golden-review"


class GoldenReviewParameters(BaseModel):
    """What an operator can set when starting a golden review from the Prefect UI."""

    propose: bool = Field(True, description="Propose items from the feedback first (`flywheel golden propose`).")
    synthetic: int = Field(
        0,
        ge=0,
        le=1000,
        description="Also draft up to this many items with the drafting model "
        "for categories under golden_set.min_per_category.",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Setting overrides, as in flywheel.toml.")


class GoldenReviewInput(RunInput):
    reviewer: str = Field(
        "", title="Reviewer", description="Who reviews (recorded on the golden version's MLflow run)."
    )


def field_name(proposal_id: str) -> str:
    return "accept_" + re.sub(r"\W", "_", proposal_id)


def review_form(proposals: list[GoldenProposal]) -> type[GoldenReviewInput]:
    """A RunInput with one switch per proposal, off by default."""
    fields: dict[str, Any] = {
        field_name(p.proposal_id): (
            bool,
            Field(False, title=f"Accept {p.proposal_id}", description=f"{p.category}: {p.input[:120]}"),
        )
        for p in proposals
    }
    return create_model("GoldenReview", __base__=GoldenReviewInput, **fields)  # type: ignore[call-overload,no-any-return]


@task(name="propose-golden", cache_policy=NO_CACHE, persist_result=False)
def propose_task(settings: Settings, synthetic: int) -> dict[str, Any]:
    return propose(settings, synthetic=synthetic).public()


@task(name="accept-golden", cache_policy=NO_CACHE, persist_result=False)
def accept_task(settings: Settings, ids: list[str], by: str) -> dict[str, Any]:
    return accept(settings, ids, by=by).model_dump(mode="json")


@flow(name="golden-review", log_prints=False, validate_parameters=True)
def golden_review(params: GoldenReviewParameters = GoldenReviewParameters()) -> dict[str, Any]:  # noqa: B008
    """Propose golden items, then wait for a reviewer to switch on the ones to accept."""
    logger = get_run_logger()
    settings = load_settings_for_flow(params.config)
    if params.propose:
        proposed = propose_task(settings, params.synthetic)
        logger.info("%d new proposals", len(proposed["proposals"]))
    waiting = pending(settings)
    if not waiting:
        logger.info("no pending proposals: nothing to review")
        return {"pending": 0, "accepted": [], "golden_version": None}
    description = proposals_markdown(waiting, timeout_s=settings.approval.timeout)
    create_markdown_artifact(
        key=REVIEW_KEY, markdown=description, description=f"{len(waiting)} golden-set proposals waiting for review"
    )
    logger.info("waiting for a reviewer of %d proposals in the Prefect UI", len(waiting))
    try:
        answer = pause_flow_run(
            wait_for_input=review_form(waiting).with_initial_data(description=description),
            timeout=settings.approval.timeout,
            poll_interval=settings.approval.poll_interval,
            key="golden-review",
        )
    except FlowPauseTimeout:
        logger.warning("nobody answered within %s s: the proposals stay pending", settings.approval.timeout)
        return {"pending": len(waiting), "accepted": [], "golden_version": None}
    chosen = [p.proposal_id for p in waiting if getattr(answer, field_name(p.proposal_id), False)]
    if not chosen:
        logger.info("nothing was switched on: the proposals stay pending")
        return {"pending": len(waiting), "accepted": [], "golden_version": None}
    report = accept_task(settings, chosen, answer.reviewer.strip() or "prefect-ui")
    logger.info(
        "%s accepted %d proposals: golden version %s", report["accepted_by"], len(chosen), report["golden_version"][:12]
    )
    return {"pending": len(waiting) - len(chosen), **report}
