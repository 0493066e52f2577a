"""Drift alarms (negative-rate trend, golden-score trend) in status, the Prefect event they emit
once per episode, and the watch flow's artifact."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flywheel.config import load_settings
from flywheel.loop.drift import alarm_is_new, drift
from flywheel.runtime import runtime_for
from flywheel.state import open_state
from tests.watch_helpers import ingest, rated_events


def _rising(settings) -> None:
    now = datetime.now(UTC)
    ingest(
        settings,
        rated_events(1, 1400, 0.10, prefix="base", start=now - timedelta(days=10), spacing=timedelta(minutes=9)),
    )
    ingest(
        settings,
        rated_events(2, 600, 0.30, prefix="recent", start=now - timedelta(hours=20), spacing=timedelta(minutes=1)),
    )


def test_a_rising_negative_rate_raises_the_alarm_in_status(cli) -> None:
    settings = load_settings()
    _rising(settings)
    doc = cli("status", "--json")["drift"]
    trend = doc["negative_rate_trend"]
    assert trend["direction"] == "rising" and trend["ci_low"] > 0 and doc["alarm"] is True
    assert "negative rate rose" in doc["why"] and doc["golden_trend"]["direction"] == "unknown"


def test_a_steady_rate_and_a_steady_golden_score_do_not_alarm() -> None:
    settings = load_settings()
    now = datetime.now(UTC)
    ingest(settings, rated_events(3, 2000, 0.2, start=now - timedelta(days=10), spacing=timedelta(minutes=7)))
    with open_state(settings) as state:
        for i, score in enumerate((0.80, 0.81, 0.80)):
            state.start_cycle(f"cyc-{i}")
            state.finish_cycle(f"cyc-{i}", "done", "g1", score, {})
            time.sleep(0.01)
    rt = runtime_for(settings)
    current = drift(settings, rt.state, rt.feedback)
    assert current.negative_rate_trend.direction == "flat" and current.golden_trend.direction == "flat"
    assert current.alarm is False and current.why.startswith("no drift")


def test_a_falling_golden_score_alarms_but_only_on_one_golden_version() -> None:
    settings = load_settings()
    with open_state(settings) as state:
        for i, (version, score) in enumerate((("g0", 0.30), ("g1", 0.82), ("g1", 0.84), ("g1", 0.78))):
            state.start_cycle(f"cyc-{i}")
            state.finish_cycle(f"cyc-{i}", "done", version, score, {})
            time.sleep(0.01)
    rt = runtime_for(settings)
    current = drift(settings, rt.state, rt.feedback)
    assert current.golden_trend.scores == [0.82, 0.84, 0.78]  # g0's score is on another golden set
    assert current.golden_trend.direction == "falling" and current.alarm and "golden score fell" in current.why
    assert alarm_is_new(rt.state, current) is True and alarm_is_new(rt.state, current) is False  # once an episode


MARKER_EVENT = "flywheel.test.marker"


def _events(home: str, names: list[str], until: Callable[[list[Any]], bool]) -> list[Any]:
    """This home's events of ``names`` once ``until`` holds of them (a deadline only for a server that
    never delivers: the check itself waits on what arrived, never on time passing)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=names)), limit=50)
        found = [e for e in page.events if e.resource.get("flywheel.home") == home]
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _marker(settings: Any) -> str:
    """An event sent by this process after everything it sent before: once the server shows it, the
    earlier ones are there too (one worker sends a process's events in order)."""
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL, temporary_settings

    resource = {"prefect.resource.id": "flywheel.test", "flywheel.home": str(settings.home.resolve())}
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}):
        sent = emit_event(MARKER_EVENT, resource=resource)
    assert sent is not None
    return str(sent.id)


@pytest.mark.slow
def test_the_watch_flow_publishes_its_artifact_and_emits_the_drift_alarm(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flywheel.flows.events import DRIFT_EVENT
    from flywheel.flows.watch import ARTIFACT_KEY, WatchParameters, watch

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    settings = load_settings()
    _rising(settings)
    out = watch(WatchParameters())
    assert out["watches"] == [] and out["drift"]["alarm"] is True
    assert "negative rate rose" in Artifact.get(ARTIFACT_KEY).data
    home = str(settings.home.resolve())
    found = _events(home, [DRIFT_EVENT], until=bool)
    assert len(found) == 1 and found[0].payload["alarm"] is True
    watch(WatchParameters())  # the same episode: no second event
    marker = _marker(settings)
    seen = _events(home, [DRIFT_EVENT, MARKER_EVENT], until=lambda events: any(str(e.id) == marker for e in events))
    assert any(str(e.id) == marker for e in seen), "the marker sent after the second watch never arrived"
    assert [e.event for e in seen].count(DRIFT_EVENT) == 1
