"""Embedding ahead of a cycle on a task runner: what is not cached yet, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flywheel.config import Settings
from flywheel.feedback.store import FeedbackStore

if TYPE_CHECKING:
    from flywheel.state import StateStore


def texts_to_embed(settings: Settings, store: FeedbackStore, state: StateStore | None = None) -> list[str]:
    """What this cycle's triage and index refresh will embed and the cache does not hold yet
    (``store``: the process's feedback store). Given the ``state`` store with clusters kept by an
    incremental triage made the same way, only the negatives stored since it are triage's."""
    from flywheel.embeddings import not_cached, open_embedder
    from flywheel.knowledge.source import chunks_of
    from flywheel.triage import texts_to_embed as triage_texts
    from flywheel.triage_memory import fingerprint

    with open_embedder(settings) as embedder:
        kept = state.triage_mark() if state is not None else None
        if kept is not None and kept[1] == fingerprint(embedder.name, settings.triage, store.where):
            negatives = store.get(store.ids_after(kept[0], -1).ids)
        else:
            negatives = list(store.events(polarity=-1))
        texts = triage_texts(negatives, embedder)
        if settings.knowledge_source is not None and settings.knowledge_source.exists():
            texts += [c.text for c in chunks_of(settings.knowledge_source, settings.knowledge.chunk_chars)]
        return not_cached(embedder, texts)


def embed_batch_step(settings: Settings, texts: Sequence[str]) -> Any:
    """Vectors for ``texts`` with the configured model, no cache (the caller stores them)."""
    from flywheel.embeddings import build_embedder

    return build_embedder(settings, cached=False).embed(list(texts))


def remember_embeddings(settings: Settings, texts: Sequence[str], vectors: Any) -> None:
    from flywheel.embeddings import open_embedder, remember

    with open_embedder(settings) as embedder:
        remember(embedder, texts, vectors)
