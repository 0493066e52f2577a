"""Named points of a cycle ("improve", "evaluate", "gate-logged") where listeners are called.

The product registers none. The resume tests register one that kills the process at a chosen
point (``tests/hooks/sitecustomize.py``), to prove that a killed cycle resumes and redoes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_listeners: list[Callable[[str], None]] = []


def on_checkpoint(listener: Callable[[str], None]) -> None:
    """Call ``listener(step)`` each time a cycle reaches a checkpoint."""
    _listeners.append(listener)


def checkpoint(step: str) -> None:
    for listener in list(_listeners):
        listener(step)
