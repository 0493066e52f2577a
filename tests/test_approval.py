"""Approval in the Prefect UI's way: a cycle that waits pauses with a RunInput form; the form's
answer, `flywheel approve/reject`, or the timeout decides; the paused run then finishes."""

from __future__ import annotations

import threading
import time
from datetime import UTC
from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.config import load_settings
from flywheel.flows.approval import approval_form, field_name, wait_until_paused, waiting_runs
from flywheel.flows.cycle import CycleParameters, improvement_cycle
from flywheel.state import open_state
from nonempty import every


def _start_cycle(overrides: dict[str, Any] | None = None) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = improvement_cycle(CycleParameters(wait_for_approval=True, config=overrides or {}))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _waiting(
    thread: threading.Thread, box: dict[str, Any], timeout: float = 400, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    settings = load_settings()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError(f"the cycle ended without pausing: {box.get('error')!r}")
        if settings.state_path.exists():
            waits = {k: v for k, v in waiting_runs(settings).items() if k not in skip}
            if waits:
                ((flow_run_id, wait),) = waits.items()
                return {"flow_run_id": flow_run_id, **wait}
        time.sleep(0.5)
    raise AssertionError("the cycle never paused for approval")


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_APPROVAL__POLL_INTERVAL", "1")


def test_the_form_answer_promotes_what_was_approved_and_rejects_the_rest(loop: dict, fast_polls) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    thread, box = _start_cycle()
    wait = _waiting(thread, box)
    with open_state(load_settings()) as state:
        cands = {c.kind: c for c in (state.candidate(cid) for cid in wait["candidate_ids"]) if c}
    assert set(cands) == {"prompt", "rag"}
    # The wait is recorded just before the pause reaches the server: an operator sees it paused soon after.
    assert wait_until_paused(UUID(wait["flow_run_id"]))
    resume_flow_run(
        UUID(wait["flow_run_id"]),
        run_input={
            field_name(cands["prompt"].candidate_id): True,
            field_name(cands["rag"].candidate_id): False,
            "approver": "dana",
            "note": "the prompt reads well",
        },
    )
    thread.join(120)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    decided = {c["kind"]: c for c in box["out"]["candidates"] if c["candidate_id"] in wait["candidate_ids"]}
    assert decided["prompt"]["decision"] == "promoted" and decided["prompt"]["decided_by"] == "dana"
    assert decided["rag"]["decision"] == "rejected" and "not approved in the Prefect UI" in decided["rag"]["reason"]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(wait["flow_run_id"])).state.is_completed()
    from prefect.artifacts import Artifact

    assert "promoted" in Artifact.get("flywheel-cycle-report").data  # republished with the decisions


def test_cli_decisions_resume_the_waiting_run(cli, loop: dict, fast_polls) -> None:
    thread, box = _start_cycle()
    wait = _waiting(thread, box)
    prompt_id, rag_id = sorted(wait["candidate_ids"], key=lambda c: not c.startswith("prompt"))
    cli("approve", prompt_id, "--by", "erin", "--json")
    assert thread.is_alive()  # one candidate still undecided: the run keeps waiting
    cli("reject", rag_id, "--reason", "docs team wants another look", "--json")
    assert "resumed the flow run" in cli.last.stderr
    thread.join(120)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    by_id = {c["candidate_id"]: c for c in box["out"]["candidates"]}
    assert by_id[prompt_id]["decision"] == "promoted" and by_id[prompt_id]["decided_by"] == "erin"
    assert by_id[rag_id]["decision"] == "rejected" and "another look" in by_id[rag_id]["reason"]


def test_what_nobody_approves_before_the_timeout_is_rejected(loop: dict, fast_polls, monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_APPROVAL__TIMEOUT", "3")
    thread, box = _start_cycle()
    wait = _waiting(thread, box)
    thread.join(120)
    assert not thread.is_alive()
    assert "error" not in box, box.get("error")
    decided = [c for c in box["out"]["candidates"] if c["candidate_id"] in wait["candidate_ids"]]
    assert decided and all(c["decision"] == "rejected" and "timed out" in c["reason"] for c in decided)
    assert load_settings().approval.timeout == 3


def test_the_form_has_a_switch_per_candidate_and_the_evidence() -> None:
    from datetime import datetime

    from flywheel.candidates import Candidate
    from flywheel.evals.evidence import evidence_markdown
    from flywheel.evals.pipeline import Variant
    from flywheel.evals.report import approval_markdown
    from flywheel.evals.runner import EvalResult, EvalRow

    cand = Candidate(
        candidate_id="prompt-abc123",
        cycle_id="c",
        kind="prompt",
        cluster_ids=["tone-1"],
        golden_score=0.9,
        champion_score=0.5,
        delta=0.4,
        ci_low=0.3,
        ci_high=0.5,
        per_category={"tone": 1.0},
        category_deltas={"tone": 0.5},
        mlflow_run_id="r1",
        payload={"template": "Apologize first.", "diff": "--- prompt v1\n+++ candidate\n+Apologize first."},
        created_at=datetime.now(UTC),
    )
    form = approval_form([cand])
    schema = form.model_json_schema()
    assert schema["properties"][field_name("prompt-abc123")]["type"] == "boolean"
    assert schema["properties"][field_name("prompt-abc123")]["title"] == f"Approve {cand.short_title()}"
    assert cand.title().startswith(cand.target_name()) and cand.short_title().startswith(cand.target_name())
    canary = schema["properties"]["canary_percent"]  # what is approved starts as a canary at this share
    assert canary["title"].startswith("Canary (%)") and canary["exclusiveMaximum"] == 100
    assert {"approver", "note"} <= set(schema["properties"]) and "approver" in schema["required"]
    for nobody in ({}, {"approver": ""}, {"approver": "  "}):  # a decision always has a name on it
        with pytest.raises(ValidationError):
            form.model_validate(nobody)
    assert form.model_validate({"approver": "dana"}).approver == "dana"
    text = approval_markdown([cand], 0.5, timeout_s=60)
    assert "+0.400 [+0.300, +0.500]" in text and "95% CI" in text and cand.title() in text
    assert "r1" in text and "60 s" in text and "flywheel-approval-evidence" in text
    # The per-category table and the change moved to the evidence document the form points at.
    champion = EvalResult(
        variant=Variant(label="champion", prompt_template="t", model="m"),
        golden_version="g",
        rows=[EvalRow(id="t1", category="tone", input="q", expected="e", scorer="judge", score=0.5)],
    )
    after = champion.model_copy(update={"rows": [champion.rows[0].model_copy(update={"score": 1.0})]})
    evidence = evidence_markdown([cand], champion, {"prompt-abc123": after}, champion_score=0.5)
    assert "| tone | 1 | 0.500 [" in evidence and "| +0.500 |" in evidence and "+Apologize first." in evidence


def test_a_newer_cycle_that_supersedes_the_waiting_candidates_resumes_the_older_run(loop: dict, fast_polls) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    first, first_box = _start_cycle()
    older = _waiting(first, first_box)
    second, second_box = _start_cycle()  # the older run stays paused meanwhile
    first.join(400)  # the newer cycle's gate superseded everything the older run waited for
    assert not first.is_alive() and "error" not in first_box, first_box.get("error")
    assert every(
        c["decision"] == "superseded" and c["reason"].startswith("superseded by")
        for c in first_box["out"]["candidates"]
        if c["candidate_id"] in older["candidate_ids"]
    )
    newer = _waiting(second, second_box, skip=(older["flow_run_id"],))
    assert wait_until_paused(UUID(newer["flow_run_id"]))
    resume_flow_run(UUID(newer["flow_run_id"]), run_input={"approver": "fay"})  # nothing switched on
    second.join(120)
    assert not second.is_alive() and "error" not in second_box, second_box.get("error")
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(older["flow_run_id"])).state.is_completed()
    assert waiting_runs(load_settings()) == {}
