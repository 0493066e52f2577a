"""Does a merged prompt keep a winner's fix on one cluster? Judged verdict by verdict, with the
sampling noise of a handful of examples in mind.

Screening runs on 3 to 8 failing examples per cluster. On so few, "the merge resolved 50% where
the winner resolved 67%" is one example, which a rewording product model flips by chance; a strict
``<`` on shares rejected merges that kept every fix. The merge and the winner answer the *same*
examples, so the comparison is paired: only the examples where exactly one of them resolved the
complaint say anything, and a one-sided exact sign test on those (McNemar's exact test) asks
whether the merge is worse more often than chance allows. A merge that resolves no more than the
champion did on the cluster has lost the fix outright, whatever the test says. When the loss is
neither clear nor ruled out (a difference of an example or two), the caller draws more examples
and asks again; what is still unsure on the larger sample is kept (no loss shown).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel
from scipy.stats import binomtest


class FixVerdict(StrEnum):
    kept = "kept"
    lost = "lost"
    unsure = "unsure"  # within the noise of this many examples: draw more


class FixCheck(BaseModel):
    """One cluster's check of a merged prompt against the best winner there."""

    cluster_id: str
    winner: str  # the candidate id of the best winner on this cluster
    examples: int
    winner_resolved: int
    merged_resolved: int
    champion_resolved: int
    only_winner: int  # examples the winner resolved and the merge did not
    only_merged: int
    p_value: float | None
    verdict: FixVerdict
    redrawn: bool = False

    def text(self) -> str:
        """One line an approver can read: who resolved how much, and why it counts as kept or lost."""
        n = self.examples
        figures = (
            f"{self.cluster_id}: the merge resolved {self.merged_resolved}/{n}, {self.winner} "
            f"{self.winner_resolved}/{n}, the champion {self.champion_resolved}/{n}"
            f"{' (more examples drawn)' if self.redrawn else ''}"
        )
        if self.verdict is FixVerdict.lost and self.merged_resolved <= self.champion_resolved:
            return figures + ": no better than the champion, the fix is gone"
        if self.p_value is None:
            return figures
        differing = self.only_winner + self.only_merged
        return figures + f"; one-sided sign test on the {differing} differing examples p={self.p_value:.3f}"


def check_fix(
    cluster_id: str,
    winner: str,
    winner_resolved: Sequence[bool],
    merged_resolved: Sequence[bool],
    champion_resolved: Sequence[bool],
    *,
    alpha: float,
    final: bool = False,
) -> FixCheck:
    """Whether the merge keeps ``winner``'s fix on the cluster. ``final``: no more examples can be
    drawn, so an unsure difference is kept (the merge still beats the champion and no loss is shown)."""
    n = len(winner_resolved)
    if len(merged_resolved) != n or len(champion_resolved) != n:
        raise ValueError(f"{cluster_id}: winner, merge and champion must be judged on the same examples")
    only_w = sum(1 for w, m in zip(winner_resolved, merged_resolved, strict=True) if w and not m)
    only_m = sum(1 for w, m in zip(winner_resolved, merged_resolved, strict=True) if m and not w)
    w_n, m_n, c_n = sum(winner_resolved), sum(merged_resolved), sum(champion_resolved)
    p = binomtest(only_w, only_w + only_m, 0.5, alternative="greater").pvalue if only_w > only_m else None
    if w_n > c_n and m_n <= c_n:
        verdict = FixVerdict.lost
    elif p is None:
        verdict = FixVerdict.kept
    elif p < alpha:
        verdict = FixVerdict.lost
    else:
        verdict = FixVerdict.kept if final else FixVerdict.unsure
    return FixCheck(
        cluster_id=cluster_id,
        winner=winner,
        examples=n,
        winner_resolved=w_n,
        merged_resolved=m_n,
        champion_resolved=c_n,
        only_winner=only_w,
        only_merged=only_m,
        p_value=None if p is None else round(float(p), 4),
        verdict=verdict,
    )
