"""Comparing a candidate with the champion on the same golden items.

The delta's confidence interval is a paired bootstrap: resample items (with replacement), take the
mean of the per-item differences, and read the percentiles. Pairing removes the item-difficulty
variance that an unpaired comparison would carry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class GoldenComparison(BaseModel):
    """A candidate's scores against the champion's on the same golden items: means, the paired
    delta and its interval, per category and segment. Not the watch's :class:`loop.watch_stats.Comparison`
    (negative rates of live events, capped per user, with a verdict): the two share only a CI's bounds."""

    n: int
    golden_score: float
    champion_score: float
    delta: float
    ci_low: float
    ci_high: float
    per_category: dict[str, float]  # candidate score per category
    category_deltas: dict[str, float]
    per_segment: dict[str, float] = {}  # candidate score per user segment (items that name one)
    segment_deltas: dict[str, float] = {}


def paired_bootstrap_ci(
    candidate: Sequence[float],
    champion: Sequence[float],
    *,
    resamples: int = 5000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mean delta, low, high)`` of candidate - champion over paired items."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(champion, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("paired scores must be two non-empty sequences of the same length")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(diff))  # bounded memory for large golden sets
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, len(diff), size=(stop - start, len(diff)))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(diff.mean()), float(low), float(high)


def category_means(scores: dict[str, float], categories: dict[str, str]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for item_id, value in scores.items():
        groups[categories[item_id]].append(value)
    return {c: round(float(np.mean(v)), 4) for c, v in sorted(groups.items())}


def compare(
    candidate: dict[str, float],
    champion: dict[str, float],
    categories: dict[str, str],
    *,
    resamples: int = 5000,
    segments: dict[str, str] | None = None,
    only: set[str] | None = None,
) -> GoldenComparison:
    """Compare on the items both variants scored (ids -> score); ``only`` limits it to those ids.
    ``segments`` (id -> segment) adds per-segment scores for the items that have one."""
    ids = sorted(set(candidate) & set(champion) & (only if only is not None else set(candidate)))
    if not ids:
        raise ValueError("no golden item was scored for both variants")
    delta, low, high = paired_bootstrap_ci([candidate[i] for i in ids], [champion[i] for i in ids], resamples=resamples)
    cand_cat = category_means({i: candidate[i] for i in ids}, categories)
    champ_cat = category_means({i: champion[i] for i in ids}, categories)
    segs = segments or {}
    in_segment = [i for i in ids if i in segs]
    cand_seg = category_means({i: candidate[i] for i in in_segment}, segs)
    champ_seg = category_means({i: champion[i] for i in in_segment}, segs)
    return GoldenComparison(
        n=len(ids),
        golden_score=round(float(np.mean([candidate[i] for i in ids])), 4),
        champion_score=round(float(np.mean([champion[i] for i in ids])), 4),
        delta=round(delta, 4),
        ci_low=round(low, 4),
        ci_high=round(high, 4),
        per_category=cand_cat,
        category_deltas={c: round(cand_cat[c] - champ_cat[c], 4) for c in cand_cat},
        per_segment=cand_seg,
        segment_deltas={s: round(cand_seg[s] - champ_seg[s], 4) for s in cand_seg},
    )
