"""The one validation path every ingest source feeds: an item -> a scrubbed, normalised event, or why not.

An item is JSON text: a file's line as read, or a decoded value (a request's event; later a trace
mapped to an event) encoded back by its source. Every item is read by the same strict JSON-mode
parser, so an event gets the same verdict and the same message whichever source brought it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from flywheel.config import IngestSettings
from flywheel.feedback.scrub import scrub_text, scrub_value
from flywheel.feedback.signals import normalise
from flywheel.feedback.sources import SourceItem
from flywheel.schemas import FeedbackEvent, StoredEvent

_TEXT_FIELDS = ("query", "output", "comment", "correction", "final_text")
# Field names that may be quoted in an error location, by the model's title (pydantic's ``exc.title``).
_FIELDS: dict[str, set[str]] = {FeedbackEvent.__name__: set(FeedbackEvent.model_fields)}


def check(item: SourceItem, settings: IngestSettings) -> StoredEvent | str:
    """One item as a stored event, or why it was rejected (the field and the rule, never the value)."""
    if item.unreadable is not None:
        return item.unreadable
    try:
        event = FeedbackEvent.model_validate_json(item.text)
    except ValidationError as exc:
        return describe_validation_error(exc)
    # Every text of the event is decoded from ``item.text``, where no character takes less than one
    # byte: a line no longer than the limit holds no field longer than it (most lines: nothing walked).
    limit = settings.max_field_chars
    if len(item.text) > limit and (error := _too_long(event, limit)) is not None:
        return error
    return to_stored(event, settings)


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


_FIELD_NAMES = tuple(FeedbackEvent.model_fields)


def _too_long(event: FeedbackEvent, limit: int) -> str | None:
    """The first text field longer than ``limit`` (scrubbing it would cost too much), as an error."""
    for name in _FIELD_NAMES:
        value = getattr(event, name)
        if isinstance(value, str):  # most fields: tested here, without a generator per field
            if len(value) > limit:
                return _too_long_error(name, value, limit)
        elif isinstance(value, dict | list) and value:
            for where, text in _texts(value, name):
                if len(text) > limit:
                    return _too_long_error(where, text, limit)
    return None


def _too_long_error(where: str, text: str, limit: int) -> str:
    return f"{where}: {len(text)} characters, more than ingest.max_field_chars ({limit})"


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
