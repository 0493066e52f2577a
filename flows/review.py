"""The Prefect flow ``weekly-feedback-review``: the worst-rated outputs of the past week grouped by
failure cluster, and the trend of the negative-feedback rate, published as artifacts for the
team's weekly review. The logic is :mod:`loop.review`; this only orchestrates and publishes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

import flywheel.flows  # noqa: F401 - run by file path (a deployment): the flow-run face first (masking, expected errors)
from flywheel.config import Settings, load_settings_for_flow
from flywheel.loop.review import REVIEW_KEY, TREND_KEY, WeeklyReview, review_markdown, weekly_review


class ReviewParameters(BaseModel):
    """What an operator can set when starting a review from the Prefect UI."""

    until: datetime | None = Field(None, description="End of the reviewed week (default: now).")
    days: int = Field(7, ge=1, le=31, description="Days reviewed.")
    weeks: int = Field(6, ge=2, le=52, description="Weeks of negative-feedback-rate trend.")
    per_cluster: int = Field(5, ge=1, le=50, description="Worst-rated outputs shown per cluster.")
    config: dict[str, Any] = Field(default_factory=dict, description="Setting overrides, as in flywheel.toml.")


@task(name="review", cache_policy=NO_CACHE, persist_result=False)
def review_task(settings: Settings, params: ReviewParameters) -> WeeklyReview:
    return weekly_review(
        settings, until=params.until, days=params.days, weeks=params.weeks, per_cluster=params.per_cluster
    )


@flow(name="weekly-feedback-review", log_prints=False, validate_parameters=True)
def weekly_feedback_review(params: ReviewParameters = ReviewParameters()) -> dict[str, Any]:  # noqa: B008
    """Read the week's worst-rated outputs together: grouped by cluster, with the rate's trend."""
    settings = load_settings_for_flow(params.config)
    review = review_task(settings, params)
    create_markdown_artifact(
        key=REVIEW_KEY,
        markdown=review_markdown(review),
        description=f"Feedback review {review.since:%Y-%m-%d} to {review.until:%Y-%m-%d}",
    )
    create_table_artifact(
        key=TREND_KEY, table=[w.model_dump() for w in review.trend], description="Negative-feedback rate by week"
    )
    get_run_logger().info(
        "%d negative events this week in %d clusters; rate %s", review.negative, len(review.clusters), review.direction
    )
    return review.model_dump(mode="json")
