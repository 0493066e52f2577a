"""Synthetic golden items from the drafting model, for categories with too few items.

A new category (a failure the set has never seen) has no corrections yet; the drafting model
writes a few items for it from what the category means, consented example queries of its clusters
and the items it already has. Models answer JSON in fences, in prose, cut off or not at all:
``json_object`` reads the first two, and a reply that cannot be used is retried once and then
noted, never fatal. Every item is checked like a golden line, and one holding a PII placeholder or
anything the scrubber would remove is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flywheel.feedback.scrub import find_pii
from flywheel.proposals import Scorer, holds_placeholder
from flywheel.replies import ReplyProblem, chat_json, json_object
from flywheel.triage import CATEGORY_DESCRIPTIONS

DRAFT_MARKER = "You write golden test items"
SYSTEM = (
    f"{DRAFT_MARKER} for evaluating a customer-support assistant. Each item is a realistic user question "
    "and the reference answer a correct assistant gives, with the scorer that checks an answer against it: "
    "`contains` (the answer must contain `expected`: a short decisive phrase), `regex` (a Python pattern), "
    "`json` (an object the answer's JSON must match), `judge` (a full reference answer an LLM compares with). "
    "Write new questions, not copies of the examples. Never include personal data. "
    'Answer with JSON only: {"items": [{"input": "...", "expected": "...", "scorer": "..."}]}.'
)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "input": {"type": "string"},
                    "expected": {"type": "string"},
                    "scorer": {"type": "string", "enum": ["contains", "regex", "json", "judge"]},
                },
                "required": ["input", "expected", "scorer"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["items"],
    "additionalProperties": False,
}


class DraftedItem(BaseModel):
    """One item as the drafting model wrote it; anything else is dropped as invalid."""

    model_config = ConfigDict(extra="ignore")

    input: str = Field(min_length=1)
    expected: str = Field(min_length=1)
    scorer: Scorer = "judge"

    @field_validator("input", "expected", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, dict | list):
            return json.dumps(v, sort_keys=True)
        return v.strip() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _scorer_can_use_it(self) -> DraftedItem:
        # What `flywheel validate` would call an error: a pattern that does not compile, JSON that does not parse.
        if self.scorer == "regex":
            try:
                re.compile(self.expected)
            except re.error as exc:
                raise ValueError(f"expected is not a regular expression: {exc}") from exc
        if self.scorer == "json":
            try:
                parsed = json.loads(self.expected)
            except json.JSONDecodeError as exc:
                raise ValueError("expected is not JSON") from exc
            if not isinstance(parsed, dict):
                raise ValueError("expected is not a JSON object")
        return self


@dataclass
class Drafted:
    items: list[DraftedItem] = field(default_factory=list)
    invalid: int = 0
    pii: int = 0
    notes: list[str] = field(default_factory=list)


def allocate(n: int, have: Mapping[str, int], minimum: int) -> dict[str, int]:
    """``n`` items over the categories below ``minimum``, one at a time to the largest remaining
    gap (ties by name), never past the minimum."""
    gaps = {c: minimum - k for c, k in have.items() if k < minimum}
    out: dict[str, int] = {}
    for _ in range(n):
        if not gaps or max(gaps.values()) <= 0:
            break
        cat = min(gaps, key=lambda c: (-gaps[c], c))
        out[cat] = out.get(cat, 0) + 1
        gaps[cat] -= 1
    return out


def request_text(category: str, n: int, examples: Sequence[str], existing: Sequence[tuple[str, str]]) -> str:
    lines = [f"Category: {category}"]
    if category in CATEGORY_DESCRIPTIONS:
        lines.append(f"What goes wrong in this category: {CATEGORY_DESCRIPTIONS[category]}")
    lines.append(f"Write {n} items.")
    if examples:
        lines += ["", "<user_questions>", *(f"- {q}" for q in examples[:8]), "</user_questions>"]
    if existing:
        lines += ["", "<existing_items>", *(f"- {q} -> {a}" for q, a in existing[:8]), "</existing_items>"]
    return "\n".join(lines)


def draft(
    client: Any,
    model: str,
    category: str,
    n: int,
    examples: Sequence[str],
    existing: Sequence[tuple[str, str]],
    batch: int,
    attempts: int = 2,
) -> Drafted:
    """Up to ``n`` checked items for ``category``, asked for ``batch`` at a time."""
    out = Drafted()
    left = n
    while left > 0:
        ask = min(batch, left)
        items = _ask(client, model, request_text(category, ask, examples, existing), attempts, out)
        if items is None:
            break
        before = len(out.items)
        for raw in items[:ask]:
            _check(raw, out)
        if len(out.items) == before:
            out.notes.append(f"the drafting model gave no usable item of {ask} asked for")
        left -= ask
    return out


def _ask(client: Any, model: str, text: str, attempts: int, out: Drafted) -> list[Any] | None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    problem = ""
    for _ in range(attempts):
        reply = chat_json(client, model, messages, name="golden_items", schema=SCHEMA, temperature=0.7)
        try:
            items = json_object(reply).get("items")
        except ReplyProblem as exc:
            problem = str(exc)
            continue
        if isinstance(items, list):
            return items
        problem = "the model's JSON has no `items` list"
    out.notes.append(f"drafting model gave no usable items after {attempts} attempts: {problem}")
    return None


def _check(raw: Any, out: Drafted) -> None:
    try:
        item = DraftedItem.model_validate(raw)
    except ValidationError:
        out.invalid += 1
        return
    if holds_placeholder(item.input, item.expected) or find_pii(item.input) or find_pii(item.expected):
        out.pii += 1
        return
    out.items.append(item)
