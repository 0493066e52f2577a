"""The golden-set check: every line (not only the first bad one), ids, scorers' expectations,
categories, and the size the promotion policy needs.

A golden set that breaks a cycle used to be found only at cycle time, one line per run; here each
mistake is named with its line and a fix."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from pathlib import Path
from typing import get_args

from pydantic import BaseModel, ValidationError

from flywheel.config import Settings
from flywheel.evals.golden import GoldenItem, Scorer, read_golden_lines
from flywheel.evals.scorers import words
from flywheel.feedback.ingest import describe_validation_error
from flywheel.loop.checks.problems import Check, Problem, error, warning
from flywheel.schemas import CATEGORIES

_FIELD_FIXES = {
    "id": 'give the item an "id" string that no other item has',
    "input": 'give the item an "input": the user query, a non-empty string',
    "expected": 'give the item an "expected" reference answer (a string; for the json scorer an object is fine)',
    "category": 'give the item a "category", e.g. one of ' + ", ".join(CATEGORIES),
    "scorer": f'use a scorer of {", ".join(get_args(Scorer))}, or leave "scorer" out for [eval] default_scorer',
    "tags": '"tags" must be a list of strings',
    "documents": '"documents" must be a list of knowledge document ids',
    "segment": '"segment" names the user segment the item stands for, a non-empty string (or tag it "segment:<name>")',
}
_NOT_JSON_FIX = "write one JSON object per line: check the quotes, commas and braces"
_UNKNOWN_FIELD_FIX = "remove it: an item has only id, input, expected, category, scorer, tags, documents, segment"
_SHORT_WORD = re.compile(r"^\w{1,3}$")
_INNER_LINE = re.compile(r" at line \d+ column")


class GoldenCheck(BaseModel):
    """The items that passed the schema (the model-fit check asks them) and what was found."""

    items: list[GoldenItem] = []
    lines: dict[str, int] = {}  # item id -> its line
    problems: list[Problem] = []


def check_golden(settings: Settings) -> GoldenCheck:
    path = settings.golden_file
    where = 'set `golden = "path/to/golden.jsonl"` in flywheel.toml (relative to it) or FLYWHEEL_GOLDEN'
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        return GoldenCheck(problems=[error(Check.GOLDEN, f"the golden set {what}", where, path)])
    out = GoldenCheck()
    try:
        for row in read_golden_lines(path):
            if row.error is not None:
                out.problems.append(_schema_problem(row.error, path, row.line))
            elif row.item is not None:
                _add_item(out, row.item, row.line, settings, path)
    except OSError as exc:
        return GoldenCheck(problems=[error(Check.GOLDEN, f"cannot read the golden set: {exc}", where, path)])
    out.problems += _size_problems(out, settings, path)
    out.problems += _segment_problems(out, settings, path)
    return out


def _schema_problem(exc: ValidationError, path: Path, line: int) -> Problem:
    fixes: list[str] = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            fix = _NOT_JSON_FIX
        elif err["type"] == "extra_forbidden":
            fix = _UNKNOWN_FIELD_FIX
        else:
            fix = _FIELD_FIXES.get(str(err["loc"][0]) if err["loc"] else "", _NOT_JSON_FIX)
        fixes += [fix] if fix not in fixes else []
    # pydantic counts lines inside the one it parsed ("at line 2 column 0"): only the column helps here.
    message = _INNER_LINE.sub(" at column", describe_validation_error(exc))
    return error(Check.GOLDEN, message, "; ".join(fixes), path, line)


def _add_item(out: GoldenCheck, item: GoldenItem, line: int, settings: Settings, path: Path) -> None:
    if item.id in out.lines:
        out.problems.append(
            error(
                Check.GOLDEN,
                f"duplicate id {item.id!r} (first on line {out.lines[item.id]})",
                "give each item its own id",
                path,
                line,
            )
        )
        return
    out.lines[item.id] = line
    out.items.append(item)
    scorer = item.scorer or settings.eval.default_scorer
    out.problems += [
        p
        for p in (_expectation_problem(item, scorer, path, line), _category_problem(item, path, line))
        if p is not None
    ]


def _expectation_problem(item: GoldenItem, scorer: str, path: Path, line: int) -> Problem | None:
    """What the scorer would make of ``expected``: a pattern that does not compile, JSON that does
    not parse, or an expectation that any answer meets."""
    expected = item.expected
    if scorer == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            return error(
                Check.GOLDEN,
                f"item {item.id!r}: expected is not a valid regular expression ({exc})",
                "fix the pattern (Python `re` syntax; backslashes are doubled inside JSON strings)",
                path,
                line,
            )
    if scorer == "json" and expected.strip():
        try:
            wanted = json.loads(expected)
        except json.JSONDecodeError as exc:
            return error(
                Check.GOLDEN,
                f"item {item.id!r}: expected is not JSON ({exc.msg}), so the json scorer would "
                "only check that the answer parses",
                'give "expected" as a JSON object, e.g. {"plan": "pro"}, or as a string holding one',
                path,
                line,
            )
        if not isinstance(wanted, dict):
            return warning(
                Check.GOLDEN,
                f"item {item.id!r}: expected is JSON but not an object: the json scorer "
                "compares only an object's keys, so any valid JSON answer scores 1",
                "give the keys and values the answer must have as an object",
                path,
                line,
            )
    if scorer in ("contains", "regex") and not expected.strip():
        return warning(
            Check.GOLDEN,
            f"item {item.id!r}: expected is empty, so every answer scores 1 with {scorer}",
            "write what the answer must contain",
            path,
            line,
        )
    if scorer == "word" and not words(expected):
        return warning(
            Check.GOLDEN,
            f"item {item.id!r}: expected has no words, so every answer scores 0 with word",
            "write the words the answer must have",
            path,
            line,
        )
    if scorer == "contains" and _SHORT_WORD.match(expected.strip()):
        return warning(
            Check.GOLDEN,
            f"item {item.id!r}: contains {expected.strip()!r} also matches inside longer "
            f'words ("no" is found in "not sure")',
            'use "scorer": "word" (whole words, any case and punctuation), or a longer phrase',
            path,
            line,
        )
    return None


def _category_problem(item: GoldenItem, path: Path, line: int) -> Problem | None:
    """Categories are free text (they name per-category scores), but one that nearly spells a triage
    category is probably meant to be it: feedback clusters and golden coverage use those names."""
    if item.category in CATEGORIES:
        return None
    normal = re.sub(r"[\s-]+", "_", item.category.strip().lower())
    meant = normal if normal in CATEGORIES else next(iter(difflib.get_close_matches(normal, CATEGORIES, 1, 0.8)), None)
    if meant is None:
        return None
    return warning(
        Check.GOLDEN,
        f"item {item.id!r}: category {item.category!r} is not a triage category; did you mean {meant!r}?",
        f'write "category": "{meant}" (triage categories: {", ".join(CATEGORIES)})',
        path,
        line,
    )


def _size_problems(out: GoldenCheck, settings: Settings, path: Path) -> list[Problem]:
    need, have = settings.policy.min_golden_size, len(out.items)
    if have == 0:
        return [error(Check.GOLDEN, "the golden set has no valid items", "add items, one JSON object per line", path)]
    if have < need:
        return [
            error(
                Check.GOLDEN,
                f"the golden set has {have} valid items but [policy] min_golden_size is {need}: "
                "the gate would reject every candidate",
                f"add {need - have} items, or set min_golden_size = "
                f"{have} under [policy] in flywheel.toml (more items give tighter confidence intervals)",
                path,
            )
        ]
    return []


def _segment_problems(out: GoldenCheck, settings: Settings, path: Path) -> list[Problem]:
    """A segment with a handful of items: one item more or less right moves its score by a lot, so
    the gate's per-segment bound (``policy.max_segment_regression``) would turn on noise."""
    counts = Counter(seg for item in out.items if (seg := item.segment_name))
    need = settings.golden_set.min_per_segment
    return [
        warning(
            Check.GOLDEN,
            f"segment {seg!r} has only {n} golden item{'s' if n != 1 else ''}: its score moves "
            f"by {1 / n:.0%} with each item, and the gate bounds its regression "
            f"({settings.policy.max_segment_regression})",
            f"add {need - n} items of segment {seg!r}, or fold it into a larger segment "
            f"([golden_set] min_per_segment = {need})",
            path,
        )
        for seg, n in sorted(counts.items())
        if n < need
    ]
