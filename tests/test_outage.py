"""An endpoint that fails in the middle of a cycle is an outage to report, never a verdict: the
cycle fails, its candidates are `error` (never scored, not rejected), nothing is promoted and no
cluster is pushed toward fine-tuning because of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from flywheel.config import load_settings
from flywheel.sim.server import SimOptions, Simulator
from nonempty import every

BIN = Path(sys.executable).parent


def _mlflow_runs(cycle_id: str) -> list:
    from flywheel.registry import use_mlflow

    client = use_mlflow(load_settings())
    exp = client.get_experiment_by_name("flywheel")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`flywheel.cycle_id` = '{cycle_id}'")


def test_an_outage_during_evaluation_fails_the_cycle_and_decides_nothing(
    cli, loop: dict, monkeypatch, prefect_api: str
) -> None:
    """A 503 storm mid-evaluation. An HTML error page or an answer the SDK cannot use is the same
    endpoint error, checked per call below: a whole cycle for each would only repeat this one."""
    from flywheel.state import open_state

    fail_as = "status"
    # Drafting, judged screening and the merge check take ~800 requests on this world, the evaluation
    # ~1,800: the endpoint breaks early in the evaluation (the error message below says it was there).
    with Simulator(options=SimOptions(fail_from=1400, fail_as=fail_as)) as flaky:
        monkeypatch.setenv("OPENAI_BASE_URL", flaky.base_url)
        monkeypatch.setenv("FLYWHEEL_LLM_MAX_TOTAL_SECONDS", "5")
        # As a user runs it: its own process, one JSON document on stdout, no traceback on stderr.
        run = subprocess.run(
            [str(BIN / "flywheel"), "cycle", "--auto-approve", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PREFECT_API_URL": prefect_api},
        )
        failed = flaky.counts().get(f"failed_{503 if fail_as == 'status' else fail_as}", 0)
        product = flaky.counts().get("chat.product", 0)
    assert failed > 0 and product > 0, flaky.counts()  # it did get as far as evaluating
    assert run.returncode == 1, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert "evaluation failed" in out["error"] and "nothing was scored or promoted" in out["error"]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]

    settings = load_settings()
    with open_state(settings) as state:
        (cycle,) = state.cycles(limit=1)
        assert cycle["status"] == "failed" and state.unfinished_cycle() is None
        cands = state.candidates(cycle_id=cycle["cycle_id"])
        assert cands and {c.decision for c in cands} == {"error"}, [(c.candidate_id, c.decision) for c in cands]
        assert every(c.golden_score is None and c.delta is None for c in cands)
        # An outage says nothing about whether prompts can fix a cluster: its candidates' clusters are
        # recorded as `error`, and only a cluster no draft improved on in screening (before the
        # outage) counts as persistent.
        outcomes = {
            (cid, h["outcome"])
            for c in cands
            for cid in c.cluster_ids
            for h in state.cluster_history(cid)
            if h["candidate_id"] == c.candidate_id
        }
        assert outcomes and {o for _, o in outcomes} == {"error"}
        unimproved = {
            cid
            for cid in state.prompt_failed_clusters()
            if {h["outcome"] for h in state.cluster_history(cid)} == {"no_improvement"}
        }
        assert state.prompt_failed_clusters() == unimproved
    assert cli("pending", "--json")["pending"] == []
    assert cli("prompt", "show", "--json")["version"] == loop["start_version"]

    runs = _mlflow_runs(cycle["cycle_id"])
    variants = [r for r in runs if r.data.tags["flywheel.kind"] != "cycle"]
    assert variants and all(r.data.tags["flywheel.decision"] == "error" for r in variants)
    assert every("golden_score" not in r.data.metrics for r in variants)  # no 0.0 that reads as a verdict
    assert every(r.data.metrics["golden_errors"] > 0 for r in variants if r.data.tags["flywheel.kind"] == "champion")
    (parent,) = [r for r in runs if r.data.tags["flywheel.kind"] == "cycle"]
    assert parent.info.status == "FAILED" and parent.data.tags["flywheel.status"] == "failed"


def test_a_dead_endpoint_is_given_up_on_within_the_budget(cli, loop: dict, monkeypatch) -> None:
    """Default retries, a 500 on every request: the budget ends the cycle, not retries x items."""
    with Simulator(options=SimOptions(fail_status=500)) as dead:
        monkeypatch.setenv("OPENAI_BASE_URL", dead.base_url)
        monkeypatch.setenv("FLYWHEEL_LLM_MAX_RETRIES", "4")
        monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "2")
        monkeypatch.setenv("FLYWHEEL_LLM_MAX_TOTAL_SECONDS", "8")
        out = cli("cycle", "--json", expect=1)
        asked = dead.counts()["failed_500"]
    assert "giving up" in out["error"] and "llm_max_total_seconds" in out["error"], out
    # Without the budget: 4 retries of every drafting call, 3 task attempts each, then the evaluation.
    # With it, requests stop once the endpoint failed for 8 s; the refusals never reach it.
    assert asked < 150, asked
    assert cli("pending", "--json")["pending"] == []


@pytest.mark.parametrize("fail_as", ["html", "not_json", "no_choices"])
def test_an_answer_the_sdk_cannot_use_is_an_endpoint_error(fail_as: str, monkeypatch) -> None:
    """A 200 that is HTML, bytes that are not JSON, or a completion without choices: each is an
    APIError (retried like a 500 by the SDK), never a UnicodeDecodeError or AttributeError."""
    from flywheel.llm import make_client

    with Simulator(options=SimOptions(fail_first=10**6, fail_as=fail_as)) as broken:
        monkeypatch.setenv("OPENAI_BASE_URL", broken.base_url)
        client = make_client(load_settings(llm_max_retries=1, llm_max_total_seconds=30))
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert broken.counts()[f"failed_{fail_as}"] == 2  # the SDK retried it once, like a 500
    assert caught.value.status_code == 502
    assert ("not JSON" if fail_as != "no_choices" else "without choices") in str(caught.value)


def test_the_budget_counts_a_failure_streak_and_a_good_answer_resets_it() -> None:
    from flywheel.llm_guard import EndpointHealth

    now = [0.0]
    health = EndpointHealth(10, clock=lambda: now[0])
    assert not health.exhausted() and health.remaining() is None
    health.failed()
    now[0] = 6
    health.failed()
    assert health.remaining() == 4 and not health.exhausted()
    now[0] = 10
    health.failed()
    assert health.exhausted()
    health.succeeded()
    assert not health.exhausted() and health.remaining() is None
    health.failed()
    now[0] = 40  # a failure long after the last one starts a new streak, with the whole budget
    health.failed()
    assert not health.exhausted() and health.remaining() == 10
