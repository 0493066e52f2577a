"""What production serves a given user: the champions (prompt, index, model) and, while a canary
runs, the arm a stable hash of the user id puts them in.

A canary exists when any kind has a ``canary`` alias or pointer (the prompt registry's, the model
registry's, the state store's index pointer); the canary arm serves those, and production's for
the kinds without one. The same user id always hashes to the same arm.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

from flywheel.candidates import ChampionKind
from flywheel.champions import champion
from flywheel.config import Settings
from flywheel.knowledge.index import CANARY as CANARY_INDEX
from flywheel.live import ChampionResult, PromptInfo
from flywheel.registry import CANARY, PRODUCTION, model_at, production_model, prompt_at
from flywheel.state import open_state


class Variant(BaseModel):
    prompt: PromptInfo | None
    index: str | None
    model: str


class Served(BaseModel):
    """Both arms as read at one moment; ``canary`` is None when no canary runs."""

    production: Variant
    canary: Variant | None = None


def _prompt(settings: Settings, alias: str) -> PromptInfo | None:
    ref = prompt_at(settings, alias)
    return PromptInfo(name=ref.name, version=ref.version, template=ref.template) if ref else None


def read_served(settings: Settings) -> Served:
    """Read the champions and any canary now (MLflow and the state store: tens of milliseconds)."""
    with open_state(settings.home) as state:
        index = champion(settings, state, ChampionKind.rag).current()
        canary_index = state.pointer(CANARY_INDEX)
    production = Variant(prompt=_prompt(settings, PRODUCTION), index=index,
                         model=production_model(settings).provider_model)
    canary_prompt, canary_model = _prompt(settings, CANARY), model_at(settings, CANARY)
    if canary_prompt is None and canary_model is None and canary_index is None:
        return Served(production=production)
    canary = Variant(prompt=canary_prompt or production.prompt, index=canary_index or index,
                     model=canary_model.provider_model if canary_model else production.model)
    return Served(production=production, canary=canary)


def arm_of(user_id: str | None, canary_percent: float) -> str:
    """``canary`` for ``canary_percent`` % of user ids (by SHA-256, in steps of 0.01 %), else ``production``.
    No user id: production."""
    if not user_id or canary_percent <= 0:
        return "production"
    bucket = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "big") % 10_000
    return "canary" if bucket < round(canary_percent * 100) else "production"


def for_user(served: Served, user_id: str | None, canary_percent: float) -> ChampionResult | None:
    """What to serve the user; None when there is no production prompt to serve."""
    arm = arm_of(user_id, canary_percent) if served.canary is not None else "production"
    variant = served.canary if arm == "canary" and served.canary is not None else served.production
    if variant.prompt is None:
        return None
    return ChampionResult(arm=arm, prompt=variant.prompt, index=variant.index, model=variant.model)
