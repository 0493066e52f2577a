"""The prompt improver and the evaluation runner against the simulator, plus integrity checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai import OpenAI

from evals.golden import load_golden
from evals.pipeline import Variant
from evals.runner import evaluate
from flywheel.config import ImproveSettings, load_settings
from flywheel.cycle import answer_factory, answer_queries
from flywheel.sim.rules import correct_answer, match_intent
from flywheel.sim.world import INITIAL_PROMPT
from improvers.prompt import FailingExample, integrity_problems, propose

S = ImproveSettings()


def test_integrity_checks() -> None:
    champion = "You help customers of {{product}}. Be concise."
    ok = champion + " Apologize to frustrated customers."
    assert integrity_problems(ok, champion, [], S) == []
    assert "identical to the champion" in integrity_problems(champion, champion, [], S)
    assert any("drops template variables ['product']" in p
               for p in integrity_problems("You help customers. Apologize.", champion, [], S))
    assert any("adds unknown" in p for p in integrity_problems(ok + " {{tone}}", champion, [], S))
    assert any("over the budget" in p for p in integrity_problems(champion + " x" * 800, champion, [], S))
    golden_input = "How much would 5 Team seats cost per year?"
    copied = champion + " For example: how much would 5 Team seats cost per year? Say $480."
    assert any("verbatim" in p for p in integrity_problems(copied, champion, [golden_input], S))
    # Words the champion already had do not count as copying.
    assert integrity_problems(ok, champion, ["You help customers of {{product}}. Be concise. Thanks"], S) == []


def _examples(queries: list[str]) -> list[FailingExample]:
    out = []
    for q in queries:
        intent = match_intent(q)
        out.append(FailingExample(query=q, output="Sign out of the desktop app, sign back in, and sync will restart.",
                                  signal="thumbs_down", reason="tone", comment="felt dismissive",
                                  better=correct_answer(intent, intent.slots(q))))
    return out


def test_screening_keeps_the_revision_that_fixes_the_cluster(simulator) -> None:
    settings = load_settings(openai_base_url=simulator.base_url)
    examples = _examples(["Your app keeps failing to sync, this is ridiculous! What do I do?",
                          "I'm so frustrated, my files won't sync again. How do I fix it?"])
    result = propose(
        cluster_id="tone-x", category="tone", champion=INITIAL_PROMPT, examples=examples,
        client=OpenAI(base_url=simulator.base_url, api_key="k"), model="gpt-4o",
        run_queries=lambda t, qs: answer_queries(settings, t, qs), protected=[], settings=S,
    )
    assert result.critique and len(result.drafts) == 3
    kept = result.drafts[result.kept[0]]
    assert "apologize" in kept.template.lower()
    vague = [d for d in result.drafts if "apologize" not in d.template.lower()]
    assert vague and all(d.screening <= result.champion_screening for d in vague)
    assert kept.screening > result.champion_screening


def _golden(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_judge_scorer_and_a_users_own_pipeline(simulator, tmp_path: Path) -> None:
    golden = load_golden(_golden(tmp_path, [
        {"id": "a", "input": "How do I reset my password?", "category": "general", "scorer": "judge",
         "expected": "Go to Settings > Security and choose Reset password; we email you a reset link."},
        {"id": "b", "input": "Write a short poem about autumn leaves.", "category": "off_topic", "scorer": "judge",
         "expected": "I can only help with questions about Nimbus Drive."},
    ]))
    settings = load_settings(openai_base_url=simulator.base_url)
    variant = Variant(label="c", prompt_template=INITIAL_PROMPT, model="gpt-4o-mini")
    result = evaluate(variant, golden, answer_factory(settings), default_scorer="contains", judge_model="gpt-4o",
                      concurrency=4)
    by_id = {r.id: r for r in result.rows}
    assert by_id["a"].score == 1.0 and by_id["b"].score < 0.5
    assert "expected answer" in by_id["b"].rationale and result.errors == 0

    hooked = load_settings(openai_base_url=simulator.base_url, eval={"pipeline": "pipeline_hooks:shouting"})
    golden2 = load_golden(_golden(tmp_path, [{"id": "x", "input": "hello", "expected": "YOU HELLO",
                                              "category": "c", "scorer": "exact"}]))
    result = evaluate(variant.model_copy(update={"prompt_template": "you are nice"}), golden2,
                      answer_factory(hooked), default_scorer="exact", judge_model="j", concurrency=2)
    assert [r.score for r in result.rows] == [1.0]


def test_items_that_keep_failing_are_errors_not_scores(tmp_path: Path) -> None:
    from flywheel.sim.server import SimOptions, Simulator

    golden = load_golden(_golden(tmp_path, [{"id": "a", "input": "How do I reset my password?",
                                             "expected": "Reset password", "category": "c"}]))
    with Simulator(options=SimOptions(fail_status=429)) as sim:
        settings = load_settings(openai_base_url=sim.base_url, llm_max_retries=1)
        result = evaluate(Variant(label="c", prompt_template=INITIAL_PROMPT, model="m"), golden,
                          answer_factory(settings), default_scorer="contains", judge_model="j", concurrency=1)
        assert sim.counts()["failed_429"] == 2
    (row,) = result.rows
    assert row.score is None and "429" in (row.error or "") and result.scores == {} and result.errors == 1


@pytest.mark.parametrize("spec", ["nomodule", "no_such_module:fn", "pipeline_hooks:missing"])
def test_a_bad_pipeline_hook_is_a_usage_error(spec: str) -> None:
    from evals.pipeline import load_user_pipeline
    from flywheel.errors import UsageError

    with pytest.raises(UsageError, match="eval.pipeline"):
        load_user_pipeline(spec)
