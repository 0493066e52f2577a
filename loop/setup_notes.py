"""Setup smells, said out loud in the cycle's notes: results that are possible but far more often
mean the setup is wrong than that the product is.

- The champion scores 0 on the golden set: the endpoint answers nothing, the golden ``expected``
  answers are worded or formatted unlike the product's answers, or a prompt variable is missing.
- Every candidate ties the champion: the golden set cannot tell the variants apart.
- The screening judge gave one verdict to every screening request: it does not discriminate.

Each note names what the cycle itself saw (empty answers, ``{{`` left in answers, the scorers, an
example) so an operator knows where to look. Plain functions on the cycle's results; no Prefect.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from flywheel.evals.runner import EvalResult
from flywheel.improvers.registry import improvers
from flywheel.loop.context import CycleContext
from flywheel.templates import template_variables


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def champion_zero_note(champion: EvalResult, template: str, variables: Mapping[str, str]) -> str | None:
    """Why a champion may score 0, from what its rows show; None unless it scored exactly 0."""
    rows = [r for r in champion.rows if r.score is not None]
    if not rows or champion.mean != 0:
        return None
    causes = []
    empty = [r for r in rows if not (r.output or "").strip()]
    if empty:
        causes.append(
            f"{len(empty)} of {len(rows)} answers were empty: the endpoint or model answers nothing "
            "(check OPENAI_BASE_URL and target_model, and what the endpoint returns)"
        )
    missing = sorted(template_variables(template) - set(variables))
    unfilled = [r for r in rows if "{{" in (r.output or "")]
    if missing or unfilled:
        what = (
            f"the prompt uses {', '.join('{{' + m + '}}' for m in missing)} with no value under [prompt_variables]"
            if missing
            else f"{len(unfilled)} answers contain '{{{{'"
        )
        causes.append(f"{what}: a prompt variable is likely missing or not filled in")
    answered = [r for r in rows if (r.output or "").strip()]
    if answered:
        scorers = ", ".join(f"{name} ({n})" for name, n in Counter(r.scorer for r in rows).most_common())
        example = answered[0]
        causes.append(
            f"the golden set's expected answers may be in another format or wording than the "
            f"product's answers (scorers: {scorers}; e.g. item {example.id!r} expects "
            f"{_clip(example.expected)}, the champion answered {_clip(example.output or '')})"
        )
    return (
        "the champion scored 0 on every golden item, which usually means the setup is wrong, not the "
        "product: " + "; ".join(causes) + ". `flywheel validate` asks the model a few golden items"
    )


def all_tie_note(champion: EvalResult, results: Mapping[str, EvalResult]) -> str | None:
    """A note when there are candidates and every one's golden score equals the champion's."""
    if not results or champion.mean is None or any(r.mean != champion.mean for r in results.values()):
        return None
    n = len(results)
    who = "the only candidate" if n == 1 else f"all {n} candidates"
    same_items = all(r.scores == champion.scores for r in results.values())
    outputs = {r.id: r.output for r in champion.rows}
    same_answers = all(o.output is not None and outputs.get(o.id) == o.output for r in results.values() for o in r.rows)
    why = (
        "their answers were the champion's, word for word, so the variants may not reach the product's "
        "answers at all (a user pipeline that ignores the prompt or index, or an endpoint that ignores the "
        "system prompt?)"
        if same_answers
        else "the golden set may not cover what the candidates change (`flywheel golden coverage`), or its scorers "
        "are too coarse to see it"
    )
    return (
        f"{who} scored exactly the champion's golden score ({champion.mean:.3f}"
        f"{', item for item' if same_items else ''}): the golden set did not tell them apart; {why}"
    )


def setup_notes(ctx: CycleContext, champion: EvalResult, results: Mapping[str, EvalResult]) -> list[str]:
    """The cycle's setup smells, as plain sentences (none when nothing smells)."""
    notes = [
        champion_zero_note(champion, ctx.champion_template, ctx.settings.prompt_variables),
        all_tie_note(champion, results),
        *[n for i in improvers() for n in i.cycle_notes(ctx)],
    ]  # e.g. a screening judge that says one thing
    return [n for n in notes if n]
