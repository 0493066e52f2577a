"""Near-duplicate inputs: the same normalised text, or embeddings at least a threshold similar.

Exact matching alone keeps "How much is Pro?" and "Hi! How much is Pro? Thanks" apart; MinHash over
characters would call "error E101 ..." and "error E204 ..." duplicates. The local embedding model
(already loaded by triage, vectors cached) tells rewordings from different questions well enough at
a high threshold (see ``golden_set.near_duplicate_threshold``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flywheel.embeddings import Embedder
from flywheel.proposals import normalise


class InputIndex:
    """Inputs kept so far; ``match`` says which one a new input duplicates, if any."""

    def __init__(self, embedder: Embedder, threshold: float) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self._texts: list[str] = []
        self._exact: dict[str, int] = {}
        self._vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._texts)

    def extend(self, texts: Sequence[str]) -> None:
        if not texts:
            return
        vectors = self.embedder.embed(list(texts))
        for text in texts:
            self._exact.setdefault(normalise(text), len(self._texts))
            self._texts.append(text)
        self._vectors = vectors if self._vectors is None else np.vstack([self._vectors, vectors])

    def match(self, text: str, vector: np.ndarray | None = None) -> str | None:
        """The kept input ``text`` duplicates, or None."""
        if (i := self._exact.get(normalise(text))) is not None:
            return self._texts[i]
        if self._vectors is None or not len(self._texts):
            return None
        v = self.embedder.embed([text])[0] if vector is None else vector
        sims = self._vectors @ v
        best = int(sims.argmax())
        return self._texts[best] if sims[best] >= self.threshold else None

    def add_if_new(self, text: str, vector: np.ndarray | None = None) -> str | None:
        """Keep ``text`` unless it duplicates a kept input; returns the one it duplicates, or None.
        ``vector`` is its embedding when the caller embedded a batch ahead."""
        vector = self.embedder.embed([text])[0] if vector is None else vector
        found = self.match(text, vector)
        if found is None:
            self._exact.setdefault(normalise(text), len(self._texts))
            self._texts.append(text)
            row = vector[None, :]
            self._vectors = row if self._vectors is None else np.vstack([self._vectors, row])
        return found
