"""Golden sets, scorers, statistics and the policy: pure logic with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flywheel.config import PolicySettings
from flywheel.errors import UsageError
from flywheel.evals.golden import load_golden
from flywheel.evals.policy import judge_candidate
from flywheel.evals.scorers import contains, exact, json_match, parse_judgement, regex
from flywheel.evals.stats import compare, paired_bootstrap_ci
from flywheel.sim.world import generate_golden

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_golden_set_is_the_demo_worlds_and_valid() -> None:
    golden = load_golden(ROOT / "evals" / "golden" / "default.jsonl")
    assert [i.model_dump(exclude_defaults=True) for i in golden.items] == [
        {k: v for k, v in g.items() if v} for g in generate_golden()
    ]
    assert len(golden) >= 200 and len(golden.categories) >= 5


def test_golden_version_is_content_not_layout(tmp_path: Path) -> None:
    rows = [{"id": f"g{i}", "input": f"q{i}", "expected": "a", "category": "c"} for i in range(5)]
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b.write_text("\n".join(json.dumps(r, indent=None, separators=(", ", ": ")) for r in reversed(rows)) + "\n\n")
    rows[2]["expected"] = "b"
    c.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_golden(a).version == load_golden(b).version != load_golden(c).version


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"id": "x", "input": "q"', "not valid JSON"),
        ('{"id": "x", "input": "q", "category": "c"}', "expected"),
        ('{"id": "g0", "input": "q", "expected": "a", "category": "c"}', "duplicate id"),
        ('{"id": "x", "input": "q", "expected": "a", "category": "c", "scorer": "vibes"}', "scorer"),
    ],
)
def test_a_broken_golden_line_names_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "golden.jsonl"
    good = json.dumps({"id": "g0", "input": "q", "expected": "a", "category": "c"})
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(UsageError, match=rf"golden.jsonl:3: .*{needle}"):
        load_golden(path)


def test_scorers() -> None:
    assert exact("  yes \n", "yes").value == 1 and exact("yes!", "yes").value == 0
    assert contains("The Pro plan costs $12 per month.", "$12 PER month").value == 1
    assert contains("It costs $10.", "$12").value == 0
    assert regex("I'm sorry. Sign back in.", r"(?is)sorry.*sign back in").value == 1
    bad = regex("x", "([")
    assert bad.value == 0 and "invalid regular expression" in bad.rationale
    want = '{"plan": "team", "price": 8}'
    assert json_match('{"price": 8, "plan": "team", "extra": 1}', want).value == 1
    assert json_match('{"plan": "team", "price": 9}', want).value == 0
    assert "not valid JSON" in json_match("The Team plan costs $8", want).rationale
    assert json_match("[1, 2]", "").value == 1  # any valid JSON when nothing is expected
    assert parse_judgement('sure: {"score": 0.5, "rationale": "half"}').value == 0.5
    with pytest.raises(ValueError, match="no JSON object"):
        parse_judgement("I think it's fine")


def test_bootstrap_ci_on_constructed_data_with_known_answers() -> None:
    # A constant improvement has a degenerate interval at exactly that value.
    mean, low, high = paired_bootstrap_ci([0.6] * 50, [0.5] * 50)
    assert (round(mean, 6), round(low, 6), round(high, 6)) == (0.1, 0.1, 0.1)
    # 30 of 100 items fixed, none broken: delta 0.3, and the interval matches the binomial one
    # (0.3 +- 1.96 * sqrt(0.3 * 0.7 / 100) = [0.210, 0.390]) within bootstrap noise.
    cand = np.array([1.0] * 30 + [0.0] * 70)
    mean, low, high = paired_bootstrap_ci(cand, np.zeros(100), resamples=20000)
    assert mean == pytest.approx(0.3)
    assert low == pytest.approx(0.210, abs=0.015) and high == pytest.approx(0.390, abs=0.015)
    # As many items broken as fixed: the interval straddles zero.
    mean, low, high = paired_bootstrap_ci([1.0] * 20 + [0.0] * 20 + [1.0] * 60, [0.0] * 20 + [1.0] * 20 + [1.0] * 60)
    assert mean == 0 and low < 0 < high
    # Pairing matters: the same totals with item difficulty shared give a much tighter interval.
    rng = np.random.default_rng(3)
    base = rng.random(200)
    _, lo_p, hi_p = paired_bootstrap_ci(base + 0.05, base)
    assert hi_p - lo_p < 1e-9


def test_compare_gives_per_category_deltas() -> None:
    cats = {f"a{i}": "a" for i in range(10)} | {f"b{i}": "b" for i in range(10)}
    champion = dict.fromkeys(cats, 0.0)
    cand = {k: (1.0 if k.startswith("a") else 0.0) for k in cats}
    cmp_ = compare(cand, champion, cats, resamples=1000)
    assert cmp_.delta == 0.5 and cmp_.category_deltas == {"a": 1.0, "b": 0.0}
    assert cmp_.per_category == {"a": 1.0, "b": 0.0} and cmp_.n == 20


def test_policy_rules_each_can_fail() -> None:
    cats = {f"a{i}": "a" for i in range(40)} | {f"b{i}": "b" for i in range(40)}
    champion = dict.fromkeys(cats, 0.5)
    good = compare({k: 1.0 if k.startswith("a") else 0.5 for k in cats}, champion, cats, resamples=1000)
    policy = PolicySettings(min_golden_size=50)
    assert judge_candidate(good, 0, 80, policy).passed
    regress = compare({k: 1.0 if k.startswith("a") else 0.3 for k in cats}, champion, cats, resamples=1000)
    verdict = judge_candidate(regress, 0, 80, policy)
    assert not verdict.passed and "category 'b' regresses by 0.200" in verdict.text
    assert "errored" in judge_candidate(good, 1, 80, policy).text
    assert "only 80 golden items" in judge_candidate(good, 0, 80, PolicySettings(min_golden_size=100)).text
    flat = compare(champion, champion, cats, resamples=1000)
    text = judge_candidate(flat, 0, 80, policy).text
    assert "below the minimum" in text and "does not exclude zero" in text


def test_evaluation_batches_cover_each_variant_once_and_reassemble_in_order(tmp_path: Path) -> None:
    """What Dask runs: batches split the golden set per variant, share the concurrency, and come back
    in golden order whatever order they finish in; a missing batch is an error, never a short score."""
    from flywheel.evals.pipeline import Variant
    from flywheel.evals.runner import BatchRows, EvalRow, assemble, plan_batches

    rows = [{"id": f"g{i}", "input": f"q{i}", "expected": "a", "category": "c"} for i in range(10)]
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    golden = load_golden(path)
    variants = [Variant(label=name, prompt_template=name, model="m") for name in ("champion", "cand")]
    batches = plan_batches(variants, [1], len(golden.items), batch_items=4, concurrency=16, slots=8)
    assert [(b.variant_index, b.start, b.stop) for b in batches] == [(1, 0, 4), (1, 4, 8), (1, 8, 10)]
    assert {b.concurrency for b in batches} == {5}  # 16 // 3 batches, all at once: within the endpoint's limit
    # 20 batches on 2 worker threads: two run at once, each with half the limit
    assert {b.concurrency for b in plan_batches(variants, [0, 1], 10, batch_items=1, concurrency=16, slots=2)} == {8}
    assert {b.concurrency for b in plan_batches(variants, [0, 1], 10, batch_items=1, concurrency=4, slots=32)} == {1}

    def ran(b) -> BatchRows:  # type: ignore[no-untyped-def]
        return BatchRows(
            variant_index=b.variant_index,
            start=b.start,
            seconds=1.0 + b.start,
            rows=[
                EvalRow(
                    id=i.id,
                    category=i.category,
                    input=i.input,
                    expected=i.expected,
                    scorer="contains",
                    output="a",
                    score=float(n % 2),
                )
                for n, i in enumerate(golden.items[b.start : b.stop], b.start)
            ],
        )

    cached = [None, None]
    from flywheel.evals.runner import EvalResult

    cached[0] = EvalResult(variant=variants[0], golden_version=golden.version, rows=[], cached=True)
    parts = [ran(b) for b in reversed(batches)]
    champion, cand = assemble(variants, golden, cached, parts)
    assert champion.cached and [r.id for r in cand.rows] == [f"g{i}" for i in range(10)]
    assert cand.mean == 0.5 and cand.seconds == 9.0
    with pytest.raises(ValueError, match="do not cover the golden set"):
        assemble(variants, golden, cached, parts[1:])
    with pytest.raises(ValueError, match="no evaluation result for cand"):
        assemble(variants, golden, cached, [])
