"""The service sends the ingest's Prefect events too, summed over requests so that single-event
posts add up to what one event stands for (the on-feedback trigger counts events)."""

from __future__ import annotations

import pytest

from conftest import event
from flywheel.config import load_settings
from live_server import LiveServer, make_key
from test_events import _events_for


def test_single_posts_add_up_to_whole_prefect_events(cli, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("FLYWHEEL_EVENTS__NEGATIVES_PER_EVENT", "4")
    monkeypatch.setenv("FLYWHEEL_SERVE__EVENTS_FLUSH_SECONDS", "0.2")
    settings = load_settings()
    key = make_key(cli, "product", "ingest")
    with LiveServer(settings) as live, live.http(key) as http:
        for i in range(10):
            assert http.post("/v1/feedback", json=event(f"n{i}", user_id=f"u{i}")).json()["negative"] == 1
        http.post("/v1/feedback", json=event("n0"))  # a duplicate is no new feedback
        http.post("/v1/feedback", json=event("p1", signal="thumbs_up"))
        events = live.service.events
    assert events.sent == 3 and events.pending == 0  # 4 + 4 while serving, the remaining 2 at shutdown
    found = _events_for(settings.home, 3)
    assert sorted(e.payload["negatives"] for e in found) == [2, 4, 4]


def test_without_a_prefect_server_nothing_is_pending(cli, settings) -> None:
    key = make_key(cli, "product", "ingest")
    with LiveServer(settings) as live, live.http(key) as http:
        http.post("/v1/feedback", json=event("n1"))
        assert not live.service.events.enabled and live.service.events.pending == 0
