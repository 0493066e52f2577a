"""Ingest tells Prefect about new negative feedback, which is what the on-feedback trigger counts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import event, write_jsonl
from flywheel.config import load_settings
from nonempty import every


def _events_for(home: Path, expected: int, timeout: float = 30) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + timeout
    found: list = []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=["flywheel.feedback.negative"])), limit=50)
        found = [e for e in page.events if e.resource.get("flywheel.home") == str(home.resolve())]
        if len(found) >= expected:
            break
        time.sleep(0.5)
    return found


def test_ingest_emits_one_event_per_ten_new_negatives(
    cli, tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    rows = [event(f"n{i}", user_id=f"u{i}") for i in range(25)]  # thumbs_down
    rows += [event(f"p{i}", user_id=f"p{i}", signal="thumbs_up") for i in range(5)]
    src = write_jsonl(tmp_path / "fb.jsonl", rows)
    out = cli("ingest", str(src), "--json")
    assert (out["negative"], out["prefect_events"]) == (25, 3)
    again = cli("ingest", str(src), "--json")  # duplicates are not new feedback
    assert (again["duplicates"], again["negative"], again["prefect_events"]) == (30, 0, 0)
    events = _events_for(load_settings().home, 3)
    assert sorted(e.payload["negatives"] for e in events) == [5, 10, 10]
    assert every(e.resource.id == "flywheel.feedback" for e in events)


def test_one_ingest_sends_at_most_max_per_ingest_events(
    cli, tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large ingest is one burst of feedback: it may start one cycle, not one per threshold's worth."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    monkeypatch.setenv("FLYWHEEL_EVENTS__MAX_PER_INGEST", "4")
    out = cli(
        "ingest",
        str(write_jsonl(tmp_path / "fb.jsonl", [event(f"n{i}", user_id=f"u{i}") for i in range(103)])),
        "--json",
    )
    assert (out["negative"], out["prefect_events"]) == (103, 4)
    events = _events_for(load_settings().home, 4)
    assert sorted(e.payload["negatives"] for e in events) == [25, 26, 26, 26]
    assert {e.payload["new_negatives_total"] for e in events} == {103}


def test_without_a_prefect_server_ingest_sends_nothing(cli, tmp_path: Path) -> None:
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", [event("n1")])), "--json")
    assert (out["negative"], out["prefect_events"]) == (1, 0)


def test_a_prefect_server_named_in_flywheel_toml_gets_the_events(
    cli, tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    config = tmp_path / "flywheel.toml"
    config.write_text(f'prefect_api_url = "{prefect_api}"\n')
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(config))
    out = cli(
        "ingest",
        str(write_jsonl(tmp_path / "fb.jsonl", [event(f"n{i}", user_id=f"u{i}") for i in range(10)])),
        "--json",
    )
    assert (out["negative"], out["prefect_events"]) == (10, 1)
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # for reading them back
    assert [e.payload["negatives"] for e in _events_for(load_settings().home, 1)] == [10]
