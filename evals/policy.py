"""The promotion policy: a decision and its reasons, as data shown wherever the candidate is.

A judge the experts do not vouch for (see :mod:`evals.calibration`) may not carry a candidate on
its own: then the candidate must also pass every comparison rule on the golden items the judge
does not score (``without_judge``), so a gain seen only by an uncalibrated judge promotes nothing.
"""

from __future__ import annotations

from pydantic import BaseModel

from flywheel.config import PolicySettings
from flywheel.evals.stats import GoldenComparison


class PolicyVerdict(BaseModel):
    passed: bool
    reasons: list[str]  # why it passed, or every rule it broke

    @property
    def text(self) -> str:
        return "; ".join(self.reasons)


class WithoutJudge(BaseModel):
    """The comparison on the items the judge does not score, and why the judge is not trusted."""

    comparison: GoldenComparison | None  # None: every comparable item is judge-scored
    why: str


def comparison_rules(comparison: GoldenComparison, policy: PolicySettings) -> list[str]:
    """Every comparison rule the candidate breaks (size, delta, CI, category and segment bounds)."""
    broken: list[str] = []
    if comparison.n < policy.min_golden_size:
        broken.append(f"only {comparison.n} golden items scored, the policy needs {policy.min_golden_size}")
    if comparison.delta < policy.min_delta:
        broken.append(f"delta {comparison.delta:+.3f} is below the minimum {policy.min_delta:+.3f}")
    if policy.require_ci_above_zero and comparison.ci_low <= 0:
        broken.append(f"95% CI [{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}] does not exclude zero")
    for category, d in sorted(comparison.category_deltas.items()):
        if d < -policy.max_category_regression:
            broken.append(f"category {category!r} regresses by {-d:.3f} (allowed {policy.max_category_regression:.3f})")
    for segment, d in sorted(comparison.segment_deltas.items()):
        if d < -policy.max_segment_regression:
            broken.append(f"segment {segment!r} regresses by {-d:.3f} (allowed {policy.max_segment_regression:.3f})")
    return broken


def judge_candidate(
    comparison: GoldenComparison | None,
    errors: int,
    total: int,
    policy: PolicySettings,
    *,
    without_judge: WithoutJudge | None = None,
) -> PolicyVerdict:
    """Apply every rule; a candidate passes only when none is broken (on the items without the
    judge too, when ``without_judge`` is given)."""
    broken: list[str] = []
    if total and errors / total > policy.max_error_rate:
        broken.append(f"{errors} of {total} golden items errored (allowed: {policy.max_error_rate:.0%})")
    if comparison is None:
        return PolicyVerdict(passed=False, reasons=broken or ["no golden item could be compared"])
    broken += comparison_rules(comparison, policy)
    if without_judge is not None:
        scope = f"without the judge-scored items ({without_judge.why})"
        if without_judge.comparison is None:
            broken.append(f"{scope}: no other golden item to decide on")
        else:
            broken += [f"{scope}: {rule}" for rule in comparison_rules(without_judge.comparison, policy)]
    if broken:
        return PolicyVerdict(passed=False, reasons=broken)
    bounds = f"no category regresses more than {policy.max_category_regression:.3f}"
    if comparison.segment_deltas:
        bounds += f", no segment more than {policy.max_segment_regression:.3f}"
    reasons = [
        (
            f"delta {comparison.delta:+.3f}, 95% CI [{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}] "
            f"on {comparison.n} items; {bounds}"
        )
    ]
    if without_judge is not None and without_judge.comparison is not None:
        c = without_judge.comparison
        reasons.append(
            f"also without the judge-scored items ({without_judge.why}): delta {c.delta:+.3f}, "
            f"95% CI [{c.ci_low:+.3f}, {c.ci_high:+.3f}] on {c.n} items"
        )
    return PolicyVerdict(passed=True, reasons=reasons)
