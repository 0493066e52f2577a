"""What the watch does about a verdict, as a journal: an action is written to the state store
(pointer ``watch_intents``) before any pointer moves, performed, then crossed off. A watch that
dies in between finds the action on its next run and finishes it; every step checks where the
pointers are first, so nothing moves twice and nothing is recorded twice.

Every action is recorded the way a person's is (``flywheel rollback``, ``promote-canary``): by
``flywheel-watch``, in the champions' history and on the candidate's MLflow run, with the figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from flywheel.candidates import ChampionKind
from flywheel.champions import champion, running_canary
from flywheel.config import Settings
from flywheel.loop.canary import end_canary, record_end
from flywheel.loop.promotion import record_rollback
from flywheel.state import StateStore

BY = "flywheel-watch"
INTENTS = "watch_intents"


class WatchAction(StrEnum):
    none = "none"
    promoted = "promoted"
    rolled_back = "rolled_back"


class Intent(BaseModel):
    """An action decided and not yet known to be done."""

    scope: Literal["canary", "promotion"]
    kind: ChampionKind
    version: str
    candidate_id: str | None
    action: WatchAction
    figures: dict[str, Any]
    decided_at: datetime


_INTENTS = TypeAdapter(list[Intent])


def pending_intents(state: StateStore) -> list[Intent]:
    return _intents(state.pointer(INTENTS))


def _intents(raw: str | None) -> list[Intent]:
    return _INTENTS.validate_json(raw) if raw else []


def _edit(state: StateStore, change: Callable[[list[Intent]], list[Intent]]) -> None:
    """Change the journal in one transaction (a concurrent writer's entry is never lost)."""

    def write(raw: str | None) -> str | None:
        intents = change(_intents(raw))
        return _INTENTS.dump_json(intents).decode() if intents else None

    state.update_pointer(INTENTS, write)


def journal(state: StateStore, intent: Intent) -> None:
    """Write the decision down before acting on it."""
    _edit(state, lambda intents: [*intents, intent])


def note_of(figures: dict[str, Any]) -> str:
    """One line for the history and the run: the verdict and its figures."""
    return (
        f"flywheel watch: {figures.get('verdict')}, negative rate {figures.get('negative_rate')} vs "
        f"{figures.get('baseline_rate')} ({figures.get('against')}), difference {figures.get('difference')} "
        f"[{figures.get('ci_low')}, {figures.get('ci_high')}], {figures.get('events')} vs "
        f"{figures.get('baseline_events')} events"
    )


def perform(settings: Settings, state: StateStore, intent: Intent) -> None:
    """Carry out ``intent`` wherever a previous attempt stopped, then cross it off."""
    note = note_of(intent.figures)
    if intent.scope == "canary":
        _end_canary(settings, state, intent, note)
    else:
        _roll_back(settings, state, intent, note)
    _edit(state, lambda intents: [i for i in intents if i != intent])


def _end_canary(settings: Settings, state: StateStore, intent: Intent, note: str) -> None:
    promote = intent.action is WatchAction.promoted
    canary = running_canary(settings, state)
    if canary is not None and canary.kind is intent.kind and canary.version == intent.version:
        end_canary(settings, state, str(intent.kind), promote=promote, by=BY, note=note, figures=intent.figures)
        return
    # The pointer moved before the watch stopped: what is left is the candidate's record.
    if intent.candidate_id and (cand := state.candidate(intent.candidate_id)):
        record_end(settings, state, cand, promote=promote, by=BY, note=note, figures=intent.figures)


def _roll_back(settings: Settings, state: StateStore, intent: Intent, note: str) -> None:
    slot = champion(settings, state, intent.kind)
    live = slot.live()
    if live and live[-1].to_version == intent.version and live[-1].candidate_id == intent.candidate_id:
        slot.rollback(by=BY, note=note)
    if intent.candidate_id and (cand := state.candidate(intent.candidate_id)) and cand.payload.rolled_back_at is None:
        record_rollback(
            settings,
            state,
            cand,
            by=BY,
            when=datetime.now(UTC),
            extra_tags={
                "flywheel.rollback_note": note,
                "flywheel.watch_figures": json.dumps(intent.figures, default=str)[:5000],
            },
        )
