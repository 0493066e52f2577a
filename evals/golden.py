"""Golden sets: load, validate (a bad line is a usage error naming file and line), version.

The version is the SHA-256 of the canonical content: every item as sorted-key compact JSON,
ordered by id, so reformatting or reordering the file does not change it, and any change to an
item does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flywheel.errors import UsageError

Scorer = Literal["exact", "contains", "word", "regex", "json", "judge"]
SEGMENT_TAG = "segment:"  # a tag `segment:<name>` is the same as the field `segment`


class GoldenItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    input: str = Field(min_length=1)
    expected: str
    category: str = Field(min_length=1)
    scorer: Scorer | None = None
    tags: list[str] = Field(default_factory=list)
    documents: list[str] = Field(default_factory=list, description="Knowledge documents that answer the item.")
    segment: str | None = Field(
        None,
        min_length=1,
        description="The user segment it stands for (e.g. new, power, de-DE): scored and bounded per segment by "
        "the gate. A tag `segment:<name>` says the same; this field wins when both are given.",
    )

    @field_validator("expected", mode="before")
    @classmethod
    def _json_expected_as_text(cls, v: Any) -> Any:
        # A `json` item may give its expected object inline; keep it as canonical JSON text.
        return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v

    @property
    def segment_name(self) -> str | None:
        """The item's segment: the ``segment`` field, else its first ``segment:<name>`` tag."""
        if self.segment:
            return self.segment.strip()
        return next(
            (
                t.split(":", 1)[1].strip()
                for t in self.tags
                if t.startswith(SEGMENT_TAG) and t[len(SEGMENT_TAG) :].strip()
            ),
            None,
        )


@dataclass(frozen=True)
class GoldenSet:
    path: Path
    items: tuple[GoldenItem, ...]
    version: str

    def __len__(self) -> int:
        return len(self.items)

    @property
    def categories(self) -> list[str]:
        return sorted({i.category for i in self.items})

    def segments(self) -> dict[str, str]:
        """Item id -> segment, for the items that have one."""
        return {i.id: seg for i in self.items if (seg := i.segment_name)}

    def judge_scored(self, default_scorer: str) -> set[str]:
        """Ids of the items the LLM judge scores (their own scorer, or the default)."""
        return {i.id for i in self.items if (i.scorer or default_scorer) == "judge"}


def canonical_version(items: list[GoldenItem]) -> str:
    lines = [
        json.dumps(i.model_dump(exclude_defaults=True), sort_keys=True, separators=(",", ":"))
        for i in sorted(items, key=lambda i: i.id)
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class GoldenLine:
    """One non-blank line of a golden file: its item, or why it is not one."""

    line: int
    item: GoldenItem | None
    error: ValidationError | None


def read_golden_lines(path: Path) -> Iterator[GoldenLine]:
    """Every non-blank line, validated one by one: ``load_golden`` stops at the first bad one,
    ``flywheel validate`` reports them all."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield GoldenLine(line_no, GoldenItem.model_validate_json(raw), None)
            except ValidationError as exc:
                yield GoldenLine(line_no, None, exc)


def load_golden(path: Path) -> GoldenSet:
    """Read and validate every line; the first bad one is a usage error (exit 2) naming file and line."""
    if not path.is_file():
        raise UsageError(f"golden set {path}: no such file (set FLYWHEEL_GOLDEN or `golden` in flywheel.toml)")
    items: list[GoldenItem] = []
    seen: dict[str, int] = {}
    for row in read_golden_lines(path):
        if row.item is None:
            assert row.error is not None
            from flywheel.feedback.ingest import describe_validation_error

            raise UsageError(f"{path}:{row.line}: {describe_validation_error(row.error)}") from row.error
        item = row.item
        if item.id in seen:
            raise UsageError(f"{path}:{row.line}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = row.line
        items.append(item)
    if not items:
        raise UsageError(f"golden set {path}: no items")
    return GoldenSet(path=path, items=tuple(items), version=canonical_version(items))
