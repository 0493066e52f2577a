"""The screening judge (is a user's complaint resolved by a new answer?) against expert reviews,
reported like the golden judge's calibration.

Screening shows the judge a failing example (a consented negative event: query, logged answer,
feedback) and a fresh answer. Experts never saw this cycle's fresh answers, but an expert review
of *another* answer to the same query is one: a pair is a consented negative event and a consented
expert review of a different answer to its query, and the judge's ``resolved`` is compared with the
expert's pass (value >= 0.5). At most ``judge.max_items`` pairs, one per review, chosen by hashes
(the same every time). Verdicts are cached per pair like screening's own (the same cache), so a
resumed cycle asks nothing again. Screening does not gate a promotion (the golden set does), so
this is reported, never enforced.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import openai

from flywheel.config import Settings
from flywheel.evals.calibration import PASS, JudgeCalibration, agreement, assess
from flywheel.feedback.store import FeedbackStore
from flywheel.improvers.screening import FailingExample
from flywheel.proposals import normalise
from flywheel.schemas import StoredEvent
from flywheel.state import StateStore


def _h(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _example(e: StoredEvent) -> FailingExample:
    better = e.correction or (e.final_text if e.signal == "edit" else None)
    return FailingExample(
        query=e.query, output=e.output, signal=e.signal, reason=e.reason, comment=e.comment, better=better
    )


def screening_pairs(
    settings: Settings, store: FeedbackStore
) -> tuple[list[tuple[FailingExample, str, bool]], Counter[str]]:
    """(failing example, expert-reviewed answer, expert pass) pairs; consented events only."""
    skipped: Counter[str] = Counter()
    reviews: list[StoredEvent] = []
    negatives: dict[str, list[StoredEvent]] = {}
    for e in store.events():
        if not e.consent:
            skipped["no_consent"] += e.signal == "expert_review"
            continue  # never read
        if e.signal == "expert_review" and e.value is not None:
            reviews.append(e)
        if e.polarity < 0:
            negatives.setdefault(normalise(e.query), []).append(e)
    pairs = []
    for r in sorted(reviews, key=lambda r: _h(r.event_id)):
        others = [
            e
            for e in negatives.get(normalise(r.query), [])
            if e.event_id != r.event_id and normalise(e.output) != normalise(r.output)
        ]
        if not others:
            skipped["no_failing_example"] += 1
            continue
        e = min(others, key=lambda e: _h(r.event_id, e.event_id))
        pairs.append((_example(e), r.output, float(r.value or 0.0) >= PASS))
    if len(pairs) > settings.judge.max_items:
        skipped["over_max_items"] += len(pairs) - settings.judge.max_items
        pairs = pairs[: settings.judge.max_items]
    return pairs, skipped


def calibrate_screening(settings: Settings, state: StateStore, store: FeedbackStore) -> JudgeCalibration:
    """The resolution judge's verdicts on the pairs against the experts' (the pairs from ``store``,
    the verdicts cached in ``state``); figures as for the golden judge."""
    from flywheel.improvers.screening_step import judge_resolutions

    pairs, skipped = screening_pairs(settings, store)
    errors = 0
    try:
        verdicts = judge_resolutions(settings, state, [p[0] for p in pairs], [p[1] for p in pairs]) if pairs else []
    except openai.APIError:  # the endpoint failed after retries: nothing to report on, and said so
        verdicts, errors = [], len(pairs)
    figures = agreement([p[2] for p in pairs][: len(verdicts)], [v.resolved for v in verdicts])
    return assess(
        figures,
        judge_model=settings.judge_model,
        min_kappa=settings.judge.min_kappa,
        min_items=settings.judge.min_items,
        skipped=dict(sorted(skipped.items())),
        references={"expert_review_of_another_answer": len(verdicts)},
        errors=errors,
    )
