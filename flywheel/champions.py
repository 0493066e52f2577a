"""What production serves, one champion per kind, behind one interface: current, move to, history.

- prompt: the MLflow prompt registry alias ``production`` of ``prompt_name``,
- rag: the state store's ``active_index`` pointer (a version of the Chroma knowledge index),
- model: the MLflow model registry alias ``production`` of ``finetune.registered_model``; no alias
  means the configured base model (``target_model``), whose version is written ``base``.

Every move (``prompt set``, a promotion, a rollback) goes through ``Champion.move_to``, which
moves the pointer and records who, when and why in the state store, so rollback knows what came
before and ``status`` can measure the loop's speed. The slot is ``production`` today; a canary
slot is another alias or pointer name behind the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from flywheel.candidates import ChampionKind, ChampionSet
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.registry import move_model_alias, move_prompt_alias, production_model, production_prompt
from flywheel.state import StateStore, as_datetime

BASE = "base"  # the model champion's version before any fine-tune: the configured base model


class MoveAction(StrEnum):
    set = "set"  # a team brought its own (``prompt set``)
    promote = "promote"
    rollback = "rollback"


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

    def move_to(self, version: str, action: MoveAction, *, by: str, candidate_id: str | None = None,
                note: str | None = None, previous: str | None = None) -> Move:
        """Point production at ``version`` and record the move. ``previous`` is what it replaced when
        the caller read it already (to check a candidate's parent); else it is read here."""
        before = previous if previous is not None else self.current()
        self._point(version)
        self.state.record_promotion(self.kind, action, before, version, candidate_id, by, note)
        return Move(kind=self.kind, action=action, from_version=before, to_version=version,
                    candidate_id=candidate_id, by=by, note=note)

    def history(self) -> list[Move]:
        """Every recorded move of this kind, oldest first."""
        return [Move(kind=self.kind, action=r["action"], from_version=r["from_version"], to_version=r["to_version"],
                     candidate_id=r["candidate_id"], by=r["by"], note=r["note"], at=as_datetime(r["at"]))
                for r in self.state.promotions(self.kind)]

    def live(self) -> list[Move]:
        """The moves still in effect, oldest first: each rollback undoes the latest one."""
        stack: list[Move] = []
        for move in self.history():
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
        return self.move_to(target, MoveAction.rollback, by=by, candidate_id=undo.candidate_id, note=note,
                            previous=undo.to_version)


class PromptChampion(Champion):
    kind = ChampionKind.prompt

    def current(self) -> str | None:
        ref = production_prompt(self.settings)
        return ref.version if ref else None

    def _point(self, version: str) -> None:
        move_prompt_alias(self.settings, version)


class IndexChampion(Champion):
    kind = ChampionKind.rag

    def current(self) -> str | None:
        from flywheel.knowledge.index import ACTIVE

        return self.state.pointer(ACTIVE)

    def _point(self, version: str) -> None:
        from flywheel.knowledge.index import open_index

        open_index(self.settings, self.state).activate(int(version))


class ModelChampion(Champion):
    kind = ChampionKind.model
    empty = BASE  # a model's first promotion replaced the base model, which a rollback restores

    def current(self) -> str:
        return production_model(self.settings).version or BASE

    def _point(self, version: str) -> None:
        move_model_alias(self.settings, None if version == BASE else version)


_CHAMPIONS: dict[ChampionKind, type[Champion]] = {
    ChampionKind.prompt: PromptChampion, ChampionKind.rag: IndexChampion, ChampionKind.model: ModelChampion}


def champion(settings: Settings, state: StateStore, kind: ChampionKind | str) -> Champion:
    """The champion of ``kind`` (``prompt``, ``rag`` or ``model``)."""
    try:
        key = ChampionKind(kind)
    except ValueError:
        raise UsageError(f"a champion is one of {', '.join(ChampionKind)}, not {kind!r}") from None
    return _CHAMPIONS[key](settings, state)


def current_set(settings: Settings, state: StateStore) -> ChampionSet:
    """The combination production serves now."""
    return ChampionSet(**{field: champion(settings, state, kind).current()
                          for field, kind in (("prompt", ChampionKind.prompt), ("index", ChampionKind.rag),
                                              ("model", ChampionKind.model))})
