"""The prompt improver and the evaluation runner against the simulator, plus integrity checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel.config import ImproveSettings, load_settings
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import evaluate
from flywheel.improvers.prompt import FailingExample, integrity_problems, propose
from flywheel.improvers.screening_step import answer_queries, judge_resolutions
from flywheel.llm import make_client
from flywheel.loop.evaluate import answer_factory
from flywheel.runtime import runtime_for
from flywheel.sim.rules import correct_answer, match_intent
from flywheel.sim.server import SimOptions, Simulator
from flywheel.sim.world import INITIAL_PROMPT
from nonempty import every

S = ImproveSettings()


def test_integrity_checks() -> None:
    champion = "You help customers of {{product}}. Be concise."
    ok = champion + " Apologize to frustrated customers."
    assert integrity_problems(ok, champion, [], S) == []
    assert "identical to the champion" in integrity_problems(champion, champion, [], S)
    assert any(
        "drops template variables ['product']" in p
        for p in integrity_problems("You help customers. Apologize.", champion, [], S)
    )
    assert any("adds unknown" in p for p in integrity_problems(ok + " {{tone}}", champion, [], S))
    assert any("over the budget" in p for p in integrity_problems(champion + " x" * 800, champion, [], S))
    golden_input = "How much would 5 Team seats cost per year?"
    copied = champion + " For example: how much would 5 Team seats cost per year? Say $480."
    assert any("verbatim" in p for p in integrity_problems(copied, champion, [golden_input], S))
    # Words the champion already had do not count as copying.
    assert integrity_problems(ok, champion, ["You help customers of {{product}}. Be concise. Thanks"], S) == []


def _examples(queries: list[str], *, corrected: bool) -> list[FailingExample]:
    out = []
    for q in queries:
        intent = match_intent(q)
        out.append(
            FailingExample(
                query=q,
                output="Sign out of the desktop app, sign back in, and sync will restart.",
                signal="thumbs_down",
                reason="tone",
                comment="felt dismissive",
                better=correct_answer(intent, intent.slots(q)) if corrected else None,
            )
        )
    return out


ANGRY = [
    "Your app keeps failing to sync, this is ridiculous! What do I do?",
    "I'm so frustrated, my files won't sync again. How do I fix it?",
]


def _propose(sim: Simulator, examples: list[FailingExample], settings: ImproveSettings = S):
    config = load_settings(openai_base_url=sim.base_url)
    return propose(
        cluster_id="tone-x",
        category="tone",
        champion=INITIAL_PROMPT,
        examples=examples,
        client=make_client(config),
        model="gpt-4o",
        run_queries=lambda t, qs: answer_queries(config, t, qs),
        judge=lambda exs, outs: judge_resolutions(config, runtime_for(config).state, exs, outs),
        protected=[],
        settings=settings,
    )


@pytest.mark.parametrize("corrected", [False, True])
def test_a_champion_that_rewords_does_not_hide_a_fix(corrected: bool) -> None:
    """The product model rewords every answer, so the champion's fresh answers all differ from the
    logged ones. Judged by resolution, the champion still resolves none of the complaints and the
    draft that adds the missing instruction resolves them (by difference, the champion scored 1.0)."""
    with Simulator(options=SimOptions(reword=True, seed=3)) as sim:
        examples = _examples(ANGRY, corrected=corrected)
        result = _propose(sim, examples)
        assert sim.counts()["chat.resolution"] > 0
        fresh = answer_queries(load_settings(openai_base_url=sim.base_url), INITIAL_PROMPT, ANGRY)
    assert every(" ".join(f.split()) != " ".join(e.output.split()) for f, e in zip(fresh, examples, strict=True))
    assert result.champion_screening == 0.0 and result.champion_resolved == [False, False]
    assert result.critique and result.rounds == 1 and result.rollouts == 2 * (1 + 3)  # target met in round 1
    kept = result.drafts[result.kept[0]]
    assert "apologize" in kept.template.lower() and kept.screening == 1.0
    vague = [d for d in result.drafts if "apologize" not in d.template.lower()]
    assert vague and all(d.screening == 0.0 for d in vague)
    assert every("sorry" in r.lower() or "apolog" in r.lower() for r in kept.rationales)


def test_a_drafting_model_in_the_wild_costs_rounds_not_the_cluster() -> None:
    """Fenced, prose-wrapped, truncated and refused replies, a json_schema the endpoint rejects: the
    unusable ones are recorded as problems, later rounds draft again, and the fix is still found."""
    found, problems = 0, []
    for seed in range(10):
        with Simulator(options=SimOptions(reword=True, seed=seed, drafting="wild", reject_json_schema=True)) as sim:
            result = _propose(sim, _examples(ANGRY, corrected=False), S.model_copy(update={"rounds": 4}))
        assert result.rounds >= 1 and result.rollouts <= S.max_rollouts
        found += bool(result.kept) and "apologize" in result.drafts[result.kept[0]].template.lower()
        assert all(p.startswith("round ") for p in result.problems)  # a seed may have none: fine
        problems += result.problems + [p for d in result.drafts for p in d.problems]
    assert found >= 9, found  # 4 rounds of a drafting model that is clean about a third of the time
    assert problems, "the wild drafting model never answered anything unusable"


def _golden(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_judge_scorer_and_a_users_own_pipeline(simulator, tmp_path: Path) -> None:
    golden = load_golden(
        _golden(
            tmp_path,
            [
                {
                    "id": "a",
                    "input": "How do I reset my password?",
                    "category": "general",
                    "scorer": "judge",
                    "expected": "Go to Settings > Security and choose Reset password; we email you a reset link.",
                },
                {
                    "id": "b",
                    "input": "Write a short poem about autumn leaves.",
                    "category": "off_topic",
                    "scorer": "judge",
                    "expected": "I can only help with questions about Nimbus Drive.",
                },
            ],
        )
    )
    settings = load_settings(openai_base_url=simulator.base_url)
    variant = Variant(label="c", prompt_template=INITIAL_PROMPT, model="gpt-4o-mini")
    result = evaluate(variant, golden, answer_factory(settings), default_scorer="contains", concurrency=4)
    by_id = {r.id: r for r in result.rows}
    assert by_id["a"].score == 1.0 and by_id["b"].score < 0.5
    assert "expected answer" in by_id["b"].rationale and result.errors == 0

    hooked = load_settings(openai_base_url=simulator.base_url, eval={"pipeline": "pipeline_hooks:shouting"})
    golden2 = load_golden(
        _golden(tmp_path, [{"id": "x", "input": "hello", "expected": "YOU HELLO", "category": "c", "scorer": "exact"}])
    )
    result = evaluate(
        variant.model_copy(update={"prompt_template": "you are nice"}),
        golden2,
        answer_factory(hooked),
        default_scorer="exact",
        concurrency=2,
    )
    assert [r.score for r in result.rows] == [1.0]


def test_items_that_keep_failing_are_errors_not_scores(tmp_path: Path) -> None:
    from flywheel.sim.server import SimOptions, Simulator

    golden = load_golden(
        _golden(
            tmp_path,
            [{"id": "a", "input": "How do I reset my password?", "expected": "Reset password", "category": "c"}],
        )
    )
    with Simulator(options=SimOptions(fail_status=429)) as sim:
        settings = load_settings(openai_base_url=sim.base_url, llm_max_retries=1)
        result = evaluate(
            Variant(label="c", prompt_template=INITIAL_PROMPT, model="m"),
            golden,
            answer_factory(settings),
            default_scorer="contains",
            concurrency=1,
        )
        assert sim.counts()["failed_429"] == 2
    (row,) = result.rows
    assert row.score is None and "429" in (row.error or "") and result.scores == {} and result.errors == 1


@pytest.mark.parametrize("spec", ["nomodule", "no_such_module:fn", "pipeline_hooks:missing"])
def test_a_bad_pipeline_hook_is_a_usage_error(spec: str) -> None:
    from flywheel.errors import UsageError
    from flywheel.evals.pipeline import load_user_pipeline

    with pytest.raises(UsageError, match=r"eval\.pipeline"):
        load_user_pipeline(spec)
