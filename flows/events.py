"""Prefect events for new negative feedback: the `on-feedback` deployment's trigger counts them.

One event ``flywheel.feedback.negative`` stands for up to ``events.negatives_per_event`` new
negative feedback events (so a million-line ingest sends a bounded number of events); its payload
carries the exact count. Sent only when a Prefect server is configured (``PREFECT_API_URL``):
Flywheel never starts an API just to emit.
"""

from __future__ import annotations

import math
import os

from flywheel.config import Settings

EVENT = "flywheel.feedback.negative"


def emit_negative_feedback(settings: Settings, new_negatives: int) -> int:
    """Emit the events for ``new_negatives`` new negative feedback events; returns how many were sent."""
    if not settings.events.emit or new_negatives <= 0 or not os.environ.get("PREFECT_API_URL"):
        return 0
    from prefect.events import emit_event
    from prefect.events.clients import get_events_client  # noqa: F401 - fail here, not mid-loop, if missing

    per = settings.events.negatives_per_event
    count = math.ceil(new_negatives / per)
    resource = {"prefect.resource.id": settings.events.resource, "prefect.resource.name": "Flywheel feedback",
                "flywheel.home": str(settings.home.resolve())}
    for i in range(count):
        emit_event(EVENT, resource=resource,
                   payload={"negatives": min(per, new_negatives - i * per), "new_negatives_total": new_negatives})
    return count
