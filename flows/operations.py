"""Smaller flows an operator runs alone from the Prefect UI: ``triage-feedback`` (what is failing
now, without starting a cycle) and ``promotion`` (approve, reject or roll back, the same decisions
as `flywheel approve|reject|rollback`, recorded the same way). The logic is the core's; these only
orchestrate and publish what they did as artifacts.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, model_validator

import flywheel.flows  # noqa: F401 - run by file path (a deployment): the flow-run face first (masking, expected errors)
from flywheel.candidates import ChampionKind
from flywheel.config import Settings, load_settings_for_flow
from flywheel.evals import report as r
from flywheel.loop import promotion as champions
from flywheel.loop.report import cluster_summaries
from flywheel.loop.triage_step import triage_step
from flywheel.runtime import runtime_for


class TriageParameters(BaseModel):
    """What an operator can set when triaging from the Prefect UI."""

    config: dict[str, Any] = Field(default_factory=dict, description="Setting overrides, as in flywheel.toml.")


@task(name="triage", cache_policy=NO_CACHE, persist_result=False)
def triage_task(settings: Settings) -> list[dict[str, Any]]:
    return cluster_summaries(triage_step(runtime_for(settings)))


@flow(name="triage-feedback", log_prints=False, validate_parameters=True)
def triage_feedback(params: TriageParameters = TriageParameters()) -> dict[str, Any]:  # noqa: B008
    """Group the negative feedback into failure clusters and show where each would be routed."""
    clusters = triage_task(load_settings_for_flow(params.config))
    create_table_artifact(
        key=r.TRIAGE_KEY,
        table=r.cluster_rows(clusters),
        description=f"{len(clusters)} failure clusters, highest priority first",
    )
    routes: dict[str, int] = {}
    for c in clusters:
        routes[c["route"]] = routes.get(c["route"], 0) + 1
    get_run_logger().info("%d clusters; routes %s", len(clusters), routes or "none")
    return {"clusters": clusters}


class PromotionParameters(BaseModel):
    """One decision, as an operator fills it in the Prefect UI."""

    action: Literal["approve", "reject", "rollback"] = Field(
        description="approve or reject a pending candidate, or roll back a kind's last promotion."
    )
    candidate_id: str | None = Field(
        None, description="The candidate to approve or reject (the cycle's candidate table, `flywheel pending`)."
    )
    kind: ChampionKind | None = Field(None, description="Which champion to roll back.")
    by: str = Field(min_length=1, description="Who decides (recorded on the MLflow runs).")
    note: str | None = Field(None, description="Why, for the record; required to reject.")
    config: dict[str, Any] = Field(default_factory=dict, description="Setting overrides, as in flywheel.toml.")

    @model_validator(mode="after")
    def _complete(self) -> PromotionParameters:
        if self.action in ("approve", "reject") and not self.candidate_id:
            raise ValueError(f"{self.action} needs candidate_id")
        if self.action == "reject" and not (self.note or "").strip():
            raise ValueError("reject needs a note: the reason is recorded with the decision")
        if self.action == "rollback" and self.kind is None:
            raise ValueError(f"rollback needs kind: {', '.join(ChampionKind)}")
        return self


@task(name="decide", cache_policy=NO_CACHE, persist_result=False)
def decide_task(settings: Settings, params: PromotionParameters) -> dict[str, Any]:
    if params.action == "rollback":
        assert params.kind is not None
        return champions.rollback(settings, params.kind, by=params.by, note=params.note)
    assert params.candidate_id is not None
    if params.action == "approve":
        return champions.approve(settings, params.candidate_id, by=params.by, note=params.note).public()
    return champions.reject(settings, params.candidate_id, by=params.by, reason=params.note or "").public()


@flow(name="promotion", log_prints=False, validate_parameters=True)
def promotion(params: PromotionParameters) -> dict[str, Any]:
    """Approve, reject or roll back; a cycle paused for these candidates goes on once all are decided."""
    from flywheel.flows.approval import resume_if_decided

    settings = load_settings_for_flow(params.config)
    outcome = decide_task(settings, params)
    create_markdown_artifact(
        key=r.PROMOTION_KEY,
        markdown=r.promotion_markdown(params.action, outcome, by=params.by, note=params.note),
        description=f"{params.action} by {params.by}",
    )
    logger = get_run_logger()
    logger.info("%s by %s: %s", params.action, params.by, r.promotion_summary(params.action, outcome))
    if params.action != "rollback":
        for run_id in resume_if_decided(settings):
            logger.info("resumed the flow run %s that was waiting for approval", run_id)
    return outcome
