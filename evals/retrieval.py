"""Retrieval quality of an index version: recall@k and MRR on queries whose right document is known.

Checks come from golden items that name their documents and from a cluster's corrected queries
(whose right documents are the ones the candidate changed). A candidate must not lower recall on
the *unaffected* checks (those whose documents it did not touch): fixing one topic by breaking
retrieval for another is rejected with that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from flywheel.candidates import RetrievalMetrics, RetrievalValidation

Search = Callable[[str, int], list[str]]  # query, k -> document ids, best first


@dataclass(frozen=True)
class RetrievalCheck:
    query: str
    relevant: frozenset[str]
    origin: str  # "golden" or "cluster"


def measure(search: Search, checks: Sequence[RetrievalCheck], k: int) -> RetrievalMetrics:
    if not checks:
        return RetrievalMetrics(n=0, recall_at_k=0.0, mrr=0.0)
    hits = rr = 0.0
    for check in checks:
        ranked = list(dict.fromkeys(search(check.query, k * 3)))[:k]  # documents, not chunks
        ranks = [i for i, doc in enumerate(ranked, start=1) if doc in check.relevant]
        hits += bool(ranks)
        rr += 1.0 / ranks[0] if ranks else 0.0
    return RetrievalMetrics(n=len(checks), recall_at_k=round(hits / len(checks), 4), mrr=round(rr / len(checks), 4))


def validate(
    active: Search,
    candidate: Search,
    checks: Iterable[RetrievalCheck],
    changed: set[str],
    k: int,
    tolerance: float = 0.0,
) -> RetrievalValidation:
    checks = list(checks)
    subsets = {
        "all": checks,
        "affected": [c for c in checks if c.relevant & changed or c.origin == "cluster"],
        "unaffected": [c for c in checks if not c.relevant & changed and c.origin != "cluster"],
    }
    before = {name: measure(active, cs, k) for name, cs in subsets.items()}
    after = {name: measure(candidate, cs, k) for name, cs in subsets.items()}
    drop = before["unaffected"].recall_at_k - after["unaffected"].recall_at_k
    if drop > tolerance:
        return RetrievalValidation(
            k=k,
            active=before,
            candidate=after,
            passed=False,
            reason=f"retrieval breaks for unaffected queries: recall@{k} {before['unaffected'].recall_at_k:.3f} -> "
            f"{after['unaffected'].recall_at_k:.3f} on {before['unaffected'].n} checks",
        )
    return RetrievalValidation(
        k=k,
        active=before,
        candidate=after,
        passed=True,
        reason=f"recall@{k} unaffected {before['unaffected'].recall_at_k:.3f} -> "
        f"{after['unaffected'].recall_at_k:.3f}, "
        f"affected {before['affected'].recall_at_k:.3f} -> {after['affected'].recall_at_k:.3f}",
    )
