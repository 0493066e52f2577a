"""The watch's per-cluster figure: one failure cluster's queries before and after its fix.

Its own module because both the watch (:mod:`flywheel.loop.watch`, which reports it) and the
per-cluster computation (:mod:`flywheel.loop.watch_clusters`, which makes it) need it, and the
second must not import the first (the layers stay acyclic: import-linter checks it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from flywheel.loop.watch_stats import Comparison


class ClusterRate(BaseModel):
    """A failure cluster's own queries before and after its fix (the cluster's events left out)."""

    cluster_id: str
    candidate_id: str
    kind: str
    version: str
    queries: int
    comparison: Comparison = Field(exclude=True)

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The JSON names the watch document has always had (before/after, not side/baseline)."""
        c = self.comparison
        return {
            **handler(self),
            "events_before": c.baseline_events,
            "negative_rate_before": c.baseline_rate,
            "events_after": c.events,
            "negative_rate_after": c.negative_rate,
            "difference": c.difference,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "verdict": c.verdict,
        }
