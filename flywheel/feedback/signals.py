"""Normalise every signal of the taxonomy into a polarity (-1, 0, +1) and a strength (0..1).

The table, in one place so it can be read and argued with:

| signal | polarity | strength |
|---|---|---|
| thumbs_up / thumbs_down | +1 / -1 | 1.0 |
| rating 1..5 | 1-2 negative, 3 neutral, 4-5 positive | 1.0 at the ends, 0.5 next to neutral |
| correction | -1 | 1.0 (the user supplied the right answer) |
| edit | -1 when the changed fraction reaches the threshold, else +1 | 0.5 at it, 1.0 at twice it; 0.3 if positive |
| accept / copy | +1 | 0.6 / 0.5 |
| dismiss | -1 (0 with reason `already_done`: not a quality failure) | 0.4 |
| outcome 1 / 0 | +1 / -1 | 0.8 |
| expert_review 0..1 | >0.5 positive, <0.5 negative, 0.5 neutral | distance from 0.5, doubled, at least 0.5 |
"""

from __future__ import annotations

from rapidfuzz.distance import Indel

from flywheel.schemas import FeedbackEvent, Reason, Signal

_FIXED: dict[Signal, tuple[int, float]] = {
    Signal.thumbs_up: (1, 1.0),
    Signal.thumbs_down: (-1, 1.0),
    Signal.correction: (-1, 1.0),
    Signal.accept: (1, 0.6),
    Signal.copy: (1, 0.5),
}


def edit_fraction(before: str, after: str) -> float:
    """How much of the output the user changed: 0 = untouched, 1 = rewritten.

    The normalised insert/delete distance (rapidfuzz, C++), i.e. 1 - difflib's ratio, fast enough
    for every edit event of a million-line file.
    """
    return round(Indel.normalized_distance(before, after), 4)


def normalise(event: FeedbackEvent, edit_negative_threshold: float = 0.3) -> tuple[int, float]:
    """Return ``(polarity, strength)`` for a validated event."""
    s = event.signal
    if s in _FIXED:
        return _FIXED[s]
    v = event.value
    if s is Signal.rating:
        assert v is not None
        if v <= 2:
            return -1, 1.0 if v <= 1.5 else 0.5
        if v >= 4:
            return 1, 1.0 if v >= 4.5 else 0.5
        return 0, 0.0
    if s is Signal.dismiss:
        return (0, 0.0) if event.reason is Reason.already_done else (-1, 0.4)
    if s is Signal.outcome:
        return (1, 0.8) if v == 1 else (-1, 0.8)
    if s is Signal.expert_review:
        assert v is not None
        if v == 0.5:
            return 0, 0.0
        return (1 if v > 0.5 else -1), max(0.5, min(1.0, abs(v - 0.5) * 2))
    if s is Signal.edit:
        frac = edit_fraction(event.output, event.final_text or "")
        if frac >= edit_negative_threshold:
            return -1, min(1.0, round(frac / max(edit_negative_threshold, 1e-9) * 0.5, 4))
        return 1, 0.3
    raise AssertionError(f"unhandled signal {s}")
