"""When to ask a user for feedback (``POST /v1/ask``): after a low-confidence output, a long task
or a use of a feature under watch; never to a user who opted out, never more than
``ask.per_user_per_day`` times a UTC day. Asking sparingly keeps the answers coming."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Protocol

from flywheel.config_sections import AskSettings
from flywheel.live import AskReason, AskRequest, AskResult


class Ledger(Protocol):
    """Where asks and opt-outs are counted (``flywheel.ask_ledger.AskLedger``)."""

    def opted_out(self, user_id: str) -> bool: ...

    def take_ask(self, user_id: str, day: date, cap: int) -> bool: ...


def trigger(policy: AskSettings, req: AskRequest) -> AskResult | None:
    """What about this output calls for asking, if anything (the first reason that applies)."""
    if req.confidence is not None and req.confidence < policy.confidence_below:
        return AskResult(
            ask=True,
            reason=AskReason.low_confidence,
            detail=f"confidence {req.confidence:g} is below {policy.confidence_below:g}",
        )
    if req.task_seconds is not None and req.task_seconds >= policy.long_task_seconds:
        return AskResult(
            ask=True,
            reason=AskReason.long_task,
            detail=f"the task took {req.task_seconds:g} s, at least {policy.long_task_seconds:g} s",
        )
    if req.feature is not None and req.feature in policy.features:
        return AskResult(
            ask=True, reason=AskReason.feature_under_watch, detail=f"feature {req.feature!r} is under watch"
        )
    return None


def decide(policy: AskSettings, req: AskRequest, ledger: Ledger, now: datetime | None = None) -> AskResult:
    """The decision; an ask is counted against the user's day only when it is a yes."""
    if ledger.opted_out(req.user_id):
        return AskResult(ask=False, reason=AskReason.opted_out, detail="the user opted out of feedback requests")
    wanted = trigger(policy, req)
    if wanted is None:
        return AskResult(
            ask=False, reason=AskReason.no_trigger, detail="no low confidence, long task or feature under watch"
        )
    day = (now or datetime.now(UTC)).astimezone(UTC).date()
    if not ledger.take_ask(req.user_id, day, policy.per_user_per_day):
        return AskResult(
            ask=False,
            reason=AskReason.daily_cap,
            detail=f"{wanted.detail}, but the user was asked {policy.per_user_per_day} times today",
        )
    return wanted
