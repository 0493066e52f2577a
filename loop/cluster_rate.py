"""The watch's per-cluster figure: one failure cluster's queries before and after its fix.

Its own module because both the watch (:mod:`flywheel.loop.watch`, which reports it) and the
per-cluster computation (:mod:`flywheel.loop.watch_clusters`, which makes it) need it, and the
second must not import the first (the layers stay acyclic: import-linter checks it)."""

from __future__ import annotations

from pydantic import BaseModel

from flywheel.loop.watch_stats import Verdict


class ClusterRate(BaseModel):
    """A failure cluster's own queries before and after its fix (the cluster's events left out)."""

    cluster_id: str
    candidate_id: str
    kind: str
    version: str
    queries: int
    events_before: int
    negative_rate_before: float | None
    events_after: int
    negative_rate_after: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: Verdict
