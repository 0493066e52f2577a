"""Scorers: each gives a score in 0..1 and a rationale (SPEC.md names and semantics).

``exact``, ``contains``, ``regex`` and ``json`` are plain code; ``judge`` asks the judge model
through the openai SDK and is awaited by the runner alongside the product calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flywheel.replies import json_object

JUDGE_SYSTEM = (
    "You are an impartial judge of a support assistant's answers. Compare the answer with the expected "
    "answer: score 1 when it conveys the same facts and meets the same requirements, 0 when it does not, "
    "and a fraction for partially correct answers. Reply with a JSON object "
    '{"score": <number 0..1>, "rationale": "<one sentence>"}.'
)
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "rationale": {"type": "string"}},
    "required": ["score", "rationale"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Score:
    value: float
    rationale: str


def exact(output: str, expected: str) -> Score:
    ok = output.strip() == expected.strip()
    return Score(float(ok), "equal after trimming whitespace" if ok else "differs from the expected text")


def contains(output: str, expected: str) -> Score:
    ok = expected.lower() in output.lower()
    return Score(float(ok), f"{'contains' if ok else 'does not contain'} {expected!r}")


def regex(output: str, expected: str) -> Score:
    try:
        found = re.search(expected, output) is not None
    except re.error as exc:
        return Score(0.0, f"invalid regular expression {expected!r}: {exc}")
    return Score(float(found), f"pattern {'found' if found else 'not found'}: {expected!r}")


def json_match(output: str, expected: str) -> Score:
    try:
        doc = json.loads(output)
    except json.JSONDecodeError as exc:
        return Score(0.0, f"output is not valid JSON ({exc.msg})")
    try:
        want: Any = json.loads(expected) if expected.strip() else None
    except json.JSONDecodeError:
        want = None
    if not isinstance(want, dict):
        return Score(1.0, "valid JSON")
    if not isinstance(doc, dict):
        return Score(0.0, "valid JSON but not an object")
    wrong = [k for k, v in want.items() if doc.get(k, object()) != v]
    if wrong:
        return Score(0.0, f"keys missing or different: {', '.join(sorted(wrong))}")
    return Score(1.0, "valid JSON with every expected key and value")


CODE_SCORERS = {"exact": exact, "contains": contains, "regex": regex, "json": json_match}


def judge_messages(query: str, output: str, expected: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": f"Question: {query}\n\nExpected answer: {expected}\n\nAnswer to grade: {output}"},
    ]


def parse_judgement(content: str) -> Score:
    """The judge's JSON reply as a Score; anything unparsable is an error, not a zero."""
    doc = json_object(content)  # fenced, wrapped in prose or bare; a ReplyProblem (a ValueError) otherwise
    try:
        value = float(doc["score"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"judge reply without a numeric 'score': {content[:200]!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"judge score {value} outside 0..1")
    return Score(value, str(doc.get("rationale", "")))
