"""An endpoint that accepts connections and never answers: every model call and every cycle stage
has a total deadline, so the cycle ends as an error within it (one JSON error, nothing promoted, no
traceback), and SIGTERM ends it within seconds even while calls hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.sim.hung import HungEndpoint
from flywheel.sim.server import SimOptions, Simulator

BIN = Path(sys.executable).parent
# Short deadlines for the tests; the defaults are documented in the README.
SHORT = {
    "FLYWHEEL_LLM_TIMEOUT": "60",
    "FLYWHEEL_DEADLINES__CALL": "3",
    "FLYWHEEL_LLM_MAX_TOTAL_SECONDS": "60",
    "FLYWHEEL_DEADLINES__TRIAGE": "20",
    "FLYWHEEL_DEADLINES__DRAFTING": "6",
    "FLYWHEEL_DEADLINES__EVALUATION": "6",
    "FLYWHEEL_DEADLINES__FINETUNE": "6",
    "FLYWHEEL_LLM_MAX_RETRIES": "4",
    "FLYWHEEL_LLM_TASK_RETRIES": "2",
    "FLYWHEEL_LLM_TASK_RETRY_DELAY": "1",
}


def _cycle(base_url: str, prefect_api: str, **deadlines: str) -> subprocess.Popen[str]:
    """`flywheel cycle --json` as a user starts it, in its own process."""
    env = {**os.environ, **SHORT, **deadlines, "OPENAI_BASE_URL": base_url, "PREFECT_API_URL": prefect_api}
    return subprocess.Popen(
        [str(BIN / "flywheel"), "cycle", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _last_cycle() -> dict:
    from flywheel.state import open_state

    with open_state(load_settings()) as state:
        (cycle,) = state.cycles(limit=1)
        return {**cycle, "unfinished": state.unfinished_cycle()}


def test_a_hung_endpoint_ends_the_cycle_as_an_error_within_its_deadlines(cli, loop: dict, prefect_api: str) -> None:
    """A server that accepts and never answers ("headers then stall" is the same deadline, checked per
    call below: a whole cycle per mode would only repeat it)."""
    mode = "silent"
    with HungEndpoint(mode) as hung:
        started = time.monotonic()
        proc = _cycle(hung.base_url, prefect_api)
        try:
            out, err = proc.communicate(timeout=60)  # the old code was still running after 500 s
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"still running after 60 s ({hung.connections} hung requests)\n{err[-2000:]}")
        took = time.monotonic() - started
        asked = hung.connections
    assert asked > 0, err[-3000:]  # it did reach the endpoint
    assert proc.returncode == 1, err[-3000:]
    doc = json.loads(out)  # exactly one JSON document
    assert set(doc) == {"error", "exit_code"} and doc["exit_code"] == 1, doc
    assert "deadline" in doc["error"] and "promoted" in doc["error"], doc
    assert "Traceback" not in err, err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [f"error: {doc['error']}"]
    print(f"hung endpoint ({mode}) to error: {took:.1f} s")
    assert took < 40, f"{took:.1f} s"
    assert _last_cycle()["status"] == "failed"
    assert cli("pending", "--json")["pending"] == []
    assert cli("prompt", "show", "--json")["version"] == loop["start_version"]


def test_sigterm_ends_a_cycle_whose_calls_hang_within_seconds(loop: dict, prefect_api: str) -> None:
    """The product calls hang (drafting's screening, in the improvers' threads); the diagnosis and
    drafting calls are answered, so the signal arrives while several threads wait on the wire."""
    with Simulator(options=SimOptions(hang_roles=("product",))) as hanging:
        # Long deadlines: the calls must still be hanging when the signal arrives.
        proc = _cycle(
            hanging.base_url,
            prefect_api,
            FLYWHEEL_DEADLINES__CALL="120",
            FLYWHEEL_DEADLINES__DRAFTING="300",
            FLYWHEEL_DEADLINES__EVALUATION="300",
        )
        deadline = time.monotonic() + 120
        while hanging.counts().get("hung.product", 0) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # the calls are in flight, waiting for answers that never come
        assert proc.poll() is None and hanging.counts().get("hung.product", 0) >= 2, proc.communicate()[1][-3000:]
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"still running 90 s after SIGTERM\n{err[-2000:]}")
        took = time.monotonic() - sent
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    doc = json.loads(out)
    assert "interrupted" in doc["error"] and doc["exit_code"] == 143, doc
    assert "Traceback" not in err, err[err.index("Traceback") - 500 :][:3000]
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err[-3000:]
    print(f"SIGTERM to exit: {took:.1f} s")
    assert took < 10, f"{took:.1f} s from SIGTERM to exit"
    cycle = _last_cycle()
    assert cycle["status"] == "interrupted" and cycle["unfinished"] == cycle["cycle_id"]  # resumable


@pytest.mark.parametrize("mode", ["silent", "headers"])
def test_one_model_call_ends_at_its_deadline_retries_included(mode: str, monkeypatch) -> None:
    """A 60 s timeout per attempt and 4 retries would wait 5 minutes; the call's deadline ends it."""
    import openai

    from flywheel.llm import make_client

    with HungEndpoint(mode) as hung:
        monkeypatch.setenv("OPENAI_BASE_URL", hung.base_url)
        client = make_client(
            load_settings(llm_timeout=60, llm_max_retries=4, llm_max_total_seconds=600, deadlines={"call": 2})
        )
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        took = time.monotonic() - started
    assert caught.value.status_code == 504 and "deadlines.call" in str(caught.value), caught.value
    assert took < 4, f"{took:.1f} s"


def test_a_stage_deadline_caps_every_call_in_the_stage(monkeypatch) -> None:
    import openai

    from flywheel import llm_guard
    from flywheel.llm import make_client

    with HungEndpoint() as hung:
        monkeypatch.setenv("OPENAI_BASE_URL", hung.base_url)
        client = make_client(load_settings(llm_timeout=60, llm_max_retries=4, llm_max_total_seconds=600))
        started = time.monotonic()
        with llm_guard.stage("drafting", 1.5), pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        took = time.monotonic() - started
        assert llm_guard.gave_up() is False  # the stage is over: later stages get their own deadline
    assert "the drafting stage passed its deadline of 1.5 s (deadlines.drafting)" in str(caught.value)
    assert took < 3.5, f"{took:.1f} s"
