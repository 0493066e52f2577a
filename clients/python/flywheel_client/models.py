"""The live service's request and response bodies (SPEC, "Live service"): the one definition of the
wire format. The server (``flywheel serve``) answers with these models and this client parses them,
so the two cannot drift; the server's extras (counting, the template's variables) live on its side."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Arm",
    "AskReason",
    "AskRequest",
    "AskResult",
    "ChampionResult",
    "FeedbackResult",
    "IndexedError",
    "Message",
    "OptOutRequest",
    "OptOutResult",
    "PromptInfo",
    "PromptRef",
    "RenderRequest",
    "RenderResult",
    "RetrieveRequest",
    "RetrieveResult",
    "RetrievedChunk",
    "TracesResult",
]

# Which variant a user is served: everyone production, or a stable share of users the running canary.
Arm = Literal["production", "canary"]


class IndexedError(BaseModel):
    """Why the item at ``index`` (0-based) of a request was rejected."""

    index: int
    error: str


class FeedbackResult(BaseModel):
    """What one request's events did (``POST /v1/feedback``): each count is of this request alone."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[IndexedError] = Field(default_factory=list)
    scrubbed: int = Field(0, description="Accepted events that had PII removed.")
    negative: int = Field(0, description="Accepted events that are negative feedback.")


class PromptRef(BaseModel):
    name: str
    version: str


class PromptInfo(PromptRef):
    template: str
    variables: list[str] = Field(
        default_factory=list,
        description="The `{{name}}` variables the template declares, sorted: what `POST /v1/render` needs.",
    )


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


class RenderRequest(BaseModel):
    """``POST /v1/render``: the prompt of this user's arm, filled with the product's values."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, max_length=256, description="Picks the arm; none: production.")
    variables: dict[str, str] = Field(default_factory=dict, description="A value for every declared variable.")


class Message(BaseModel):
    role: str
    content: str


class RenderResult(BaseModel):
    arm: Arm
    prompt: PromptRef
    messages: list[Message]


class RetrieveRequest(BaseModel):
    """``POST /v1/retrieve``: passages from the index version of this user's arm."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, max_length=256, description="Picks the arm; none: production.")
    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=50, description="How many chunks.")


class RetrievedChunk(BaseModel):
    id: str = Field(description="The chunk id (`<document id>#<n>`): send it back as `context_ids`.")
    text: str
    source: str | None = None
    score: float = Field(description="Cosine similarity to the query, higher is nearer.")


class RetrieveResult(BaseModel):
    arm: Arm
    index_version: str
    chunks: list[RetrievedChunk]


class TracesResult(BaseModel):
    """What ``POST /v1/traces`` said of one OTLP export (its ``ExportTraceServiceResponse``): OTLP's
    answer counts the spans that had a feedback item rejected (and quarantined), not the stored ones,
    so a span not rejected was stored or was a duplicate."""

    rejected_spans: int = Field(0, ge=0, description="Spans with at least one feedback item rejected.")
    error_message: str | None = Field(None, description="The first rejections, with the field and the rule.")
