"""One Runtime per process: one event's walk from ``POST /v1/feedback`` to a watch verdict opens
each store once in each process it passes through, and checks the feedback store's migrations once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flywheel.config import load_settings
from flywheel.feedback.store import open_store
from flywheel.loop.canary import approve_canary
from flywheel.runtime import close_process_runtime
from live_server import make_key
from openings import counting
from tests.watch_helpers import prompt_candidate, rated_events


def test_one_events_walk_opens_each_store_once_per_process(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_WATCH__MIN_EVENTS", "100")
    settings = load_settings()
    cand = prompt_candidate(settings)
    approve_canary(settings, cand.candidate_id, percent=20, by="dana", note=None)
    key = make_key(cli, "product", "ingest")
    with open_store(settings.resolved_store_url):  # made and migrated before: what a running service meets
        pass
    events = rated_events(1, 300, 0.10, prefix="p", arm="production", prompt_version=cand.parent) + rated_events(
        2, 300, 0.40, prefix="c", arm="canary", prompt_version=cand.version
    )
    feedback, state = settings.resolved_store_url.rsplit("/", 1)[-1], "state.sqlite"

    from flywheel.app.serve.main import create_app

    with counting() as served, TestClient(create_app(settings, warm_up=False)) as http:
        for i in range(0, len(events), 200):
            answer = http.post(
                "/v1/feedback", json={"events": events[i : i + 200]}, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200 and answer.json()["accepted"] == 200
    close_process_runtime()  # `flywheel watch` is a process of its own: nothing of the setup's stores open
    with counting() as watched:
        (row,) = cli("watch", "--json")["watches"]
    assert (row["verdict"], row["action"]) == ("worse", "rolled_back")
    assert served.of(feedback) == 1 and served.migration_checks == 1 and served.of(state) <= 1
    assert watched.of(feedback) == 1 and watched.migration_checks == 1 and watched.of(state) == 1


def test_a_second_command_in_the_same_process_reuses_the_runtime(cli) -> None:
    from flywheel.runtime import runtime_for

    cli("status", "--json")  # the first command opens what it needs
    rt = runtime_for(load_settings())
    opened = dict(rt.openings)
    assert opened["state"] == 1 and opened["feedback"] == 1
    with counting() as second:
        cli("watch", "--json")
        cli("status", "--json")
    assert runtime_for(load_settings()) is rt and rt.openings["state"] == 1 and rt.openings["feedback"] == 1
    # Flywheel's stores: no new connection. MLflow's engine is MLflow's: its pool grows to the number of
    # connections its calls hold at once, and a new home's database (a copy, not migrated here) starts
    # with one, so the watch's MLflow reads may add one.
    assert sum(n for f, n in second.connects.items() if f != "mlflow.db") == 0 and second.migration_checks == 0


def test_a_runtime_opens_on_first_use_and_again_after_close(settings) -> None:
    from flywheel.runtime import Runtime

    with open_store(settings.resolved_store_url):  # made and migrated before
        pass
    with counting() as opened, Runtime(settings) as rt:
        assert sum(opened.connects.values()) == 0  # nothing before it is used
        assert rt.feedback is rt.feedback and rt.state is rt.state
        assert opened.migration_checks == 1
        rt.close()
        rt.feedback.counts()
    assert rt.openings["feedback"] == 2 and opened.migration_checks == 2


def test_a_whole_cycle_opens_each_store_once_per_thread(cli, loop: dict) -> None:
    """``flywheel cycle`` in one process: triage, the improvers (tasks in several threads), the
    evaluation, calibration and the gate take the process Runtime's stores; none opens its own."""
    from flywheel.runtime import close_process_runtime, runtime_for

    close_process_runtime()  # the fixture's commands opened the Runtime: the cycle starts from nothing
    settings = load_settings()
    feedback, state = settings.resolved_store_url.rsplit("/", 1)[-1], "state.sqlite"
    with counting() as cycle:
        out = cli("cycle", "--json")
    assert out["candidates"]
    rt = runtime_for(load_settings())
    assert rt.openings["feedback"] == 1 and cycle.of(feedback) == 1 and cycle.migration_checks == 1
    assert cycle.of(state) == rt.openings["state"] >= 1  # every connection is one thread's Runtime store
