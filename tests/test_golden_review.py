"""Deciding golden proposals: accept makes a new version (atomic write, the previous version kept,
logged to MLflow as a dataset with who accepted what), reject records why; the `golden-review`
flow accepts what its form switches on; coverage, and the cycle's note about uncovered clusters."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli
from flywheel.config import load_settings
from flywheel.evals.golden import load_golden
from golden_feedback import seed_feedback
from nonempty import every

TEAM_LINES = (
    '{"id": "g-1", "input": "How do I reset my password?", "expected": "Reset password", "category": "general"}\n'
    '{"category": "tone",   "id": "g-2", "input": "Where is my invoice?", "expected": "Billing"}\n'
)


@pytest.fixture
def team_golden(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A golden set as a team wrote it (their own key order and spacing)."""
    path = Path("golden.jsonl")
    path.write_text(TEAM_LINES)
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    return path


def test_accepting_writes_a_new_version_and_keeps_the_previous_one(cli: Cli, team_golden: Path) -> None:
    before = load_golden(team_golden)
    seed_feedback(cli)
    proposals = cli("golden", "propose", "--json")["proposals"]
    chosen = [p["proposal_id"] for p in proposals[:2]]
    report = cli("golden", "accept", *chosen, "--by", "dana", "--json")
    after = load_golden(team_golden)
    assert report["accepted"] == chosen and report["previous_version"] == before.version
    assert report["golden_version"] == after.version != before.version and len(after) == len(before) + 2
    # The team's lines stay as they wrote them; the new items follow.
    text = team_golden.read_text()
    assert text.startswith(TEAM_LINES) and [json.loads(line)["id"] for line in text.splitlines()[2:]] == chosen
    # Both versions are kept under FLYWHEEL_HOME, named by their content hash; no temporary file is left.
    versions = load_settings().home / "golden" / "versions"
    assert report["previous_kept"] == str(versions / f"{before.version}.jsonl")
    assert Path(report["previous_kept"]).read_text() == TEAM_LINES
    assert load_golden(Path(report["version_kept"])).version == after.version
    assert [p.name for p in team_golden.parent.iterdir() if p.name.startswith(".golden")] == []
    # Accepting again adds nothing twice; a rejected proposal cannot be accepted.
    again = cli("golden", "accept", chosen[0], "--json")
    assert again["accepted"] == [] and again["already_accepted"] == [chosen[0]]
    assert load_golden(team_golden).version == after.version
    cli("golden", "reject", proposals[2]["proposal_id"], "--reason", "duplicate of g-2", "--json")
    refused = cli("golden", "accept", proposals[2]["proposal_id"], expect=2)
    assert "rejected" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_the_new_version_is_an_mlflow_dataset_with_who_accepted_what(cli: Cli, team_golden: Path) -> None:
    from flywheel.registry import use_mlflow

    seed_feedback(cli)
    proposals = cli("golden", "propose", "--json")["proposals"]
    report = cli("golden", "accept", proposals[0]["proposal_id"], "--by", "dana", "--json")
    client = use_mlflow(load_settings())
    exp = client.get_experiment_by_name("flywheel")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`flywheel.kind` = 'golden'")
    assert run.info.run_id == report["mlflow_run_id"]
    assert run.data.tags["flywheel.accepted_by"] == "dana"
    assert run.data.params["golden_version"] == report["golden_version"]
    assert run.data.params["previous_version"] == report["previous_version"]
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == report["golden_version"][:16]
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 3
    local = client.download_artifacts(run.info.run_id, "accepted_proposals.json", str(Path("dl").resolve()))
    (record,) = json.loads(Path(local).read_text())
    assert (record["proposal_id"], record["accepted_by"]) == (proposals[0]["proposal_id"], "dana")
    assert record["source"]["event_ids"] == proposals[0]["source"]["event_ids"]


def test_a_write_that_fails_leaves_the_previous_file_whole(team_golden: Path) -> None:
    from flywheel.loop.golden.versions import write_atomically

    with pytest.raises(TypeError):
        write_atomically(team_golden, "not bytes")  # type: ignore[arg-type]  # fails after the temp file exists
    assert team_golden.read_text() == TEAM_LINES
    assert sorted(p.name for p in team_golden.parent.iterdir()) == ["golden.jsonl"]


def test_rejecting_records_who_and_why_and_needs_a_reason(cli: Cli, team_golden: Path) -> None:
    seed_feedback(cli)
    proposal = cli("golden", "propose", "--json")["proposals"][0]
    missing = cli("golden", "reject", proposal["proposal_id"], expect=2)
    assert "--reason" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    done = cli("golden", "reject", proposal["proposal_id"], "--reason", "not our wording", "--by", "eve", "--json")
    assert (done["status"], done["decided_by"], done["reason"]) == ("rejected", "eve", "not our wording")
    assert proposal["proposal_id"] not in {p["proposal_id"] for p in cli("golden", "review", "--json")["proposals"]}
    assert "no proposal" in cli("golden", "accept", "gp-nope", expect=2).stderr
    assert team_golden.read_text() == TEAM_LINES  # a rejection never touches the golden set


def test_coverage_counts_items_negative_events_and_uncovered_clusters(cli: Cli, team_golden: Path) -> None:
    seed_feedback(cli)
    rows = {r["category"]: r for r in cli("golden", "coverage", "--json")["categories"]}
    assert rows["tone"]["golden_items"] == 1 and rows["tone"]["uncovered_clusters"] == []
    assert rows["tone"]["negative_events"] == 7
    assert rows["format"]["golden_items"] == 0 and len(rows["format"]["uncovered_clusters"]) == 1
    assert rows["format"]["negative_events"] == 3  # the approving expert review is not negative
    assert rows["general"] == {"category": "general", "golden_items": 1, "negative_events": 0, "uncovered_clusters": []}
    # Least covered first: categories with no item lead.
    assert [r["golden_items"] for r in cli("golden", "coverage", "--json")["categories"]][:2] == [0, 0]


def test_a_candidate_for_an_uncovered_cluster_says_so_in_the_cycle_report(settings, team_golden: Path) -> None:
    from datetime import datetime

    from flywheel.candidates import Candidate
    from flywheel.evals.report import outcome_table
    from flywheel.improvers.base import ImproverRun, Proposal
    from flywheel.loop.context import CycleContext
    from flywheel.loop.outcomes import cluster_outcomes, cluster_work
    from flywheel.schemas import FailureCluster

    ctx = CycleContext(
        settings=load_settings(),
        cycle_id="cyc-1",
        resumed=False,
        champion_version="1",
        champion_template="Be helpful.",
        golden_version=load_golden(team_golden).version,
    )
    clusters = [
        FailureCluster(
            cluster_id=f"{cat}-1",
            category=cat,
            route="prompt",
            size=5,
            users=5,
            priority=5.0,
            event_ids=[],
            summary="",
            consented=5,
        )
        for cat in ("tone", "format")
    ]
    cands = [
        Candidate(
            candidate_id=f"prompt-{cat}",
            cycle_id="cyc-1",
            kind="prompt",
            cluster_ids=[f"{cat}-1"],
            decision="pending_approval",
            reason="passed the policy",
            created_at=datetime.now(UTC),
            payload={"template": "Be kind."},
        )
        for cat in ("tone", "format")
    ]
    work = cluster_work(ctx, clusters, [ImproverRun(kind="prompt", chosen=clusters, proposal=Proposal())])
    outcomes = {o.cluster_id: o for o in cluster_outcomes(ctx, clusters, work, candidates=cands)}
    assert outcomes["tone-1"].golden_items == 1 and outcomes["tone-1"].note is None
    assert outcomes["format-1"].golden_items == 0
    assert "no golden item of category `format`" in outcomes["format-1"].note
    assert "flywheel golden propose" in outcomes["format-1"].note
    assert "flywheel golden propose" in "\n".join(outcome_table(list(outcomes.values())))


def _paused_review_run(timeout: float = 300) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["golden-review"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            )
            if runs:
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError("the golden-review flow never paused")


def test_the_golden_review_flow_accepts_what_its_form_switches_on(
    cli: Cli, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    from flywheel.flows.golden_review import GoldenReviewParameters, field_name, golden_review, review_form
    from flywheel.proposals import GoldenProposal

    path = Path("first/golden.jsonl")
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))  # a cold start: no golden set yet
    monkeypatch.setenv("FLYWHEEL_APPROVAL__POLL_INTERVAL", "1")
    seed_feedback(cli)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = golden_review(GoldenReviewParameters())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    run_id = _paused_review_run()
    pending = cli("golden", "review", "--json")["proposals"]
    assert len(pending) >= 3
    form = review_form([GoldenProposal.model_validate(p) for p in pending]).model_json_schema()
    assert every(form["properties"][field_name(p["proposal_id"])]["type"] == "boolean" for p in pending)
    chosen = [pending[0]["proposal_id"], pending[1]["proposal_id"]]
    resume_flow_run(UUID(run_id), run_input={**{field_name(pid): True for pid in chosen}, "reviewer": "gil"})
    thread.join(120)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    assert box["out"]["accepted"] == chosen and box["out"]["accepted_by"] == "gil"
    assert {i.id for i in load_golden(path).items} == set(chosen)
    left = {p["proposal_id"] for p in cli("golden", "review", "--json")["proposals"]}
    assert left == {p["proposal_id"] for p in pending} - set(chosen)  # what stayed off stays pending


@pytest.mark.parametrize("configured", ["unset", "the bundled path"])
def test_accepting_never_writes_the_bundled_golden_set(
    cli: Cli, configured: str, flywheel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No golden file of the team's: acceptance starts a copy under FLYWHEEL_HOME from the bundled
    items, later reads take that copy, and the package's file keeps its bytes."""
    from flywheel.config import BUNDLED_GOLDEN

    seed_feedback(cli)  # writes its file in the test's own working directory
    if configured == "unset":
        monkeypatch.chdir(BUNDLED_GOLDEN.parents[2])  # a checkout: the default path is the bundled file
    else:
        monkeypatch.setenv("FLYWHEEL_GOLDEN", str(BUNDLED_GOLDEN))
    bundled = BUNDLED_GOLDEN.read_bytes()
    proposals = cli("golden", "propose", "--json")["proposals"]
    assert proposals, "the seeded feedback proposes items"
    chosen = [p["proposal_id"] for p in proposals[:2]]
    report = cli("golden", "accept", *chosen, "--by", "dana", "--json")
    assert BUNDLED_GOLDEN.read_bytes() == bundled
    copy = flywheel_home.resolve() / "golden" / "golden.jsonl"
    assert Path(report["path"]).resolve() == copy
    written = load_golden(copy)
    assert copy.read_bytes().startswith(bundled) and [i.id for i in written.items][-2:] == chosen
    assert report["golden_version"] == written.version and report["items"] == len(load_golden(BUNDLED_GOLDEN)) + 2
    settings = load_settings()
    assert settings.golden_file.resolve() == copy  # what cycles, checks and coverage read from now on
    assert cli("config", "--json")["resolved"]["golden"] == str(settings.golden_file)
