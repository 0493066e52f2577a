"""The event's fields are declared three times, each for its own job: the input format
(``FeedbackEvent``: strict validation), the stored event (``StoredEvent``: a slotted dataclass for
hundreds of thousands of events) and the table (``events``: plain columns pinned by migrations).
Deriving one from another would tie a migration to a model edit; this keeps the three in step
instead: a field added to one and not the others fails here."""

from __future__ import annotations

from dataclasses import fields

from flywheel.feedback.tables import events
from flywheel.schemas import FeedbackEvent, StoredEvent

DERIVED = {"polarity", "strength", "pii_scrubbed"}  # worked out on the way in
ROW_ONLY = {"ts_epoch", "source", "ingested_at"}  # how and when the row was written


def test_the_format_the_stored_event_and_the_table_name_the_same_fields() -> None:
    stored = {f.name for f in fields(StoredEvent)}
    assert len(FeedbackEvent.model_fields) > 10  # the comparisons below are over real field lists
    assert stored == set(FeedbackEvent.model_fields) | DERIVED
    assert {c.name for c in events.columns} == stored | ROW_ONLY
