"""``every``: ``all`` that cannot pass over nothing.

``assert all(check(x) for x in xs)`` holds when ``xs`` is empty, so a test whose input silently
vanished (no candidates, no events, no rows) would still pass. ``assert every(...)`` fails then.
"""

from __future__ import annotations

from collections.abc import Iterable


def every(values: Iterable[object]) -> bool:
    """True when there is at least one value and every value is true."""
    items = list(values)
    assert items, "nothing to check: the collection was empty, so all(...) would have passed vacuously"
    return all(items)
