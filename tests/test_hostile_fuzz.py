"""Hostile input, fuzzed with Hypothesis against both stores (SQLite and PostgreSQL): what stays.

What it tries, over ``POST /v1/feedback`` and over the CLI's ingest of JSONL lines:
- every event field, one to three at a time, set to a hostile value of its kind (random unicode with
  NUL, lone surrogates sent as JSON escapes, bidi marks and emoji; huge, tiny, negative and
  non-finite numbers, numbers past a double's range; odd timestamps: years 1 and 9999 with offsets
  that leave the range in UTC, no timezone, impossible dates, epoch numbers; nested metadata with odd
  keys), to a value of the wrong type (any JSON value), or left out; unknown fields added;
- body shapes: one event, ``{"events": [...]}`` mixing good events, hostile events and arbitrary
  JSON values, an empty batch, and bodies that are not an event at all.

What it asserts, for every example: no 5xx answer (the CLI: no exception); ``accepted + duplicates +
rejected`` is the number of items; every rejection has a distinct index (line) in range; the rows the
store gained are exactly ``accepted``; every good event not rejected is stored, and no rejected one.

Deterministic (``derandomize``) and short: about 150 bodies and 60 files per store, well under a
minute in all on 2 cores. More by hand: ``FLYWHEEL_HOSTILE_EXAMPLES=2000``.
"""

from __future__ import annotations

import codecs
import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import event
from flywheel.config import Settings, load_settings
from flywheel.feedback.ingest import ingest_files
from flywheel.feedback.store import SQLFeedbackStore, open_store
from live_server import LiveServer, make_key

EXAMPLES = int(os.environ.get("FLYWHEEL_HOSTILE_EXAMPLES", "150"))
_RUN = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_GOOD = "good"  # an event_id placeholder: the test gives each good event a fresh id before sending it
_BIG = "__BIG_NUMBER__"  # replaced in the JSON text by a number no double holds

_ODD_CHARS = st.sampled_from(
    ["\u0000", "\ud800", "\udfff", "\U0001f600", "\u202e", "\ufeff", "é", "\n", " ", "a", "@", "0", "\x7f", "\u2028"]
)
TEXT = st.one_of(st.text(max_size=24), st.text(alphabet=_ODD_CHARS, max_size=12))
NUMBER = st.one_of(
    st.integers(-(10**30), 10**30), st.floats(), st.sampled_from([0, 1, 5, -1, 0.5, 1e308, 5e-324, 10**400, _BIG])
)
_OFFSET = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02}:{abs(m) % 60:02}"
)  # every offset ISO 8601 allows
TIMESTAMP = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-00:01",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-11-10T10:00:00",
            "2026-11-10",
            "2026-02-30T00:00:00Z",
            "2026-11-10T24:00:00Z",
            "+10000-01-01T00:00:00Z",
            "2026-11-10T10:00:00.1234567890Z",
            "2026-11-10T10:00:00+25:00",
            "",
            "now",
            1700000000,
            1.7e12,
        ]
    ),
    st.builds(lambda d, o: d.isoformat() + o, st.datetimes(), _OFFSET),
    st.builds(lambda d: d.isoformat() + "Z", st.datetimes()),
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "event_id": TEXT,
    "ts": TIMESTAMP,
    "signal": st.sampled_from(["rating", "outcome", "expert_review", "edit", "correction", "nope", ""]),
    "value": NUMBER,
    "confidence": NUMBER,
    "consent": JSON,
    "metadata": JSON.map(lambda v: {"k": v}) | JSON,
    "context_ids": st.lists(TEXT, max_size=3) | JSON,
    "arm": TEXT,
    "reason": TEXT,
}
FIELDS = [
    "event_id",
    "ts",
    "signal",
    "query",
    "output",
    "user_id",
    "session_id",
    "consent",
    "prompt_version",
    "model",
    "index_version",
    "arm",
    "confidence",
    "reason",
    "comment",
    "correction",
    "final_text",
    "value",
    "context_ids",
    "metadata",
    "unknown_field",
]


@st.composite
def hostile_event(draw: st.DrawFn) -> dict[str, Any]:
    """A good event with one to three fields made hostile, of the wrong type, or left out."""
    e = event(_GOOD, comment="see ann@example.com", metadata={"k": [1, "v"]})
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        how = draw(st.sampled_from(["hostile", "hostile", "wrong_type", "missing"]))
        if how == "missing":
            e.pop(name, None)
        else:
            e[name] = draw(HOSTILE.get(name, TEXT) if how == "hostile" else JSON)
    return e


ITEM = st.one_of(st.just(None).map(lambda _: event(_GOOD)), hostile_event(), JSON)
BODY = st.one_of(
    st.lists(ITEM, max_size=8).map(lambda items: {"events": items}),
    hostile_event(),
    st.just(None).map(lambda _: event(_GOOD)),
    JSON,
)


class Ledger:
    """Gives good events fresh ids and checks, after each request, what the store gained."""

    def __init__(self, store: SQLFeedbackStore) -> None:
        self.store = store
        self.ids = itertools.count()
        self.total = 0

    def name_good_events(self, items: list[Any]) -> list[str | None]:
        """Fresh ids for the good placeholders (in place); each item's assigned id or None."""
        named: list[str | None] = []
        for item in items:
            fresh = isinstance(item, dict) and item.get("event_id") == _GOOD
            if fresh:
                item["event_id"] = f"g{next(self.ids)}"
            named.append(item["event_id"] if fresh else None)
        return named

    def check(self, named: list[str | None], report: dict[str, Any], where: str) -> None:
        """The report adds up; the store gained exactly ``accepted`` rows; good events land unless rejected."""
        rejected = [e[where] for e in report["errors"]]
        assert report["accepted"] + report["duplicates"] + report["rejected"] == len(named), report
        assert report["rejected"] == len(rejected) == len(set(rejected)), report
        assert all(0 <= i < len(named) for i in rejected), report  # a batch may reject nothing
        total = self.store.counts()["events"]
        assert total - self.total == report["accepted"], (total, self.total, report)
        self.total = total
        good = {i: n for i, n in enumerate(named) if n is not None}
        stored = {e.event_id for e in self.store.get(good.values())}
        assert stored == {n for i, n in good.items() if i not in rejected}, (report, good, stored)


def _json_text(body: Any) -> str:
    return json.dumps(body).replace(f'"{_BIG}"', "1e400")


@pytest.fixture
def store_settings(any_store_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FLYWHEEL_STORE_URL", any_store_url)
    return load_settings()


def test_hostile_bodies_never_get_a_5xx_and_store_exactly_what_was_accepted(store_settings: Settings, cli) -> None:
    key = make_key(cli, "fuzz", "ingest")
    with (
        LiveServer(store_settings) as live,
        live.http(key) as http,
        open_store(store_settings.resolved_store_url) as store,
    ):
        ledger = Ledger(store)
        statuses: Counter[int] = Counter()

        @_RUN
        @given(BODY)
        def post(body: Any) -> None:
            batch = isinstance(body, dict) and isinstance(body.get("events"), list)
            items = body["events"] if batch else [body]
            named = ledger.name_good_events(items)
            answer = http.post("/v1/feedback", content=_json_text(body), headers={"Content-Type": "application/json"})
            statuses[answer.status_code] += 1
            assert answer.status_code in (200, 400, 413, 422), (answer.status_code, answer.text[:500])
            if answer.status_code in (200, 422):
                assert answer.status_code == 200 or not batch
                ledger.check(named, answer.json(), "index")
            else:
                assert store.counts()["events"] == ledger.total

        post()
    print(f"hostile bodies: answers {dict(sorted(statuses.items()))}, {ledger.total} events stored")
    assert statuses[200] and statuses[422] and statuses[400]  # the examples reach every outcome


def _jsonl_row(kind: str, value: Any) -> bytes:
    """One line of the file: an item as JSON, or raw text (lone surrogates kept, so not UTF-8)."""
    text = _json_text(value) if kind == "json" else value
    return text.encode("utf-8", "surrogatepass").replace(b"\n", b" ")


def test_hostile_jsonl_lines_are_rejected_alone_by_line(store_settings: Settings, tmp_path: Path) -> None:
    lines = st.lists(st.tuples(st.just("json"), ITEM) | st.tuples(st.just("raw"), TEXT), min_size=1, max_size=8)
    with open_store(store_settings.resolved_store_url) as store:
        ledger = Ledger(store)

        @settings(_RUN, max_examples=max(EXAMPLES * 2 // 5, 10))
        @given(lines)
        def ingest(drawn: list[tuple[str, Any]]) -> None:
            named = ledger.name_good_events([value for _, value in drawn])
            rows = [_jsonl_row(kind, value) for kind, value in drawn]
            path = tmp_path / "fuzz.jsonl"
            path.write_bytes(b"".join(row + b"\n" for row in rows))
            report = ingest_files([str(path)], store, store_settings.quarantine_dir, store_settings.ingest).public()
            # ingest skips blank lines (a byte order mark first is dropped): number the others from 0
            read = [
                n for n, row in enumerate(rows, 1) if (row.removeprefix(codecs.BOM_UTF8) if n == 1 else row).strip()
            ]
            position = {line: k for k, line in enumerate(read)}
            report["errors"] = [e | {"line": position[e["line"]]} for e in report["errors"]]
            ledger.check([named[line - 1] for line in read], report, "line")

        ingest()
