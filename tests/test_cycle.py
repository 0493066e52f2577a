"""The improvement cycle end to end on the simulator: the Prefect flow under a session-scoped
test harness, the CLI, MLflow checked through MlflowClient, failures and resumption."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.sim.server import SimOptions, Simulator
from nonempty import every

BIN = Path(sys.executable).parent
HOOKS = Path(__file__).parent / "hooks"


def retrieve(query: str) -> str:
    from flywheel.embeddings import build_embedder
    from flywheel.knowledge.index import KnowledgeIndex
    from flywheel.state import open_state

    settings = load_settings()
    with open_state(settings) as state:
        retriever = KnowledgeIndex(settings, state, build_embedder(settings)).retriever()
        return "\n".join(text for _, text in retriever.retrieve(query, 3))


def golden_lines(loop: dict) -> list[str]:
    return Path(loop["golden"]).read_text().splitlines()


def mlflow_client():
    from flywheel.registry import use_mlflow

    return use_mlflow(load_settings())


def test_full_cycle_through_the_cli_then_approve_and_rollback(cli, loop: dict) -> None:
    out = cli("cycle", "--json")
    assert out["champion_score"] < 0.5
    cands = {c["candidate_id"]: c for c in out["candidates"]}
    waiting = {c["kind"]: c for c in cands.values() if c["decision"] == "pending_approval"}
    assert set(waiting) == {"prompt", "rag"}, [(c["candidate_id"], c["decision"], c["reason"]) for c in cands.values()]
    best, refresh = waiting["prompt"], waiting["rag"]
    assert best["golden_score"] > out["champion_score"] and best["ci_low"] > 0 and best["mlflow_run_id"]
    assert every(c["reason"] for c in cands.values())  # every decision says why
    others = [c for c in cands.values() if c not in (best, refresh)]
    assert every(c["decision"] in ("rejected", "superseded") for c in others)
    # A candidate that passed but lost to a better one of its kind says so in its decision (SPEC).
    assert every(c["reason"].startswith("superseded by ") == (c["decision"] == "superseded") for c in others)
    # The refresh fixes the outdated answers of the simulator's product model, and only those.
    assert refresh["per_category"]["outdated_knowledge"] == 1.0 > refresh["champion_score"]
    assert refresh["category_deltas"]["outdated_knowledge"] == 1.0
    assert every(d == 0 for c, d in refresh["category_deltas"].items() if c != "outdated_knowledge")
    assert "recall@3 unaffected" in refresh["reason"]
    # Every triaged cluster says what became of it: the candidate's decision and the gate's reason,
    # or what stopped it (a setting, a missing fix) and what drafting found.
    outcomes = {o["cluster_id"]: o for o in out["outcomes"]}
    assert set(outcomes) == {c["cluster_id"] for c in out["clusters"]}
    for cand in cands.values():
        for cid in cand["cluster_ids"]:
            assert outcomes[cid]["status"] == "candidate" and cand["candidate_id"] in outcomes[cid]["candidates"]
    for o in outcomes.values():
        assert o["why"], o
        if o["status"] == "candidate":
            assert o["decision"] in ("pending_approval", "rejected", "superseded") and o["decision"] in o["why"]
        if o["route"] == "prompt" and o["status"] != "skipped":
            assert o["drafts"] is not None and o["champion_resolved"] is not None
    assert any(o["status"] == "candidate" and o["decision"] == "pending_approval" for o in outcomes.values())
    logged = mlflow_client().download_artifacts(out["mlflow_run_id"], "cluster_outcomes.json")
    assert {o["cluster_id"] for o in json.loads(Path(logged).read_text())} == set(outcomes)

    listed = cli("pending", "--json")["pending"]
    assert {c["candidate_id"] for c in listed} == {best["candidate_id"], refresh["candidate_id"]}
    assert {c["mlflow_run_id"] for c in listed} == {best["mlflow_run_id"], refresh["mlflow_run_id"]}
    assert cli("prompt", "show", "--json")["version"] == loop["start_version"]  # nothing moved yet

    approved = cli("approve", best["candidate_id"], "--by", "alice", "--note", "ship it", "--json")
    assert approved["decision"] == "promoted" and approved["decided_by"] == "alice"
    shown = cli("prompt", "show", "--json")
    assert shown["version"] == approved["version"] != loop["start_version"]
    assert "production" in shown["aliases"]
    status = cli("status", "--json")
    assert status["champions"]["prompt"] == approved["version"]
    assert status["pending_approvals"] == 1 and status["loop_velocity_hours"] > 0  # the refresh still waits
    assert 0 < status["negative_feedback_rate"] < 1
    run = mlflow_client().get_run(best["mlflow_run_id"])
    assert run.data.tags["flywheel.decision"] == "promoted"
    assert run.data.tags["flywheel.approved_by"] == "alice" and run.data.tags["flywheel.approval_note"] == "ship it"

    cli("approve", best["candidate_id"], "--json", expect=2)  # no longer waiting

    # The index refresh: approval moves the active version and retrieval follows it; rollback moves it back.
    q = "How much does the Pro plan cost per month?"
    assert "$10 per month" in retrieve(q)
    before_index = cli("kb", "status", "--json")["active_version"]
    cli("approve", refresh["candidate_id"], "--by", "bob", "--json")
    assert cli("kb", "status", "--json")["active_version"] == refresh["version"] != before_index
    assert cli("status", "--json")["champions"]["index"] == refresh["version"]
    assert "$12 per month" in retrieve(q)
    cli("rollback", "rag", "--json")
    assert cli("kb", "status", "--json")["active_version"] == before_index
    assert "$10 per month" in retrieve(q)
    back = cli("rollback", "prompt", "--json")
    assert (back["from_version"], back["to_version"]) == (approved["version"], loop["start_version"])
    assert cli("prompt", "show", "--json")["version"] == loop["start_version"]
    assert "flywheel.rolled_back_at" in mlflow_client().get_run(best["mlflow_run_id"]).data.tags
    cli("rollback", "prompt", "--json", expect=2)  # nothing before the first prompt


def _plant_pii(cli) -> None:
    """Consented complaints with marked PII in every text field (and the events test_pii_everywhere
    plants in every other field), so the cycle has PII to leak if any step let it through."""
    from conftest import event, write_jsonl
    from test_pii_everywhere import _mark, _planted

    texts = {
        name: f"The Pro plan price is wrong, mail {_mark(name)} or call +1 415 555 0199, IBAN DE89370400440532013000"
        for name in ("comment", "correction")
    }
    complaints = [
        event(
            f"pii-cycle-{i}",
            signal="correction",
            reason="outdated",
            user_id=f"pii-user-{i}",
            query=f"How much does the Pro plan cost? I am {_mark('query')}",
            **texts,
        )
        for i in range(8)
    ]
    cli("ingest", str(write_jsonl(Path("pii-planted.jsonl"), [*complaints, *_planted()])), "--json")


def _no_pii_left(home: Path) -> None:
    """No marker in any file of the state directory (feedback store, state, MLflow's database and
    artifacts, indexes; a quarantined line's kept raw text aside) nor in the cycle's Prefect artifacts."""
    from prefect.artifacts import Artifact

    from test_pii_everywhere import _found, _home_files

    texts = {
        **_home_files(home),
        **{
            key: str(Artifact.get(key).data)
            for key in ("flywheel-cycle-report", "flywheel-cycle-candidates", "flywheel-cycle-chart")
        },
    }
    assert {where: found for where, text in texts.items() if (found := _found(text))} == {}


def test_mlflow_holds_every_candidate_as_spec_names_it(cli, loop: dict, monkeypatch) -> None:
    monkeypatch.delenv("FLYWHEEL_EVAL__TRACE_ITEMS")  # the default: every golden answer a trace
    _plant_pii(cli)
    out = cli("cycle", "--json")
    _no_pii_left(load_settings().home)
    client = mlflow_client()
    exp = client.get_experiment_by_name("flywheel")
    # Artifacts live in the state directory, not in ./mlruns of wherever the cycle ran.
    assert exp.artifact_location == (load_settings().home.resolve() / "mlartifacts").as_uri()
    assert not Path("mlruns").exists()
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`flywheel.cycle_id` = '{out['cycle_id']}'")
    by_kind: dict[str, list] = {}
    for r in runs:
        by_kind.setdefault(r.data.tags["flywheel.kind"], []).append(r)
    (parent,) = by_kind["cycle"]
    (champion,) = by_kind["champion"]
    import mlflow

    assert len(mlflow.search_traces(run_id=champion.info.run_id, return_type="list", max_results=1000)) == len(
        golden_lines(loop)
    )
    assert any(c["decision"] == "pending_approval" for c in out["candidates"] if c["kind"] == "prompt")
    (rag_run,) = by_kind["rag"]
    # The judge calibrated against the world's consented expert reviews (every one fails an answer:
    # kappa undefined, so no judge.kappa metric rather than a 0 that reads as a verdict).
    judge = out["judge"]
    assert judge["items"] > 0 and judge["kappa"] is None and judge["trusted"] is False
    assert parent.data.metrics["judge.items"] == judge["items"] and "judge.kappa" not in parent.data.metrics
    assert parent.data.metrics["judge.agreement"] == judge["agreement"]
    assert "judge_calibration.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert any("not calibrated" in n for n in out["notes"])
    assert len(by_kind["prompt"]) == len(out["candidates"]) - 1
    assert (
        rag_run.data.metrics["retrieval.candidate.unaffected.recall_at_3"]
        >= rag_run.data.metrics["retrieval.active.unaffected.recall_at_3"]
    )
    assert {"index.diff.md", "index_changes.json"} <= {a.path for a in client.list_artifacts(rag_run.info.run_id)}
    changes = json.loads(Path(client.download_artifacts(rag_run.info.run_id, "index_changes.json")).read_text())
    assert "pricing.md" in changes["changed_documents"]
    assert every(p["from"] for p in changes["provenance"].values())
    golden_version = out["golden_version"]
    categories = {json.loads(line)["category"] for line in golden_lines(loop)}
    for r in [champion, rag_run, *by_kind["prompt"]]:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.data.params["golden_version"] == golden_version
        assert {f"golden.{c}" for c in categories} <= set(r.data.metrics)
        assert 0 <= r.data.metrics["golden_score"] <= 1
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert "eval_results.json" in artifacts
        assert [d.dataset.digest for d in r.inputs.dataset_inputs] == [golden_version[:16]]
    # Each run links the prompt version it was evaluated with: a prompt candidate its draft, the
    # champion and the index refresh the champion's version; the prompt's own tags name no draft.
    linked = lambda r: json.loads(r.data.tags["mlflow.linkedPrompts"])  # noqa: E731
    assert linked(champion) == linked(rag_run) == [{"name": "assistant-system", "version": loop["start_version"]}]
    for r in by_kind["prompt"]:
        cand = next(c for c in out["candidates"] if c["candidate_id"] == r.data.tags["flywheel.candidate_id"])
        assert linked(r) == [{"name": "assistant-system", "version": cand["version"]}]
    assert not any(k.startswith("flywheel.") for k in client.get_prompt("assistant-system").tags)
    for r in by_kind["prompt"]:
        cand = next(c for c in out["candidates"] if c["candidate_id"] == r.data.tags["flywheel.candidate_id"])
        assert r.data.tags["flywheel.decision"] == cand["decision"]
        assert r.data.metrics["golden_score"] == pytest.approx(cand["golden_score"], abs=1e-4)
        assert r.data.metrics["delta"] == pytest.approx(cand["delta"], abs=1e-4)
        assert {"prompt.diff.md", "prompt.txt"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
        diff = Path(client.download_artifacts(r.info.run_id, "prompt.diff.md")).read_text()
        assert f"```diff\n--- prompt v{cand['parent']} (champion)" in diff
        assert r.data.tags["flywheel.parent_version"] == cand["parent"] == loop["start_version"]
        assert r.info.run_name == f"v{cand['version']} prompt {cand['candidate_id'].removeprefix('prompt-')[:6]}"
        # The answers as traces on the run, one per golden item, which MLflow's evaluation pages show:
        # for what a person may approve (the champion's too); the rest keep theirs in eval_results.json.
        import mlflow

        traced = len(mlflow.search_traces(run_id=r.info.run_id, return_type="list", max_results=1000))
        shown = cand["decision"] in {"pending_approval", "promoted", "canary", "deferred"}
        assert traced == (len(golden_lines(loop)) if shown else 0), (cand["decision"], traced)
        table = json.loads(Path(client.download_artifacts(r.info.run_id, "eval_results.json")).read_text())
        assert len(table["data"]) == len(golden_lines(loop)) and "rationale" in table["columns"]
    # Every drafted prompt is a registered version with its provenance, screened out or not.
    versions = {str(v.version): v for v in client.search_prompt_versions("assistant-system")}
    for cand in (c for c in out["candidates"] if c["kind"] == "prompt"):
        tags = versions[cand["version"]].tags
        assert "prompt-" + tags["flywheel.draft_id"] == cand["candidate_id"]
        assert tags["flywheel.cycle_id"] == out["cycle_id"] and tags["flywheel.kept"] == "true"
        assert tags["flywheel.parent_version"] == loop["start_version"]
        assert set(tags["flywheel.cluster_ids"].split(",")) == set(cand["cluster_ids"])
    # The operator's report: a chart on the cycle's run, and Prefect artifacts under stable keys.
    assert "charts/cycle.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "charts")}
    png = Path(client.download_artifacts(parent.info.run_id, "charts/cycle.png")).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    from prefect.artifacts import Artifact

    report = Artifact.get("flywheel-cycle-report")
    assert out["cycle_id"] in report.data and "charts/cycle.png" in report.data
    chart = Artifact.get("flywheel-cycle-chart")  # the same PNG, shown by the Prefect UI itself
    assert chart.type == "markdown" and out["cycle_id"] in chart.data
    assert base64.b64decode(chart.data.split("data:image/png;base64,", 1)[1].split(")", 1)[0]) == png
    assert every(c["candidate_id"] in report.data for c in out["candidates"])
    table = Artifact.get("flywheel-cycle-candidates")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["candidate"]: r["decision"] for r in rows} == {
        c["candidate_id"]: c["decision"] for c in out["candidates"]
    }
    # Only what goes to the golden set becomes a prompt version: one per prompt candidate (the rag
    # candidate has none); screened-out drafts stay in the cycle's record, not in the registry.
    drafted = [v for v in versions.values() if v.tags.get("flywheel.cycle_id") == out["cycle_id"]]
    assert len(drafted) == len(out["candidates"]) - 1 and all(v.tags["flywheel.kept"] == "true" for v in drafted)
    assert "## Prompt drafting" in report.data  # rounds, rollouts and resolved shares per cluster
    drafting = [c["drafting"] for c in out["clusters"] if c.get("drafting")]
    assert drafting and all(d["rounds"] >= 1 and d["rollouts"] > 0 and d["outcome"] for d in drafting)


def test_an_endpoint_answering_500_fails_the_cycle_and_promotes_nothing(cli, loop: dict, monkeypatch) -> None:
    with Simulator(options=SimOptions(fail_status=500)) as broken:
        monkeypatch.setenv("OPENAI_BASE_URL", broken.base_url)
        out = cli("cycle", "--json", expect=1)
        assert broken.counts()["failed_500"] >= 2  # the SDK retried before giving up
    assert "500" in out["error"] and "nothing was promoted" in out["error"]
    assert cli("pending", "--json")["pending"] == []
    assert cli("prompt", "show", "--json")["version"] == loop["start_version"]


def test_no_endpoint_fails_fast_with_how_to_set_one(cli, loop: dict, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL")
    out = cli("cycle", "--json", expect=2)
    assert "OPENAI_BASE_URL" in out["error"] and "flywheel sim serve" in out["error"]


def test_a_broken_golden_set_is_a_usage_error(cli, loop: dict, tmp_path: Path, monkeypatch) -> None:
    lines = golden_lines(loop)
    lines[6] = lines[6][:-5]
    broken = tmp_path / "golden.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(broken))
    out = cli("cycle", "--json", expect=2)
    assert f"{broken}:7" in out["error"]


def test_a_cycle_killed_after_evaluation_resumes_without_duplicates(cli, loop: dict, prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    crash = {
        "FLYWHEEL_CRASH_AFTER": "evaluate",  # tests/hooks/sitecustomize.py kills the process there
        "PYTHONPATH": os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH")) if p),
    }
    killed = subprocess.run(
        [str(BIN / "flywheel"), "cycle", "--json"], env={**env, **crash}, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    from flywheel.state import open_state

    settings = load_settings()
    with open_state(settings) as state:
        cycle_id = state.unfinished_cycle()
        assert cycle_id is not None
        before = {c.candidate_id for c in state.candidates(cycle_id=cycle_id)}
    assert before
    client = mlflow_client()
    versions_before = len(list(client.search_prompt_versions("assistant-system")))
    product_calls = loop["sim"].counts().get("chat.product", 0)

    rerun = subprocess.run(
        [str(BIN / "flywheel"), "cycle", "--json"], env=env, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    out = json.loads(rerun.stdout)
    assert out["cycle_id"] == cycle_id and out["resumed"] is True
    assert {c["candidate_id"] for c in out["candidates"]} == before
    with open_state(settings) as state:
        assert {c.candidate_id for c in state.candidates(cycle_id=cycle_id)} == before
        assert state.unfinished_cycle() is None
    assert len(list(client.search_prompt_versions("assistant-system"))) == versions_before
    exp = client.get_experiment_by_name("flywheel")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`flywheel.cycle_id` = '{cycle_id}'")
    ids = [r.data.tags["flywheel.candidate_id"] for r in runs if r.data.tags["flywheel.kind"] in ("prompt", "rag")]
    assert sorted(ids) == sorted(before)  # one run per candidate, no duplicates
    # Drafts and evaluations were reused: the re-run asked the product model nothing.
    assert loop["sim"].counts().get("chat.product", 0) == product_calls


def test_an_unchanged_champion_is_not_evaluated_again(loop: dict) -> None:
    from flywheel.loop.context import begin
    from flywheel.loop.evaluate import evaluate_step, variant_for
    from flywheel.runtime import runtime_for

    settings = load_settings()
    ctx = begin(runtime_for(settings))
    sim = loop["sim"]
    (first,) = evaluate_step(ctx.runtime, [variant_for(ctx, None)])
    calls = sim.counts().get("chat.product", 0)
    (second,) = evaluate_step(ctx.runtime, [variant_for(ctx, None)])
    assert not first.cached and second.cached
    assert sim.counts().get("chat.product", 0) == calls
    assert second.scores == first.scores


def test_a_cluster_prompts_cannot_fix_is_fine_tuned_then_approved_and_rolled_back(cli, loop: dict) -> None:
    first = cli("cycle", "--json")
    assert not [c for c in first["candidates"] if c["kind"] == "finetune"]
    errors = next(c for c in first["clusters"] if "error" in (c["example_queries"] or [""])[0].lower())
    assert errors["route"] == "prompt" and errors["usable_examples"] >= 1000  # no history yet
    for cand in cli("pending", "--json")["pending"]:
        cli("approve", cand["candidate_id"], "--json")
    # No revision beat the champion on the error-code questions: the cluster is now persistent.
    status = cli("status", "--json")
    (persistent,) = [c for c in status["finetune"]["persistent_clusters"] if c["cluster_id"] == errors["cluster_id"]]
    assert persistent["missing"] == 0

    second = cli("cycle", "--json")
    routed = {c["cluster_id"]: c["route"] for c in second["clusters"]}
    assert routed[errors["cluster_id"]] == "finetune"
    assert second["finetune"]["dataset"]["built"] and second["finetune"]["dataset"]["examples"] >= 1000
    # What the approved prompt and index fixed is not worked on again (no new negative feedback since).
    assert [c["kind"] for c in second["candidates"]] == ["finetune"]
    (tuned,) = [c for c in second["candidates"] if c["kind"] == "finetune"]
    (job,) = second["finetune"]["jobs"]
    assert job["status"] == "succeeded" and tuned["decision"] == "pending_approval", tuned["reason"]
    # Evaluated against the new champion (approved prompt and index): the error codes are what improved.
    assert tuned["golden_score"] > tuned["champion_score"] and tuned["ci_low"] > 0
    assert tuned["category_deltas"]["factual"] > 0
    assert every(d >= 0 for d in tuned["category_deltas"].values())
    client = mlflow_client()
    run = client.get_run(tuned["mlflow_run_id"])
    assert run.data.tags["flywheel.kind"] == "finetune" and run.data.params["job_id"] == job["job_id"]
    assert run.data.metrics["golden_score"] == pytest.approx(tuned["golden_score"], abs=1e-4)
    version = client.get_model_version("assistant-model", tuned["version"])
    assert version.tags["flywheel.provider_model"] == job["fine_tuned_model"]
    assert version.tags["flywheel.dataset_version"] == second["finetune"]["dataset"]["version"]

    cli("approve", tuned["candidate_id"], "--by", "carol", "--json")
    assert cli("status", "--json")["champions"]["model"] == job["fine_tuned_model"]
    assert str(client.get_model_version_by_alias("assistant-model", "production").version) == tuned["version"]
    back = cli("rollback", "model", "--json")
    assert (back["from_version"], back["to_version"]) == (tuned["version"], "base")
    assert cli("status", "--json")["champions"]["model"] == "gpt-4o-mini"
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias("assistant-model", "production")
    cli("rollback", "model", "--json", expect=2)  # nothing before the base model
