"""``policy.auto_approve = "canary"`` (issue 25 item 6): a cycle's winners start as canaries at
``watch.canary_percent``, one at a time, recorded like a person's ``approve --canary``; a winner
that cannot start waits with the reason; the run never waits for approval; ``flywheel watch``
then promotes or rolls back. Against the real gate, MLflow registries, state store and watch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import write_jsonl
from flywheel.candidates import Candidate, Decision, FinetunePayload, PromptPayload
from flywheel.config import load_settings
from flywheel.evals.golden import GoldenItem, load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import EvalResult, EvalRow
from flywheel.loop.autonomy import BY_CANARY
from flywheel.loop.context import CycleContext
from flywheel.loop.gate import gate_step
from flywheel.loop.promotion import set_prompt
from flywheel.registry import (
    CANARY,
    PRODUCTION,
    model_at,
    prompt_at,
    register_model_version,
    register_prompt,
    use_mlflow,
)
from flywheel.state import open_state
from tests.watch_helpers import ingest, rated_events

N = 40  # golden items: above policy.min_golden_size


def _result(label: str, scores: dict[str, float]) -> EvalResult:
    rows = [
        EvalRow(id=i, category="factual", input=f"question {i}", expected="x", scorer="contains", output="o", score=s)
        for i, s in scores.items()
    ]
    return EvalResult(
        variant=Variant(label=label, prompt_template="t", model="m"),
        golden_version=load_golden(load_settings().golden).version,
        rows=rows,
    )


def _cycle_with_two_winners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A gate on a prompt and a fine-tune candidate that both clearly pass (real prompt and model
    versions, real MLflow runs logged by the gate), under ``policy.auto_approve = "canary"``."""
    items = [GoldenItem(id=f"g{k}", input=f"question g{k}", expected="x", category="factual") for k in range(N)]
    monkeypatch.setenv(
        "FLYWHEEL_GOLDEN",
        str(write_jsonl(tmp_path / "golden.jsonl", [i.model_dump(exclude_defaults=True) for i in items])),
    )
    monkeypatch.setenv("FLYWHEEL_POLICY__AUTO_APPROVE", "canary")
    monkeypatch.setenv("FLYWHEEL_WATCH__CANARY_PERCENT", "20")
    settings = load_settings()
    start = set_prompt(settings, "You are a helpful assistant.", message="start", by="test")["version"]
    draft = register_prompt(settings, "You are a helpful assistant. Be precise.", "draft", {})
    client = use_mlflow(settings)
    job_run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id, run_name="job")
    model_version = register_model_version(settings, "ft:tuned-1", job_run.info.run_id, {"flywheel.job_id": "job-1"})
    now = datetime.now(UTC)
    prompt = Candidate(
        candidate_id="prompt-auto",
        cycle_id="cyc-auto",
        kind="prompt",
        cluster_ids=["cl-tone"],
        parent=start,
        version=draft.version,
        payload=PromptPayload(template=draft.template),
        created_at=now,
    )
    tuned = Candidate(
        candidate_id="finetune-auto",
        cycle_id="cyc-auto",
        kind="finetune",
        cluster_ids=["cl-fact"],
        parent="base",
        version=model_version,
        created_at=now,
        payload=FinetunePayload(
            model="ft:tuned-1", base_model=settings.target_model, job_id="job-1", dataset_version="d1"
        ),
    )
    with open_state(settings) as state:
        state.add_candidate(prompt)
        state.add_candidate(tuned)
    ctx = CycleContext(
        settings=settings,
        cycle_id="cyc-auto",
        resumed=False,
        champion_version=start,
        champion_template="You are a helpful assistant.",
        golden_version=load_golden(settings.golden).version,
    )
    champion = {f"g{k}": 0.0 for k in range(N)}
    report = gate_step(
        ctx,
        _result("champion", champion),
        {
            "prompt-auto": _result("prompt-auto", champion | {f"g{k}": 1.0 for k in range(20)}),
            "finetune-auto": _result("finetune-auto", champion | {f"g{k}": 1.0 for k in range(12)}),
        },
        auto_approve=False,
    )
    return {"settings": settings, "report": report, "start": start, "draft": draft.version, "model": model_version}


def test_canary_mode_starts_one_winner_as_a_canary_and_the_other_waits_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    run = _cycle_with_two_winners(tmp_path, monkeypatch)
    settings = run["settings"]
    cands = {c.kind: c for c in run["report"].candidates}
    prompt, tuned = cands["prompt"], cands["finetune"]
    # The prompt winner serves 20% of users; production did not move.
    assert prompt.decision is Decision.canary, prompt.reason
    assert prompt.decided_by == BY_CANARY and prompt.note == prompt.reason and prompt.reason.startswith("delta +0.500")
    assert prompt.canary.percent == 20 and prompt.canary.started_by == BY_CANARY
    assert prompt_at(settings, CANARY).version == run["draft"]
    assert prompt_at(settings, PRODUCTION).version == run["start"]
    tags = use_mlflow(settings).get_run(prompt.mlflow_run_id).data.tags
    assert (tags["flywheel.decision"], tags["flywheel.canary_by"], tags["flywheel.canary_percent"]) == (
        "canary",
        BY_CANARY,
        "20",
    )
    assert tags["flywheel.approval_note"] == prompt.reason
    with open_state(settings) as state:
        assert state.cluster_history("cl-tone")[-1]["outcome"] == "canary"
        moves = [(p["action"], p["by"]) for p in state.promotions("prompt")]
    assert moves == [("set", "test"), ("canary", BY_CANARY)]
    # The fine-tune winner passed too, but one canary runs at a time: it waits, and says why.
    assert tuned.decision is Decision.pending_approval
    assert "one canary at a time" in tuned.reason and f"prompt canary (version {run['draft']}" in tuned.reason
    assert "flywheel approve finetune-auto --canary 20" in tuned.reason
    assert use_mlflow(settings).get_run(tuned.mlflow_run_id).data.tags["flywheel.reason"] == tuned.reason
    assert model_at(settings, CANARY) is None
    status = cli("status", "--json")
    assert status["canary"]["version"] == run["draft"] and status["canary"]["started_by"] == BY_CANARY
    assert [c["candidate_id"] for c in status["pending"]] == ["finetune-auto"]

    # The watch then acts with nobody in the loop: a canary worse on live traffic is rolled back.
    ingest(
        settings,
        rated_events(1, 2500, 0.20, prefix="p", arm="production", prompt_version=run["start"])
        + rated_events(2, 2500, 0.35, prefix="c", arm="canary", prompt_version=run["draft"]),
    )
    (row,) = cli("watch", "--json")["watches"]
    assert (row["verdict"], row["action"]) == ("worse", "rolled_back")
    assert prompt_at(settings, CANARY) is None and prompt_at(settings, PRODUCTION).version == run["start"]
    with open_state(settings) as state:
        after = state.candidate("prompt-auto")
    assert after.decision is Decision.rejected and after.canary.ended_by == "flywheel-watch"


def test_a_run_chooses_canary_by_parameter_and_never_waits_for_approval(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from flywheel.config_sections import ApprovalMode
    from flywheel.flows.cycle import CycleParameters, _settings, _waits_for_approval

    asked = CycleParameters(wait_for_approval=True)  # as a deployment run is asked
    assert _waits_for_approval(asked, _settings(asked))  # a person decides: the run waits for them
    monkeypatch.setenv("FLYWHEEL_POLICY__AUTO_APPROVE", "canary")  # the config alone (nightly: params false)
    assert _settings(asked).policy.mode is ApprovalMode.canary and not _waits_for_approval(asked, _settings(asked))
    monkeypatch.delenv("FLYWHEEL_POLICY__AUTO_APPROVE")
    run = CycleParameters(auto_approve="canary", wait_for_approval=True, config={"policy": {"min_delta": 0.02}})
    settings = _settings(run)  # the parameter becomes the run's policy; its other overrides stay
    assert (settings.policy.mode, settings.policy.min_delta) == (ApprovalMode.canary, 0.02)
    assert not _waits_for_approval(run, settings)
    assert CycleParameters(auto_approve="true").auto_approve is True  # a form's or a YAML string
    with pytest.raises(ValidationError, match='must be true, false or "canary"'):
        CycleParameters(auto_approve="yes")


def test_cycle_canary_on_the_command_line_is_canary_mode(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # A canary at 0% would serve nobody: `--canary` is refused before any Prefect work, naming the
    # settings (the same command without --canary does not mind the share).
    monkeypatch.setenv("FLYWHEEL_WATCH__CANARY_PERCENT", "0")
    out = cli("cycle", "--canary", "--json", expect=2)
    assert 'watch.canary_percent: policy.auto_approve = "canary" needs a share' in out["error"]
    assert "canary_percent" not in cli("cycle", "--json", expect=2)["error"]
    assert (
        "canary_percent" not in cli("cycle", "--auto-approve", "--json", expect=2)["error"]
    )  # the bare flag as before


def test_a_cycle_in_canary_mode_leaves_a_running_canary_that_the_watch_promotes(
    cli, loop: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.flows.approval import waiting_runs
    from flywheel.flows.cycle import CycleParameters, improvement_cycle

    # As the nightly deployment runs it: asked to wait for approval, canary mode from the config.
    monkeypatch.setenv("FLYWHEEL_POLICY__AUTO_APPROVE", "canary")
    monkeypatch.setenv("FLYWHEEL_WATCH__CANARY_PERCENT", "20")
    monkeypatch.setenv("FLYWHEEL_APPROVAL__TIMEOUT", "2")  # had it paused, the waiting winner would be rejected
    monkeypatch.setenv("FLYWHEEL_APPROVAL__POLL_INTERVAL", "1")
    out = improvement_cycle(CycleParameters(wait_for_approval=True))
    settings = load_settings()
    winners = {c["kind"]: c for c in out["candidates"] if c["decision"] in ("canary", "pending_approval")}
    assert set(winners) == {"prompt", "rag"}, [(c["candidate_id"], c["decision"]) for c in out["candidates"]]
    prompt, rag = winners["prompt"], winners["rag"]
    assert prompt["decision"] == "canary" and prompt["decided_by"] == BY_CANARY and prompt["note"] == prompt["reason"]
    assert prompt["canary"]["percent"] == 20 and prompt["canary"]["started_by"] == BY_CANARY
    assert prompt_at(settings, CANARY).version == prompt["version"]
    assert cli("prompt", "show", "--json")["version"] == loop["start_version"]  # production unchanged
    assert use_mlflow(settings).get_run(prompt["mlflow_run_id"]).data.tags["flywheel.canary_by"] == BY_CANARY
    assert rag["decision"] == "pending_approval" and "one canary at a time" in rag["reason"]
    assert "recall@3 unaffected" in rag["reason"]  # the gate's reason, then why it waits
    assert waiting_runs(settings) == {}  # the run never paused for approval

    # Live traffic: the canary arm complains less; the watch promotes it (watch.auto_promote).
    monkeypatch.setenv("FLYWHEEL_WATCH__AUTO_PROMOTE", "true")
    ingest(
        settings,
        rated_events(3, 2500, 0.25, prefix="p", arm="production", prompt_version=loop["start_version"])
        + rated_events(4, 2500, 0.10, prefix="c", arm="canary", prompt_version=prompt["version"]),
    )
    rows = [r for r in cli("watch", "--json")["watches"] if r["scope"] == "canary"]
    assert [(r["version"], r["verdict"], r["action"]) for r in rows] == [(prompt["version"], "better", "promoted")]
    assert cli("prompt", "show", "--json")["version"] == prompt["version"] and prompt_at(settings, CANARY) is None
    with open_state(settings) as state:
        after = state.candidate(prompt["candidate_id"])
    assert after.decision is Decision.promoted and after.canary.ended_by == "flywheel-watch"


def test_a_rerun_after_a_crash_finishes_its_own_canary_instead_of_waiting_for_it() -> None:
    from flywheel.champions import champion
    from flywheel.config_sections import ApprovalMode
    from flywheel.loop.autonomy import release
    from tests.watch_helpers import prompt_candidate

    settings = load_settings()
    cand = prompt_candidate(settings, "crash")
    with open_state(settings) as state:  # the pointer moved, then the process died
        champion(settings, state, "prompt").start_canary(cand.version, 15, by=BY_CANARY, candidate_id=cand.candidate_id)
        done = release(settings, state, state.candidate(cand.candidate_id), ApprovalMode.canary)
    assert done.decision is Decision.canary and done.canary.percent == 15 and "waits" not in (done.reason or "")
    assert prompt_at(settings, CANARY).version == cand.version
