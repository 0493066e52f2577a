"""Simulated production: users of a live product played against ``flywheel serve``, so the watch,
the canary split and the drift alarms can be seen working end to end (the demo, tests, benchmarks).

For each simulated request, as a product would:

1. pick a user (seeded; activity is heavy-tailed, log-normal weights: a few users send many times
   the median user's requests, as on any real product, which is what the watch's per-user cap is for);
2. ask the service what to serve that user, ``GET /v1/champion?user_id=`` (a ``read`` key): the arm,
   prompt version and template, index version and model;
3. answer a query of the demo world (its intents in their traffic shares) with the simulator's
   product model and the served prompt (the output text only; no endpoint call);
4. draw the user's feedback: negative with the served variant's true negative rate
   (:class:`sim.quality.QualityMap`), a thumbs-down with a reason fitting the query's failure
   category, else a thumbs-up;

and send the events in batches to ``POST /v1/feedback`` (an ``ingest`` key) with ``user_id``, ``arm``,
``prompt_version``, ``index_version``, ``model`` and ``consent`` (85% of users consent). With
``via="otlp"`` the same requests and feedback go instead to ``POST /v1/traces`` as OpenTelemetry GenAI
spans (OTLP JSON, :mod:`sim.otlp_traffic`), as a product instrumented with OpenTelemetry exports them;
the same seed stores the same feedback either way (only ``event_id`` and ``metadata`` differ).

Timestamps are the current time when the user was served (UTC): the watch compares a canary with
production on the events since the canary started, and a promotion with what it replaced on the
events since the move, both by these timestamps, so traffic sent after a pointer moved counts for
the new variant, and its events carry the versions actually served (the service's champion cache
may answer the old variant for ``serve.champion_ttl_seconds`` after a move: those events say so).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from flywheel.client import FlywheelClient
from flywheel.config_sections import OtlpImportSettings
from flywheel.sim.otlp_traffic import export_request
from flywheel.sim.quality import QualityMap, Variant
from flywheel.sim.rules import INTENTS_BY_ID, PRODUCT, product_answer
from flywheel.sim.world import REASON_FOR_CATEGORY, TRAFFIC, make_query

CONSENT_SHARE = 0.85
# How the feedback reaches the service: SPEC's events to POST /v1/feedback, or GenAI spans to POST /v1/traces.
Via = Literal["feedback", "otlp"]
VIAS: tuple[Via, ...] = ("feedback", "otlp")


class TrafficOptions(BaseModel):
    users: int = Field(2000, ge=1, description="Distinct users in the population.")
    requests: int = Field(2000, ge=0, description="Simulated requests (one feedback event each).")
    seed: int = 0
    batch: int = Field(250, ge=1, le=1000, description="Events per POST /v1/feedback (traces per POST /v1/traces).")
    activity_sigma: float = Field(1.0, ge=0.0, description="Spread of the log-normal user activity (0: uniform).")
    user_prefix: str = Field("user", description="User ids are PREFIX-NNNNN.")
    via: Via = Field("feedback", description="feedback: POST /v1/feedback; otlp: GenAI spans to POST /v1/traces.")
    consent_key: str = Field(
        OtlpImportSettings.model_fields["consent_key"].default,
        min_length=1,
        description="With via otlp: the span attribute saying the user consented (the service's "
        "[imports.otlp] consent_key).",
    )


class ArmRates(BaseModel):
    """Events sent, negative ones and their share, for one arm or one variant."""

    events: int = 0
    negative: int = 0
    users: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.negative / self.events, 4) if self.events else None

    def public(self) -> dict[str, Any]:
        return {"events": self.events, "negative": self.negative, "negative_rate": self.rate, "users": self.users}


class VariantRates(ArmRates):
    arm: str
    prompt_version: str | None
    index_version: str | None
    model: str | None
    true_rate: float


class TrafficReport(BaseModel):
    requests: int
    accepted: int = Field(
        description="Events stored; via otlp, the events of spans not rejected (OTLP's answer counts "
        "rejected spans only, so a duplicate counts here)."
    )
    duplicates: int = Field(description="Events already stored (always 0 via otlp: OTLP does not say).")
    rejected: int
    users: int = Field(description="Distinct users who sent an event.")
    by_arm: dict[str, ArmRates]
    by_variant: list[VariantRates]
    started_at: datetime
    ended_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "users": self.users,
            "by_arm": {arm: r.public() for arm, r in self.by_arm.items()},
            "by_variant": [
                {
                    **v.public(),
                    "arm": v.arm,
                    "prompt_version": v.prompt_version,
                    "index_version": v.index_version,
                    "model": v.model,
                    "true_rate": v.true_rate,
                }
                for v in self.by_variant
            ],
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
        }


def user_weights(n: int, sigma: float, rng: random.Random) -> list[float]:
    """Heavy-tailed activity: log-normal weights (median 1)."""
    return [math.exp(rng.gauss(0.0, sigma)) for _ in range(n)]


def _reason(category: str, rng: random.Random) -> str:
    if category in REASON_FOR_CATEGORY:
        return REASON_FOR_CATEGORY[category]
    return rng.choice(["wrong", "not_relevant", "missing_context", "other"])


def foreign_product(client: FlywheelClient) -> str | None:
    """Why the service looks like another product's (None when it serves the simulator's world).

    The simulated feedback is stored like real feedback: sent to a real product's service it would
    pollute that product's triage and watch. The service shows one thing over HTTP that tells: the
    prompt it serves. The world's prompt, and every revision the loop drafts from it, names its product."""
    served = client.champion(None)
    if PRODUCT in served.prompt.template:
        return None
    return (
        f"the service serves prompt {served.prompt.name!r} version {served.prompt.version}, which is not the "
        f"simulator world's (it never names {PRODUCT}): simulated feedback would land in that product's "
        "store. Point `sim traffic` at a demo service, or pass --force"
    )


class TrafficGenerator:
    """Plays ``options.requests`` requests of a seeded user population against a live service."""

    def __init__(
        self,
        url: str,
        *,
        read_key: str,
        ingest_key: str,
        quality: QualityMap,
        options: TrafficOptions | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.options = options or TrafficOptions()
        self.quality = quality
        self.clock = clock or (lambda: datetime.now(UTC))
        self._read = self.reader = FlywheelClient(url, read_key)
        self._ingest = FlywheelClient(url, ingest_key) if ingest_key != read_key else self._read
        population = random.Random(f"users:{self.options.seed}")  # the same users whatever the request count
        self.user_ids = [f"{self.options.user_prefix}-{i:05d}" for i in range(self.options.users)]
        self.weights = user_weights(self.options.users, self.options.activity_sigma, population)
        self.consent = {u: population.random() < CONSENT_SHARE for u in self.user_ids}

    def run(self, requests: int | None = None, *, seed: int | None = None) -> TrafficReport:
        """Send the traffic; ``seed`` (default the options') draws users, queries and feedback."""
        o = self.options
        n = o.requests if requests is None else requests
        rng = random.Random(f"traffic:{o.seed if seed is None else seed}")
        started = self.clock()
        run_id = f"{o.seed if seed is None else seed}-{int(started.timestamp() * 1000)}"
        intents, shares = [INTENTS_BY_ID[t.intent] for t in TRAFFIC], [t.weight for t in TRAFFIC]
        who = rng.choices(self.user_ids, self.weights, k=n)
        counts = {"accepted": 0, "duplicates": 0, "rejected": 0}
        by_arm: dict[str, ArmRates] = {}
        by_variant: dict[tuple[str, str | None, str | None, str | None], VariantRates] = {}
        seen: dict[str, set[str]] = {}
        batch: list[dict[str, Any]] = []
        for i, user in enumerate(who):
            served = self._read.champion(user)
            variant = Variant(prompt_version=served.prompt.version, index_version=served.index, model=served.model)
            intent = rng.choices(intents, shares)[0]
            query, _ = make_query(intent, rng)
            true_rate = self.quality.rate(variant)
            negative = rng.random() < true_rate
            event: dict[str, Any] = {
                "event_id": f"traffic-{run_id}-{i}",
                "ts": self.clock().isoformat(),
                "user_id": user,
                "consent": self.consent[user],
                "arm": served.arm,
                "prompt_version": variant.prompt_version,
                "index_version": variant.index_version,
                "model": variant.model,
                "query": query,
                "output": product_answer(served.prompt.template, query),
                "signal": "thumbs_down" if negative else "thumbs_up",
                "metadata": {"source": "flywheel sim traffic", "intent": intent.id},
            }
            if negative:
                event["reason"] = _reason(intent.category, rng)
            batch.append(event)
            key = (served.arm, variant.prompt_version, variant.index_version, variant.model)
            for rates in (
                by_arm.setdefault(served.arm, ArmRates()),
                by_variant.setdefault(
                    key,
                    VariantRates(
                        arm=key[0], prompt_version=key[1], index_version=key[2], model=key[3], true_rate=true_rate
                    ),
                ),
            ):
                rates.events += 1
                rates.negative += int(negative)
            seen.setdefault(served.arm, set()).add(user)
            seen.setdefault(repr(key), set()).add(user)
            if len(batch) >= o.batch:
                self._send(batch, counts)
        if batch:
            self._send(batch, counts)
        for arm, rates in by_arm.items():
            rates.users = len(seen[arm])
        for variant_key, rates in by_variant.items():
            rates.users = len(seen[repr(variant_key)])
        return TrafficReport(
            requests=n,
            **counts,
            users=len(set(who)),
            by_arm=dict(sorted(by_arm.items())),
            by_variant=list(by_variant.values()),
            started_at=started,
            ended_at=self.clock(),
        )

    def _send(self, batch: list[dict[str, Any]], counts: dict[str, int]) -> None:
        if self.options.via == "otlp":
            # one span (one evaluation) per event: a rejected span is a rejected event
            traced = self._ingest.traces(export_request(batch, consent_key=self.options.consent_key))
            counts["accepted"] += len(batch) - traced.rejected_spans
            counts["rejected"] += traced.rejected_spans
        else:
            result = self._ingest.feedback(batch)
            counts["accepted"] += result.accepted
            counts["duplicates"] += result.duplicates
            counts["rejected"] += result.rejected
        batch.clear()

    def close(self) -> None:
        self._read.close()
        if self._ingest is not self._read:
            self._ingest.close()

    def __enter__(self) -> TrafficGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
