"""Canary releases for every kind: approve --canary, promote-canary, rollback canary, and the arm
a user gets (flywheel.arms), against the real MLflow registries and the real state store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flywheel.arms import arm_for, assignment, bucket_of
from flywheel.candidates import Candidate, Decision
from flywheel.config import load_settings
from flywheel.registry import CANARY, PRODUCTION, model_at, prompt_at, use_mlflow
from flywheel.state import open_state
from tests.watch_helpers import prompt_candidate


def test_the_arm_is_a_stable_hash_that_splits_close_to_the_percent() -> None:
    # Pinned: the same user id lands in the same bucket on every machine and in every release.
    assert (bucket_of("alice"), bucket_of("bob"), bucket_of("u-42")) == (207, 8650, 3174)
    assert [arm_for("alice", 10) for _ in range(3)] == ["canary"] * 3 and arm_for("bob", 10) == "production"
    ids = [f"user-{i}" for i in range(20_000)]
    for percent in (1, 10, 25, 50):
        share = np.mean([arm_for(u, percent) == "canary" for u in ids]) * 100
        assert abs(share - percent) < 1.0, (percent, share)
    # Growing the canary only adds users: nobody who had it loses it.
    assert {u for u in ids if arm_for(u, 10) == "canary"} <= {u for u in ids if arm_for(u, 20) == "canary"}
    assert arm_for(None, 50) == "production" and arm_for("alice", 0) == "production"


def test_approve_as_canary_then_promote_it_for_a_prompt(cli) -> None:
    settings = load_settings()
    cand = prompt_candidate(settings)
    out = cli("approve", cand.candidate_id, "--canary", "25", "--by", "dana", "--json")
    assert out["decision"] == "canary" and out["canary"]["percent"] == 25 and out["canary"]["started_by"] == "dana"
    assert (
        prompt_at(settings, CANARY).version == cand.version and prompt_at(settings, PRODUCTION).version == cand.parent
    )
    with open_state(settings) as state:
        served = {u: assignment(settings, state, u) for u in ("alice", "bob")}
    assert served["alice"].arm == "canary" and served["alice"].prompt_version == cand.version  # bucket 207 < 2500
    assert served["bob"].arm == "production" and served["bob"].prompt_version == cand.parent
    assert served["alice"].canary.percent == 25
    status = cli("status", "--json")
    assert status["canary"]["version"] == cand.version and status["champions"]["prompt"] == cand.parent

    done = cli("promote-canary", "prompt", "--by", "dana", "--json")
    assert (done["action"], done["production"]) == ("promoted", cand.version)
    assert prompt_at(settings, CANARY) is None and prompt_at(settings, PRODUCTION).version == cand.version
    with open_state(settings) as state:
        after = state.candidate(cand.candidate_id)
        actions = [p["action"] for p in state.promotions("prompt")]
        assert assignment(settings, state, "alice").arm == "production"
    assert after.decision is Decision.promoted and after.canary.outcome == "promoted"
    assert actions == ["set", "canary", "promote", "canary_promoted"]
    tags = use_mlflow(settings).get_run(cand.mlflow_run_id).data.tags
    assert tags["flywheel.decision"] == "promoted" and tags["flywheel.canary_promoted_by"] == "dana"
    cli("promote-canary", "--json", expect=2)  # nothing runs any more


def test_rollback_canary_ends_it_and_production_never_moved(cli) -> None:
    settings = load_settings()
    cand = prompt_candidate(settings, clusters={"cl-1": []})
    cli("approve", cand.candidate_id, "--canary", "10", "--json")
    other = prompt_candidate(settings, "c2", text="Be brief.")
    refused = cli("approve", other.candidate_id, "--canary", "10", "--json", expect=2)
    assert "one canary at a time" in refused["error"]
    assert "not rag" in cli("rollback", "canary", "rag", "--json", expect=2)["error"]
    out = cli("rollback", "canary", "prompt", "--note", "users complain", "--json")
    assert out["action"] == "rolled_back" and out["production"] == cand.parent
    assert prompt_at(settings, CANARY) is None and prompt_at(settings, PRODUCTION).version == cand.parent
    with open_state(settings) as state:
        after = state.candidate(cand.candidate_id)
        history = state.cluster_history("cl-1")
        assert [p["action"] for p in state.promotions("prompt")] == ["set", "canary", "canary_rolled_back"]
    assert after.decision is Decision.rejected and "canary rolled back" in after.reason
    assert history[-1]["outcome"] == "rolled_back"
    cli("rollback", "prompt", "--json", expect=2)  # the canary was never a production move to undo


@pytest.mark.slow
def test_a_rag_canary_moves_only_the_canary_index_pointer(cli, local_embedder, tmp_path: Path) -> None:
    from flywheel.knowledge.index import ACTIVE, KnowledgeIndex
    from flywheel.knowledge.index import CANARY as CANARY_INDEX
    from flywheel.loop.promotion import set_prompt
    from flywheel.registry import production_prompt

    settings = load_settings()
    set_prompt(settings, "You are a helpful assistant.", message="start", by="test")
    src = tmp_path / "kb"
    src.mkdir()
    (src / "plans.md").write_text("The Pro plan costs $10 per month.")
    with open_state(settings) as state:
        index = KnowledgeIndex(settings, state, local_embedder)
        first = index.sync(src).version
        (src / "plans.md").write_text("The Pro plan costs $12 per month since November.")
        second = index.sync(src).version  # a later version is not activated by sync
    client = use_mlflow(settings)
    run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id, run_name="rag")
    cand = Candidate(
        candidate_id="rag-1",
        cycle_id="cyc-rag",
        kind="rag",
        cluster_ids=[],
        parent=str(first),
        version=str(second),
        payload={"template": production_prompt(settings).template, "index_version": str(second)},
        decision=Decision.pending_approval,
        mlflow_run_id=run.info.run_id,
        created_at=datetime.now(UTC),
    )
    with open_state(settings) as state:
        state.add_candidate(cand)
    cli("approve", "rag-1", "--canary", "30", "--json")
    with open_state(settings) as state:
        assert (state.pointer(ACTIVE), state.pointer(CANARY_INDEX)) == (str(first), str(second))
        assert assignment(settings, state, "alice").index_version == str(second)  # bucket 207: canary
        assert assignment(settings, state, "bob").index_version == str(first)
    assert cli("promote-canary", "rag", "--json")["production"] == str(second)
    with open_state(settings) as state:
        assert (state.pointer(ACTIVE), state.pointer(CANARY_INDEX)) == (str(second), None)


def test_a_model_canary_uses_the_model_registry_alias(cli) -> None:
    from flywheel.loop.promotion import set_prompt
    from flywheel.registry import production_model, register_model_version

    settings = load_settings()
    set_prompt(settings, "You are a helpful assistant.", message="start", by="test")
    client = use_mlflow(settings)
    run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id, run_name="ft")
    version = register_model_version(settings, "ft:tuned-1", run.info.run_id, {"flywheel.job_id": "job-1"})
    cand = Candidate(
        candidate_id="finetune-1",
        cycle_id="cyc-ft",
        kind="finetune",
        cluster_ids=[],
        parent="base",
        version=version,
        payload={
            "model": "ft:tuned-1",
            "base_model": settings.target_model,
            "job_id": "job-1",
            "dataset_version": "d1",
        },
        decision=Decision.pending_approval,
        mlflow_run_id=run.info.run_id,
        created_at=datetime.now(UTC),
    )
    with open_state(settings) as state:
        state.add_candidate(cand)
    cli("approve", "finetune-1", "--canary", "30", "--json")
    assert model_at(settings, CANARY).version == version and production_model(settings).version is None
    with open_state(settings) as state:
        assert assignment(settings, state, "alice").model == "ft:tuned-1"
        assert assignment(settings, state, "bob").model == settings.target_model
    cli("rollback", "canary", "--json")
    assert model_at(settings, CANARY) is None and production_model(settings).version is None
