"""``flywheel status``: champions, what waits for a person, the feedback rate, the last cycle, loop
velocity, a running canary and how it fares, drift. Read only; its own module because it reads from
both sides of the watch (the promotions it compares, the canary it would judge)."""

from __future__ import annotations

from typing import Any

from flywheel.candidates import ChampionKind, Decision
from flywheel.champions import Canary, champion, running_canary
from flywheel.config import Settings
from flywheel.feedback.store import FeedbackStore
from flywheel.improvers.deferral import DeferredFix, waiting_deferred
from flywheel.improvers.registry import improvers
from flywheel.loop.drift import drift
from flywheel.loop.promotion import loop_velocity, loop_velocity_hours
from flywheel.loop.watch import canary_now
from flywheel.registry import production_model, production_prompt
from flywheel.state import StateStore, as_datetime


def status(settings: Settings, state: StateStore, store: FeedbackStore) -> dict[str, Any]:
    prompt = production_prompt(settings)
    model = production_model(settings)
    index = champion(settings, state, ChampionKind.rag).current()
    sections = {i.name: section for i in improvers() if (section := i.status(settings, state)) is not None}
    waiting = state.candidates(decision=Decision.pending_approval)
    deferred = [DeferredFix.of(c) for c in waiting_deferred(state)]
    promoted = state.candidates(decision=Decision.promoted)
    canary = running_canary(settings, state)
    last = state.last_cycle_started()
    cycles = state.cycles(limit=1)
    counts = store.counts()
    since = store.count_ingested_since(last) if last else counts["events"]
    return {
        "champions": {"prompt": prompt.version if prompt else None, "index": index, "model": model.provider_model},
        "model_version": model.version,
        **sections,  # each improver's own part (the fine-tuning improver's jobs and persistent clusters)
        "pending": [c.public() for c in waiting],
        "pending_approvals": len(waiting),
        "deferred": [d.model_dump(mode="json") for d in deferred],
        "negative_feedback_rate": round(counts["negative"] / counts["events"], 4) if counts["events"] else None,
        "events": counts["events"],
        "negative_events": counts["negative"],
        "events_since_last_cycle": since,
        "last_cycle": _with_iso_times(cycles[0]) if cycles else None,
        "last_cycle_at": last_at.isoformat() if last and (last_at := as_datetime(last)) else None,
        "loop_velocity_hours": loop_velocity_hours(promoted),
        "loop_velocity": loop_velocity(promoted),
        "promotions": len(promoted),
        "canary": _canary_status(settings, store, canary) if canary else None,
        "drift": drift(settings, state, store).model_dump(mode="json"),
    }


def _canary_status(settings: Settings, store: FeedbackStore, canary: Canary) -> dict[str, Any]:
    """The running canary, its share of users and how it fares so far: what the next watch compares."""
    row = canary_now(settings, store, canary)
    c = row.comparison
    figures = {
        "events": c.events,
        "negative_rate": c.negative_rate,
        "baseline_events": c.baseline_events,
        "baseline_rate": c.baseline_rate,
        "difference": c.difference,
        "ci_low": c.ci_low,
        "ci_high": c.ci_high,
        "verdict": str(c.verdict),
        "why": row.why,
    }
    return canary.model_dump(mode="json") | {"watch": figures | {"min_events": settings.watch.min_events}}


def _with_iso_times(cycle: dict[str, Any]) -> dict[str, Any]:
    """A cycle row with its epoch times as ISO 8601 (UTC, with the offset): raw epochs in JSON
    are unreadable and carry no timezone."""
    return cycle | {
        k: (when.isoformat() if (when := as_datetime(cycle.get(k))) else None) for k in ("started_at", "finished_at")
    }
