"""Scorers: each gives a score in 0..1 and a rationale (SPEC.md names and semantics).

``exact``, ``contains``, ``word``, ``regex`` and ``json`` are plain code; ``judge`` asks the judge
model through the openai SDK and is awaited by the runner alongside the product calls.
"""

from __future__ import annotations

import json
import re
import unicodedata
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


def word(output: str, expected: str) -> Score:
    """``expected``'s words, in order and next to each other, among the output's words: "no" is not
    found in "not sure" (as ``contains`` finds it), "No, it isn't." has it, and "reset password"
    matches "Reset-password". Case, punctuation and spacing between the words do not matter."""
    want = words(expected)
    if not want:
        return Score(0.0, f"expected {expected!r} has no words to look for")
    ok = f" {' '.join(want)} " in f" {' '.join(words(output))} "
    return Score(float(ok), f"{'has' if ok else 'does not have'} the words {expected!r}")


_ASCII_WORD = re.compile(r"[a-z0-9]+")
# Chinese and Japanese are written without spaces between words: each ideograph or kana is a word
# of its own, so there ``word`` finds a phrase wherever ``contains`` would.
_UNSPACED = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


def _unspaced(ch: str) -> bool:
    code = ord(ch)
    return code >= 0x3040 and any(lo <= code <= hi for lo, hi in _UNSPACED)


def words(text: str) -> list[str]:
    """The text's words, case-folded after NFKC normalisation ("Straße" and "STRASSE", a composed and
    a decomposed "é" are the same word). A word is a run of letters, digits and combining marks:
    Python's ``\\w`` would cut Hindi or Thai words at their vowel signs."""
    if text.isascii():  # most answers: the same words, four times faster than the scan below
        return _ASCII_WORD.findall(text.lower())
    found: list[str] = []
    current: list[str] = []
    for ch in unicodedata.normalize("NFKC", text).casefold():
        alone = _unspaced(ch)
        if not alone and unicodedata.category(ch)[0] in "LNM":
            current.append(ch)
            continue
        if current:
            found.append("".join(current))
            current = []
        if alone:
            found.append(ch)
    if current:
        found.append("".join(current))
    return found


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


CODE_SCORERS = {"exact": exact, "contains": contains, "word": word, "regex": regex, "json": json_match}


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
