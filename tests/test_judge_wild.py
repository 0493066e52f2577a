"""The golden-set judge against a model in the wild: the simulator's judge (``drafting="wild"``)
answers in fences, in prose, cut off, refused, or on a 0-10 scale; Flywheel must grade exactly as
with a clean judge wherever a usable grade can be had, ask again when it cannot, and record an item
it never got a grade for as errored, never as a guessed score."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from openai import AsyncOpenAI

import flywheel.evals.runner as runner
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import EvalRow
from flywheel.evals.scorers import judge_messages, parse_judgement
from flywheel.sim import roles
from flywheel.sim.rules import product_answer
from flywheel.sim.server import SimOptions, Simulator
from flywheel.sim.variation import JUDGE_SHAPES, PROSE, REFUSAL, Style
from flywheel.sim.world import INITIAL_PROMPT
from nonempty import every

GOLDEN = Path(__file__).resolve().parents[1] / "evals" / "golden" / "default.jsonl"
VARIANT = Variant(label="champion", prompt_template=INITIAL_PROMPT, model="product-model")


def _shape(out: str, clean: str) -> str:
    if out == clean:
        return "clean"
    if out.startswith("```json"):
        return "fenced"
    if out.startswith(PROSE["judge"][0]):
        return "prose"
    if out == REFUSAL["judge"]:
        return "refusal"
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        assert out.startswith("{"), out
        return "truncated"
    assert doc["score"] == 10 * json.loads(clean)["score"], (out, clean)
    return "lossy"


def test_the_wild_judge_answers_in_every_shape_and_a_usable_reply_is_the_clean_grade() -> None:
    shapes: Counter[str] = Counter()
    n = 600
    for k in range(n):
        expected = f"Open Settings {k} and choose Reset password."
        body = {"messages": judge_messages(f"question {k}", f"You open Settings {k} then choose Reset.", expected)}
        clean = roles.judge(body)
        out = roles.judge(body, Style(drafting="wild", seed=4))
        shapes[_shape(out, clean)] += 1
        try:
            assert parse_judgement(out).value == parse_judgement(clean).value  # recovered: the same grade
        except ValueError:  # refused, cut off, or out of 0..1: no grade at all, never another one
            assert _shape(out, clean) in ("refusal", "truncated", "lossy")
    assert set(shapes) == set(JUDGE_SHAPES)
    for shape, share in JUDGE_SHAPES.items():
        assert abs(shapes[shape] / n - share / 100) < 0.05, (shape, shapes[shape] / n)


def _judge_golden(sim: Simulator) -> list[EvalRow]:
    """Every shipped golden item scored by the judge, the product's answers made locally."""
    items = [i.model_copy(update={"scorer": "judge"}) for i in load_golden(GOLDEN).items]

    async def answer(variant: Variant, query: str) -> str:
        return product_answer(variant.prompt_template, query)

    async def run() -> list[EvalRow]:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        try:
            return await runner.run_items(
                items,
                VARIANT,
                answer,
                default_scorer="judge",
                gate=asyncio.Semaphore(8),
                judge=runner.judge_with(client, "judge-model"),
            )
        finally:
            await client.close()

    return asyncio.run(run())


def test_a_wild_judge_grades_the_golden_set_as_a_clean_one_and_never_guesses(monkeypatch: pytest.MonkeyPatch) -> None:
    with Simulator() as sim:
        clean = {r.id: r for r in _judge_golden(sim)}
    assert not any(r.error for r in clean.values()) and len({r.score for r in clean.values()}) > 1

    with Simulator(options=SimOptions(drafting="wild", seed=7)) as sim:
        wild = _judge_golden(sim)
        asked_again = sum(1 for count in sim.state.seen.values() if count > 1)
    errored = [r for r in wild if r.error]
    assert asked_again >= 20  # the unusable replies were asked again...
    assert len(errored) <= 3  # ...so at most a few items (of 228) are left without a grade
    for r in wild:
        if r.error is None:
            assert r.score == clean[r.id].score, (r.id, r.rationale)  # the same grade, whatever the wrapping
        else:
            assert r.score is None

    # Asked once, the same wild judge leaves many items ungraded: each errored with its reason, none scored.
    monkeypatch.setattr(runner, "JUDGE_ATTEMPTS", 1)
    with Simulator(options=SimOptions(drafting="wild", seed=7)) as sim:
        once = _judge_golden(sim)
    errored = [r for r in once if r.error]
    assert len(errored) >= 15
    assert every(r.score is None for r in errored)
    reasons = Counter(
        (
            "refused"
            if "refused" in r.error
            else "cut off"
            if "cut off" in r.error
            else "scale"
            if "outside 0..1" in r.error
            else r.error
        )
        for r in errored
    )
    assert set(reasons) == {"refused", "cut off", "scale"}, reasons
