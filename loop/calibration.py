"""Judge calibration (`flywheel judge calibrate`, and once per cycle): the judge scorer asked about
answers experts already reviewed, its verdicts compared with theirs.

An item is a consented ``expert_review`` event with a value (0..1: a pass from 0.5 up) and a
reference answer for its query, since the judge scorer compares an answer with an expected one.
The reference is, in this order: the accepted golden item proposed from that very review, a golden
item with the same input, the expert's own correction, or a consented correction, large edit or
well-rated expert answer on the same query (another event). A review whose answer *is* its
reference (an approved answer turned into a golden item) is left out: the judge comparing a text
with itself says nothing. Reviews without consent are counted and never read, so their text never
reaches the judge. At most ``judge.max_items`` are asked, chosen by a hash of the event id (the
same sample every time, whatever the order of ingest).

The result is cached in the state store by (judge endpoint and model, the exact items): a resumed cycle, or a
second calibration with nothing new, asks the judge nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

import uvloop
from pydantic import BaseModel

from flywheel.config import Settings
from flywheel.evals.calibration import PASS, Agreement, JudgeCalibration, agreement, assess
from flywheel.evals.fingerprint import Endpoint
from flywheel.evals.golden import GoldenSet
from flywheel.evals.scorers import JUDGE_SYSTEM
from flywheel.feedback.store import FeedbackStore
from flywheel.loop.context import CycleContext
from flywheel.loop.golden.from_feedback import reference_answer
from flywheel.proposals import GoldenProposal, ProposalStatus, normalise
from flywheel.runtime import Runtime
from flywheel.schemas import StoredEvent

ReferenceFrom = Literal["golden", "expert_correction", "feedback"]
CACHE_PREFIX = "judge-calibration:"


class CalibrationItem(BaseModel):
    """One expert-reviewed answer the judge is asked about."""

    event_id: str
    query: str
    output: str
    reference: str
    reference_from: ReferenceFrom
    expert_pass: bool


def _sample_key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()


def _golden_references(
    golden: GoldenSet | None, accepted: Sequence[GoldenProposal]
) -> tuple[dict[str, str], dict[str, str]]:
    """References from the golden set: by the review a proposal came from, and by input."""
    if golden is None:
        return {}, {}
    by_id = {i.id: i for i in golden.items}
    by_event = {
        eid: by_id[p.proposal_id].expected for p in accepted if p.proposal_id in by_id for eid in p.source.event_ids
    }
    by_input = {normalise(i.input): i.expected for i in golden.items}
    return by_event, by_input


def _feedback_references(
    events: Iterable[StoredEvent], queries: set[str], positive_expert: float
) -> dict[str, list[tuple[str, str]]]:
    """Consented reference answers on the reviewed queries: normalised query -> [(event id, answer)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        if not e.consent or normalise(e.query) not in queries:
            continue
        found = reference_answer(e, positive_expert)
        if found is not None:
            out.setdefault(normalise(e.query), []).append((e.event_id, found.expected))
    return out


def calibration_items(rt: Runtime, golden: GoldenSet | None) -> tuple[list[CalibrationItem], Counter[str]]:
    """The items to ask the judge about (sampled to ``judge.max_items``) and the reviews passed over,
    from the stores of the process's Runtime ``rt``."""
    settings = rt.settings
    skipped: Counter[str] = Counter()
    with rt.borrow_feedback() as store:
        reviews = []
        for e in store.events():
            if e.signal != "expert_review":
                continue
            if not e.consent:
                skipped["no_consent"] += 1  # counted; its text is never read
            elif e.value is None:
                skipped["no_value"] += 1
            else:
                reviews.append(e)
        queries = {normalise(r.query) for r in reviews}
        feedback = _feedback_references(store.events(), queries, settings.finetune.positive_expert) if reviews else {}
    accepted = rt.state.proposals(ProposalStatus.accepted)
    by_event, by_input = _golden_references(golden, accepted)
    items = []
    for r in reviews:
        found = _reference(r, by_event, by_input, feedback)
        if found is None:
            skipped["no_reference"] += 1
        elif normalise(found[0]) == normalise(r.output):
            skipped["answer_is_reference"] += 1
        else:
            items.append(
                CalibrationItem(
                    event_id=r.event_id,
                    query=r.query,
                    output=r.output,
                    reference=found[0],
                    reference_from=found[1],
                    expert_pass=float(r.value or 0.0) >= PASS,
                )
            )
    items.sort(key=lambda i: _sample_key(i.event_id))
    if len(items) > settings.judge.max_items:
        skipped["over_max_items"] += len(items) - settings.judge.max_items
        items = items[: settings.judge.max_items]
    return items, skipped


def _reference(
    r: StoredEvent, by_event: dict[str, str], by_input: dict[str, str], feedback: dict[str, list[tuple[str, str]]]
) -> tuple[str, ReferenceFrom] | None:
    q = normalise(r.query)
    if r.event_id in by_event:
        return by_event[r.event_id], "golden"
    if q in by_input:
        return by_input[q], "golden"
    if (r.correction or "").strip():
        return r.correction.strip(), "expert_correction"  # type: ignore[union-attr]
    # Another event's answer: never this review's own approved output (it would be judged against itself).
    return next(((text, "feedback") for eid, text in feedback.get(q, []) if eid != r.event_id), None)


def cache_key(judge: Endpoint, items: Sequence[CalibrationItem]) -> str:
    """The judge (endpoint and model), its instructions and the exact items: anything else changed, asked again."""
    doc = json.dumps([judge.model_dump(mode="json"), JUDGE_SYSTEM, [i.model_dump() for i in items]], sort_keys=True)
    return CACHE_PREFIX + hashlib.sha256(doc.encode()).hexdigest()


def ask_judge(settings: Settings, items: Sequence[CalibrationItem]) -> list[float | None]:
    """The judge scorer's score per item (None where it could not answer), concurrently under
    ``eval.concurrency``, through the project's client (retries and the endpoint guard)."""
    from flywheel.evals.runner import judge_with
    from flywheel.llm import make_async_client

    async def main() -> list[float | None]:
        client = make_async_client(settings, purpose="judge calibration")
        judge = judge_with(client, settings.judge_model)
        gate = asyncio.Semaphore(settings.eval.concurrency)

        async def one(item: CalibrationItem) -> float | None:
            try:
                async with gate:
                    return (await judge(item.query, item.output, item.reference)).value
            except Exception:  # an unusable reply or a failed call: left out, counted as an error
                return None

        try:
            return list(await asyncio.gather(*(one(i) for i in items)))
        finally:
            await client.close()

    return uvloop.run(main()) if items else []


def calibrate(rt: Runtime, golden: GoldenSet | None) -> JudgeCalibration:
    """Ask the judge about the expert-reviewed answers (or reuse the cached answer) and assess it;
    the screening judge too (:mod:`loop.screening_calibration`)."""
    from flywheel.loop.screening_calibration import calibrate_screening

    result = calibrate_golden_judge(rt, golden)
    result.screening = calibrate_screening(rt.settings, rt.state, rt.feedback)
    return result


def calibrate_golden_judge(rt: Runtime, golden: GoldenSet | None) -> JudgeCalibration:
    """The judge scorer's calibration (cached by judge endpoint, model and items in the state store)."""
    settings = rt.settings
    items, skipped = calibration_items(rt, golden)
    key = cache_key(Endpoint.judge(settings), items)
    hit = rt.state.cached_eval(key)
    if hit is not None:  # the judge's figures are reused; today's settings decide whether they suffice
        figures, references, errors = Agreement.model_validate(hit), hit.get("references", {}), 0
    else:
        scores = ask_judge(settings, items)
        answered = [(i, s) for i, s in zip(items, scores, strict=True) if s is not None]
        figures = agreement([i.expert_pass for i, _ in answered], [s >= PASS for _, s in answered])
        references = dict(sorted(Counter(i.reference_from for i, _ in answered).items()))
        errors = len(items) - len(answered)
    result = assess(
        figures,
        judge_model=settings.judge_model,
        min_kappa=settings.judge.min_kappa,
        min_items=settings.judge.min_items,
        skipped=dict(sorted(skipped.items())),
        references=references,
        errors=errors,
        cached=hit is not None,
    )
    if hit is None and errors == 0:  # an item the endpoint failed is asked again next time
        with rt.borrow_state() as state:
            state.cache_eval(key, result.model_dump(mode="json", exclude={"screening"}))
    return result


def needs_calibration(settings: Settings, store: FeedbackStore, golden: GoldenSet) -> bool:
    """A cycle calibrates when the judge decides something (judge-scored golden items) or there is
    something to calibrate it on (expert reviews in the store)."""
    if golden.judge_scored(settings.eval.default_scorer):
        return True
    return any(e.signal == "expert_review" for e in store.events())


def calibration_step(ctx: CycleContext) -> JudgeCalibration | None:
    """The cycle's calibration, or None when the judge decides nothing and nothing could calibrate it."""
    if not needs_calibration(ctx.settings, ctx.runtime.feedback, ctx.golden):
        return None
    return calibrate(ctx.runtime, ctx.golden)
