"""What production serves a given user: the champions (prompt, index, model) and, while a canary
runs, the arm a stable hash of the user id puts them in (:func:`flywheel.arms.arm_for`, at the
percent the canary was started with).

``GET /v1/champion`` answers from :func:`read_served` (cached) and :func:`for_user`; a product that
runs next to Flywheel's state (same host or shared ``FLYWHEEL_HOME``) calls :func:`served` and
:func:`production_retriever` directly, as the README's "How your product reads the champion" shows.
One canary runs at most, of one kind: the canary arm serves it and production's other two kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel

from flywheel.arms import arm_for, model_name
from flywheel.candidates import ChampionKind
from flywheel.champions import champion, running_canary
from flywheel.config import Settings, load_settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.knowledge.index import IndexRetriever, KnowledgeIndex, open_index
from flywheel.live import (
    ChampionResult,
    Message,
    PromptInfo,
    PromptRef,
    RenderResult,
    RetrievedChunk,
    RetrieveResult,
    prompt_info,
)
from flywheel.registry import CANARY, PRODUCTION, production_model, prompt_at
from flywheel.runtime import Runtime
from flywheel.state import StateStore, open_state
from flywheel.templates import VARIABLE


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
    return prompt_info(ref.name, ref.version, ref.template) if ref else None


def read_served(settings: Settings, state: StateStore) -> Served:
    """Read the champions and any canary now (MLflow and the state store: tens of milliseconds)."""
    index = champion(settings, state, ChampionKind.rag).current()
    canary = running_canary(settings, state)
    production = Variant(
        prompt=_prompt(settings, PRODUCTION), index=index, model=production_model(settings).provider_model
    )
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
    with open_state(settings) as state:  # the product's own process: its call is the face
        return for_user(read_served(settings, state), user_id)


@contextmanager
def production_retriever(settings: Settings | None = None) -> Iterator[IndexRetriever | None]:
    """A retriever over the active index version (None when there is none): ``retrieve(query, k)``
    gives ``(document id, text)`` pairs, as the built-in pipeline uses them."""
    settings = settings or load_settings()
    with open_state(settings) as state:
        yield open_index(settings, state).retriever()


class VariablesMismatch(UsageError):
    """The values given for a prompt do not match its declared variables (``POST /v1/render``: 422)."""

    def __init__(self, missing: set[str], unknown: set[str]) -> None:
        self.missing, self.unknown = sorted(missing), sorted(unknown)
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(self.missing))
        if self.unknown:
            parts.append("unknown " + ", ".join(self.unknown))
        super().__init__(
            f"the prompt's variables do not match: {'; '.join(parts)} (declared: see "
            "`GET /v1/champion`, prompt.variables)"
        )


def render_for(served: Served, user_id: str | None, values: dict[str, str]) -> RenderResult | None:
    """The system message of the user's arm with ``values`` filled in; None before any prompt.
    Every declared variable needs a value and no other is accepted: a typo is an error, not a blank."""
    result = for_user(served, user_id)
    if result is None:
        return None
    declared = set(result.prompt.variables)
    if declared != set(values):
        raise VariablesMismatch(declared - set(values), set(values) - declared)
    content = VARIABLE.sub(lambda m: values[m.group(1)], result.prompt.template)
    return RenderResult(
        arm=result.arm,
        prompt=PromptRef(name=result.prompt.name, version=result.prompt.version),
        messages=[Message(role="system", content=content)],
    )


class NoActiveIndex(FlywheelError):
    """The user's arm serves no index version (``POST /v1/retrieve``: 409)."""


class ArmRetrievers:
    """Retrieval for the service: one retriever per index version, made on first use and kept (a
    version's members never change), on the process's embedder and state store."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._by_version: dict[str, IndexRetriever] = {}
        self._lock = threading.Lock()

    def _retriever(self, version: str) -> IndexRetriever:
        with self._lock:
            known = self._by_version.get(version)
            if known is not None:
                return known
            index = KnowledgeIndex(self.runtime.settings, self.runtime.state, self.runtime.embedder)
            retriever = index.retriever(int(version))
            if retriever is None:  # pragma: no cover - a version number always gives a retriever
                raise NoActiveIndex(f"index version {version} cannot be read")
            self._by_version[version] = retriever
            return retriever

    def retrieve(self, served: Served, user_id: str | None, query: str, k: int) -> RetrieveResult:
        result = for_user(served, user_id)
        arm = result.arm if result is not None else "production"
        version = result.index if result is not None else served.production.index
        if version is None:
            raise NoActiveIndex("no knowledge index is active for this arm; build one with `flywheel kb sync`")
        hits = self._retriever(version).search(query, k)
        return RetrieveResult(
            arm=arm,
            index_version=version,
            chunks=[
                RetrievedChunk(id=h.chunk_id, text=h.text, source=h.source, score=round(1.0 - h.distance, 6))
                for h in hits
            ],
        )
