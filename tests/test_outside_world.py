"""A cycle on a product the simulator was not written for ("Pantry Pal", tests/outside_product.py):
its own pipeline, wording, golden set and feedback. Only the drafting and judge models are the
simulator's. Its failures still become a prompt candidate that the golden set confirms."""

from __future__ import annotations

import json
from pathlib import Path

import outside_product
from conftest import write_jsonl
from nonempty import every


def test_an_outside_products_failures_become_a_fix_the_golden_set_confirms(
    cli, sim_env, prefect_api: str, tmp_path: Path, monkeypatch
) -> None:
    golden = write_jsonl(tmp_path / "golden.jsonl", outside_product.golden_items())
    feedback = write_jsonl(tmp_path / "feedback.jsonl", outside_product.feedback_events())
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(outside_product.CHAMPION)
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(golden))
    monkeypatch.setenv("FLYWHEEL_EVAL__PIPELINE", "outside_product:answer")
    monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "0")
    cli("prompt", "set", str(prompt), "--json")
    assert cli("ingest", str(feedback), "--json")["accepted"] == len(outside_product.feedback_events())

    out = cli("cycle", "--json")
    drafted = {c["category"]: c["drafting"] for c in out["clusters"] if c.get("drafting")}
    assert {"format", "tone", "off_topic"} <= set(drafted), out["clusters"]
    for category in ("format", "tone", "off_topic"):  # judged by resolution: none resolved, then all
        assert drafted[category]["champion_resolved"] == 0.0 and drafted[category]["best_resolved"] == 1.0
    # Clusters of one category draft the same prompt: one candidate covers them all, and each says so.
    kept = [o for o in out["outcomes"] if o["kept"]]
    assert len(kept) >= 4 and all(o["status"] == "candidate" and o["candidates"] for o in kept), kept
    (winner,) = [c for c in out["candidates"] if c["decision"] == "pending_approval"]
    assert winner["kind"] == "prompt" and winner["ci_low"] > 0
    assert every(winner["category_deltas"][c] == 1.0 for c in ("format", "tone", "off_topic"))
    assert winner["category_deltas"]["general"] == 0.0  # nothing that worked broke
    template = cli("prompt", "show", "--version", winner["version"], "--json")["template"]
    assert template.startswith(outside_product.CHAMPION)
    assert every(p in template.lower() for p in ("only valid json", "apologize", "politely decline"))
    print(json.dumps({c["cluster_id"]: c["drafting"]["outcome"] for c in out["clusters"] if c.get("drafting")}))
