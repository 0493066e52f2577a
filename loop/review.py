"""The weekly feedback review: the worst-rated outputs of the past week, grouped by failure
cluster, and the trend of the negative-feedback rate, for the team to read together.

Only consented text is shown; events without consent are counted in every number but their text
is withheld. The flow ``weekly-feedback-review`` publishes :func:`review_markdown` as a Prefect
artifact; ``flywheel review`` prints the same document.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from flywheel.config import Settings
from flywheel.runtime import runtime_for
from flywheel.schemas import ClusterDiagnosis, StoredEvent
from flywheel.wording import iso_utc, plural

REVIEW_KEY = "flywheel-weekly-review"
TREND_KEY = "flywheel-negative-rate-trend"


class WeekRate(BaseModel):
    week_start: str
    events: int
    negative: int
    rate: float | None


class ReviewedCluster(BaseModel):
    cluster_id: str
    category: str
    route: str
    negative: int
    users: int
    withheld: int = Field(0, description="Events of the cluster without consent: counted, text not shown.")
    worst: list[dict[str, Any]] = Field(default_factory=list)
    diagnosis: ClusterDiagnosis | None = Field(
        None,
        description="The last cycle's diagnosis of a cluster triage left in `other`: the category it named, "
        "or why none could be named (then the cycle skipped it and people should read it here).",
    )


class WeeklyReview(BaseModel):
    since: datetime
    until: datetime
    events: int
    negative: int
    rate: float | None
    trend: list[WeekRate]
    direction: str
    clusters: list[ReviewedCluster]
    newest_event: datetime | None = Field(
        None,
        description="When the newest stored event happened, at any time: says where the data is when the "
        "window holds none.",
    )
    loop_velocity: dict[str, float | int | None] = Field(
        default_factory=dict,
        description="Median hours from a cluster's first negative event to the promotion of its "
        "fix (promoted_hours) and to the watch's `better` verdict on it (verified_hours), over every promoted fix.",
    )


def _week_start(ts: datetime, until: datetime) -> datetime:
    """Weeks end at ``until``: week 0 is (until - 7d, until]."""
    back = int((until - ts).total_seconds() // (7 * 86400))
    return until - timedelta(days=7 * (back + 1))


def _direction(trend: list[WeekRate]) -> str:
    rates = [w.rate for w in trend if w.rate is not None]
    if len(rates) < 2:
        return "not enough weeks to tell"
    last, before = rates[-1], sum(rates[:-1]) / len(rates[:-1])
    if abs(last - before) < 0.02:
        return f"steady ({last:.1%} this week, {before:.1%} on average before)"
    return f"{'rising' if last > before else 'falling'} ({last:.1%} this week, {before:.1%} on average before)"


def weekly_review(
    settings: Settings, *, until: datetime | None = None, days: int = 7, weeks: int = 6, per_cluster: int = 5
) -> WeeklyReview:
    """The review of the ``days`` before ``until`` (default: now), with ``weeks`` weeks of trend."""
    from flywheel.loop.diagnosis_step import last_diagnoses
    from flywheel.loop.triage_step import triage_step

    until = until or datetime.now(UTC)
    since = until - timedelta(days=days)
    trend_since = until - timedelta(days=7 * weeks)
    totals: Counter[datetime] = Counter()
    negatives: Counter[datetime] = Counter()
    events_in_window = 0
    with runtime_for(settings).borrow_feedback() as store:
        for e in store.events(since=trend_since):
            if e.ts > until:
                continue
            week = _week_start(e.ts, until)
            totals[week] += 1
            events_in_window += e.ts > since
            negatives[week] += e.polarity < 0
        window = {e.event_id: e for e in store.events(polarity=-1, since=since) if e.ts <= until}
        newest = store.newest_ts()
    velocity = _velocity(settings)
    trend = []
    for k in range(weeks - 1, -1, -1):
        week = until - timedelta(days=7 * (k + 1))
        n = totals[week]
        trend.append(
            WeekRate(
                week_start=week.isoformat(),
                events=n,
                negative=negatives[week],
                rate=round(negatives[week] / n, 4) if n else None,
            )
        )
    clusters = []
    for cluster in last_diagnoses(settings, triage_step(runtime_for(settings))):
        members = [window[i] for i in cluster.event_ids if i in window]
        if not members:
            continue
        shown = sorted((e for e in members if e.consent), key=lambda e: (-e.strength, e.ts, e.event_id))
        clusters.append(
            ReviewedCluster(
                cluster_id=cluster.cluster_id,
                category=cluster.category,
                route=cluster.route,
                negative=len(members),
                users=len({e.user_id or e.event_id for e in members}),
                withheld=sum(1 for e in members if not e.consent),
                worst=[_shown(e) for e in shown[:per_cluster]],
                diagnosis=cluster.diagnosis,
            )
        )
    clusters.sort(key=lambda c: (-c.negative, c.cluster_id))
    return WeeklyReview(
        since=since,
        until=until,
        events=events_in_window,
        negative=len(window),
        rate=round(len(window) / events_in_window, 4) if events_in_window else None,
        trend=trend,
        direction=_direction(trend),
        clusters=clusters,
        newest_event=newest,
        loop_velocity=velocity,
    )


def _velocity(settings: Settings) -> dict[str, float | int | None]:
    """Loop velocity over every promoted fix, as `status` gives it."""
    from flywheel.candidates import Decision
    from flywheel.loop.promotion import loop_velocity

    with runtime_for(settings).borrow_state() as state:
        return loop_velocity(state.candidates(decision=Decision.promoted))


def _shown(e: StoredEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "ts": e.ts.isoformat(),
        "signal": e.signal,
        "value": e.value,
        "reason": e.reason,
        "strength": round(e.strength, 2),
        "query": e.query,
        "output": e.output,
        "comment": e.comment,
        "correction": e.correction,
        "final_text": e.final_text,
    }


def _cell(text: str | None, limit: int = 120) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _window_empty(review: WeeklyReview) -> str:
    """Why there is nothing to review, and the --until that would show the data (rather than "0 of 0")."""
    span = f"No feedback between {iso_utc(review.since)} and {iso_utc(review.until)}"
    if review.newest_event is None:
        return f"{span}: the store holds no events yet (flywheel ingest FILE)."
    # Rounded up to the second, so the newest event is inside the suggested window.
    newest = review.newest_event + timedelta(microseconds=-review.newest_event.microsecond % 1_000_000)
    return f"{span}; the newest event is from {iso_utc(newest)}: pass --until {iso_utc(newest)}"


def _feedback_text(e: dict[str, Any]) -> str | None:
    """What the user said was right (a correction, or the text they sent after an edit), else their comment."""
    return e["correction"] or e.get("final_text") or e["comment"]


def _velocity_line(v: dict[str, float | int | None]) -> str:
    promoted, verified = v.get("promoted_hours"), v.get("verified_hours")
    if promoted is None:
        return "Loop velocity: no fix promoted yet."
    line = f"Loop velocity: a median {promoted:g} h from a cluster's first negative event to its fix's promotion"
    if verified is None:
        return line + "; no fix verified on live traffic yet (`flywheel watch`)."
    return line + (
        f", {verified:g} h to its verification on live traffic "
        f"({plural(int(v.get('verified_fixes') or 0), 'fix', 'fixes')} verified by `flywheel watch`)."
    )


def _diagnosis_lines(d: ClusterDiagnosis | None) -> list[str]:
    """A cluster without reasons: what the last cycle's diagnosis named, or that the cycle skipped it
    and why (nothing automatic will act on it: this review is where a person reads it)."""
    if d is None:
        return []
    if d.diagnosed:
        return ["", f"Feedback without a reason, diagnosed by {d.model} as **{d.category}**: {d.root_cause}"]
    return [
        "",
        (
            f"**Skipped by the last cycle, left `other`:** {d.why_not}. Read these outputs: no improver "
            "targets the cluster until its feedback says what is wrong."
        ),
    ]


def review_markdown(review: WeeklyReview) -> str:
    rate = "-" if review.rate is None else f"{review.rate:.1%}"
    summary = (
        _window_empty(review)
        if review.events == 0
        else f"{review.negative} negative of {plural(review.events, 'event')} this week ({rate}); "
        f"negative-feedback rate {review.direction}."
    )
    lines = [
        f"# Weekly feedback review, {review.since:%Y-%m-%d} to {review.until:%Y-%m-%d}",
        "",
        summary,
        "",
        _velocity_line(review.loop_velocity),
        "",
        "## Negative-feedback rate by week",
        "",
        "| week from | events | negative | rate |",
        "|---|---|---|---|",
    ]
    for w in review.trend:
        lines.append(
            f"| {w.week_start[:10]} | {w.events} | {w.negative} | {'-' if w.rate is None else f'{w.rate:.1%}'} |"
        )
    lines += ["", "## Worst-rated outputs, by cluster", ""]
    if not review.clusters:
        lines.append("No negative feedback this week.")
    for c in review.clusters:
        withheld = f", {c.withheld} without consent (text withheld)" if c.withheld else ""
        lines += [
            (
                f"### `{c.cluster_id}` ({c.category}, routed to {c.route}): {c.negative} negative from "
                f"{plural(c.users, 'user')}{withheld}"
            ),
            *_diagnosis_lines(c.diagnosis),
            "",
            "| when | signal | reason | query | output | comment / correction / edit |",
            "|---|---|---|---|---|---|",
        ]
        for e in c.worst:
            signal = e["signal"] + (f" {e['value']:g}" if e["value"] is not None else "")
            lines.append(
                f"| {e['ts'][:16]} | {signal} | {e['reason'] or '-'} | {_cell(e['query'])} | "
                f"{_cell(e['output'])} | {_cell(_feedback_text(e)) or '-'} |"
            )
        lines.append("")
    return "\n".join(lines)
