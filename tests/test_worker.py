"""``flywheel worker``: the deployments' flow runs execute in the worker's own process, one after
another, on one warm Runtime; runs of other code are left alone; no Prefect API is one clear line."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from flywheel.runtime import close_process_runtime


def _deploy(client, pool: str, flow_name: str, name: str, entrypoint: str, parameters: dict) -> uuid.UUID:
    return client.create_deployment(
        flow_id=client.create_flow_from_name(flow_name),
        name=name,
        entrypoint=entrypoint,
        work_pool_name=pool,
        parameters=parameters,
    )


def _pool(client) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate

    pool = f"flywheel-test-{uuid.uuid4().hex[:8]}"
    client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    return pool


def test_two_runs_share_one_warm_runtime_in_the_workers_process(cli, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    close_process_runtime()  # the runs start from nothing: the first opens, the second reuses
    with get_client(sync_client=True) as client:
        pool = _pool(client)
        triage = _deploy(client, pool, "triage-feedback", "triage", "flows/operations.py:triage_feedback", {})
        other = _deploy(client, pool, "someone-elses", "theirs", "elsewhere/theirs.py:flow", {})
        runs = [client.create_flow_run_from_deployment(triage) for _ in range(2)]
        theirs = client.create_flow_run_from_deployment(other)

        out = cli("worker", "--pool", pool, "--once", "--no-warm", "--poll-seconds", "0.1", "--json")

        first, second = out["runs"]
        assert {first["flow_run_id"], second["flow_run_id"]} == {str(r.id) for r in runs}
        assert [first["state"], second["state"]] == ["Completed", "Completed"]
        # The first run loaded the embedder and opened the stores; the second found them in the same
        # process Runtime.
        assert first["opened"] == {"embedder": 1, "feedback": 1, "state": 1}
        assert second["opened"] == {} and second["runtime_id"] == first["runtime_id"] != 0
        for r in runs:  # executed in this process: the flow engine's result, not a child's
            assert client.read_flow_run(r.id).state.is_completed()
        assert client.read_flow_run(theirs.id).state.is_scheduled()  # not Flywheel's flow: not claimed
    assert "opened nothing (warm)" in cli.last.stderr


def test_without_a_reachable_prefect_api_one_line_and_non_zero(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens on port 9
    result = cli("worker", "--once", expect=1)
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: the Prefect API at http://127.0.0.1:9/api does not answer (ConnectError)"]
    assert "Traceback" not in result.stdout + result.stderr


def test_sigterm_stops_an_idle_worker_cleanly(cli, prefect_api: str) -> None:
    """In this process: SIGTERM is sent once the command's handler is in place (never to pytest's own) and
    the worker polls the pool."""
    from prefect.client.orchestration import get_client

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed by the main thread only")
    with get_client(sync_client=True) as client:
        pool = _pool(client)
    default = signal.getsignal(signal.SIGTERM)

    def polling() -> bool:
        with get_client(sync_client=True) as client:
            return any(q.last_polled is not None for q in client.read_work_queues(work_pool_name=pool))

    def stop_when_handled() -> None:
        """Once the command's handler is in place and the worker has polled the pool (it is in its loop)."""
        deadline = time.monotonic() + 60
        while not (signal.getsignal(signal.SIGTERM) is not default and polling()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if signal.getsignal(signal.SIGTERM) is not default:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_handled, daemon=True).start()
    out = cli("worker", "--pool", pool, "--no-warm", "--poll-seconds", "0.2", "--json")
    assert out == {"runs": [], "stopped_by": "SIGTERM"}
    assert "stopped by SIGTERM" in cli.last.stderr and "Traceback" not in cli.last.stderr


def test_a_run_is_claimed_once_and_one_left_unfinished_is_marked_crashed(prefect_api: str) -> None:
    """Two workers on one pool: the server lets one claim a run (Pending), and a run another finished
    since the poll is not claimed again; a run a stop interrupted is Crashed, not left Running, and a
    finished run's state is kept."""
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Pending, Running
    from prefect.utilities.engine import propose_state_sync

    from flywheel.flows.worker import WarmWorker

    with get_client(sync_client=True) as client:
        pool = _pool(client)
        triage = _deploy(client, pool, "triage-feedback", "triage", "flows/operations.py:triage_feedback", {})
        run, done = (client.create_flow_run_from_deployment(triage) for _ in range(2))
        ours, theirs = WarmWorker(client, pool), WarmWorker(client, pool)
        ((due, flow, name), _) = ours.due()
        assert (flow.name, name) == ("triage-feedback", "triage")
        assert ours.claim(due) is not None and theirs.claim(due) is None
        propose_state_sync(client, Running(), flow_run_id=run.id)
        ours.mark_crashed(run, "stopped")
        assert client.read_flow_run(run.id).state.is_crashed()
        for state in (Pending(), Running(), Completed()):
            propose_state_sync(client, state, flow_run_id=done.id)
        ours.mark_crashed(done, "stopped")
        assert client.read_flow_run(done.id).state.is_completed()
        assert theirs.claim(done) is None  # seen Scheduled at a poll, finished since: never run again
        assert client.read_flow_run(done.id).run_count == 1
