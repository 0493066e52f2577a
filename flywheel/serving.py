"""What production serves now, for a product that runs next to Flywheel's state (same host or
shared ``FLYWHEEL_HOME``): the prompt behind the registry alias ``production``, the active index
version with a retriever over it, and the model behind the model alias (or the base model).

A product elsewhere asks ``GET /v1/champion`` of ``flywheel serve`` instead; both read the same
champions (:mod:`flywheel.champions`). The README's "How your product reads the champion" runs this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, Field

from flywheel.config import Settings, load_settings
from flywheel.knowledge.index import ACTIVE, IndexRetriever, open_index
from flywheel.registry import production_model, production_prompt
from flywheel.state import open_state


class ServedPrompt(BaseModel):
    name: str
    version: str
    template: str = Field(description="The template with {{variables}}; fill them as your product does.")


class Served(BaseModel):
    """The combination to serve: the prompt (None before any `prompt set`), index and model."""

    prompt: ServedPrompt | None
    index: str | None = Field(description="Active index version; None when no knowledge base was synced.")
    model: str = Field(description="The model name to call on the endpoint (a fine-tune or the base model).")
    model_version: str | None = Field(description="Registry version behind the model alias; None for the base model.")


def served(settings: Settings | None = None) -> Served:
    """Read the champions once; cheap enough to call per request with a short cache in front."""
    settings = settings or load_settings()
    ref = production_prompt(settings)
    model = production_model(settings)
    with open_state(settings.home) as state:
        index = state.pointer(ACTIVE)
    return Served(
        prompt=ServedPrompt(name=ref.name, version=ref.version, template=ref.template) if ref else None,
        index=index,
        model=model.provider_model,
        model_version=model.version,
    )


@contextmanager
def production_retriever(settings: Settings | None = None) -> Iterator[IndexRetriever | None]:
    """A retriever over the active index version (None when there is none): ``retrieve(query, k)``
    gives ``(document id, text)`` pairs, as the built-in pipeline uses them."""
    settings = settings or load_settings()
    with open_state(settings.home) as state:
        yield open_index(settings, state).retriever()
