"""What the prompt improver's records say about the cycle's screening judge."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from flywheel.improvers.context import CycleContext
from flywheel.improvers.prompt import DraftingResult
from flywheel.wording import plural

MIN_VERDICTS = 6  # screening verdicts a cycle needs before "all the same" says something about the judge


def screening_verdicts(drafting: Sequence[DraftingResult]) -> list[bool]:
    """Every verdict the screening judge gave in the cycle's drafting (the champion's and each draft's)."""
    return [v for d in drafting for v in (d.champion_resolved + [x for draft in d.drafts for x in draft.resolved])]


def screening_judge_note(verdicts: Sequence[bool]) -> str | None:
    """A note when the judge said the same thing to every one of at least ``MIN_VERDICTS`` requests."""
    if len(verdicts) < MIN_VERDICTS or len(set(verdicts)) != 1:
        return None
    said = "resolved" if verdicts[0] else "not resolved"
    return (
        f"the screening judge said {said!r} to all {plural(len(verdicts), 'screening request')} of this cycle: "
        "it does not discriminate, so screening could not rank the drafts and only the golden set decided. "
        "Check judge_model (FLYWHEEL_JUDGE_MODEL) on the endpoint and run `flywheel judge calibrate`"
    )


def cycle_drafting(ctx: CycleContext) -> list[DraftingResult]:
    """The prompt improver's records of this cycle (merges and index proposals are other records)."""
    with ctx.state() as state:
        docs = state.cycle_drafts(ctx.cycle_id)
    out = []
    for doc in docs:
        try:
            out.append(DraftingResult.model_validate(doc))
        except ValidationError:
            continue  # a merge's or the index improver's record
    return out
