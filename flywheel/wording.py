"""Small helpers for sentences a person reads (the CLI, the weekly review, reports)."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 user``, ``2 users``, ``0 users`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else many or word + 's'}"
