"""The watch's input: the feedback store's rated events as columns (numpy, via one pandas frame),
so every comparison is a boolean mask and a couple of ``bincount`` calls, never a Python loop
over events. A million events load in about a second and compare in milliseconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from flywheel.candidates import ChampionKind
from flywheel.feedback.rated import RatedColumns
from flywheel.loop.watch_stats import Side, capped_side

STRING_COLUMNS = ("arm", "prompt_version", "index_version", "model")
VERSION_COLUMN = {str(slot): slot.event_field for slot in ChampionKind}  # champion slot -> its event column


class RatedEvents:
    """Rated events (polarity not 0), one numpy array a column."""

    def __init__(self, columns: RatedColumns) -> None:
        # Straight from the store's columns (no DataFrame of Python objects: that costs more than the read).
        self.size = len(columns)
        self.event_id = np.array(columns.event_id, dtype=object)
        self.ts = np.array(columns.ts, dtype=np.float64)
        self.negative = np.array(columns.negative, dtype=bool)
        self.user = pd.factorize(np.array(columns.user_id, dtype=object), use_na_sentinel=True)[0].astype(np.int64)
        # Strings as codes: comparing against one value is then an integer comparison.
        self._codes: dict[str, tuple[np.ndarray, list[str], dict[str, int]]] = {}
        for name in STRING_COLUMNS:
            codes, uniques = pd.factorize(np.array(getattr(columns, name), dtype=object), use_na_sentinel=True)
            labels = [str(u) for u in uniques]
            self._codes[name] = (codes, labels, {u: i for i, u in enumerate(labels)})

    @property
    def frame(self) -> pd.DataFrame:
        """Time, negative and the string columns (categorical), for grouping (the chart)."""
        frame = pd.DataFrame({"ts": self.ts, "negative": self.negative})
        for name, (codes, labels, _) in self._codes.items():
            frame[name] = (
                pd.Categorical.from_codes(codes, categories=labels) if labels else pd.Categorical([None] * self.size)
            )
        return frame

    def equals(self, column: str, value: str | None) -> np.ndarray:
        """Where ``column`` is ``value`` (None: where it is missing)."""
        codes, _, index = self._codes[column]
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
