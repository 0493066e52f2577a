"""Streaming ingest: JSONL lines -> validated, scrubbed, normalised events in the store.

Memory stays constant in file size: lines are read one at a time and written in batches, and
time is linear in it: no field may be longer than ``ingest.max_field_chars``. A bad line never
stops the file: it is reported with its file and line number and written, PII scrubbed and once
per distinct content, to ``$FLYWHEEL_HOME/quarantine/``.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from flywheel.config import IngestSettings
from flywheel.errors import UsageError
from flywheel.feedback.scrub import scrub_text, scrub_value
from flywheel.feedback.signals import normalise
from flywheel.feedback.store import AddResult, FeedbackStore
from flywheel.schemas import BatchReport, FeedbackEvent, IndexedError, IngestReport, StoredEvent
from flywheel.sqlite_util import open_migrated

# A line this long may take a while to scrub: the batch before it is committed first.
_EXPENSIVE_LINE_BYTES = 64 * 1024
_TEXT_FIELDS = ("query", "output", "comment", "correction", "final_text")

ProgressFn = Callable[[int], None]
# Field names that may be quoted in an error location, by the model's title (pydantic's ``exc.title``).
_FIELDS: dict[str, set[str]] = {FeedbackEvent.__name__: set(FeedbackEvent.model_fields)}


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, naming the field and the rule, never the value: this text
    goes to the CLI, HTTP 422 bodies, quarantine records and logs, none of which is scrubbed (pydantic's
    own ``str(exc)`` quotes ``input_value``, and a location can hold a key the sender chose)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "json_invalid":
            parts.append(f"not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})")
            continue
        loc = safe_location(err["loc"], exc.title)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def safe_location(loc: Sequence[int | str], model: str) -> str:
    """A dotted error location with only the model's own field names and list positions: an unknown
    field's name or a metadata key is the sender's text, so it is described, not quoted."""
    fields = _FIELDS.get(model, set())
    if loc and isinstance(loc[0], str) and fields and loc[0] not in fields:
        return "an unknown field (not in the event format)"
    shown: list[str] = []
    for part in loc:
        if isinstance(part, int) or part in fields or not fields:
            shown.append(str(part))
        else:
            shown.append("(a key)")
    return ".".join(shown)


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
        index_version=event.index_version,
        arm=event.arm,
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


class _SeenLines:
    """Content hashes of the lines already quarantined (``quarantine/seen.sqlite``), so a re-ingest of
    the same bad file keeps no second copy. It lives beside the quarantine files: deleting the directory
    resets both. A hash is recorded in the same transaction that writes its line, so concurrent ingests
    write a line once and a failed write leaves no mark."""

    MIGRATIONS = ("CREATE TABLE seen (sha256 TEXT PRIMARY KEY)",)

    def __init__(self, directory: Path) -> None:
        self._db = open_migrated(directory / "seen.sqlite", self.MIGRATIONS, "quarantine index")

    def write_once(self, raw: bytes, write: Callable[[], None]) -> None:
        """Call ``write`` unless a line with this content was quarantined before."""
        with self._db:
            digest = hashlib.sha256(raw).hexdigest()
            if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (digest,)).rowcount == 1:
                write()

    def close(self) -> None:
        self._db.close()


class _Quarantine:
    """Rejected lines with where they came from and why, PII scrubbed, each distinct line kept once.

    A line longer than ``ingest.max_field_chars`` is kept cut to that length (``raw_chars`` says how long
    it was): the error already names the field, and scrubbing or storing it whole would cost what the
    limit is there to bound. Files and the index are created on first use."""

    def __init__(self, directory: Path, source: str, max_chars: int, daily: bool = False) -> None:
        self.directory = directory
        self.max_chars = max_chars
        stem = "stdin" if source == "-" else Path(source).name or "stdin"
        # A file per run; a service writes a file per day and process instead of one per request.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d" if daily else "%Y%m%dT%H%M%S")
        self.path = directory / f"{stem}.{stamp}.{os.getpid()}.rejected.jsonl"
        self._fh: IO[str] | None = None
        self._seen: _SeenLines | None = None

    def write(self, source: str, line_no: int, error: str, raw: bytes, position: str = "line") -> None:
        """Keep one rejected line (``position`` names what ``line_no`` counts: ``line``, or a request's ``index``)."""
        if self._seen is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._seen = _SeenLines(self.directory)
        self._seen.write_once(raw, lambda: self._append(self._record(source, line_no, error, raw, position)))

    def _record(self, source: str, line_no: int, error: str, raw: bytes, position: str) -> dict[str, Any]:
        text = raw.decode("utf-8", "replace")
        record: dict[str, Any] = {"file": source, position: line_no, "error": error}
        if len(text) > self.max_chars:
            record["raw_chars"] = len(text)
            text = text[: self.max_chars]
        return record | {"raw": scrub_text(text, set())}

    def _append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> str | None:
        if self._seen is not None:
            self._seen.close()
        if self._fh is None:
            return None
        self._fh.close()
        return str(self.path)


class _Batch:
    """Events waiting for one transaction. Committed when full, when open for ``flush_seconds``, and
    before an expensive line, so a slow line (or a kill during it) never costs the lines before it.
    An event the store refuses is rejected with its line number and quarantined; the others are stored."""

    def __init__(self, store: FeedbackStore, source: str, report: IngestReport, settings: IngestSettings,
                 clock: Callable[[], float], quarantine: _Quarantine) -> None:
        self.store, self.source, self.report, self.settings, self.clock = store, source, report, settings, clock
        self.quarantine = quarantine
        self.events: list[StoredEvent] = []
        self.lines: list[tuple[int, bytes]] = []  # (line number, raw line) of each event, for a refusal
        self.opened = 0.0

    def add(self, event: StoredEvent, line_no: int, raw: bytes) -> None:
        if not self.events:
            self.opened = self.clock()
        self.events.append(event)
        self.lines.append((line_no, raw))
        if len(self.events) >= self.settings.batch_size:
            self.flush()

    def is_old(self) -> bool:
        return bool(self.events) and self.clock() - self.opened >= self.settings.flush_seconds

    def flush(self) -> None:
        if self.events:
            result = self.store.add_each(self.events, self.source)
            self.report.stored(len(self.events) - len(result.refused), result.new)
            for refused in result.refused:
                line_no, raw = self.lines[refused.position]
                self.report.reject(self.source, line_no, refused.error)
                self.quarantine.write(self.source, line_no, refused.error, raw)
            self.events.clear()
            self.lines.clear()


def _open_source(source: str) -> IO[bytes]:
    """The binary stream of a file (or stdin for ``-``); a file that cannot be opened is a usage error."""
    if source == "-":
        return sys.stdin.buffer
    try:
        return Path(source).open("rb")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{source}: is a directory, expected a JSONL file") from None
    except OSError as exc:  # permission denied, a path through a file, ...
        raise UsageError(f"{source}: cannot be opened: {exc.strerror or exc}") from None


def _read(fh: IO[bytes], source: str) -> Iterator[bytes]:
    """Lines of ``fh``, a UTF-8 byte order mark dropped; a read error is a usage error naming the file."""
    try:
        first = True
        for raw in fh:
            yield raw.removeprefix(codecs.BOM_UTF8) if first else raw
            first = False
    except OSError as exc:
        raise UsageError(f"{source}: cannot be read: {exc.strerror or exc}") from None


def _too_long(event: FeedbackEvent, limit: int) -> str | None:
    """The first text field longer than ``limit`` (scrubbing it would cost too much), as an error."""
    for name in FeedbackEvent.model_fields:
        for where, text in _texts(getattr(event, name), name):
            if len(text) > limit:
                return f"{where}: {len(text)} characters, more than ingest.max_field_chars ({limit})"
    return None


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a field's value, with its dotted path (metadata keys included)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key, path)
            yield from _texts(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _texts(item, f"{path}.{i}")


def _parse(line: bytes, settings: IngestSettings) -> StoredEvent | str:
    """One line as a stored event, or why it was rejected."""
    try:
        event = FeedbackEvent.model_validate_json(line)
    except ValidationError as exc:
        return describe_validation_error(exc)
    if (error := _too_long(event, settings.max_field_chars)) is not None:
        return error
    return to_stored(event, settings)


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
    """Validate, scrub and store ``lines`` (1-based numbering), updating ``report`` in place.

    Lines before an interruption (Ctrl-C, an unreadable file) are committed before it propagates."""
    quarantine = _Quarantine(quarantine_dir, source, settings.max_field_chars)
    batch = _Batch(store, source, report, settings, clock, quarantine)
    try:
        for line_no, raw in enumerate(lines, start=1):
            if progress:
                progress(len(raw))
            line = raw.strip()
            if not line:
                continue
            if batch.is_old() or len(line) >= _EXPENSIVE_LINE_BYTES:
                batch.flush()
            outcome = _parse(line, settings)
            if isinstance(outcome, StoredEvent):
                batch.add(outcome, line_no, line)
            else:
                report.reject(source, line_no, outcome)
                quarantine.write(source, line_no, outcome, line)
            if batch.is_old():
                batch.flush()
        batch.flush()
    except (UsageError, KeyboardInterrupt):
        batch.flush()
        raise
    finally:
        kept = quarantine.close()
        if kept:
            report.quarantine.append(kept)


def _encode(item: Any) -> bytes | str:
    """An already-decoded JSON value as the line `_parse` reads, or why it cannot be one. Text stays
    UTF-8; a lone surrogate (from a ``\\ud800`` escape) stays an escape, which the parser rejects as it
    does in a file."""
    try:
        try:
            return json.dumps(item, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(item).encode("ascii")
    except (RecursionError, ValueError, TypeError) as exc:
        return f"cannot be read as one event ({type(exc).__name__})"


def ingest_objects(items: Sequence[Any], source: str, store: FeedbackStore, quarantine_dir: Path,
                   settings: IngestSettings) -> BatchReport:
    """Validate, scrub and store already-decoded events (one request's): the same checks as a file's
    lines, and every valid one in ONE ``store.add_each``, so they are stored together or, when the
    store fails, not at all (the error propagates); an event the store refuses is rejected alone. Bad
    items are reported by 0-based index and quarantined after the store took the good ones: a retried
    request quarantines nothing twice."""
    good: list[tuple[int, bytes, StoredEvent]] = []
    bad: list[tuple[int, str, bytes]] = []
    for index, item in enumerate(items):
        raw = _encode(item)
        if isinstance(raw, str):
            bad.append((index, raw, b"(not re-encodable)"))
            continue
        outcome = _parse(raw, settings)
        if isinstance(outcome, StoredEvent):
            good.append((index, raw, outcome))
        else:
            bad.append((index, outcome, raw))
    result = store.add_each([e for _, _, e in good], source) if good else AddResult()
    bad += [(good[r.position][0], r.error, good[r.position][1]) for r in result.refused]
    bad.sort(key=lambda b: b[0])
    report = _batch_report(len(good) - len(result.refused), result.new, bad)
    if bad:
        quarantine = _Quarantine(quarantine_dir, source, settings.max_field_chars, daily=True)
        try:
            for index, error, raw in bad:
                quarantine.write(source, index, error, raw, position="index")
        finally:
            quarantine.close()
    return report


def _batch_report(offered: int, new: list[StoredEvent], bad: list[tuple[int, str, bytes]]) -> BatchReport:
    """The counts of one request: ``offered`` events went to the store, ``new`` were stored, ``bad`` rejected."""
    return BatchReport(accepted=len(new), duplicates=offered - len(new), rejected=len(bad),
                       errors=[IndexedError(index=index, error=error) for index, error, _ in bad],
                       scrubbed=sum(1 for e in new if e.pii_scrubbed), negative=sum(1 for e in new if e.polarity < 0))


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
    for source in sources:
        if source != "-":
            _open_source(source).close()
    report = IngestReport()
    for source in sources:
        fh = _open_source(source)
        try:
            ingest_lines(_read(fh, source), source, store, quarantine_dir, settings, report, progress)
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()
    return report


def total_bytes(sources: list[str]) -> int | None:
    """Sum of file sizes, for a progress bar; None when reading stdin. Paths that cannot be looked at
    count 0 here: ingest reports them."""
    if "-" in sources:
        return None
    return sum(_size(s) for s in sources)


def _size(source: str) -> int:
    try:
        st = os.stat(source)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0
