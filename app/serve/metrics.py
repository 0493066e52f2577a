"""Prometheus metrics of the service: feedback events by outcome and request latency by route.

With several uvicorn workers each is its own process, so ``flywheel serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` (under ``$FLYWHEEL_HOME/metrics/``) before any worker starts: every
worker writes its values there and ``/metrics``, whichever worker answers it, sums them all.
Without it (an app built in-process, as tests do) the values are this process's.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter("flywheel_events_accepted", "Feedback events newly stored.", registry=r)
        self.duplicates = Counter(
            "flywheel_events_duplicates", "Feedback events already stored (by event_id).", registry=r
        )
        self.rejected = Counter("flywheel_events_rejected", "Feedback events rejected and quarantined.", registry=r)
        self.latency = Histogram(
            "flywheel_request_seconds",
            "Request latency, by method, route and status.",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)
        return generate_latest(merged)


class LatencyMiddleware:
    """Times every HTTP request (pure ASGI: no per-request task or body copy), labelled by the route
    template that matched, never the raw path."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], route, str(status[0])).observe(time.perf_counter() - start)
