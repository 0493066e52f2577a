"""Ingest's sources: a file's lines, a request's events and a source a test writes itself all feed the
one validation path, so an event gets the same verdict, message and stored form whichever brought it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import event, write_jsonl
from flywheel.config import IngestSettings
from flywheel.feedback.ingest import ingest_files, ingest_objects, ingest_source
from flywheel.feedback.sources import Position, SourceItem
from flywheel.feedback.store import open_store
from flywheel.schemas import BatchReport

BAD = [
    event("b1", ts=1_762_768_800),  # an epoch number, not ISO 8601
    event("b2", surprise="x"),  # a field not in the format
    event("b3", signal="rating"),  # a rating without its value
    event("jane@example.com"),  # PII as an identifier
    event("b5", query="q" * 300),  # longer than the limit below
]
SETTINGS = IngestSettings(max_field_chars=200)


def _stored(url: str) -> dict[str, Any]:
    with open_store(url) as store:
        return {e.event_id: asdict(e) for e in store.events()}


def test_a_file_and_a_request_give_the_same_verdicts_messages_and_stored_events(tmp_path: Path) -> None:
    good = [event("g1", user_id="jane@example.com", comment="call me on +1 415 555 0101"), event("g2")]
    items = [good[0], *BAD, good[1]]
    file_url, body_url = f"sqlite:///{tmp_path / 'file.sqlite'}", f"sqlite:///{tmp_path / 'body.sqlite'}"
    with open_store(file_url) as store:
        from_file = ingest_files([str(write_jsonl(tmp_path / "fb.jsonl", items))], store, tmp_path / "qf", SETTINGS)
    with open_store(body_url) as store:
        from_body = ingest_objects(items, "api:test", store, tmp_path / "qb", SETTINGS)
    assert [e.error for e in from_file.errors] == [e.error for e in from_body.errors]
    assert len(from_body.errors) == len(BAD)
    assert [e.line for e in from_file.errors] == [2, 3, 4, 5, 6]  # 1-based lines
    assert [e.index for e in from_body.errors] == [1, 2, 3, 4, 5]  # 0-based indexes
    assert (from_file.accepted, from_file.scrubbed) == (from_body.accepted, from_body.scrubbed) == (2, 1)
    assert _stored(file_url) == _stored(body_url) != {}
    assert _kept(tmp_path / "qf", "line") == _kept(tmp_path / "qb", "index") != []


def _kept(directory: Path, counts: str) -> list[tuple[int, str, str]]:
    """(0-based position, error, kept text) of each quarantined item."""
    (path,) = directory.glob("*.rejected.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r[counts] - (counts == "line"), r["error"], r["raw"]) for r in records]


@dataclass
class _Traces:
    """A source as an importer would write one: decoded events at positions of its own choosing."""

    name: str
    spans: list[tuple[int, Any]]
    counts: ClassVar[Position] = Position.index

    def items(self) -> Iterator[SourceItem]:
        for position, value in self.spans:
            yield SourceItem.of_value(position, value)


@pytest.mark.parametrize("atomic", [False, True])
def test_a_new_source_needs_no_validation_of_its_own(tmp_path: Path, atomic: bool) -> None:
    source = _Traces(
        "traces.json",
        [
            (10, event("t1")),
            (11, BAD[0]),
            (12, event("t1")),
            (13, {"no": "event"}),
            (14, event("t2", metadata={"k": float("nan")})),
        ],
    )
    report = BatchReport()
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        ingest_source(source, store, tmp_path / "q", SETTINGS, report, atomic=atomic)
        assert sorted(e.event_id for e in store.events()) == ["t1"]
    assert (report.accepted, report.duplicates, report.rejected) == (1, 1, 3)
    assert [e.index for e in report.errors] == [11, 13, 14]
    assert report.errors[0].error.startswith("ts: ")
    (kept,) = (tmp_path / "q").glob("traces.json.*.rejected.jsonl")
    records = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [(r["file"], r["index"]) for r in records] == [("traces.json", 11), ("traces.json", 13), ("traces.json", 14)]
