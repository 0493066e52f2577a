"""Golden coverage: per category, how many golden items test it, how much negative feedback it
has, and which failure clusters no golden item covers.

A cycle can "pass" a fix on a golden set that is blind to the very failure it fixes; a cluster is
covered when the golden set has at least one item of its category.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from flywheel.config import Settings
from flywheel.evals.golden import GoldenItem
from flywheel.schemas import FailureCluster


class CategoryCoverage(BaseModel):
    category: str
    golden_items: int
    negative_events: int = Field(description="Negative events triage put in this category.")
    uncovered_clusters: list[str] = Field(description="Its clusters, when no golden item covers the category.")


class CoverageReport(BaseModel):
    golden_version: str | None
    categories: list[CategoryCoverage]

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def coverage(items: Sequence[GoldenItem], clusters: Sequence[FailureCluster]) -> list[CategoryCoverage]:
    """One row per category of the golden set or of the clusters, least covered first."""
    have = Counter(i.category for i in items)
    negative: Counter[str] = Counter()
    by_category: dict[str, list[str]] = {}
    for c in clusters:
        negative[c.category] += c.size
        by_category.setdefault(c.category, []).append(c.cluster_id)
    rows = [
        CategoryCoverage(
            category=cat,
            golden_items=have[cat],
            negative_events=negative[cat],
            uncovered_clusters=by_category.get(cat, []) if have[cat] == 0 else [],
        )
        for cat in sorted(set(have) | set(negative))
    ]
    return sorted(rows, key=lambda r: (r.golden_items > 0, -r.negative_events, r.category))


def coverage_step(settings: Settings) -> CoverageReport:
    """Coverage of the configured golden set (none yet counts as empty) against triage of the store."""
    from flywheel.loop.golden.versions import current_golden
    from flywheel.loop.triage_step import triage_step
    from flywheel.runtime import runtime_for

    golden = current_golden(settings)
    rows = coverage(golden.items if golden else (), triage_step(runtime_for(settings)))
    return CoverageReport(golden_version=golden.version if golden else None, categories=rows)


def uncovered_note(category: str) -> str:
    """What a cycle report says about a candidate's cluster that no golden item covers."""
    return (
        f"no golden item of category `{category}`: the golden set cannot show whether this fix works; "
        "run `flywheel golden propose` (then `flywheel golden review`) to cover it"
    )
