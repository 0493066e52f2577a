"""Drift: is quality sliding while nobody changed anything? Two trends and one alarm.

- **Negative-rate trend**: the last ``watch.drift_window_days`` of rated feedback against the
  ``watch.drift_baseline_days`` before them (a window-vs-baseline test on per-user-capped counts,
  Newcombe's interval at ``watch.alpha``). Rising means the whole interval is above zero *and* the
  rise is at least ``watch.drift_min_rise``: a tiny but significant change on a huge store is not
  worth a cycle. The windows end at the newest event, so a replayed store reads the same.
- **Golden trend**: the champion's golden score over the last ``watch.golden_cycles`` finished cycles
  on the latest cycle's golden version (scores on different golden sets do not compare); falling
  when the latest is ``watch.golden_drop`` below the best of the ones before.

Either raises the alarm. ``status`` shows it; the watch (CLI and flow) emits the Prefect event
``flywheel.drift.alarm`` once per alarm episode (:func:`alarm_is_new`), which a deployment trigger
turns into a cycle.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel

from flywheel.config import Settings
from flywheel.feedback.store import FeedbackStore
from flywheel.loop.watch_data import RatedEvents
from flywheel.loop.watch_stats import compare
from flywheel.state import StateStore

DAY = 86400.0
ALARM = "drift_alarm"  # state pointer: the alarm episode in progress (its reasons), absent when none
Direction = Literal["rising", "falling", "flat", "unknown"]


class RateTrend(BaseModel):
    direction: Direction
    recent_rate: float | None = None
    baseline_rate: float | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    recent_events: int = 0
    baseline_events: int = 0


class GoldenTrend(BaseModel):
    direction: Direction
    golden_version: str | None = None
    scores: list[float] = []
    latest: float | None = None
    best_before: float | None = None


class Drift(BaseModel):
    """``status``'s ``drift``: SPEC's four fields."""

    negative_rate_trend: RateTrend
    golden_trend: GoldenTrend
    alarm: bool
    why: str


def rate_trend(settings: Settings, store: FeedbackStore, now: float | None = None) -> RateTrend:
    w = settings.watch
    now = time.time() if now is None else now
    data = RatedEvents(store.rated(since=now - (w.drift_window_days + w.drift_baseline_days) * DAY, versions=()))
    if data.size == 0:
        return RateTrend(direction="unknown")
    end = float(data.ts.max()) + 1e-6
    split = end - w.drift_window_days * DAY
    cap = settings.triage.per_user_cap
    recent = data.side(data.between(split, end), cap)
    baseline = data.side(data.between(split - w.drift_baseline_days * DAY, split), cap)
    comp = compare(recent, baseline, alpha=w.alpha, min_events=w.min_events, sequential=False)
    direction: Direction = "unknown" if comp.difference is None or not comp.enough else "flat"
    if comp.enough and comp.ci_low is not None and comp.ci_low > 0 and (comp.difference or 0) >= w.drift_min_rise:
        direction = "rising"
    elif comp.enough and comp.ci_high is not None and comp.ci_high < 0:
        direction = "falling"
    return RateTrend(
        direction=direction,
        recent_rate=comp.negative_rate,
        baseline_rate=comp.baseline_rate,
        difference=comp.difference,
        ci_low=comp.ci_low,
        ci_high=comp.ci_high,
        recent_events=recent.events,
        baseline_events=baseline.events,
    )


def golden_trend(settings: Settings, state: StateStore) -> GoldenTrend:
    w = settings.watch
    done = [c for c in state.cycles(limit=200) if c["status"] == "done" and c["champion_score"] is not None]
    if not done:
        return GoldenTrend(direction="unknown")
    version = done[0]["golden_version"]
    scores = [float(c["champion_score"]) for c in done if c["golden_version"] == version][: w.golden_cycles][::-1]
    if len(scores) < 2:
        return GoldenTrend(direction="unknown", golden_version=version, scores=scores, latest=scores[-1])
    latest, best = scores[-1], max(scores[:-1])
    direction: Direction = "flat"
    if best - latest >= w.golden_drop:
        direction = "falling"
    elif latest - max(scores[:-1]) >= w.golden_drop:
        direction = "rising"
    return GoldenTrend(direction=direction, golden_version=version, scores=scores, latest=latest, best_before=best)


def drift(settings: Settings, state: StateStore, store: FeedbackStore, now: float | None = None) -> Drift:
    """Both trends and whether they alarm, with the reasons in one sentence."""
    rate = rate_trend(settings, store, now)
    golden = golden_trend(settings, state)
    reasons = []
    if rate.direction == "rising":
        reasons.append(
            f"negative rate rose from {rate.baseline_rate} to {rate.recent_rate} over the last "
            f"{settings.watch.drift_window_days:g} day(s) (difference {rate.difference}, interval "
            f"[{rate.ci_low}, {rate.ci_high}])"
        )
    if golden.direction == "falling":
        reasons.append(
            f"the champion's golden score fell to {golden.latest} from {golden.best_before} "
            f"(golden version {(golden.golden_version or '')[:12]})"
        )
    why = (
        "; ".join(reasons)
        if reasons
        else (f"no drift: negative rate {rate.direction}, golden score {golden.direction}")
    )
    return Drift(negative_rate_trend=rate, golden_trend=golden, alarm=bool(reasons), why=why)


def alarm_is_new(state: StateStore, current: Drift) -> bool:
    """True once per alarm episode (so the trigger starts one cycle, not one every 15 minutes);
    the episode ends when the alarm clears."""
    active = state.pointer(ALARM)
    if not current.alarm:
        if active:
            state.clear_pointer(ALARM)
        return False
    if active:
        return False
    state.set_pointer(ALARM, json.dumps({"at": time.time(), "why": current.why}))
    return True


def payload(current: Drift) -> dict[str, Any]:
    return current.model_dump(mode="json")
