"""The promotion policy: a decision and its reasons, as data shown wherever the candidate is."""

from __future__ import annotations

from pydantic import BaseModel

from evals.stats import Comparison
from flywheel.config import PolicySettings


class PolicyVerdict(BaseModel):
    passed: bool
    reasons: list[str]  # why it passed, or every rule it broke

    @property
    def text(self) -> str:
        return "; ".join(self.reasons)


def judge_candidate(comparison: Comparison | None, errors: int, total: int, policy: PolicySettings) -> PolicyVerdict:
    """Apply every rule; a candidate passes only when none is broken."""
    broken: list[str] = []
    if total and errors / total > policy.max_error_rate:
        broken.append(f"{errors} of {total} golden items errored (allowed: {policy.max_error_rate:.0%})")
    if comparison is None:
        return PolicyVerdict(passed=False, reasons=broken or ["no golden item could be compared"])
    if comparison.n < policy.min_golden_size:
        broken.append(f"only {comparison.n} golden items scored, the policy needs {policy.min_golden_size}")
    if comparison.delta < policy.min_delta:
        broken.append(f"delta {comparison.delta:+.3f} is below the minimum {policy.min_delta:+.3f}")
    if policy.require_ci_above_zero and comparison.ci_low <= 0:
        broken.append(f"95% CI [{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}] does not exclude zero")
    for category, d in sorted(comparison.category_deltas.items()):
        if d < -policy.max_category_regression:
            broken.append(f"category {category!r} regresses by {-d:.3f} (allowed {policy.max_category_regression:.3f})")
    if broken:
        return PolicyVerdict(passed=False, reasons=broken)
    return PolicyVerdict(
        passed=True,
        reasons=[
            f"delta {comparison.delta:+.3f}, 95% CI [{comparison.ci_low:+.3f}, {comparison.ci_high:+.3f}] "
            f"on {comparison.n} items; no category regresses more than {policy.max_category_regression:.3f}"
        ],
    )
