"""What production serves a given user: the champions (prompt, index, model) and, while a canary
runs, the arm a stable hash of the user id puts them in (:func:`flywheel.arms.arm_for`, at the
percent the canary was started with).

``GET /v1/champion`` answers from :func:`read_served` (cached) and :func:`for_user`; a product that
runs next to Flywheel's state (same host or shared ``FLYWHEEL_HOME``) calls :func:`served` and
:func:`production_retriever` directly, as the README's "How your product reads the champion" shows.
One canary runs at most, of one kind: the canary arm serves it and production's other two kinds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel

from flywheel.arms import arm_for, model_name
from flywheel.candidates import ChampionKind
from flywheel.champions import champion, running_canary
from flywheel.config import Settings, load_settings
from flywheel.knowledge.index import IndexRetriever, open_index
from flywheel.live import ChampionResult, PromptInfo
from flywheel.registry import CANARY, PRODUCTION, production_model, prompt_at
from flywheel.state import StateStore, open_state


class Variant(BaseModel):
    prompt: PromptInfo | None
    index: str | None
    model: str


class Served(BaseModel):
    """Both arms as read at one moment; ``canary`` is None when no canary runs."""

    production: Variant
    canary: Variant | None = None
    canary_percent: float = 0.0


def _prompt(settings: Settings, alias: str) -> PromptInfo | None:
    ref = prompt_at(settings, alias)
    return PromptInfo(name=ref.name, version=ref.version, template=ref.template) if ref else None


def read_served(settings: Settings, state: StateStore) -> Served:
    """Read the champions and any canary now (MLflow and the state store: tens of milliseconds)."""
    index = champion(settings, state, ChampionKind.rag).current()
    canary = running_canary(settings, state)
    production = Variant(prompt=_prompt(settings, PRODUCTION), index=index,
                         model=production_model(settings).provider_model)
    if canary is None:
        return Served(production=production)
    variant = production.model_copy()
    if canary.kind is ChampionKind.prompt:
        variant.prompt = _prompt(settings, CANARY) or production.prompt
    elif canary.kind is ChampionKind.rag:
        variant.index = canary.version
    else:
        variant.model = model_name(settings, canary.version)
    return Served(production=production, canary=variant, canary_percent=canary.percent)


def for_user(served: Served, user_id: str | None) -> ChampionResult | None:
    """What to serve the user; None when there is no production prompt to serve."""
    arm = arm_for(user_id, served.canary_percent) if served.canary is not None else "production"
    variant = served.canary if arm == "canary" and served.canary is not None else served.production
    if variant.prompt is None:
        return None
    return ChampionResult(arm=arm, prompt=variant.prompt, index=variant.index, model=variant.model)


def served(settings: Settings | None = None, user_id: str | None = None) -> ChampionResult | None:
    """What to serve ``user_id`` now (the production arm without one); None before any `prompt set`.
    Cheap enough per request behind a cache of a few seconds."""
    settings = settings or load_settings()
    with open_state(settings.home) as state:  # the product's own process: its call is the face
        return for_user(read_served(settings, state), user_id)


@contextmanager
def production_retriever(settings: Settings | None = None) -> Iterator[IndexRetriever | None]:
    """A retriever over the active index version (None when there is none): ``retrieve(query, k)``
    gives ``(document id, text)`` pairs, as the built-in pipeline uses them."""
    settings = settings or load_settings()
    with open_state(settings.home) as state:
        yield open_index(settings, state).retriever()
