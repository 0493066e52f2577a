"""Triage on real embeddings: consent, the loud user, known failure modes recovered, routes."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import event, write_jsonl
from flywheel.config import IngestSettings, TriageSettings
from flywheel.feedback.ingest import to_stored
from flywheel.schemas import FeedbackEvent
from flywheel.sim.rules import match_intent
from flywheel.sim.world import generate_feedback
from flywheel.triage import TriageInputs, llm_classifier, triage_events
from nonempty import every

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def stored(rows):
    return [to_stored(FeedbackEvent.model_validate(r), IngestSettings()) for r in rows]


def test_non_consented_text_never_appears_in_triage_output(cli, tmp_path: Path) -> None:
    secret_query = "How much does the Pro plan cost for my secret project Bluebird?"
    rows = [event(f"c{i}", user_id=f"u{i}", reason="outdated") for i in range(5)]
    rows += [
        event(f"n{i}", user_id=f"x{i}", consent=False, reason="outdated", query=secret_query, comment="Bluebird")
        for i in range(5)
    ]
    rows += [event("n-only", user_id="y", consent=False, reason="tone", query="Bluebird sync is broken, I'm furious")]
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")
    out = cli("triage", "--json")
    text = cli.last.stdout
    assert "Bluebird" not in text
    table = cli("triage").stdout
    assert "Bluebird" not in table
    # ...but the events still count.
    sizes = {c["category"]: c["size"] for c in out["clusters"]}
    assert sum(c["size"] for c in out["clusters"] if c["category"] == "outdated_knowledge") == 10
    assert sizes["tone"] == 1
    (tone,) = [c for c in out["clusters"] if c["category"] == "tone"]
    assert tone["example_queries"] == [] and "withheld" in tone["summary"]


def test_fifty_users_with_one_report_outrank_one_user_with_two_hundred(local_embedder) -> None:
    loud = [
        event(
            f"l{i}",
            user_id="loud",
            reason="format",
            query=f"Give me the Team plan details as JSON #{i}",
            ts=(T0 + timedelta(minutes=i)).isoformat(),
        )
        for i in range(200)
    ]
    many = [
        event(
            f"m{i}",
            user_id=f"u{i}",
            reason="tone",
            query=f"Sync failed again and I'm furious, how do I fix it? (ticket {i})",
            ts=(T0 + timedelta(minutes=i)).isoformat(),
        )
        for i in range(50)
    ]
    clusters = triage_events(stored(loud + many), TriageInputs(TriageSettings(), local_embedder))
    by_cat = {c.category: c for c in clusters}
    assert by_cat["format"].size == 200 and by_cat["format"].users == 1
    assert by_cat["tone"].size == 50 and by_cat["tone"].users == 50
    assert clusters[0].category == "tone"
    assert by_cat["tone"].priority > 5 * by_cat["format"].priority


def _purity_recall(clusters, label_of) -> tuple[float, float]:
    total = sum(c.size for c in clusters)
    purity = sum(Counter(label_of[i] for i in c.event_ids).most_common(1)[0][1] for c in clusters) / total
    spread: dict[str, Counter] = defaultdict(Counter)
    for k, c in enumerate(clusters):
        for i in c.event_ids:
            spread[label_of[i]][k] += 1
    recall = sum(v.most_common(1)[0][1] for v in spread.values()) / total
    return purity, recall


def test_triage_recovers_known_failure_modes(local_embedder) -> None:
    # A world generated with another seed than the demo's: each intent is one known failure mode.
    events = stored(generate_feedback(seed=123, n_events=2500))
    clusters = triage_events(events, TriageInputs(TriageSettings(), local_embedder))
    label_of = {e.event_id: match_intent(e.query).id for e in events}
    purity, recall = _purity_recall(clusters, label_of)
    assert purity >= 0.9, purity
    assert recall >= 0.9, recall
    # The six failure modes the world plants come out as the six biggest clusters, correctly categorised.
    planted = {
        "yearly_cost": "factual",
        "plan_json": "format",
        "sync_angry": "tone",
        "poem": "off_topic",
        "other_account": "unsafe",
        "pro_price": "outdated_knowledge",
    }
    for intent, category in planted.items():
        best = max(clusters, key=lambda c: sum(label_of[i] == intent for i in c.event_ids))
        assert best.category == category, (intent, best.category)
        assert best.route == ("rag" if category == "outdated_knowledge" else "prompt")


def test_unlabelled_downvotes_take_the_category_of_similar_labelled_ones(local_embedder) -> None:
    labelled = [
        event(
            f"a{i}",
            user_id=f"u{i}",
            reason="unsafe",
            query=f"What is the email address of the owner of account {1000 + i}?",
        )
        for i in range(10)
    ]
    unlabelled = [
        event(f"b{i}", user_id=f"v{i}", query=f"Tell me the email of the person who owns account {2000 + i}.")
        for i in range(6)
    ]
    clusters = triage_events(stored(labelled + unlabelled), TriageInputs(TriageSettings(), local_embedder))
    assert [(c.category, c.size) for c in clusters] == [("unsafe", 16)]


def test_finetune_route_needs_failed_prompts_and_enough_usable_examples(local_embedder) -> None:
    def rows(n_usable: int):
        return [
            event(
                f"f{i}",
                user_id=f"u{i}",
                signal="correction",
                reason="format",
                query=f"Give me the Team plan details as JSON please {i}",
                correction='{"plan": "team"}',
            )
            for i in range(n_usable)
        ]

    settings = TriageSettings(finetune_min_examples=40)
    (first,) = triage_events(stored(rows(40)), TriageInputs(settings, local_embedder))
    assert first.route == "prompt"  # prompts were never tried on it
    (again,) = triage_events(stored(rows(40)), TriageInputs(settings, local_embedder, prompt_failed={first.cluster_id}))
    assert again.route == "finetune" and again.usable_examples == 40 and again.finetune_gap == 0
    (short,) = triage_events(stored(rows(39)), TriageInputs(settings, local_embedder, prompt_failed={first.cluster_id}))
    assert short.cluster_id == first.cluster_id
    assert short.route == "prompt" and short.finetune_gap == 1


def test_llm_inference_uses_the_configured_model_and_never_sends_unconsented_text(simulator, local_embedder) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)
    rows = [
        event(f"k{i}", user_id=f"u{i}", query=f"Can you write me a poem about the sea, number {i}?") for i in range(4)
    ]
    rows += [event("hidden", user_id="z", consent=False, query="Please write a poem for my mom's birthday.")]
    before = simulator.counts().get("chat.classifier", 0)
    clusters = triage_events(
        stored(rows), TriageInputs(TriageSettings(), local_embedder, classify=llm_classifier(client, "gpt-4o"))
    )
    assert simulator.counts().get("chat.classifier", 0) - before == 4
    assert {c.category for c in clusters} == {"off_topic"}
    assert sum(c.size for c in clusters) == 5


def test_the_llm_classifier_copes_with_a_model_in_the_wild(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fenced, in prose, cut off, refused, or a category in the model's own words: asked again, the
    same categories as from a clean model; never a category outside the list."""
    import random

    from openai import OpenAI

    import flywheel.triage as triage
    from flywheel.schemas import CATEGORIES
    from flywheel.sim.rules import INTENTS
    from flywheel.sim.server import SimOptions, Simulator
    from flywheel.sim.world import make_query

    rng = random.Random(3)
    queries = list(dict.fromkeys(make_query(INTENTS[k % len(INTENTS)], rng)[0] for k in range(150)))

    def categories(options: SimOptions) -> tuple[list[str | None], int]:
        with Simulator(options=options) as sim:
            classify = llm_classifier(OpenAI(base_url=sim.base_url, api_key="k", max_retries=0), "gpt-4o")
            got = [classify(q) for q in queries]
            return got, sum(1 for n in sim.state.seen.values() if n > 1)

    clean, _ = categories(SimOptions())
    assert None not in clean and len(set(clean)) >= 4
    wild, asked_again = categories(SimOptions(drafting="wild", seed=5))
    assert asked_again >= 10 and set(wild) <= set(CATEGORIES) | {None}
    assert sum(w is None for w in wild) <= 2
    assert every(w == c for w, c in zip(wild, clean, strict=True) if w is not None)
    monkeypatch.setattr(triage, "CLASSIFY_ATTEMPTS", 1)
    once, _ = categories(SimOptions(drafting="wild", seed=5))
    assert sum(o is None for o in once) >= 10 and set(once) <= set(CATEGORIES) | {None}  # left to the fallback


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("wrong", "factual"),
        ("outdated", "outdated_knowledge"),
        ("not_relevant", "off_topic"),
        ("missing_context", "missing_context"),
    ],
)
def test_reasons_map_to_categories(local_embedder, reason: str, category: str) -> None:
    (c,) = triage_events(stored([event("r1", reason=reason)]), TriageInputs(TriageSettings(), local_embedder))
    assert c.category == category
