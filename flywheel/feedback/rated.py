"""The watch's typed input from the feedback store: the rated events (polarity not 0), column by
column. Columns, not one object per event: the watch reads up to millions of events and compares
them as arrays (``flywheel/loop/watch_data.py``), so a typed row object each would cost more than
the read itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class RatedColumns:
    """One tuple per column, all the same length, in no particular event order. ``event_id`` is None
    unless the read asked for certain queries; a version column not asked for is all None."""

    event_id: tuple[str | None, ...] = ()
    ts: tuple[float, ...] = ()  # when the event happened, epoch seconds
    negative: tuple[int, ...] = ()  # 1: negative feedback, 0: positive
    user_id: tuple[str | None, ...] = ()
    arm: tuple[str | None, ...] = ()  # production, canary, or not reported
    prompt_version: tuple[str | None, ...] = ()
    index_version: tuple[str | None, ...] = ()
    model: tuple[str | None, ...] = ()

    @classmethod
    def of_rows(cls, rows: Iterable[Sequence[Any]]) -> RatedColumns:
        """From rows in the field order above."""
        columns = list(zip(*rows, strict=True))
        return cls(*columns) if columns else cls()

    def __len__(self) -> int:
        return len(self.ts)

    def rows(self) -> list[tuple[Any, ...]]:
        """Back to rows in the field order (for tests and small reads)."""
        return list(zip(*(getattr(self, f.name) for f in fields(self)), strict=True))
