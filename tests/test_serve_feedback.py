"""POST /v1/feedback against a real server: the same validation, scrubbing, quarantine and
idempotency as `flywheel ingest`, limits, malformed bodies, concurrency, and 503 when the store
cannot take a write."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from conftest import event, write_jsonl
from flywheel.client import FeedbackRejected, FlywheelClient
from flywheel.config import load_settings
from live_server import LiveServer, make_key, stored_ids


@pytest.fixture
def live(cli, settings):
    key = make_key(cli, "product", "ingest")
    with LiveServer(settings) as server:
        server.key = key
        yield server


def _quarantined(home: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted((home / "quarantine").glob("*.rejected.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_one_event_and_a_batch_are_stored_and_scrubbed_as_ingest_does(live, settings) -> None:
    http = live.http(live.key)
    one = http.post("/v1/feedback", json=event("e1", comment="reach me at ann@example.com")).json()
    assert (one["accepted"], one["duplicates"], one["rejected"], one["errors"]) == (1, 0, 0, [])
    batch = http.post("/v1/feedback", json={"events": [event("e2"), event("e1"), event("e3", signal="thumbs_up")]})
    assert batch.status_code == 200
    assert {k: batch.json()[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 2,
        "duplicates": 1,
        "rejected": 0,
    }
    assert sorted(stored_ids(settings)) == ["e1", "e2", "e3"]
    from flywheel.feedback.store import open_store

    with open_store(settings.resolved_store_url) as store:
        (e1,) = store.get(["e1"])
    assert "ann@example.com" not in (e1.comment or "") and e1.pii_scrubbed


def test_the_same_event_through_http_and_the_cli_is_stored_once(live, cli, settings, tmp_path: Path) -> None:
    http = live.http(live.key)
    assert http.post("/v1/feedback", json=event("both-1")).json()["accepted"] == 1
    out = cli("ingest", str(write_jsonl(tmp_path / "a.jsonl", [event("both-1"), event("both-2")])), "--json")
    assert (out["accepted"], out["duplicates"]) == (1, 1)
    again = http.post("/v1/feedback", json={"events": [event("both-2"), event("both-1")]}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    assert sorted(stored_ids(settings)) == ["both-1", "both-2"]


def test_a_batch_with_bad_items_stores_the_good_ones_and_reports_the_bad_by_index(live, settings) -> None:
    items = [
        event("g1"),
        {"event_id": "b1"},
        event("g2"),
        42,
        event("b3", consent="yes"),
        event("b4", query="x" * (settings.ingest.max_field_chars + 1)),
    ]
    answer = live.http(live.key).post("/v1/feedback", json={"events": items})
    assert answer.status_code == 200
    doc = answer.json()
    assert (doc["accepted"], doc["rejected"]) == (2, 4)
    assert [e["index"] for e in doc["errors"]] == [1, 3, 4, 5]
    assert "ts" in doc["errors"][0]["error"] and "consent" in doc["errors"][2]["error"]
    assert "max_field_chars" in doc["errors"][3]["error"]
    assert sorted(stored_ids(settings)) == ["g1", "g2"]
    kept = _quarantined(settings.home)
    assert [(q["index"], q["file"]) for q in kept] == [
        (1, "api:product"),
        (3, "api:product"),
        (4, "api:product"),
        (5, "api:product"),
    ]
    live.http(live.key).post("/v1/feedback", json={"events": items})  # the same bad items again: kept once
    assert len(_quarantined(settings.home)) == 4


def test_a_single_rejected_event_is_422_with_the_reason_and_quarantined(live, settings) -> None:
    answer = live.http(live.key).post("/v1/feedback", json=event("w1") | {"event_id": 5, "ts": 1700000000})
    assert answer.status_code == 422
    doc = answer.json()
    assert doc["rejected"] == 1 and doc["errors"][0]["index"] == 0 and "event_id" in doc["errors"][0]["error"]
    assert stored_ids(settings) == [] and len(_quarantined(settings.home)) == 1
    with FlywheelClient(live.url, live.key) as client, pytest.raises(FeedbackRejected) as raised:
        client.feedback(event("w2", signal="shout"))
    assert raised.value.status == 422 and "signal" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "body", "status", "needle"),
    [
        ("not JSON", b'{"event_id": "x",', 400, "not JSON"),
        ("invalid UTF-8", b'{"event_id": "\xff\xfe", "ts": "2026-11-10T10:00:00Z"}', 400, "UTF-8"),
        ("10k-deep nesting", b"[" * 10_000 + b"]" * 10_000, 400, "deeper"),
        (
            "10k-deep metadata",
            json.dumps({"events": [event("d1")]}).encode()[:-3]
            + b', "metadata": {"a": '
            + b"[" * 10_000
            + b"]" * 10_000
            + b"}}]}",
            400,
            "deeper",
        ),
        ("a JSON array", json.dumps([event("a1")]).encode(), 400, "not a JSON array"),
        ("a JSON string", b'"thumbs_up"', 400, "not a JSON string"),
        ("events not a list", b'{"events": {"event_id": "x"}}', 400, "JSON array"),
        ("a batch with another field", json.dumps({"events": [event("a2")], "source": "x"}).encode(), 400, "one field"),
        ("empty body", b"", 400, "not JSON"),
        ("too many events", json.dumps({"events": [event(f"m{i}") for i in range(1001)]}).encode(), 413, "max_batch"),
    ],
)
def test_malformed_bodies_are_a_clear_4xx_and_store_nothing(live, settings, name, body, status, needle) -> None:
    answer = live.http(live.key).post("/v1/feedback", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, (name, answer.text)
    assert needle in answer.json()["detail"], (name, answer.text)
    assert stored_ids(settings) == []
    assert not (settings.home / "quarantine").exists()


def test_bodies_over_the_size_limit_are_413_declared_or_streamed(live, settings) -> None:
    limit = settings.serve.max_body_bytes
    big = json.dumps({"events": [event("big", comment="x" * limit)]}).encode()
    http = live.http(live.key)
    assert http.post("/v1/feedback", content=big).status_code == 413

    def chunks():  # no Content-Length: the limit holds while reading
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = http.post("/v1/feedback", content=chunks())
    assert streamed.status_code == 413 and "max_body_bytes" in streamed.json()["detail"]
    assert stored_ids(settings) == []


def test_concurrent_posts_lose_and_duplicate_nothing(live, settings) -> None:
    """16 threads, each posting its own events and a share of everyone's, one by one and in batches."""
    threads, per_thread = 16, 40
    shared = [event(f"shared-{i}", user_id=f"s{i}") for i in range(20)]
    results: list[dict] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        own = [event(f"t{t}-{i}", user_id=f"u{t}") for i in range(per_thread)]
        with FlywheelClient(live.url, live.key) as client:
            for i in range(0, per_thread, 10):
                got = [
                    client.feedback(own[i : i + 10]),
                    client.feedback(shared[(t + i) % 20]),
                    client.feedback(own[i]),
                ]  # a duplicate of one just sent
                with lock:
                    results.extend(r.model_dump() for r in got)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join()
    ids = stored_ids(settings)
    assert len(ids) == len(set(ids))
    sent = threads * per_thread + threads * (per_thread // 10) * 2
    assert sum(r["accepted"] + r["duplicates"] for r in results) == sent
    assert sum(r["accepted"] for r in results) == len(ids)
    expected = {f"t{t}-{i}" for t in range(threads) for i in range(per_thread)}
    expected |= {f"shared-{(t + i) % 20}" for t in range(threads) for i in range(0, per_thread, 10)}
    assert set(ids) == expected


def _held_write_lock(settings) -> sqlite3.Connection:
    """Another writer holding the feedback store's write lock, as a long transaction would."""
    from flywheel.feedback.store import open_store

    open_store(settings.resolved_store_url).close()  # the schema exists
    holder = sqlite3.connect(settings.store_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_store_that_cannot_take_a_write_is_503_with_retry_after(cli, monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_SERVE__STORE_TIMEOUT_SECONDS", "0.2")
    settings = load_settings()
    key = make_key(cli, "product", "ingest")
    holder = _held_write_lock(settings)
    with LiveServer(settings) as live:
        busy = live.http(key).post("/v1/feedback", json={"events": [event("x1"), event("x2"), {"bad": 1}]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "nothing was stored" in busy.json()["detail"]
        holder.rollback()
        holder.close()
        assert stored_ids(settings) == []
        assert not (settings.home / "quarantine").exists()  # the bad item is kept when the request is retried
        ok = live.http(key).post("/v1/feedback", json={"events": [event("x1"), event("x2"), {"bad": 1}]})
        assert (ok.status_code, ok.json()["accepted"], ok.json()["rejected"]) == (200, 2, 1)


def test_the_client_retries_a_503_until_the_store_takes_the_write(cli, monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_SERVE__STORE_TIMEOUT_SECONDS", "0.2")
    settings = load_settings()
    key = make_key(cli, "product", "ingest")
    holder = _held_write_lock(settings)
    with LiveServer(settings) as live:
        refused = threading.Event()

        def release_after_a_503() -> None:  # the lock goes once the server has refused at least once
            latency = live.service.metrics.registry
            while not latency.get_sample_value(
                "flywheel_request_seconds_count", {"method": "POST", "route": "/v1/feedback", "status": "503"}
            ):
                threading.Event().wait(0.02)
            refused.set()
            holder.rollback()

        releaser = threading.Thread(target=release_after_a_503)
        releaser.start()
        with FlywheelClient(live.url, key, retries=8) as client:
            result = client.feedback([event("r1"), event("r2")])
        releaser.join()
    holder.close()
    assert refused.is_set() and result.accepted == 2
    assert sorted(stored_ids(settings)) == ["r1", "r2"]


def test_metrics_count_events_by_outcome(live, cli) -> None:
    http = live.http(live.key)
    http.post("/v1/feedback", json={"events": [event("c1"), event("c2"), event("c1"), {"x": 1}]})
    text = live.http(make_key(cli, "scraper", "read")).get("/metrics").text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"}
    assert (
        values["flywheel_events_accepted_total"],
        values["flywheel_events_duplicates_total"],
        values["flywheel_events_rejected_total"],
    ) == (2.0, 1.0, 1.0)
    assert values['flywheel_request_seconds_count{method="POST",route="/v1/feedback",status="200"}'] == 1.0


def test_the_client_never_retries_a_4xx_and_gives_up_on_no_connection(live) -> None:
    from flywheel.app.serve.runner import bind
    from flywheel.client import ClientError, ServiceUnavailable

    with FlywheelClient(live.url, live.key, retries=4) as client:
        with pytest.raises(FeedbackRejected):
            client.feedback(event("bad", signal="shout"))
        with pytest.raises(ClientError) as forbidden:
            client.champion("u1")  # an ingest key: 403
    assert forbidden.value.status == 403
    counts = {
        status: live.service.metrics.registry.get_sample_value(
            "flywheel_request_seconds_count", {"method": method, "route": route, "status": status}
        )
        for method, route, status in (("POST", "/v1/feedback", "422"), ("GET", "/v1/champion", "403"))
    }
    assert counts == {"422": 1.0, "403": 1.0}

    closed = bind("127.0.0.1", 0)  # a port nobody listens on
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    with FlywheelClient(url, live.key, retries=2, backoff=0.01) as client, pytest.raises(ServiceUnavailable) as down:
        client.feedback(event("e1"))
    assert down.value.status == 0 and "ConnectError" in str(down.value)
