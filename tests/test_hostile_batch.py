"""One event's problem stays that event's, on SQLite and PostgreSQL alike (issue 27, parts 1 and 9).

A time whose UTC reading leaves the years 1..9999 used to end the request with a 500 (the CLI with a
traceback) and a NUL character did the same on PostgreSQL only: the whole batch was lost. Now such an
event is rejected alone, with its index (HTTP) or line (CLI) and a message naming the field and the
rule, never the value; what a database still refuses is found row by row under savepoints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import event, write_jsonl
from flywheel.config import Settings, load_settings
from flywheel.errors import FlywheelError
from flywheel.feedback.store import SQLFeedbackStore, open_store
from flywheel.schemas import StoredEvent
from live_server import LiveServer, make_key, stored_ids

_SECRET = "s3cret-ann"  # in every poisoned value: an error must never quote it
_HUGE = "__HUGE_NUMBER__"  # replaced by a JSON number no float holds
_LONG_INT = "__LONG_INTEGER__"  # replaced by an integer of 5,000 digits (Python's int() refuses over 4,300)

# Poisoned fields and the field their error must name. Each is one event's problem only.
POISONS: dict[str, tuple[dict, str]] = {
    "ts_before_year_1": ({"ts": "0001-01-01T00:00:00+01:00"}, "ts"),
    "ts_after_year_9999": ({"ts": "9999-12-31T23:30:00-05:00"}, "ts"),
    "nul_in_query": ({"query": f"{_SECRET}\u0000tail"}, "query"),
    "nul_in_event_id": ({"event_id": f"{_SECRET}\u0000"}, "event_id"),
    "nul_in_metadata": ({"metadata": {"note": f"{_SECRET}\u0000"}}, "metadata"),
    "nul_in_context_ids": ({"context_ids": [f"{_SECRET}\u0000"]}, "context_ids"),
    "number_out_of_range": ({"signal": "rating", "value": _HUGE}, "value"),
    "integer_too_long": ({"signal": "rating", "value": _LONG_INT}, "value"),
    "integer_too_long_in_metadata": ({"metadata": {"n": _LONG_INT}}, "metadata"),
    "text_too_long": ({"comment": _SECRET * 20_000}, "comment"),
}


@pytest.fixture
def store_settings(any_store_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose store is a fresh SQLite file or a fresh PostgreSQL database."""
    monkeypatch.setenv("FLYWHEEL_STORE_URL", any_store_url)
    return load_settings()


def _poisoned(name: str, event_id: str) -> dict:
    fields, _ = POISONS[name]
    return event(event_id) | fields


def _json_text(value: object) -> str:
    return json.dumps(value).replace(f'"{_HUGE}"', "1e400").replace(f'"{_LONG_INT}"', "9" * 5000)


def _assert_names_the_field_not_the_value(error: str, field: str) -> None:
    assert error.startswith(f"{field}: "), error
    assert _SECRET not in error and "\u0000" not in error, error


def test_a_batch_with_one_poisoned_event_of_each_kind_stores_the_good_ones(store_settings: Settings, cli) -> None:
    items: list[dict] = []
    poisoned_at: dict[int, str] = {}
    for i, name in enumerate(POISONS):
        items.append(event(f"good-{i}"))
        poisoned_at[len(items)] = name
        items.append(_poisoned(name, f"bad-{i}"))
    key = make_key(cli, "product", "ingest")
    with LiveServer(store_settings) as live, live.http(key) as http:
        answer = http.post(
            "/v1/feedback", content=_json_text({"events": items}), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert (doc["accepted"], doc["duplicates"], doc["rejected"]) == (len(POISONS), 0, len(POISONS))
    assert [e["index"] for e in doc["errors"]] == sorted(poisoned_at)
    for error in doc["errors"]:
        _assert_names_the_field_not_the_value(error["error"], POISONS[poisoned_at[error["index"]]][1])
    assert sorted(stored_ids(store_settings)) == sorted(f"good-{i}" for i in range(len(POISONS)))


@pytest.mark.parametrize("name", ["ts_before_year_1", "ts_after_year_9999", "nul_in_query", "nul_in_metadata"])
def test_a_single_poisoned_event_posted_alone_is_422_not_500(store_settings: Settings, cli, name: str) -> None:
    key = make_key(cli, "product", "ingest")
    with LiveServer(store_settings) as live, live.http(key) as http:
        answer = http.post("/v1/feedback", json=_poisoned(name, "alone"))
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["index"] == 0
    _assert_names_the_field_not_the_value(error["error"], POISONS[name][1])
    assert stored_ids(store_settings) == []


# An integer too long for Python is a line that is not valid JSON to the CLI's parser (rejected alone, as
# "number out of range at line 1 column N"); over HTTP it is the field's own error.
@pytest.mark.parametrize("name", [n for n in POISONS if not n.startswith("integer_too_long")])
def test_the_cli_stores_nine_of_ten_lines_when_line_4_is_poisoned(
    store_settings: Settings, cli, name: str, tmp_path: Path
) -> None:
    lines = [_json_text(_poisoned(name, "line-4") if n == 4 else event(f"line-{n}")) for n in range(1, 11)]
    out = cli("ingest", str(write_jsonl(tmp_path / "ten.jsonl", lines)), "--json")  # exit 0: lines were read
    assert cli.last.exception is None
    assert (out["accepted"], out["rejected"]) == (9, 1)
    (error,) = out["errors"]
    assert (error["file"], error["line"]) == (str(tmp_path / "ten.jsonl"), 4)
    _assert_names_the_field_not_the_value(error["error"], POISONS[name][1])
    assert sorted(stored_ids(store_settings)) == sorted(f"line-{n}" for n in range(1, 11) if n != 4)
    (kept,) = [
        json.loads(q)
        for f in (store_settings.home / "quarantine").glob("*.rejected.jsonl")
        for q in f.read_text().splitlines()
    ]
    assert kept["line"] == 4


def test_strict_ingest_still_exits_2_after_storing_the_good_lines(
    store_settings: Settings, cli, tmp_path: Path
) -> None:
    lines = [_json_text(_poisoned("nul_in_query", "line-4") if n == 4 else event(f"line-{n}")) for n in range(1, 11)]
    out = cli("ingest", str(write_jsonl(tmp_path / "ten.jsonl", lines)), "--json", "--strict", expect=2)
    assert (out["accepted"], out["rejected"], out["exit_code"]) == (9, 1, 2)


def _stored(event_id: str, **fields: object) -> StoredEvent:
    base: dict = {
        "ts": datetime(2026, 11, 10, tzinfo=UTC),
        "signal": "thumbs_down",
        "polarity": -1,
        "strength": 1.0,
        "query": "q",
        "output": "o",
    }
    return StoredEvent(event_id=event_id, **(base | fields))


# Events that bypass validation (a caller building StoredEvents itself): the store refuses each alone,
# with the same message on both dialects, before any database sees it.
_UNSTORABLE: list[tuple[StoredEvent, str]] = [
    (_stored("u-ts", ts=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))), "ts: out of range"),
    (_stored("u-nul", query=f"{_SECRET}\u0000"), "query: contains a NUL character"),
    (_stored("u-nan", strength=float("nan")), "strength: not a finite number"),
    (_stored("u-surrogate", comment=f"{_SECRET}\ud800"), "comment: holds a lone surrogate"),
    (_stored("u-json", metadata={"n": 10**5000}), "metadata: cannot be written as JSON"),
]


def test_the_store_refuses_what_no_dialect_should_keep_alone_and_alike(any_store_url: str) -> None:
    events = [_stored("ok-1")] + [e for e, _ in _UNSTORABLE] + [_stored("ok-2")]
    with open_store(any_store_url) as store:
        result = store.add_each(events, "test")
        assert sorted(e.event_id for e in result.new) == ["ok-1", "ok-2"]
        assert [r.position for r in result.refused] == list(range(1, len(_UNSTORABLE) + 1))
        for refused, (_, expected) in zip(result.refused, _UNSTORABLE, strict=True):
            assert refused.error.startswith(expected) and _SECRET not in refused.error, refused.error
        with pytest.raises(FlywheelError, match="event 0: query: contains a NUL"):  # add: all or nothing
            store.add([_stored("u-nul-2", query="\u0000"), _stored("ok-3")], "test")
        assert sorted(e.event_id for e in store.events()) == ["ok-1", "ok-2"]


def _stricter_columns(store: SQLFeedbackStore) -> None:
    """What a DBA might add: a short `query` column and an integer `value` (SQLite: the same by triggers)."""
    with store._engine.begin() as conn:  # noqa: SLF001 - the test plays the DBA on the real database
        if store.dialect == "postgresql":
            conn.execute(text("ALTER TABLE events ALTER COLUMN query TYPE varchar(40)"))
            conn.execute(text("ALTER TABLE events ALTER COLUMN value TYPE integer"))
            return
        for name, check in (("short_query", "length(NEW.query) > 40"), ("int_value", "abs(NEW.value) > 2147483647")):
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON events WHEN {check} "
                    f"BEGIN SELECT RAISE(ABORT, '{name}'); END"
                )
            )


def test_a_row_the_database_refuses_is_refused_alone_row_by_row(any_store_url: str) -> None:
    events = [
        _stored("a"),
        _stored("b", query=_SECRET * 10),
        _stored("c"),
        _stored("d", signal="rating", value=1e12),
        _stored("e"),
    ]
    with open_store(any_store_url) as store:
        _stricter_columns(store)
        result = store.add_each(events, "test")
        assert sorted(e.event_id for e in result.new) == ["a", "c", "e"]
        assert [r.position for r in result.refused] == [1, 3]
        for refused in result.refused:
            assert "refused by the store" in refused.error and _SECRET not in refused.error, refused.error
        assert sorted(e.event_id for e in store.events()) == ["a", "c", "e"]
        again = store.add_each(events, "test")  # the good ones are duplicates now, the bad still refused
        assert (again.new, [r.position for r in again.refused]) == ([], [1, 3])
