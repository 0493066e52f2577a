"""The Python client of ``flywheel serve``: the light distribution ``flywheel_client``
(``clients/python/``, installed with Flywheel too), re-exported under the server's name so that
``from flywheel.client import FlywheelClient`` keeps working. A product that only talks to the
service installs ``flywheel-client`` alone (httpx and pydantic, not the server's stack).
"""

from __future__ import annotations

from flywheel_client import (
    AskResult,
    ChampionResult,
    ClientError,
    FeedbackRejected,
    FeedbackResult,
    FlywheelClient,
    OptOutResult,
    RenderResult,
    RetrieveResult,
    ServiceUnavailable,
    TracesResult,
)

__all__ = [
    "AskResult",
    "ChampionResult",
    "ClientError",
    "FeedbackRejected",
    "FeedbackResult",
    "FlywheelClient",
    "OptOutResult",
    "RenderResult",
    "RetrieveResult",
    "ServiceUnavailable",
    "TracesResult",
]
