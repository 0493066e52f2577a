"""The watch's input: the feedback store's rated events as columns (numpy, via one pandas frame),
so every comparison is a boolean mask and a couple of ``bincount`` calls, never a Python loop
over events. A million events load in about a second and compare in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loop.watch_stats import Side, capped_side

COLUMNS = ("event_id", "ts", "negative", "user_id", "arm", "prompt_version", "index_version", "model")
VERSION_COLUMN = {"prompt": "prompt_version", "rag": "index_version", "model": "model"}


class RatedEvents:
    """Rated events (polarity not 0), oldest first, one numpy array a column."""

    def __init__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        frame = pd.DataFrame.from_records(list(rows), columns=list(COLUMNS))
        self.frame = frame  # for the chart's grouping by version and day
        self.size = len(frame)
        self.event_id = frame["event_id"].to_numpy(object)
        self.ts = frame["ts"].to_numpy(np.float64)
        self.negative = frame["negative"].to_numpy(np.int8).astype(bool) if self.size else np.zeros(0, bool)
        self.user = pd.factorize(frame["user_id"], use_na_sentinel=True)[0].astype(np.int64)
        # Strings as codes: comparing against one value is then an integer comparison.
        self._codes: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        for name in ("arm", "prompt_version", "index_version", "model"):
            codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
            self._codes[name] = (codes, {str(u): i for i, u in enumerate(uniques)})

    def equals(self, column: str, value: str | None) -> np.ndarray:
        """Where ``column`` is ``value`` (None: where it is missing)."""
        codes, index = self._codes[column]
        if value is None:
            return codes < 0
        code = index.get(str(value))
        return codes == code if code is not None else np.zeros(self.size, bool)

    def between(self, start: float | None, end: float | None) -> np.ndarray:
        mask = np.ones(self.size, bool)
        if start is not None:
            mask &= self.ts >= start
        if end is not None:
            mask &= self.ts < end
        return mask

    def side(self, mask: np.ndarray, cap: int) -> Side:
        return capped_side(self.user[mask], self.negative[mask], cap)

    def not_canary(self) -> np.ndarray:
        """Events production served (arm ``production`` or not reported)."""
        return ~self.equals("arm", "canary")

    def excluding(self, event_ids: set[str]) -> np.ndarray:
        if not event_ids:
            return np.ones(self.size, bool)
        return ~np.isin(self.event_id, np.array(sorted(event_ids), dtype=object))
