"""What production serves, one champion per kind, behind one interface: current, move to, history.

- prompt: the MLflow prompt registry alias ``production`` of ``prompt_name``,
- rag: the state store's ``active_index`` pointer (a version of the Chroma knowledge index),
- model: the MLflow model registry alias ``production`` of ``finetune.registered_model``; no alias
  means the configured base model (``target_model``), whose version is written ``base``.

Every move (``prompt set``, a promotion, a rollback) goes through ``Champion.move_to``, which
moves the pointer and records who, when and why in the state store, so rollback knows what came
before and ``status`` can measure the loop's speed.

A canary is the same champion's second slot: the alias ``canary`` in the prompt or model registry,
the state pointer ``canary_index`` for the index, served to ``canary_percent`` of users (the state
pointer of that name; :mod:`flywheel.arms` says who). Its start and end are recorded in the same
history (actions ``canary``, ``canary_promoted``, ``canary_rolled_back``), which production's
rollback stack ignores. One canary runs at a time, of any kind: the canary arm then differs from
production in exactly one change, so its rate says something about that change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from flywheel.candidates import ChampionKind, ChampionSet
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.registry import (
    CANARY,
    model_at,
    move_model_alias,
    move_prompt_alias,
    point_alias,
    production_model,
    production_prompt,
    prompt_at,
)
from flywheel.state import StateStore, as_datetime

BASE = "base"  # the model champion's version before any fine-tune: the configured base model
CANARY_PERCENT = "canary_percent"  # state pointer: the share of users the running canary serves


class MoveAction(StrEnum):
    set = "set"  # a team brought its own (``prompt set``)
    promote = "promote"
    rollback = "rollback"
    canary = "canary"  # a candidate moved to the canary slot; production stays
    canary_promoted = "canary_promoted"  # the canary ended by becoming production (a promote move precedes it)
    canary_rolled_back = "canary_rolled_back"  # the canary ended; production never changed

    @property
    def is_canary(self) -> bool:
        return self in (MoveAction.canary, MoveAction.canary_promoted, MoveAction.canary_rolled_back)


class Move(BaseModel):
    """One recorded move of a champion."""

    kind: ChampionKind
    action: MoveAction
    from_version: str | None
    to_version: str
    candidate_id: str | None = None
    by: str | None = None
    note: str | None = None
    at: datetime | None = None


class Champion(ABC):
    """A champion of one kind: what production serves now, moving it, and what moved it before."""

    kind: ChampionKind
    empty: str | None = None  # what production served before any recorded move (None: nothing)

    def __init__(self, settings: Settings, state: StateStore) -> None:
        self.settings, self.state = settings, state

    @abstractmethod
    def current(self) -> str | None:
        """The version production serves (None: nothing yet; ``base`` for the base model)."""

    @abstractmethod
    def _point(self, version: str) -> None:
        """Move the pointer itself."""

    def move_to(
        self,
        version: str,
        action: MoveAction,
        *,
        by: str,
        candidate_id: str | None = None,
        note: str | None = None,
        previous: str | None = None,
    ) -> Move:
        """Point production at ``version`` and record the move. ``previous`` is what it replaced when
        the caller read it already (to check a candidate's parent); else it is read here."""
        before = previous if previous is not None else self.current()
        self._point(version)
        self.state.record_promotion(self.kind, action, before, version, candidate_id, by, note)
        return Move(
            kind=self.kind,
            action=action,
            from_version=before,
            to_version=version,
            candidate_id=candidate_id,
            by=by,
            note=note,
        )

    def history(self) -> list[Move]:
        """Every recorded move of this kind, oldest first."""
        return [
            Move(
                kind=self.kind,
                action=r["action"],
                from_version=r["from_version"],
                to_version=r["to_version"],
                candidate_id=r["candidate_id"],
                by=r["by"],
                note=r["note"],
                at=as_datetime(r["at"]),
            )
            for r in self.state.promotions(self.kind)
        ]

    def live(self) -> list[Move]:
        """The production moves still in effect, oldest first: each rollback undoes the latest one."""
        stack: list[Move] = []
        for move in self.history():
            if move.action.is_canary:
                continue
            if move.action is MoveAction.rollback:
                if stack:
                    stack.pop()
            else:
                stack.append(move)
        return stack

    def rollback(self, *, by: str, note: str | None = None) -> Move:
        """Undo the latest move still in effect: production goes back to what it replaced."""
        live = self.live()
        undo = live[-1] if live else None
        target = (undo.from_version or self.empty) if undo else None
        if undo is None or target is None:
            raise UsageError(f"nothing to roll back: no earlier {self.kind} champion is recorded")
        return self.move_to(
            target, MoveAction.rollback, by=by, candidate_id=undo.candidate_id, note=note, previous=undo.to_version
        )

    # the canary slot ---------------------------------------------------------------------------
    @abstractmethod
    def canary(self) -> str | None:
        """The version the canary arm serves (None: no canary of this kind)."""

    @abstractmethod
    def _point_canary(self, version: str | None) -> None:
        """Move (or, with None, remove) the canary pointer itself."""

    def canary_started(self) -> Move | None:
        """The move that started the running canary (None when none runs)."""
        if self.canary() is None:
            return None
        starts = [m for m in self.history() if m.action is MoveAction.canary]
        return starts[-1] if starts else None

    def start_canary(
        self, version: str, percent: float, *, by: str, candidate_id: str | None = None, note: str | None = None
    ) -> Move:
        """Serve ``version`` to ``percent`` % of users; production stays. The percent is set first, so
        a canary pointer is never read without one."""
        self.state.set_pointer(CANARY_PERCENT, repr(float(percent)))
        self._point_canary(version)
        before = self.current()
        self.state.record_promotion(self.kind, MoveAction.canary, before, version, candidate_id, by, note)
        return Move(
            kind=self.kind,
            action=MoveAction.canary,
            from_version=before,
            to_version=version,
            candidate_id=candidate_id,
            by=by,
            note=note,
        )

    def end_canary(self, *, promote: bool, by: str, note: str | None = None) -> Move:
        """End the running canary: promoted (production moves to it, recorded as a promotion) or rolled
        back (production never moved). Safe to repeat after a crash half-way: a production pointer
        already at the canary's version is not moved (nor recorded) twice."""
        version, started = self.canary(), self.canary_started()
        if version is None:
            raise UsageError(f"no {self.kind} canary is running")
        candidate_id = started.candidate_id if started else None
        if promote:
            live = self.live()
            done = self.current() == version and bool(live) and live[-1].candidate_id == candidate_id
            if not done:
                self.move_to(version, MoveAction.promote, by=by, candidate_id=candidate_id, note=note)
        action = MoveAction.canary_promoted if promote else MoveAction.canary_rolled_back
        self._point_canary(None)
        self.state.clear_pointer(CANARY_PERCENT)
        self.state.record_promotion(self.kind, action, version, self.current() or version, candidate_id, by, note)
        return Move(
            kind=self.kind,
            action=action,
            from_version=version,
            to_version=self.current() or version,
            candidate_id=candidate_id,
            by=by,
            note=note,
        )


class PromptChampion(Champion):
    kind = ChampionKind.prompt

    def current(self) -> str | None:
        ref = production_prompt(self.settings)
        return ref.version if ref else None

    def _point(self, version: str) -> None:
        move_prompt_alias(self.settings, version)

    def canary(self) -> str | None:
        ref = prompt_at(self.settings, CANARY)
        return ref.version if ref else None

    def _point_canary(self, version: str | None) -> None:
        point_alias(self.settings, "prompt", CANARY, version)


class IndexChampion(Champion):
    kind = ChampionKind.rag

    def current(self) -> str | None:
        from flywheel.knowledge.index import ACTIVE

        return self.state.pointer(ACTIVE)

    def _point(self, version: str) -> None:
        from flywheel.knowledge.index import open_index

        open_index(self.settings, self.state).activate(int(version))

    def canary(self) -> str | None:
        from flywheel.knowledge.index import CANARY as CANARY_INDEX

        return self.state.pointer(CANARY_INDEX)

    def _point_canary(self, version: str | None) -> None:
        from flywheel.knowledge.index import CANARY as CANARY_INDEX

        if version is None:
            self.state.clear_pointer(CANARY_INDEX)
        else:
            self.state.set_pointer(CANARY_INDEX, version)


class ModelChampion(Champion):
    kind = ChampionKind.model
    empty = BASE  # a model's first promotion replaced the base model, which a rollback restores

    def current(self) -> str:
        return production_model(self.settings).version or BASE

    def _point(self, version: str) -> None:
        move_model_alias(self.settings, None if version == BASE else version)

    def canary(self) -> str | None:
        ref = model_at(self.settings, CANARY)
        return ref.version if ref else None

    def _point_canary(self, version: str | None) -> None:
        if version == BASE:
            raise UsageError("the base model cannot be a canary: a canary is a fine-tuned model version")
        point_alias(self.settings, "model", CANARY, version)


_CHAMPIONS: dict[ChampionKind, type[Champion]] = {
    ChampionKind.prompt: PromptChampion,
    ChampionKind.rag: IndexChampion,
    ChampionKind.model: ModelChampion,
}


def champion(settings: Settings, state: StateStore, kind: ChampionKind | str) -> Champion:
    """The champion of ``kind`` (``prompt``, ``rag`` or ``model``)."""
    try:
        key = ChampionKind(kind)
    except ValueError:
        raise UsageError(f"a champion is one of {', '.join(ChampionKind)}, not {kind!r}") from None
    return _CHAMPIONS[key](settings, state)


def current_set(settings: Settings, state: StateStore) -> ChampionSet:
    """The combination production serves now."""
    return ChampionSet(
        **{
            field: champion(settings, state, kind).current()
            for field, kind in (
                ("prompt", ChampionKind.prompt),
                ("index", ChampionKind.rag),
                ("model", ChampionKind.model),
            )
        }
    )


def event_value(settings: Settings, slot: ChampionKind, version: str | None) -> str | None:
    """The value feedback events carry for a version of ``slot`` (:attr:`ChampionKind.event_field`):
    the version itself, or for a model its provider's name."""
    if slot is not ChampionKind.model or version is None:
        return version
    from flywheel.arms import model_name

    try:
        return model_name(settings, version)
    except Exception:  # a registry version that is gone: nothing carries it
        return f"<model version {version}>"


class Canary(BaseModel):
    """The running canary: which kind and version, the share of users it serves, since when and for
    which candidate, and what production serves of that kind meanwhile."""

    kind: ChampionKind
    version: str
    percent: float
    production: str | None
    candidate_id: str | None = None
    started_at: datetime | None = None
    started_by: str | None = None


def running_canary(settings: Settings, state: StateStore) -> Canary | None:
    """The canary running now, of whichever kind (one at most), or None."""
    for kind in ChampionKind:
        slot = champion(settings, state, kind)
        version = slot.canary()
        if version is None:
            continue
        started = slot.canary_started()
        percent = state.pointer(CANARY_PERCENT)
        return Canary(
            kind=kind,
            version=version,
            percent=float(percent) if percent else settings.watch.canary_percent,
            production=slot.current(),
            candidate_id=started.candidate_id if started else None,
            started_at=started.at if started else None,
            started_by=started.by if started else None,
        )
    return None
