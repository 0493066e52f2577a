"""The live service's request and response bodies (SPEC, "Live service"). One definition: the wire
models are the light client's (``clients/python/flywheel_client``, installed with Flywheel), which
the server (``app/serve``) answers with and the client parses; this module adds what only the
server knows, e.g. which variables a template declares."""

from __future__ import annotations

from flywheel_client.models import (
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
)

from flywheel.templates import template_variables

__all__ = [
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
    "prompt_info",
]


def prompt_info(name: str, version: str, template: str) -> PromptInfo:
    """A prompt as ``GET /v1/champion`` describes it: its ``variables`` are always the template's own
    (sorted), so what the service declares and what ``POST /v1/render`` requires cannot disagree."""
    return PromptInfo(name=name, version=version, template=template, variables=sorted(template_variables(template)))
