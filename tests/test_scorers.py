"""The `word` scorer (issue 15): `contains` found the expected "no" inside "not sure"; `word` looks
for whole words, in any case and with any punctuation around them, in any script."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import get_args

import pytest

from flywheel.config import EvalSettings, Settings
from flywheel.evals.golden import GoldenItem, Scorer
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import run_items
from flywheel.evals.scorers import CODE_SCORERS, contains, word, words
from flywheel.loop.checks.golden_set import check_golden


def test_a_short_answer_is_not_found_inside_a_longer_word() -> None:
    assert contains("I'm not sure.", "no").value == 1  # the reported bug, kept for contains
    assert word("I'm not sure.", "no").value == 0
    assert word("Nobody knows; none left.", "no").value == 0
    assert word("No, the free plan has no API access.", "no").value == 1
    assert word("It costs $120 a year.", "$12").value == 0 and word("It costs $12.", "$12").value == 1


@pytest.mark.parametrize("output", ["no", "No.", "(no)", "«No!»", "Answer: NO -- sorry", "yes/no", '"no"'])
def test_punctuation_and_case_around_a_word_do_not_matter(output: str) -> None:
    assert word(output, "no").value == 1, words(output)


def test_a_phrase_is_its_words_in_order_and_next_to_each_other() -> None:
    assert word("Click Reset password on the sign-in page.", "reset password").value == 1
    assert word("Use reset-password, then sign in.", "Reset password").value == 1
    assert word("reset\n  PASSWORD", "reset password").value == 1
    assert word("Reset your password.", "reset password").value == 0  # not next to each other
    assert word("The password reset link", "reset password").value == 0  # not in order
    assert word("Go to Settings, Security, Two-factor.", "Settings > Security > Two-factor").value == 1
    assert word("It can't be shared.", "can't be shared").value == 1
    assert word("It can’t be shared.", "can't be shared").value == 1  # a typographic apostrophe


def test_words_in_other_scripts_are_whole_words_too() -> None:
    assert word("Die Größe: STRASSE 5", "straße").value == 1  # case folding, not lower()
    assert word("Un cafe\u0301 au lait", "café").value == 1  # decomposed and composed é
    assert word("Ｎｏ, thanks", "no").value == 1  # full-width letters (NFKC)
    assert word("¿No? Ninguno.", "no").value == 1 and word("Ninguno.", "no").value == 0
    # Devanagari vowel signs are combining marks: a word is not cut at them, so a fragment is not found.
    assert word("मुझे हिन्दी आती है", "हिन्दी").value == 1
    assert word("मुझे हिन्दी आती है", "हि").value == 0
    assert word("Это не так", "не").value == 1 and word("Неверно", "не").value == 0
    # Chinese and Japanese have no spaces between words: every character is a word of its own.
    assert word("我住在东京。", "东京").value == 1 and word("我住在北京。", "东京").value == 0
    assert word("パスワードをリセットしてください", "リセット").value == 1


def test_an_expectation_without_words_scores_nothing_and_says_why() -> None:
    for expected in ("", "  ", "?!", "--"):
        score = word("anything at all", expected)
        assert score.value == 0 and "no words" in score.rationale


def test_the_rationale_names_the_expected_words() -> None:
    assert word("No.", "no").rationale == "has the words 'no'"
    assert word("Not sure.", "no").rationale == "does not have the words 'no'"


def test_golden_items_name_it_and_the_runner_scores_with_it() -> None:
    assert "word" in get_args(Scorer) and CODE_SCORERS["word"] is word
    items = [
        GoldenItem(id="a", input="Is it free?", expected="no", category="factual", scorer="word"),
        GoldenItem(id="b", input="Is it free?", expected="no", category="factual", scorer="contains"),
    ]

    async def answer(variant: Variant, query: str) -> str:
        return "I'm not sure."

    async def main() -> list:
        return await run_items(
            items,
            Variant(label="champion", prompt_template="p", model="m"),
            answer,
            default_scorer="exact",
            gate=asyncio.Semaphore(2),
        )

    rows = asyncio.run(main())
    assert [(r.scorer, r.score) for r in rows] == [("word", 0.0), ("contains", 1.0)]


def test_every_golden_scorer_can_be_the_default() -> None:
    assert get_args(EvalSettings.model_fields["default_scorer"].annotation) == get_args(Scorer)


def test_the_golden_check_suggests_word_for_a_short_contains(settings: Settings) -> None:
    golden = Path("golden.jsonl")
    golden.write_text(
        '{"id": "free", "input": "Is it free?", "expected": "no", "category": "factual"}\n'
        '{"id": "empty", "input": "Is it free?", "expected": "?", "category": "factual", '
        '"scorer": "word"}\n'
    )
    problems = check_golden(settings.model_copy(update={"golden": golden})).problems
    short = next(p for p in problems if p.line == 1)
    assert "also matches inside longer words" in short.message and '"scorer": "word"' in short.fix
    empty = next(p for p in problems if p.line == 2)
    assert "no words" in empty.message
