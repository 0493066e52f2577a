"""``flywheel import langfuse`` (issue 30 part 3) against a small Langfuse written here: a Starlette app
on 127.0.0.1 serving the public API's documented shapes (``GET /api/public/scores`` paginated with
``page``/``limit``/``meta.totalPages`` and filtered by ``fromTimestamp``, ``GET /api/public/traces/{id}``,
HTTP Basic auth with the project's keys), imported through the one ingest path, then re-imported,
limited by time, without consent, malformed, from a judge, and with wrong keys."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flywheel.app.serve.runner import base_url, bind
from flywheel.config import load_settings
from flywheel.feedback.store import open_store

PUBLIC, SECRET = "pk-lf-test-1234", "sk-lf-very-secret-value-987654"


class FakeLangfuse:
    """Traces and scores held in memory, served as Langfuse's public API serves them (newest first)."""

    def __init__(self) -> None:
        self.traces: dict[str, dict[str, Any]] = {}
        self.scores: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.app = Starlette(
            routes=[
                Route("/api/public/scores", self.list_scores),
                Route("/api/public/traces/{trace_id}", self.get_trace),
            ]
        )

    def _authorised(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
        return request.headers.get("authorization") == expected

    async def list_scores(self, request: Request) -> JSONResponse:
        self.requests.append(str(request.url.path) + "?" + str(request.url.query))
        if not self._authorised(request):
            return JSONResponse({"message": "Invalid credentials"}, status_code=401)
        page, limit = int(request.query_params.get("page", 1)), int(request.query_params.get("limit", 50))
        since = request.query_params.get("fromTimestamp")
        chosen = [s for s in self.scores if since is None or _when(s["timestamp"]) >= _when(since)]
        chosen.sort(key=lambda s: s["timestamp"], reverse=True)
        total_pages = -(-len(chosen) // limit)
        return JSONResponse(
            {
                "data": chosen[(page - 1) * limit : page * limit],
                "meta": {"page": page, "limit": limit, "totalItems": len(chosen), "totalPages": total_pages},
            }
        )

    async def get_trace(self, request: Request) -> JSONResponse:
        self.requests.append(str(request.url.path))
        if not self._authorised(request):
            return JSONResponse({"message": "Invalid credentials"}, status_code=401)
        trace = self.traces.get(request.path_params["trace_id"])
        if trace is None:
            return JSONResponse({"message": "Trace not found"}, status_code=404)
        return JSONResponse(trace)

    def trace(
        self,
        tid: str,
        question: str,
        answer: str,
        *,
        user: str = "u-1",
        consent: Any = "true",
        model: str = "gpt-4o-mini",
    ) -> str:
        metadata = {} if consent is None else {"consent": consent}
        self.traces[tid] = {
            "id": tid,
            "timestamp": "2026-11-10T09:59:00.000Z",
            "name": "assistant",
            "input": {"question": question},
            "output": answer,
            "sessionId": "s-1",
            "userId": user,
            "metadata": metadata | {"index_version": "idx-3"},
            "tags": [],
            "release": None,
            "version": None,
            "public": False,
            "htmlPath": f"/trace/{tid}",
            "observations": [
                {
                    "id": f"{tid}-gen",
                    "traceId": tid,
                    "type": "GENERATION",
                    "name": "chat",
                    "model": model,
                    "promptName": "assistant-system",
                    "promptVersion": 4,
                }
            ],
            "scores": [],
        }
        return tid

    def score(
        self,
        sid: str,
        tid: str | None,
        name: str,
        *,
        data_type: str = "NUMERIC",
        value: Any = None,
        string_value: str | None = None,
        comment: str | None = None,
        source: str = "ANNOTATION",
        at: str = "2026-11-10T10:00:00.000Z",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        self.scores.append(
            {
                "id": sid,
                "traceId": tid,
                "observationId": None,
                "sessionId": None,
                "name": name,
                "value": value,
                "stringValue": string_value,
                "dataType": data_type,
                "comment": comment,
                "source": source,
                "timestamp": at,
                "createdAt": at,
                "updatedAt": at,
                "authorUserId": "annotator-9",
                "configId": None,
                "queueId": None,
                "environment": "default",
                "metadata": metadata or {},
            }
        )
        return sid


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture
def langfuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLangfuse]:
    fake = FakeLangfuse()
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(fake.app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake Langfuse did not start"
        time.sleep(0.01)
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__HOST", base_url(sock))
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__PUBLIC_KEY", PUBLIC)
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__SECRET_KEY", SECRET)
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__PAGE_SIZE", "3")  # several pages from a few scores
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(30)


def _stored() -> dict[str, dict[str, Any]]:
    with open_store(load_settings().resolved_store_url) as store:
        return {e.event_id: asdict(e) for e in store.events()}


COUNTS = ("source", "read", "accepted", "duplicates", "rejected", "skipped_no_consent", "errors")


def test_scores_become_events_field_by_field_over_pages_and_a_reimport_stores_nothing(
    cli, langfuse: FakeLangfuse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__SIGNALS", '{"resolved": "outcome", "toxicity": "ignore"}')
    t = langfuse.trace("t-1", "How much does the Pro plan cost?", "The Pro plan costs $10 per month.")
    langfuse.score(
        "sc-thumb",
        t,
        "helpful",
        data_type="BOOLEAN",
        value=0,
        string_value="False",
        comment="the price went up",
        metadata={"reason": "outdated"},
        at="2026-11-10T10:00:01.000Z",
    )
    langfuse.score("sc-stars", t, "stars", value=2, at="2026-11-10T10:00:02.000Z")
    langfuse.score(
        "sc-expert", t, "quality", value=0.2, metadata={"reason": "stale pricing"}, at="2026-11-10T10:00:03.000Z"
    )
    langfuse.score("sc-resolved", t, "resolved", value=0, at="2026-11-10T10:00:04.000Z")
    langfuse.score(
        "sc-label", t, "verdict", data_type="CATEGORICAL", value=0, string_value="wrong", at="2026-11-10T10:00:05.000Z"
    )
    langfuse.score(
        "sc-fix",
        t,
        "output",
        data_type="CORRECTION",
        string_value="The Pro plan costs $12 per month.",
        at="2026-11-10T10:00:06.000Z",
    )
    langfuse.score("sc-judge", t, "relevance", value=0.9, source="EVAL", at="2026-11-10T10:00:07.000Z")
    langfuse.score("sc-tox", t, "toxicity", value=0.0, source="API", at="2026-11-10T10:00:08.000Z")
    langfuse.score("sc-note", t, "note", data_type="TEXT", string_value="check later", at="2026-11-10T10:00:09.000Z")

    report = cli("import", "langfuse", "--json")
    assert {k: report[k] for k in COUNTS} == {
        "source": "langfuse",
        "read": 9,
        "accepted": 6,
        "duplicates": 0,
        "rejected": 0,
        "skipped_no_consent": 0,
        "errors": [],
    }
    assert report["skipped"] == {
        "eval score, not a person's": 1,
        "ignored by imports.langfuse.signals": 1,
        "text score with no signal mapped": 1,
    }
    assert report["traces"] == 1  # read once for its six scores
    assert [r for r in langfuse.requests if r.startswith("/api/public/scores")] == [
        f"/api/public/scores?limit=3&page={p}" for p in (1, 2, 3)
    ]
    stored = _stored()
    assert set(stored) == {f"langfuse:sc-{n}" for n in ("thumb", "stars", "expert", "resolved", "label", "fix")}
    shared = {
        "query": "How much does the Pro plan cost?",
        "output": "The Pro plan costs $10 per month.",
        "user_id": "u-1",
        "session_id": "s-1",
        "consent": True,
        "prompt_version": "4",
        "model": "gpt-4o-mini",
        "index_version": "idx-3",
        "pii_scrubbed": [],
    }
    for e in stored.values():
        assert {k: e[k] for k in shared} == shared
    thumb = stored["langfuse:sc-thumb"]
    assert (thumb["signal"], thumb["polarity"], thumb["reason"], thumb["comment"], thumb["value"]) == (
        "thumbs_down",
        -1,
        "outdated",
        "the price went up",
        None,
    )
    assert thumb["metadata"] == {
        "langfuse_score": "helpful",
        "langfuse_source": "ANNOTATION",
        "langfuse_data_type": "BOOLEAN",
    }
    assert thumb["ts"] == datetime(2026, 11, 10, 10, 0, 1, tzinfo=UTC)  # the score's own time
    stars = stored["langfuse:sc-stars"]
    assert (stars["signal"], stars["value"], stars["polarity"]) == ("rating", 2, -1)
    expert = stored["langfuse:sc-expert"]
    assert (expert["signal"], expert["value"], expert["reason"]) == ("expert_review", 0.2, None)
    assert expert["metadata"]["langfuse_reason"] == "stale pricing"
    assert (stored["langfuse:sc-resolved"]["signal"], stored["langfuse:sc-resolved"]["value"]) == ("outcome", 0)
    label = stored["langfuse:sc-label"]
    assert (label["signal"], label["reason"], label["polarity"]) == ("thumbs_down", "wrong", -1)
    fix = stored["langfuse:sc-fix"]
    assert (fix["signal"], fix["correction"], fix["polarity"]) == (
        "correction",
        "The Pro plan costs $12 per month.",
        -1,
    )

    again = cli("import", "langfuse", "--since", "2000-01-01", "--json")
    assert (again["read"], again["accepted"], again["duplicates"], again["rejected"]) == (9, 0, 6, 0)
    assert _stored() == stored


def test_since_skips_older_scores_and_the_next_import_starts_at_the_high_water_mark(
    cli, langfuse: FakeLangfuse, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = langfuse.trace("t-old", "Is there a free plan?", "No.")
    new = langfuse.trace("t-new", "Can I pay yearly?", "Yes, with a discount.")
    langfuse.score("s-old", old, "helpful", data_type="BOOLEAN", value=0, at="2026-11-01T08:00:00.000Z")
    langfuse.score("s-new", new, "helpful", data_type="BOOLEAN", value=1, at="2026-11-05T08:00:00.000Z")

    report = cli("import", "langfuse", "--since", "2026-11-03T00:00:00+00:00", "--json")
    assert (report["read"], report["accepted"]) == (1, 1)
    assert [e["query"] for e in _stored().values()] == ["Can I pay yearly?"]
    assert report["high_water"] == "2026-11-05T08:00:00+00:00"
    assert "fromTimestamp=2026-11-03T00%3A00%3A00Z" in langfuse.requests[0]

    # Without --since: from the newest score read (no lookback here), so the old score is not read again.
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__LOOKBACK_HOURS", "0")
    later = langfuse.trace("t-later", "Do you have a student discount?", "No.")
    langfuse.score("s-later", later, "stars", value=1, at="2026-11-07T08:00:00.000Z")
    report = cli("import", "langfuse", "--json")
    assert (report["read"], report["accepted"], report["duplicates"]) == (2, 1, 1)  # s-new again, and s-later
    assert report["high_water"] == "2026-11-07T08:00:00+00:00"
    assert sorted(e["query"] for e in _stored().values()) == ["Can I pay yearly?", "Do you have a student discount?"]
    # An explicit --since reaches back: the old score is new, the others duplicates.
    report = cli("import", "langfuse", "--since", "2000-01-01", "--json")
    assert (report["read"], report["accepted"], report["duplicates"]) == (3, 1, 2)


def test_a_trace_without_consent_is_stored_for_statistics_only_and_counted(cli, langfuse: FakeLangfuse) -> None:
    yes = langfuse.trace("t-yes", "How do I reset my password?", "Use the link.", consent=True)
    absent = langfuse.trace("t-absent", "How do I delete my account?", "You cannot.", consent=None)
    refused = langfuse.trace("t-no", "Where is my invoice?", "Nowhere.", consent="no")
    for i, tid in enumerate((yes, absent, refused)):
        langfuse.score(f"s-{i}", tid, "helpful", data_type="BOOLEAN", value=0)

    report = cli("import", "langfuse", "--json")
    assert (report["accepted"], report["skipped_no_consent"]) == (3, 2)
    consent = {e["query"]: e["consent"] for e in _stored().values()}
    assert consent == {
        "How do I reset my password?": True,
        "How do I delete my account?": False,
        "Where is my invoice?": False,
    }


def test_a_malformed_score_is_quarantined_with_its_reason(cli, langfuse: FakeLangfuse, flywheel_home: Path) -> None:
    t = langfuse.trace("t-e42", "What does error E42 mean?", "A network problem.")
    langfuse.score("s-meh", t, "verdict", data_type="CATEGORICAL", value=0, string_value="meh")
    langfuse.score("s-seven", t, "stars", value=7)
    langfuse.score("s-ok", t, "helpful", data_type="BOOLEAN", value=0)
    langfuse.score("s-lost", "t-gone", "helpful", data_type="BOOLEAN", value=0)  # its trace was deleted

    report = cli("import", "langfuse", "--json")
    assert (report["read"], report["accepted"], report["rejected"]) == (4, 1, 2)
    assert report["skipped"] == {"its trace is not in Langfuse": 1}
    errors = {e["item"]: e for e in report["errors"]}
    assert set(errors) == {"s-meh", "s-seven"}
    assert errors["s-meh"]["error"].startswith("signal: Input should be 'thumbs_up'")
    assert "meh" not in errors["s-meh"]["error"]  # the rule, never the value
    assert errors["s-seven"]["error"] == "signal 'rating' needs 'value' between 1 and 5"
    assert {e["trace_id"] for e in report["errors"]} == {t}
    (kept,) = report["quarantine"]
    assert Path(kept).parent == flywheel_home / "quarantine"
    records = [json.loads(line) for line in Path(kept).read_text().splitlines()]
    assert sorted(r["error"] for r in records) == sorted(e["error"] for e in report["errors"])
    assert {(r["file"], r["index"]) for r in records} == {("langfuse", e["index"]) for e in report["errors"]}


def test_wrong_keys_give_one_clear_error_and_never_show_the_secret(
    cli, langfuse: FakeLangfuse, monkeypatch: pytest.MonkeyPatch
) -> None:
    langfuse.score("s-1", langfuse.trace("t-1", "Hi?", "Hello."), "helpful", data_type="BOOLEAN", value=1)
    wrong = "sk-lf-wrong-secret-000111222"
    monkeypatch.setenv("FLYWHEEL_IMPORTS__LANGFUSE__SECRET_KEY", wrong)
    out = cli("import", "langfuse", "--json", expect=1)
    assert "refused the keys (HTTP 401)" in out["error"] and "imports.langfuse.secret_key" in out["error"]
    result = cli("import", "langfuse", expect=1)
    assert len(result.stderr.strip().splitlines()) == 1
    shown = cli.last.stdout + cli.last.stderr + json.dumps(out)
    assert wrong not in shown and SECRET not in shown
    assert _stored() == {}

    doc = cli("config", "--json")
    assert doc["imports"]["langfuse"]["secret_key"] == "***"
    assert doc["imports"]["langfuse"]["public_key"] == PUBLIC
    assert wrong not in cli.last.stdout + cli.last.stderr

    monkeypatch.delenv("FLYWHEEL_IMPORTS__LANGFUSE__SECRET_KEY")
    out = cli("import", "langfuse", "--json", expect=2)
    assert "imports.langfuse.secret_key" in out["error"]
