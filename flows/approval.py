"""Approval in the Prefect UI: a cycle run by a deployment pauses with a form when candidates wait.

The form is a ``RunInput`` built for the waiting candidates: one switch per candidate ("Approve
prompt v7 (prompt-...)"), one canary percent, the approver (required) and a note; its
description is short (what is asked, each candidate's score against the champion with its CI, a
warning when the choices would combine candidates never evaluated together) and links to the full
evidence, the run's ``flywheel-approval-evidence`` artifact (per category n and intervals, the change,
the answers that changed). Submitting it resumes the flow, which promotes what was approved and
rejects the rest, with who and why recorded. ``flywheel approve``/``reject`` act on the state
store directly and, once nothing of that flow run is left undecided, resume it (its answers then
find everything decided). A timeout rejects what nobody approved, with that reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from flywheel.candidates import Candidate
from flywheel.config import Settings
from flywheel.evals.evidence import EVIDENCE_KEY
from flywheel.evals.report import approval_markdown
from flywheel.loop import promotion as champions
from flywheel.runtime import runtime_for

WAITING = "approval_wait"  # state pointer: {flow run id: {cycle_id, candidate_ids}} of runs paused for approval


def _waits_in(raw: str | None) -> dict[str, dict[str, Any]]:
    doc = json.loads(raw) if raw else {}
    if "flow_run_id" in doc:  # the single-run form written before several runs could wait
        doc = {doc["flow_run_id"]: {k: v for k, v in doc.items() if k != "flow_run_id"}} if doc["flow_run_id"] else {}
    return doc


def _waits(state: Any) -> dict[str, dict[str, Any]]:
    return _waits_in(state.pointer(WAITING))


def _set_wait(settings: Settings, flow_run_id: str, entry: dict[str, Any] | None) -> None:
    def change(raw: str | None) -> str | None:
        waits = _waits_in(raw)
        if entry is None:
            waits.pop(flow_run_id, None)
        else:
            waits[flow_run_id] = entry
        return json.dumps(waits) if waits else None

    with runtime_for(settings).borrow_state() as state:  # one transaction: no other run's wait is lost
        state.update_pointer(WAITING, change)


def waiting_runs(settings: Settings) -> dict[str, dict[str, Any]]:
    with runtime_for(settings).borrow_state() as state:  # the flow run's Runtime
        return _waits(state)


class ApprovalInput(RunInput):
    """Who decides and why, and how what is switched on starts. The fields say little and carry no
    descriptions: Prefect's dialog gives the description (the evidence) only the height the fields
    leave, so every line here is a line of evidence hidden at 1400x900."""

    approver: str = Field(title="Approver (required: recorded on the MLflow runs)", min_length=1, pattern=r"\S")
    note: str = Field("", title="Note (why, for the record)")
    canary_percent: float = Field(
        0.0, ge=0.0, lt=100.0, title="Canary (%): what you approve serves this share of users first; 0 promotes"
    )


def field_name(candidate_id: str) -> str:
    return "approve_" + re.sub(r"\W", "_", candidate_id)


def approval_form(candidates: list[Candidate]) -> type[ApprovalInput]:
    """One switch per candidate, titled by kind and version (the description names the clusters it
    fixes under the same title). A canary percent above 0 serves what is approved to that share of
    users first (`flywheel watch` compares the arms); 0 promotes it fully."""
    fields: dict[str, Any] = {
        field_name(c.candidate_id): (bool, Field(False, title=f"Approve {c.short_title()}")) for c in candidates
    }
    return create_model("CycleApproval", __base__=ApprovalInput, **fields)  # type: ignore[call-overload,no-any-return]


def mlflow_run_link(settings: Settings) -> Any:
    """Links to runs in Flywheel's experiment on the MLflow UI (``mlflow_ui_url``), or None."""
    if not settings.mlflow_ui_url:
        return None
    from flywheel.registry import use_mlflow

    base = settings.mlflow_ui_url.rstrip("/")
    experiment = use_mlflow(settings).get_experiment_by_name(settings.experiment)
    exp_id = experiment.experiment_id if experiment is not None else "0"
    return lambda run_id: f"{base}/#/experiments/{exp_id}/runs/{run_id}"


def publish_evidence(cycle_id: str, evidence: str) -> str | None:
    """The full evidence as a Markdown artifact of this run; returns its page in the Prefect UI
    (None on the ephemeral API, which has no UI)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.settings import get_current_settings

    artifact_id = create_markdown_artifact(
        key=EVIDENCE_KEY, markdown=evidence, description=f"What the approver of cycle {cycle_id} decides on"
    )
    ui = get_current_settings().ui_url
    return f"{ui.rstrip('/')}/artifacts/artifact/{artifact_id}" if ui else None


def wait_for_approval(
    settings: Settings,
    flow_run_id: str,
    cycle_id: str,
    champion_score: float | None,
    candidates: list[Candidate],
    evidence: str | None = None,
) -> dict[str, str]:
    """Pause for the form; apply its answers. Returns each candidate's final decision. ``evidence``
    (Markdown) becomes the run's evidence artifact, which the form's short description links to."""
    logger = get_run_logger()
    waiting = [c for c in candidates if c.decision == "pending_approval"]
    if not waiting:
        return {}
    form = approval_form(waiting)
    evidence_link = publish_evidence(cycle_id, evidence) if evidence else None
    description = approval_markdown(
        waiting,
        champion_score,
        evidence_link=evidence_link,
        run_link=mlflow_run_link(settings),
        timeout_s=settings.approval.timeout,
        deferred=[c for c in candidates if c.decision == "deferred"],
    )
    _set_wait(settings, str(flow_run_id), {"cycle_id": cycle_id, "candidate_ids": [c.candidate_id for c in waiting]})
    logger.info(
        "waiting for approval of %s in the Prefect UI (or `flywheel approve`)",
        ", ".join(c.candidate_id for c in waiting),
    )
    answer: ApprovalInput | None = None
    try:
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=description),
            timeout=settings.approval.timeout,
            poll_interval=settings.approval.poll_interval,
            key=f"approval-{cycle_id.lower()}",
        )
    except FlowPauseTimeout:
        logger.warning("nobody answered within %s s: what is still waiting is rejected", settings.approval.timeout)
    finally:
        _set_wait(settings, str(flow_run_id), None)
    decisions: dict[str, str] = {}
    for cand in waiting:
        with runtime_for(settings).borrow_state() as state:
            current = state.candidate(cand.candidate_id)
        if current is None or current.decision != "pending_approval":  # decided meanwhile (the CLI)
            decisions[cand.candidate_id] = current.decision if current and current.decision else "unknown"
            continue
        if answer is None:
            champions.reject(
                settings,
                cand.candidate_id,
                by="flywheel",
                reason=f"approval timed out: nobody approved it within {settings.approval.timeout} s",
            )
            decisions[cand.candidate_id] = "rejected"
            continue
        who = answer.approver.strip()
        approved = bool(getattr(answer, field_name(cand.candidate_id), False))
        if approved and answer.canary_percent > 0:
            from flywheel.loop.canary import approve_canary

            approve_canary(
                settings,
                cand.candidate_id,
                percent=answer.canary_percent,
                by=who,
                note=answer.note or f"approved as a {answer.canary_percent:g}% canary in the Prefect UI",
            )
            decisions[cand.candidate_id] = "canary"
        elif approved:
            champions.approve(settings, cand.candidate_id, by=who, note=answer.note or "approved in the Prefect UI")
            decisions[cand.candidate_id] = "promoted"
        else:
            champions.reject(
                settings,
                cand.candidate_id,
                by=who,
                reason=f"not approved in the Prefect UI{': ' + answer.note if answer.note else ''}",
            )
            decisions[cand.candidate_id] = "rejected"
    logger.info("approval: %s", ", ".join(f"{k} {v}" for k, v in decisions.items()))
    return decisions


def wait_until_paused(flow_run_id: Any, timeout: float = 60.0) -> bool:
    """The wait is recorded just before the run pauses, and the server takes a moment to show the
    pause (longer on a loaded machine); a resume sent in between is refused. True once paused."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_paused():
                return True
            if (state is not None and state.is_final()) or time.monotonic() > deadline:
                return False
            time.sleep(0.5)


def resume_if_decided(settings: Settings) -> list[str]:
    """Resume every flow run waiting for approval none of whose candidates is undecided any more
    (decided with the CLI, or superseded by a newer cycle's). Returns the flow run ids resumed."""
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    resumed = []
    for flow_run_id, wait in waiting_runs(settings).items():
        with runtime_for(settings).borrow_state() as state:
            cands = [state.candidate(cid) for cid in wait["candidate_ids"]]
        if any(c is not None and c.decision == "pending_approval" for c in cands):
            continue
        inputs: dict[str, Any] = {field_name(c.candidate_id): c.decision == "promoted" for c in cands if c is not None}
        wait_until_paused(UUID(flow_run_id))
        resume_flow_run(
            UUID(flow_run_id),
            run_input={**inputs, "approver": "flywheel", "note": "decided outside the form (CLI or a newer cycle)"},
        )
        resumed.append(flow_run_id)
    return resumed
