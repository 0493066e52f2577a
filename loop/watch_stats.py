"""The watch's statistics: a negative rate per side that one loud user cannot move much, and an
interval for the difference of two rates that the verdict rests on.

- **Capped counts.** A user's events count at most ``cap`` (``triage.per_user_cap``), as in triage:
  a user with ``n > cap`` rated events is weighted ``cap / n`` per event, so they keep their own rate
  but weigh like ``cap`` events. Events without a user id count as one user each. The interval is
  computed on these effective counts, so two hundred complaints from one user are worth five.
- **Intervals.** ``sequential`` (the default): an always-valid confidence sequence, the normal-mixture
  SPRT boundary (Robbins; Johari et al., "Always valid inference", 2017): with ``V`` the variance of
  the observed difference and ``tau`` the effect size it is tuned to, the half-width is
  ``sqrt(V (V + tau^2) / tau^2 * ln((V + tau^2) / (V alpha^2)))``. It stays valid however often the
  watch looks (every 15 minutes), where a fixed-sample interval would roll back far more than
  ``alpha`` of good changes over a week of looks. Otherwise Newcombe's hybrid Wilson score interval
  (statsmodels), valid for one look.
- **Verdict.** ``worse`` when the whole interval is above zero (more negative feedback), ``better``
  when it is below, ``inconclusive`` otherwise, and always ``inconclusive`` while either side has
  fewer than ``min_events`` capped events: nothing acts, and nothing is verified, on too little.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, Field


class Verdict(StrEnum):
    better = "better"
    worse = "worse"
    inconclusive = "inconclusive"


class Side(BaseModel):
    """One side of a comparison: raw and capped counts of rated events."""

    events: int = Field(description="Rated events (polarity not 0).")
    users: int
    n: float = Field(description="Events after the per-user cap.")
    negative: float = Field(description="Negative events after the per-user cap.")

    @property
    def rate(self) -> float | None:
        return self.negative / self.n if self.n else None


def capped_side(users: np.ndarray, negative: np.ndarray, cap: int) -> Side:
    """Counts of one side: ``users`` integer codes (-1 for no user id), ``negative`` booleans."""
    if len(users) == 0:
        return Side(events=0, users=0, n=0.0, negative=0.0)
    users = users.astype(np.int64, copy=True)
    anonymous = users < 0
    if anonymous.any():  # each event without a user id is a user of its own
        users[anonymous] = users.max(initial=-1) + 1 + np.arange(int(anonymous.sum()))
    _, codes = np.unique(users, return_inverse=True)
    per_user = np.bincount(codes)
    negative_per_user = np.bincount(codes, weights=negative.astype(np.float64))
    weight = np.minimum(1.0, cap / per_user)
    return Side(
        events=len(users),
        users=len(per_user),
        n=float(np.minimum(per_user, cap).sum()),
        negative=float((negative_per_user * weight).sum()),
    )


class Comparison(BaseModel):
    """A side against its baseline: counts, rates, their difference (side minus baseline), its
    interval, verdict. Flat, under the names of SPEC's watch document: the watch's rows compose it."""

    events: int = Field(description="The side's rated events (polarity not 0).")
    negative_rate: float | None
    baseline_rate: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: Verdict
    baseline_events: int
    users: int
    baseline_users: int
    capped_events: float = Field(description="The side's events after the per-user cap (what min_events counts).")
    capped_baseline_events: float
    method: str
    enough: bool = Field(description="Both sides reached min_events (capped): a verdict may act.")


def _newcombe(side: Side, base: Side, alpha: float) -> tuple[float, float]:
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        side.negative, side.n, base.negative, base.n, method="newcomb", compare="diff", alpha=alpha
    )
    return float(low), float(high)


def _sequential(side: Side, base: Side, alpha: float, tau: float) -> tuple[float, float]:
    # Rates shrunk half an event toward 1/2, so a side with no negative event still has a variance.
    p1 = (side.negative + 0.5) / (side.n + 1.0)
    p0 = (base.negative + 0.5) / (base.n + 1.0)
    v = p1 * (1 - p1) / side.n + p0 * (1 - p0) / base.n
    t2 = tau * tau
    half = math.sqrt(v * (v + t2) / t2 * math.log((v + t2) / (v * alpha * alpha)))
    diff = side.negative / side.n - base.negative / base.n
    return diff - half, diff + half


def compare(
    side: Side, base: Side, *, alpha: float, min_events: int, sequential: bool = True, tau: float = 0.05
) -> Comparison:
    """Compare ``side``'s negative rate with ``base``'s (see the module's docstring)."""
    rate, base_rate = side.rate, base.rate
    low: float | None = None
    high: float | None = None
    enough, verdict = False, Verdict.inconclusive
    if rate is not None and base_rate is not None:
        low, high = _sequential(side, base, alpha, tau) if sequential else _newcombe(side, base, alpha)
        enough = side.n >= min_events and base.n >= min_events
        if enough and low > 0:
            verdict = Verdict.worse
        elif enough and high < 0:
            verdict = Verdict.better
    return Comparison(
        events=side.events,
        negative_rate=_round(rate),
        baseline_rate=_round(base_rate),
        difference=None if rate is None or base_rate is None else round(rate - base_rate, 4),
        ci_low=_round(low),
        ci_high=_round(high),
        verdict=verdict,
        baseline_events=base.events,
        users=side.users,
        baseline_users=base.users,
        capped_events=round(side.n, 2),
        capped_baseline_events=round(base.n, 2),
        method="sequential" if sequential else "newcombe",
        enough=enough,
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
