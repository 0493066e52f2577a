"""The live service's request and response bodies (SPEC, "Live service"): one definition that the
server (``app/serve``) answers with and the client (``flywheel.client``) parses."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from flywheel.schemas import Arm, BatchReport, IndexedError

__all__ = ["AskReason", "AskRequest", "AskResult", "ChampionResult", "FeedbackResult", "IndexedError",
           "OptOutRequest", "OptOutResult", "PromptInfo"]

# POST /v1/feedback answers what the request's events did.
FeedbackResult = BatchReport


class PromptInfo(BaseModel):
    name: str
    version: str
    template: str


class ChampionResult(BaseModel):
    """What to serve one user: the arm they are in and that arm's prompt, index version and model."""

    arm: Arm
    prompt: PromptInfo
    index: str | None = Field(None, description="The knowledge index version; null when there is no index.")
    model: str = Field(description="The model name to call on the endpoint.")


class AskRequest(BaseModel):
    """An output was just shown: should the product ask this user for feedback on it?"""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)
    confidence: float | None = Field(None, ge=0.0, le=1.0, description="The output's confidence, 0..1.")
    task_seconds: float | None = Field(None, ge=0.0, description="How long the task behind the output took.")
    feature: str | None = Field(None, max_length=200, description="The product feature that produced it.")


class AskReason(StrEnum):
    low_confidence = "low_confidence"
    long_task = "long_task"
    feature_under_watch = "feature_under_watch"
    no_trigger = "no_trigger"  # nothing about this output calls for asking
    daily_cap = "daily_cap"  # it would, but this user was asked ask.per_user_per_day times today
    opted_out = "opted_out"  # the user said never


class AskResult(BaseModel):
    ask: bool
    reason: AskReason
    detail: str = Field("", description="The reason in words, with the figures.")


class OptOutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)


class OptOutResult(BaseModel):
    user_id: str
    opted_out: bool = True
    new: bool = Field(description="False when the user had opted out already.")
