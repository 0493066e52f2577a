"""`flywheel golden propose`: items from consented feedback of open clusters and from the drafting
model; never text without consent, never a PII placeholder, never a near-duplicate; and a product
with no golden set at all reaches a reviewed first version from its feedback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Cli
from flywheel.evals.golden import GoldenItem, load_golden
from flywheel.proposals import PLACEHOLDER
from golden_feedback import SECRET_MARKERS, TEAM_JSON, seed_feedback
from nonempty import every


@pytest.fixture
def no_golden(monkeypatch: pytest.MonkeyPatch) -> Path:
    path = Path("product/golden.jsonl")  # not there yet: a cold start
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    monkeypatch.setenv("FLYWHEEL_USER", "tester")
    return path


def _by_input(out: dict) -> dict[str, dict]:
    return {p["input"]: p for p in out["proposals"]}


def test_proposals_come_from_consented_corrections_edits_and_expert_reviews_with_provenance(
    cli: Cli, no_golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MAX_PER_CLUSTER", "10")
    seed_feedback(cli)
    out = cli("golden", "propose", "--json")
    props = _by_input(out)
    assert out["golden_version"] is None and out["open_clusters"] == 3
    # A correction, an edit, an expert's correction (JSON: the json scorer), an expert's approval of an output.
    sync = props["Sync is broken again and I'm furious. How do I fix it?"]
    assert sync["source"] == {"kind": "correction", "event_ids": ["t1"], "cluster_id": sync["source"]["cluster_id"]}
    assert sync["category"] == "tone" and sync["scorer"] == "judge" and sync["source"]["cluster_id"].startswith("tone-")
    assert props["Third sync failure today, I'm so frustrated with this app. Help!"]["source"]["kind"] == "edit"
    expert = props["Send me the Team plan as JSON"]
    assert (expert["source"]["kind"], expert["scorer"], expert["expected"]) == ("expert_review", "json", TEAM_JSON)
    approved = props["Can I get the Team plan price and storage in JSON format?"]
    assert (
        approved["source"]["event_ids"] == ["f3"] and approved["source"]["cluster_id"] == expert["source"]["cluster_id"]
    )
    # Thumbs without a correction, and happy users, give no item.
    assert not any(p["source"]["event_ids"][0] in ("t7", "o3", "f2", "p1") for p in out["proposals"])
    # Each is valid as a golden item, and pending for review.
    assert every(
        GoldenItem(id=p["proposal_id"], **{k: p[k] for k in ("input", "expected", "category", "scorer")})
        for p in out["proposals"]
    )
    review = cli("golden", "review", "--json")
    assert {p["proposal_id"] for p in review["proposals"]} == {p["proposal_id"] for p in out["proposals"]}
    assert every(p["status"] == "pending" for p in review["proposals"])


def test_no_proposal_holds_text_without_consent_or_a_pii_placeholder(
    cli: Cli, no_golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MAX_PER_CLUSTER", "10")
    seed_feedback(cli)
    out = cli("golden", "propose", "--json")
    text = cli.last.stdout
    cli("golden", "review", "--json")
    text += cli.last.stdout
    assert out["proposals"] and not any(marker in text for marker in SECRET_MARKERS)
    assert out["dropped"]["no_consent"] == 2  # counted, never read
    # The e-mail in a query and the phone number in a correction were scrubbed at ingest: both left out.
    assert out["dropped"]["pii"] == 2
    assert not any(PLACEHOLDER.search(p["input"] + p["expected"]) for p in out["proposals"])
    assert not any("jane" in p["input"] or "415" in p["expected"] for p in out["proposals"])
    cli("golden", "accept", *[p["proposal_id"] for p in out["proposals"]], "--json")
    written = no_golden.read_text()
    assert not any(marker in written for marker in SECRET_MARKERS) and not PLACEHOLDER.search(written)


def test_near_duplicates_of_golden_items_and_of_each_other_are_dropped(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MAX_PER_CLUSTER", "10")
    golden = Path("golden.jsonl")
    golden.write_text(
        json.dumps(
            {
                "id": "g-pro",
                "input": "How much does the Pro plan cost",
                "expected": "$12",
                "category": "outdated_knowledge",
            }
        )
        + "\n"
    )
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(golden))
    seed_feedback(cli)
    out = cli("golden", "propose", "--json")
    inputs = [p["input"] for p in out["proposals"]]
    assert out["golden_items"] == 1 and out["dropped"]["duplicate_of_golden"] == 1
    assert "How much does the Pro plan cost?" not in inputs  # the golden item, with a question mark
    # "Hi! <the same complaint> Thanks." repeats a proposal of the same run: one of the two is kept.
    assert "Sync is broken again and I'm furious. How do I fix it?" in inputs
    assert not any(i.startswith("Hi! Sync is broken") for i in inputs) and out["dropped"]["duplicate"] == 1
    # Proposing again finds every item known (pending): nothing new, nothing twice.
    again = cli("golden", "propose", "--json")
    assert again["proposals"] == [] and again["dropped"]["duplicate"] == len(inputs) + 1
    assert len(cli("golden", "review", "--json")["proposals"]) == len(inputs)


def test_a_cluster_gives_at_most_its_share(cli: Cli, no_golden: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MAX_PER_CLUSTER", "2")
    seed_feedback(cli)
    out = cli("golden", "propose", "--json")
    tone = [p for p in out["proposals"] if p["category"] == "tone"]
    # Corrections before edits, oldest first: t1 and t2; the correction t6 and the edit t3 are beyond the share.
    assert sorted(p["source"]["event_ids"][0] for p in tone) == ["t1", "t2"]
    assert out["dropped"]["per_cluster"] == 2


def test_a_product_without_a_golden_set_reaches_a_reviewed_first_version(
    cli: Cli, no_golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before anything: the person is told where a golden set would be and how to start one.
    empty = cli("golden", "coverage").stderr
    assert f"no golden set yet at {no_golden}" in empty and "flywheel golden propose" in empty
    assert "nothing to cover yet" in empty
    seed_feedback(cli)
    assert cli("golden", "coverage", "--json")["categories"][0]["golden_items"] == 0
    uncovered = cli("golden", "coverage")
    assert "no golden set yet" in uncovered.stderr and "uncovered clusters" in uncovered.stdout
    proposals = cli("golden", "propose", "--json")["proposals"]
    keep, drop = proposals[:-1], proposals[-1]
    cli("golden", "reject", drop["proposal_id"], "--reason", "the answer is too long", "--by", "ana", "--json")
    report = cli("golden", "accept", *[p["proposal_id"] for p in keep], "--by", "ana", "--json")
    assert report["previous_version"] is None and report["items"] == len(keep) and report["accepted_by"] == "ana"
    golden = load_golden(no_golden)
    assert golden.version == report["golden_version"] and len(golden.version) == 64
    assert {i.id for i in golden.items} == {p["proposal_id"] for p in keep}
    assert cli("golden", "review", "--json")["proposals"] == []
    # `flywheel validate` finds nothing wrong with it (the policy's size set to what a first version has).
    monkeypatch.setenv("FLYWHEEL_POLICY__MIN_GOLDEN_SIZE", str(len(keep)))
    Path("prompt.txt").write_text("You are the support assistant of Nimbus Drive.\n")
    checked = cli("validate", "--prompt", "prompt.txt", "--offline", "--json")
    assert checked["ok"] and not [p for p in checked["problems"] if p["check"] == "golden"]
    # The rejected one is never proposed again; the accepted ones are golden items now.
    again = cli("golden", "propose", "--json")
    assert again["proposals"] == [] and again["golden_items"] == len(keep)


def test_synthetic_items_are_drafted_for_categories_below_the_minimum(
    cli: Cli, no_golden: Path, sim_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MIN_PER_CATEGORY", "5")
    seed_feedback(cli)
    out = cli("golden", "propose", "--synthetic", "6", "--json")
    from_feedback = {p["category"]: 0 for p in out["proposals"]}
    synthetic = [p for p in out["proposals"] if p["source"]["kind"] == "synthetic"]
    # tone has 3 from feedback (2 short), format 2 (3 short), outdated_knowledge 1 (4 short): 6 go to the largest gaps.
    assert out["synthetic"] == {"outdated_knowledge": 3, "format": 2, "tone": 1}, out["synthetic"]
    assert synthetic and set(from_feedback) >= {p["category"] for p in synthetic}
    for p in synthetic:
        assert p["source"]["model"] == "gpt-4o" and p["source"]["event_ids"] == []
        item = GoldenItem(
            id=p["proposal_id"], input=p["input"], expected=p["expected"], category=p["category"], scorer=p["scorer"]
        )
        assert item.scorer in ("contains", "json", "regex")  # the world's expectations, checked by the scorer
    assert {p["category"] for p in synthetic} == {"outdated_knowledge", "format", "tone"}
    # Without an endpoint, drafting is a usage error that says how to set one.
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MIN_PER_CATEGORY", "50")
    result = cli("golden", "propose", "--synthetic", "2", expect=2)
    assert "OPENAI_BASE_URL" in result.stderr


def test_drafting_survives_a_model_in_the_wild_and_sends_only_consented_text(
    cli: Cli, no_golden: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fenced and prose-wrapped JSON is read; truncated, refused or lossy answers cost items, never the run."""
    from flywheel.config import load_settings
    from flywheel.llm import make_client
    from flywheel.loop.golden.synthetic import draft
    from flywheel.sim.server import SimOptions, Simulator

    seed_feedback(cli)
    items = problems = 0
    with Simulator(options=SimOptions(drafting="wild", seed=3)) as sim:
        client = make_client(load_settings(), base_url=sim.base_url)
        for k in range(12):
            category = ("tone", "format", "outdated_knowledge", "unsafe")[k % 4]
            got = draft(client, "gpt-4o", category, 2 + k % 3, [f"example question {k}"], [], batch=10)
            items += len(got.items)
            problems += len(got.notes) + got.invalid
            assert all(i.input and i.expected for i in got.items)  # a wild round may keep none; `items` sums them
        shapes_seen = len(sim.state.seen)
        # Through the command, against the same wild model: the drafting requests carry consented
        # example queries, never the text of users who did not consent.
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        cli("golden", "propose", "--synthetic", "8", "--json")
        sent = " ".join(sim.state.seen)
    assert items > 0 and problems > 0 and shapes_seen >= 12
    assert "Send me the Team plan as JSON" in sent  # consented examples go to the drafting model
    assert not any(marker in sent for marker in SECRET_MARKERS)
