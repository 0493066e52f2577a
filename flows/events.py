"""Prefect events for new negative feedback: the `on-feedback` deployment's trigger counts them.

One event ``flywheel.feedback.negative`` stands for ``events.negatives_per_event`` new negative
feedback events, and one ingest sends at most ``events.max_per_ingest`` of them (the trigger's
threshold by default): a large ingest starts one cycle, not one per threshold's worth of events,
while several small ingests add up. Each event's payload carries the exact count it stands for.
Sent only when a Prefect server is configured (``prefect_api_url``: the environment's
``PREFECT_API_URL`` or ``flywheel.toml``): Flywheel never starts an API just to emit.
"""

from __future__ import annotations

import math
from typing import Any

from flywheel.config import Settings

EVENT = "flywheel.feedback.negative"


def emit_negative_feedback(settings: Settings, new_negatives: int) -> int:
    """Emit the events for ``new_negatives`` new negative feedback events; returns how many were sent."""
    if not settings.events.emit or new_negatives <= 0 or not settings.prefect_api_url:
        return 0
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}):
        return _emit(settings, new_negatives)


def _emit(settings: Settings, new_negatives: int) -> int:
    from prefect.events import emit_event
    from prefect.events.clients import get_events_client  # noqa: F401 - fail here, not mid-loop, if missing

    per = settings.events.negatives_per_event
    count = math.ceil(new_negatives / per)
    if count <= settings.events.max_per_ingest:
        shares = [min(per, new_negatives - i * per) for i in range(count)]
    else:  # capped: the events share the count evenly
        count = settings.events.max_per_ingest
        shares = [new_negatives // count + (1 if i < new_negatives % count else 0) for i in range(count)]
    resource = {
        "prefect.resource.id": settings.events.resource,
        "prefect.resource.name": "Flywheel feedback",
        "flywheel.home": str(settings.home.resolve()),
    }
    for share in shares:
        emit_event(EVENT, resource=resource, payload={"negatives": share, "new_negatives_total": new_negatives})
    return count


DRIFT_EVENT = "flywheel.drift.alarm"
DRIFT_RESOURCE = "flywheel.drift"


def emit_drift_alarm(settings: Settings, drift: dict[str, Any]) -> bool:
    """Emit ``flywheel.drift.alarm`` (the `on-drift` deployment's trigger starts a cycle on it), with
    the trends and the reasons as payload. Sent only when a Prefect server is configured; True when sent."""
    if not settings.events.emit or not settings.prefect_api_url:
        return False
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    resource = {
        "prefect.resource.id": DRIFT_RESOURCE,
        "prefect.resource.name": "Flywheel quality drift",
        "flywheel.home": str(settings.home.resolve()),
    }
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}):
        return emit_event(DRIFT_EVENT, resource=resource, payload=drift) is not None
