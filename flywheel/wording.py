"""Small helpers for sentences a person reads (the CLI, the weekly review, reports): plurals, and
times as ISO 8601 in UTC with a ``Z`` beside how long ago, so a reader neither converts an epoch
nor guesses a timezone."""

from __future__ import annotations

from datetime import UTC, datetime


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 user``, ``2 users``, ``0 users`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def iso_utc(when: datetime) -> str:
    """``2026-12-05T07:10:00Z``: to the second, UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(when: datetime, now: datetime) -> str:
    """``3 min ago``, ``2 h ago``, ``5 days ago`` (or ``in ...`` for a time after ``now``)."""
    seconds = (now - when).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "just now"
    if span < 3600:
        text = f"{int(span // 60)} min"
    elif span < 2 * 86400:
        text = f"{int(span // 3600)} h"
    else:
        text = f"{int(span // 86400)} days"
    return f"{text} ago" if seconds > 0 else f"in {text}"


def iso_and_ago(when: datetime, now: datetime | None = None) -> str:
    """``2026-12-05T07:10:00Z (3 min ago)``."""
    return f"{iso_utc(when)} ({ago(when, now or datetime.now(UTC))})"
