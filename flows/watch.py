"""The Prefect flow ``watch`` (deployment ``watch``, every 15 minutes): the plain watch of
:mod:`loop.watch_record` as one task, its document and chart as a Markdown artifact, and the drift
alarm as the Prefect event ``flywheel.drift.alarm`` (the ``on-drift`` deployment's trigger)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

import flywheel.flows  # noqa: F401 - run by file path (a deployment): the flow-run face first (masking, expected errors)
from flywheel.config import Settings, load_settings_for_flow
from flywheel.flows.events import emit_drift_alarm
from flywheel.loop.watch_record import WatchOutcome, watch_markdown, watch_once
from flywheel.runtime import runtime_for

ARTIFACT_KEY = "flywheel-watch"


class WatchParameters(BaseModel):
    """What an operator can set when running the watch from the Prefect UI."""

    dry_run: bool = Field(False, description="Compare and decide, but move nothing.")
    config: dict[str, Any] = Field(default_factory=dict, description="Setting overrides, as in flywheel.toml.")


@task(name="watch", cache_policy=NO_CACHE, persist_result=False)
def watch_task(settings: Settings, dry_run: bool) -> WatchOutcome:
    return watch_once(runtime_for(settings), dry_run=dry_run)


@flow(name="watch", log_prints=False, validate_parameters=True)
def watch(params: WatchParameters = WatchParameters()) -> dict[str, Any]:  # noqa: B008
    """Compare live negative-feedback rates, act on the verdicts, publish them, raise the drift alarm."""
    settings = load_settings_for_flow(params.config)
    outcome = watch_task(settings, params.dry_run)
    logger = get_run_logger()
    for row in outcome.report.watches:
        logger.info(
            "%s %s v%s vs %s: %s, %s (%s)",
            row.scope,
            row.kind,
            row.version,
            row.against,
            row.comparison.verdict,
            row.action,
            row.why,
        )
    acted = [r for r in outcome.report.watches if r.action != "none"]
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=watch_markdown(outcome.report, outcome.png, outcome.drift.why),
        description=f"{len(outcome.report.watches)} comparisons, {len(acted)} actions",
    )
    if outcome.alarm_new and emit_drift_alarm(settings, outcome.drift.model_dump(mode="json")):
        logger.warning("drift alarm: %s", outcome.drift.why)
    return outcome.public()
