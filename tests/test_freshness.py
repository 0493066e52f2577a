"""A candidate is promoted only onto the production it was evaluated against: once another prompt,
index or model went to production (other than its own cycle's), approving it is refused."""

from __future__ import annotations

from pathlib import Path

from flywheel.candidates import Candidate, ChampionSet
from flywheel.config import load_settings
from flywheel.state import open_state


def _pending_index_candidate(tmp_path: Path, cli) -> Candidate:
    """Production: prompt v1 and index v1; waiting: index v2, evaluated against exactly that."""
    from flywheel.evals.tracking import experiment_id
    from flywheel.registry import use_mlflow

    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are the support assistant of Nimbus.")
    cli("prompt", "set", str(prompt), "--json")
    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "plans.md").write_text("# Plans\n\nThe Pro plan costs $10 per month.\n")
    cli("kb", "sync", "--source", str(docs), "--json")
    (docs / "plans.md").write_text("# Plans\n\nThe Pro plan costs $12 per month since November.\n")
    assert cli("kb", "sync", "--source", str(docs), "--json")["version"] == "2"
    settings = load_settings()
    client = use_mlflow(settings)
    run_id = client.create_run(experiment_id(client, settings.experiment)).info.run_id
    cand = Candidate(
        candidate_id="rag-fresh",
        cycle_id="cyc-a",
        kind="rag",
        cluster_ids=["outdated-1"],
        parent="1",
        version="2",
        mlflow_run_id=run_id,
        decision="pending_approval",
        payload={"template": "You are the support assistant of Nimbus.", "index_version": "2"},
        evaluated_against=ChampionSet(prompt="1", index="1", model="base"),
    )
    with open_state(settings) as state:
        state.add_candidate(cand)
        state.save_candidate(cand)
    return cand


def test_approval_is_refused_once_production_moved_since_the_evaluation(cli, tmp_path: Path) -> None:
    cand = _pending_index_candidate(tmp_path, cli)
    newer = tmp_path / "newer.txt"
    newer.write_text("You are the support assistant of Nimbus. Answer in two sentences.")
    cli("prompt", "set", str(newer), "--json")  # production's prompt moves to v2 meanwhile

    out = cli("approve", cand.candidate_id, "--json", expect=2)
    assert "prompt 1 -> 2" in out["error"] and "Run a new cycle" in out["error"]
    assert cli("kb", "status", "--json")["active_version"] == "1"  # nothing moved
    assert cli("pending", "--json")["pending"][0]["candidate_id"] == cand.candidate_id  # still decidable later


def test_promotions_of_the_same_cycle_go_together(cli, tmp_path: Path) -> None:
    """A cycle's prompt and index candidates were evaluated side by side against one champion: the
    first approval does not make the second stale."""
    cand = _pending_index_candidate(tmp_path, cli)
    newer = tmp_path / "newer.txt"
    newer.write_text("You are the support assistant of Nimbus. Answer in two sentences.")
    cli("prompt", "set", str(newer), "--json")
    with open_state(load_settings()) as state:  # that v2 came from this cycle's prompt candidate
        sibling = Candidate(
            candidate_id="prompt-sibling",
            cycle_id=cand.cycle_id,
            kind="prompt",
            cluster_ids=["format-1"],
            parent="1",
            version="2",
            decision="promoted",
            payload={"template": newer.read_text()},
        )
        state.add_candidate(sibling)
        state.save_candidate(sibling)

    cli("approve", cand.candidate_id, "--json")
    assert cli("kb", "status", "--json")["active_version"] == "2"
