"""Ingest, one use case for every source: items -> validated, scrubbed, normalised events in the store.

A source (``sources.py``: a JSONL file, a request's events) frames items and says where each was; this
module takes them all the same way: ``validate.check`` each, store the good ones deduplicated by
``event_id``, report and quarantine the rest by position. A file streams (memory constant in its size,
committed in batches, a bad line never stops the rest); a request is stored whole or not at all.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from flywheel.config import IngestSettings
from flywheel.errors import UsageError
from flywheel.feedback.checking import checked, workers_for
from flywheel.feedback.quarantine import Quarantine
from flywheel.feedback.sources import (
    STDIN,
    DecodedEvents,
    JsonLines,
    ProgressFn,
    Source,
    SourceItem,
    check_openable,
    open_jsonl,
)
from flywheel.feedback.store import FeedbackStore
from flywheel.feedback.validate import check, describe_validation_error, to_stored
from flywheel.schemas import BatchReport, IngestReport, StoredEvent

__all__ = [
    "Tally",
    "describe_validation_error",
    "ingest_files",
    "ingest_lines",
    "ingest_objects",
    "ingest_source",
    "to_stored",
    "total_bytes",
]

# An item this long may take a while to scrub: the batch before it is committed first.
_EXPENSIVE_ITEM_BYTES = 64 * 1024


class Tally(Protocol):
    """Where an ingest counts what it did (a file's report, a request's answer)."""

    def reject(self, position: int, error: str) -> None: ...

    def stored(self, offered: int, new: list[StoredEvent]) -> None: ...


@dataclass
class _FileTally:
    """A file's part of an :class:`IngestReport` (one report covers every file of a command)."""

    report: IngestReport
    source: str

    def reject(self, position: int, error: str) -> None:
        self.report.reject(self.source, position, error)

    def stored(self, offered: int, new: list[StoredEvent]) -> None:
        self.report.stored(offered, new)


class _Intake:
    """One source's items on their way to the store.

    Streaming (``atomic`` false, a file): valid events are committed when ``batch_size`` wait, when the
    batch is ``flush_seconds`` old, and before an expensive item, so a slow line (or a kill during it)
    never costs the lines before it; a rejected item is reported and quarantined at once, so memory
    stays bounded. Atomic (a request): every valid event in ONE ``store.add_each``, stored together or,
    when the store fails, not at all (the error propagates); rejections are reported in position order
    and quarantined only after the store took the good ones, so a retried request quarantines nothing
    twice. Either way an event the store refuses is rejected alone, the others are stored."""

    def __init__(
        self,
        source: Source,
        store: FeedbackStore,
        tally: Tally,
        quarantine: Quarantine,
        settings: IngestSettings,
        clock: Callable[[], float],
        atomic: bool,
    ) -> None:
        self.source, self.store, self.tally, self.quarantine = source, store, tally, quarantine
        self.settings, self.clock, self.atomic = settings, clock, atomic
        self.events: list[StoredEvent] = []
        self.items: list[SourceItem] = []  # the item of each waiting event, for a refusal
        self.held: list[tuple[int, str, bytes]] = []  # atomic: rejections waiting for the commit
        self.opened = 0.0

    def take(self, item: SourceItem) -> None:
        if not self.atomic and (self._is_old() or len(item.text) >= _EXPENSIVE_ITEM_BYTES):
            self.flush()
        self._settle(item, check(item, self.settings))

    def take_checked(self, item: SourceItem, outcome: StoredEvent | str) -> None:
        """An item a worker process checked while the batch before was stored."""
        if not self.atomic and self._is_old():
            self.flush()
        self._settle(item, outcome)

    def _settle(self, item: SourceItem, outcome: StoredEvent | str) -> None:
        if isinstance(outcome, StoredEvent):
            self._add(item, outcome)
        else:
            self._reject(item.position, outcome, item.text)
        if not self.atomic and self._is_old():
            self.flush()

    def flush(self) -> None:
        """Commit the waiting events; report (and quarantine) what was refused and what was held."""
        if self.events:
            result = self.store.add_each(self.events, self.source.name)
            self.tally.stored(len(self.events) - len(result.refused), result.new)
            refused = [(self.items[r.position], r.error) for r in result.refused]
            self.events.clear()
            self.items.clear()
            for item, error in refused:
                self._reject(item.position, error, item.text)
        held, self.held = sorted(self.held, key=lambda h: h[0]), []
        for position, error, raw in held:
            self._record(position, error, raw)

    def _add(self, item: SourceItem, event: StoredEvent) -> None:
        if not self.events:
            self.opened = self.clock()
        self.events.append(event)
        self.items.append(item)
        if not self.atomic and len(self.events) >= self.settings.batch_size:
            self.flush()

    def _reject(self, position: int, error: str, raw: bytes) -> None:
        if self.atomic:
            self.held.append((position, error, raw))
        else:
            self._record(position, error, raw)

    def _record(self, position: int, error: str, raw: bytes) -> None:
        self.tally.reject(position, error)
        self.quarantine.write(position, error, raw)

    def _is_old(self) -> bool:
        return bool(self.events) and self.clock() - self.opened >= self.settings.flush_seconds


def ingest_source(
    source: Source,
    store: FeedbackStore,
    quarantine_dir: Path,
    settings: IngestSettings,
    tally: Tally,
    *,
    atomic: bool = False,
    kept: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    workers: int = 1,
) -> None:
    """Validate, scrub and store every item of ``source``, counting in ``tally`` (see :class:`_Intake`
    for ``atomic``); the quarantine file written, if any, is appended to ``kept``. Streaming, the
    events before an interruption (Ctrl-C, an unreadable file) are committed before it propagates.
    ``workers`` > 1 (streaming only): items are checked in that many processes (``checking.py``)."""
    quarantine = Quarantine(quarantine_dir, source.name, source.counts, settings.max_field_chars, daily=atomic)
    intake = _Intake(source, store, tally, quarantine, settings, clock, atomic)
    try:
        if workers > 1 and not atomic:
            for item, outcome in checked(source.items(), settings, workers):
                intake.take_checked(item, outcome)
        else:
            for item in source.items():
                intake.take(item)
        intake.flush()
    except (UsageError, KeyboardInterrupt):
        if not atomic:
            intake.flush()
        raise
    finally:
        path = quarantine.close()
        if path and kept is not None:
            kept.append(path)


def ingest_lines(
    lines: Iterable[bytes],
    source: str,
    store: FeedbackStore,
    quarantine_dir: Path,
    settings: IngestSettings,
    report: IngestReport,
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ingest JSONL ``lines`` (1-based numbering) named ``source``, updating ``report`` in place."""
    ingest_source(
        JsonLines(source, lines, progress),
        store,
        quarantine_dir,
        settings,
        _FileTally(report, source),
        kept=report.quarantine,
        clock=clock,
    )


def ingest_objects(
    items: Sequence[Any], source: str, store: FeedbackStore, quarantine_dir: Path, settings: IngestSettings
) -> BatchReport:
    """Ingest already-decoded events (one request's), atomically: the same checks as a file's lines,
    every valid one stored in one transaction or none; bad items reported by 0-based index."""
    report = BatchReport()
    ingest_source(DecodedEvents(source, items), store, quarantine_dir, settings, report, atomic=True)
    return report


def ingest_files(
    sources: list[str],
    store: FeedbackStore,
    quarantine_dir: Path,
    settings: IngestSettings,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest every file in order; a file that cannot be opened is a usage error raised before anything
    is read (one that fails while being read, after the lines before the failure are stored)."""
    if not sources:
        raise UsageError("give at least one JSONL file to ingest (or - for stdin)")
    for path in sources:
        check_openable(path)
    report = IngestReport()
    for path in sources:
        workers = workers_for(settings, None if path == STDIN else _size(path))
        with open_jsonl(path, progress) as source:
            ingest_source(
                source,
                store,
                quarantine_dir,
                settings,
                _FileTally(report, path),
                kept=report.quarantine,
                workers=workers,
            )
    return report


def total_bytes(sources: list[str]) -> int | None:
    """Sum of file sizes, for a progress bar; None when reading stdin. Paths that cannot be looked at
    count 0 here: ingest reports them."""
    if STDIN in sources:
        return None
    return sum(_size(s) for s in sources)


def _size(source: str) -> int:
    try:
        st = os.stat(source)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0
