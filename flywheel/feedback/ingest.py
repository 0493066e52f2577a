"""Streaming ingest: JSONL lines -> validated, scrubbed, normalised events in the store.

Memory stays constant in file size: lines are read one at a time and written in batches.
A bad line never stops the file: it is reported with its file and line number and written,
untouched, to ``$FLYWHEEL_HOME/quarantine/`` so that nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from flywheel.config import IngestSettings
from flywheel.errors import UsageError
from flywheel.feedback.scrub import scrub_text, scrub_value
from flywheel.feedback.signals import normalise
from flywheel.feedback.store import FeedbackStore
from flywheel.schemas import FeedbackEvent, IngestError, IngestReport, StoredEvent

MAX_REPORTED_ERRORS = 1000
_TEXT_FIELDS = ("query", "output", "comment", "correction", "final_text")

ProgressFn = Callable[[int], None]


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, naming the field."""
    parts = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            parts.append(f"not valid JSON ({err['ctx'].get('error', 'parse error')})")
            continue
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _pseudonym(identifier: str | None, found: set[str]) -> str | None:
    """User and session ids that carry PII (an e-mail as user id) become stable pseudonyms."""
    if not identifier:
        return identifier
    kinds: set[str] = set()
    if scrub_text(identifier, kinds) == identifier:
        return identifier
    found |= kinds
    return "pii-" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


def to_stored(event: FeedbackEvent, settings: IngestSettings) -> StoredEvent:
    """Scrub and normalise one validated event."""
    polarity, strength = normalise(event, settings.edit_negative_threshold)
    found: set[str] = set()
    texts = {name: scrub_text(getattr(event, name), found) for name in _TEXT_FIELDS if getattr(event, name)}
    return StoredEvent(
        event_id=event.event_id,
        ts=event.ts,
        signal=event.signal.value,
        polarity=polarity,
        strength=strength,
        query=texts.get("query", event.query),
        output=texts.get("output", event.output),
        user_id=_pseudonym(event.user_id, found),
        session_id=_pseudonym(event.session_id, found),
        consent=event.consent,
        prompt_version=event.prompt_version,
        model=event.model,
        confidence=event.confidence,
        reason=event.reason.value if event.reason else None,
        comment=texts.get("comment"),
        correction=texts.get("correction"),
        final_text=texts.get("final_text", event.final_text),
        value=event.value,
        context_ids=event.context_ids or [],
        metadata=scrub_value(event.metadata, found) if event.metadata else {},
        pii_scrubbed=sorted(found),
    )


class _Quarantine:
    """Rejected lines, kept verbatim with where they came from; the file is created on first use."""

    def __init__(self, directory: Path, source: str) -> None:
        self.directory = directory
        stem = Path(source).name or "stdin"
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.path = directory / f"{stem}.{stamp}.{os.getpid()}.rejected.jsonl"
        self._fh: IO[str] | None = None

    def write(self, source: str, line_no: int, error: str, raw: bytes) -> None:
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fh = self.path.open("a", encoding="utf-8")
        record = {"file": source, "line": line_no, "error": error, "raw": raw.decode("utf-8", "replace")}
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> str | None:
        if self._fh is None:
            return None
        self._fh.close()
        return str(self.path)


def _open_source(source: str) -> IO[bytes]:
    if source == "-":
        return sys.stdin.buffer
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{source}: no such file")
    if path.is_dir():
        raise UsageError(f"{source}: is a directory, expected a JSONL file")
    return path.open("rb")


def ingest_lines(
    lines: Iterable[bytes],
    source: str,
    store: FeedbackStore,
    quarantine_dir: Path,
    settings: IngestSettings,
    report: IngestReport,
    progress: ProgressFn | None = None,
) -> None:
    """Validate, scrub and store ``lines`` (1-based numbering), updating ``report`` in place."""
    quarantine = _Quarantine(quarantine_dir, source)
    batch: list[StoredEvent] = []

    def flush() -> None:
        if batch:
            stored = store.add(batch, source)
            report.accepted += stored
            report.duplicates += len(batch) - stored
            batch.clear()

    try:
        for line_no, raw in enumerate(lines, start=1):
            if progress:
                progress(len(raw))
            stripped = raw.strip()
            if not stripped:
                continue
            try:
                event = FeedbackEvent.model_validate_json(stripped)
                stored_event = to_stored(event, settings)
            except ValidationError as exc:
                error = describe_validation_error(exc)
            except (ValueError, UnicodeDecodeError) as exc:  # pragma: no cover - defensive
                error = str(exc)
            else:
                if stored_event.pii_scrubbed:
                    report.scrubbed += 1
                batch.append(stored_event)
                if len(batch) >= settings.batch_size:
                    flush()
                continue
            report.rejected += 1
            if len(report.errors) < MAX_REPORTED_ERRORS:
                report.errors.append(IngestError(file=source, line=line_no, error=error))
            quarantine.write(source, line_no, error, stripped)
        flush()
    finally:
        kept = quarantine.close()
        if kept:
            report.quarantine.append(kept)


def ingest_files(
    sources: list[str],
    store: FeedbackStore,
    quarantine_dir: Path,
    settings: IngestSettings,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest every file in order; a missing file is a usage error raised before anything is read."""
    if not sources:
        raise UsageError("give at least one JSONL file to ingest (or - for stdin)")
    for source in sources:
        if source != "-":
            _open_source(source).close()
    report = IngestReport()
    for source in sources:
        fh = _open_source(source)
        try:
            ingest_lines(fh, source, store, quarantine_dir, settings, report, progress)
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()
    return report


def total_bytes(sources: list[str]) -> int | None:
    """Sum of file sizes, for a progress bar; None when reading stdin."""
    if "-" in sources:
        return None
    return sum(Path(s).stat().st_size for s in sources if Path(s).is_file())


