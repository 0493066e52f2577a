"""The light client of Flywheel's live service (``flywheel serve``): the wire models and a small sync
client with retries. Depends on httpx and pydantic only; imports nothing of the server."""

from flywheel_client.client import ClientError, FeedbackRejected, FlywheelClient, ServiceUnavailable
from flywheel_client.models import (
    Arm,
    AskReason,
    AskRequest,
    AskResult,
    ChampionResult,
    FeedbackResult,
    IndexedError,
    Message,
    OptOutRequest,
    OptOutResult,
    PromptInfo,
    PromptRef,
    RenderRequest,
    RenderResult,
    RetrievedChunk,
    RetrieveRequest,
    RetrieveResult,
    TracesResult,
)

__all__ = [
    "Arm",
    "AskReason",
    "AskRequest",
    "AskResult",
    "ChampionResult",
    "ClientError",
    "FeedbackRejected",
    "FeedbackResult",
    "FlywheelClient",
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
    "ServiceUnavailable",
    "TracesResult",
]
