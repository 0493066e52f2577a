"""The simulator's world variants (bench_efficacy runs the loop on them) have the shape they claim,
and the default world, which the demo and the tests use, is byte for byte what it was."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flywheel.clustering import cluster
from flywheel.config import TriageSettings
from flywheel.sim.roles import PLAYBOOK
from flywheel.sim.rules import INTENTS, INTENTS_BY_ID, correct_answer, is_correct, match_intent, product_answer
from flywheel.sim.world import (
    FLOOD_EVENTS,
    FLOOD_INTENT,
    FLOOD_USER,
    FOREIGN_TEMPLATES,
    INITIAL_PROMPT,
    KNOWLEDGE_DOCS,
    LANGUAGES,
    SILENT_INTENTS,
    VARIANTS,
    YEARLY_FAMILIES,
    context_block,
    foreign_query,
    is_negative,
    write_world,
)
from nonempty import every

# sha256 over the default world's files (relative path, NUL, bytes, NUL; sorted by path), computed
# with the code before world variants existed.
DEFAULT_WORLD_SHA256 = "00b382e8539dfa601cef711d139bf01624848afb81544eaac90fe1251682e47a"


def world_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def events_of(directory: Path) -> list[dict[str, Any]]:
    """The world's valid events (the malformed lines left out)."""
    out = []
    for line in (directory / "feedback.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "output" in doc and doc["event_id"].startswith("ev-"):
            out.append(doc)
    return out


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = {}
    for variant in VARIANTS:
        directory = tmp_path_factory.mktemp(variant)
        write_world(directory, variant=variant)
        made[variant] = directory
    return made


def test_the_default_world_is_unchanged(worlds: dict[str, Path], tmp_path: Path) -> None:
    assert world_hash(worlds["default"]) == DEFAULT_WORLD_SHA256
    write_world(tmp_path / "w")
    assert world_hash(tmp_path / "w") == DEFAULT_WORLD_SHA256


def test_variants_are_seeded_and_differ_from_the_default(worlds: dict[str, Path], tmp_path: Path) -> None:
    write_world(tmp_path / "again", variant="multilingual")
    assert world_hash(tmp_path / "again") == world_hash(worlds["multilingual"])
    assert len({world_hash(d) for d in worlds.values()}) == len(VARIANTS)
    assert "# World variant: flood." in (worlds["flood"] / "flywheel.toml").read_text()


def test_an_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="identical"):
        write_world(tmp_path, variant="noisy")


def test_identical_splits_one_mode_over_clusters_that_one_instruction_fixes(
    worlds: dict[str, Path], local_embedder
) -> None:
    events = events_of(worlds["identical"])
    yearly = [
        e["query"] for e in events if is_negative(e) and (i := match_intent(e["query"])) and i.id == "yearly_cost"
    ]
    assert len(yearly) > 100
    counts = Counter(yearly)
    uniq = list(counts)
    s = TriageSettings()
    labels = cluster(
        local_embedder.embed(uniq),
        np.array([counts[q] for q in uniq]),
        assign_threshold=s.cluster_threshold,
        merge_threshold=s.merge_threshold,
    )
    sizes = Counter(labels.tolist())
    big = [n for n in sizes.values() if n >= 10]
    assert 2 <= len(big) <= 4, sizes
    # The one instruction the drafting model writes for factual clusters fixes every phrasing ...
    instruction = PLAYBOOK["factual"][1]
    system = INITIAL_PROMPT + " " + instruction + context_block(KNOWLEDGE_DOCS, ("pricing.md",))
    intent = INTENTS_BY_ID["yearly_cost"]
    for query in uniq:
        assert is_correct(intent, intent.slots(query), product_answer(system, query)), query
    # ... and does not fix the error-code complaints, which are factual too (reason "wrong").
    codes = [e for e in events if e["event_id"].startswith("ev-err-")]
    assert codes and all(e.get("reason") == "wrong" for e in codes)
    assert every(
        "temporary server problem" in product_answer(INITIAL_PROMPT + " " + instruction, e["query"]) for e in codes[:50]
    )
    families = {
        name: sum(1 for q in yearly if any(_pattern(t).search(q) for t in ts)) for name, ts in YEARLY_FAMILIES.items()
    }
    assert every(n >= 10 for n in families.values()), families


def _pattern(template: str) -> re.Pattern[str]:
    """A template with its slots as wildcards, found anywhere in a query (case-insensitive)."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile(r"\w+".join(re.escape(p) for p in parts), re.I)


def test_no_reason_leaves_most_negatives_without_reason_or_comment(worlds: dict[str, Path]) -> None:
    negatives = [e for e in events_of(worlds["no_reason"]) if is_negative(e)]
    silent = [e for e in negatives if "reason" not in e and "comment" not in e]
    share = len(silent) / len(negatives)
    assert 0.78 <= share <= 0.95, share
    kinds = Counter(e["signal"] for e in silent)
    assert kinds["thumbs_down"] > kinds["correction"] > 50 and kinds["edit"] > 20, kinds
    on_silent = [e for e in negatives if match_intent(e["query"]).id in SILENT_INTENTS]
    assert len(on_silent) > 100 and all("reason" not in e and "comment" not in e for e in on_silent)
    default = [e for e in events_of(worlds["default"]) if is_negative(e)]
    assert sum(1 for e in default if "reason" not in e and "comment" not in e) / len(default) < 0.3


def test_multilingual_asks_in_three_languages_the_product_understands(worlds: dict[str, Path]) -> None:
    events = events_of(worlds["multilingual"])
    patterns = {
        lang: [_pattern(t) for by_lang in FOREIGN_TEMPLATES.values() for t in by_lang[lang]] for lang in LANGUAGES
    }
    per_lang = Counter(
        next((lang for lang, ps in patterns.items() if any(p.search(e["query"]) for p in ps)), "en") for e in events
    )
    assert per_lang["en"] > len(events) / 2, per_lang
    assert every(per_lang[lang] >= 0.05 * len(events) for lang in LANGUAGES), per_lang
    assert every(match_intent(e["query"]) is not None for e in events), "every question is understood"
    golden = [json.loads(line) for line in (worlds["multilingual"] / "golden.jsonl").read_text().splitlines()]
    foreign = [g for g in golden if g["tags"][-1] in LANGUAGES]
    assert {g["tags"][-1] for g in foreign} == set(LANGUAGES) and len(foreign) >= 60
    for g in foreign:
        intent = match_intent(g["input"])
        assert intent is not None and intent.id == g["id"].split("-")[1] == g["tags"][0], g


@pytest.mark.parametrize("intent_id", sorted(FOREIGN_TEMPLATES))
def test_each_foreign_template_matches_its_intent_with_its_slots(intent_id: str) -> None:
    intent = INTENTS_BY_ID[intent_id]
    for lang, templates in FOREIGN_TEMPLATES[intent_id].items():
        for template in templates:
            for seed in range(3):
                query, slots = foreign_query(intent, lang, random.Random(seed), template)
                found = match_intent(query)
                assert found is not None and found.id == intent_id, query
                assert is_correct(intent, slots, correct_answer(intent, slots)), (query, slots)


def test_english_templates_keep_their_intents() -> None:
    for intent in INTENTS:
        for template in intent.templates:
            query = template.format(n=7, account=1234, plan="Team", code="E101")
            assert match_intent(query) is intent, query


def test_flood_is_one_user_downvoting_right_answers(worlds: dict[str, Path]) -> None:
    events = events_of(worlds["flood"])
    flood = [e for e in events if e.get("user_id") == FLOOD_USER]
    assert len(flood) == FLOOD_EVENTS >= 300
    intent = INTENTS_BY_ID[FLOOD_INTENT]
    for e in flood:
        assert is_negative(e) and e["reason"] == "wrong"
        assert match_intent(e["query"]) is intent and is_correct(intent, intent.slots(e["query"]), e["output"])
    others = Counter(e.get("user_id") for e in events if e.get("user_id") != FLOOD_USER)
    assert others.most_common(1)[0][1] <= 200  # the default world's loud user is the next loudest
