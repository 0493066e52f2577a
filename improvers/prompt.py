"""The prompt improver: reflective drafting from a cluster's failing examples, in rounds (GEPA-class).

1. **Critique.** The drafting model reads the current prompt and the cluster's failing examples
   (consented, PII-scrubbed: the caller only passes those) with the users' reasons, comments and
   corrections, and says what instruction is missing or wrong.
2. **Revise.** From the critique it writes several revised prompts (structured output when the
   endpoint supports it; fenced or prose-wrapped JSON is read too; a refusal or a truncated reply is
   recorded as that round's problem, never a crash).
3. **Integrity.** Each revision must keep the champion's ``{{variables}}``, change something, stay
   within a length budget, and not copy golden items or user text verbatim (word n-grams).
4. **Screen.** Each surviving revision answers the cluster's own failing queries and a judge says,
   per example, whether the user's complaint is resolved (:mod:`improvers.screening`); the champion
   is judged the same way.
5. **Reflect.** While the best draft resolves less than ``target_resolved`` of the examples, the next
   round critiques and revises *that draft* on the examples it still fails, up to ``rounds`` rounds
   and ``max_rollouts`` product calls.

Drafts that resolve at least as much as the champion go on, best first (ties included: the golden
set decides). ``merge_prompts`` asks the drafting model for one prompt keeping several clusters'
winners; ``combine_edits`` does the same without a model, from what each winner added to the champion.

No Prefect, no MLflow: callers give an OpenAI-compatible client, a function that runs the product
on queries and a judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from pydantic import BaseModel, Field

from flywheel.config import ImproveSettings
from flywheel.improvers.screening import FailingExample, JudgeFn, Screening, screen
from flywheel.replies import ReplyProblem, chat_json, json_object, looks_like_refusal
from flywheel.templates import template_variables

__all__ = [
    "Draft",
    "DraftingResult",
    "FailingExample",
    "combine_edits",
    "integrity_problems",
    "merge_prompts",
    "propose",
]

CRITIQUE_SYSTEM = (
    "You review a support assistant's failures. Given its system prompt and failing examples with the users' "
    "feedback, explain in at most five sentences which instruction is missing or wrong in the system prompt. "
    "Speak about behaviour in general; do not quote the examples."
)
REVISE_SYSTEM = (
    "You rewrite system prompts. Given the current system prompt, a critique and failing examples, write "
    "alternative revised system prompts that fix these failures without breaking what already works. Keep every "
    "{{variable}} placeholder exactly as it is. Do not copy user messages, answers or examples into the prompt. "
    'Reply with a JSON object {"prompts": ["...", "..."]}.'
)
MERGE_SYSTEM = (
    "You merge system prompts. Combine the revised system prompts below into one system prompt that keeps every "
    "instruction from each of them, without repeating any. Keep every {{variable}} placeholder. "
    'Reply with a JSON object {"prompt": "..."}.'
)
_PROMPTS_SCHEMA = {
    "type": "object",
    "properties": {"prompts": {"type": "array", "items": {"type": "string"}}},
    "required": ["prompts"],
    "additionalProperties": False,
}
_MERGE_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}},
    "required": ["prompt"],
    "additionalProperties": False,
}


class Draft(BaseModel):
    template: str
    round: int = 1
    problems: list[str] = Field(default_factory=list, description="Integrity checks it failed.")
    screening: float | None = Field(None, description="Share of the cluster's failing examples it resolved.")
    similarity: float | None = Field(None, description="Similarity to the users' better answers, when given.")
    resolved: list[bool] = Field(default_factory=list, description="Per failing example, in the cluster's order.")
    rationales: list[str] = Field(default_factory=list, description="The judge's reason per example.")


class DraftingResult(BaseModel):
    cluster_id: str
    category: str
    critique: str
    champion_screening: float | None = Field(None, description="Share of the failing examples the champion resolved.")
    champion_resolved: list[bool] = Field(default_factory=list)
    drafts: list[Draft]
    kept: list[int] = Field(default_factory=list, description="Indexes of drafts kept for the golden set, best first.")
    rounds: int = 0
    rollouts: int = Field(0, description="Product calls spent screening (the champion's included).")
    best_screening: float | None = None
    problems: list[str] = Field(default_factory=list, description="Replies of the drafting model that were unusable.")
    stopped: str = Field("", description="Why drafting stopped.")


RunQueries = Callable[[str, Sequence[str]], list[str]]


def _examples_text(examples: Sequence[FailingExample]) -> str:
    lines = []
    for n, e in enumerate(examples, start=1):
        lines.append(f"{n}. User: {e.query}\n   Assistant: {e.output}\n   Feedback: {e.feedback_text()}")
        if e.better:
            lines.append(f"   Better answer: {e.better}")
    return "\n".join(lines)


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def critique(client: object, model: str, current: str, category: str, examples: Sequence[FailingExample]) -> str:
    user = (
        f"Current system prompt:\n<prompt>\n{current}\n</prompt>\n\nFailure category: {category}\n\n"
        f"Failing examples:\n{_examples_text(examples)}"
    )
    response = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model, messages=_messages(CRITIQUE_SYSTEM, user), temperature=0.2
    )
    text = (response.choices[0].message.content or "").strip()
    if not text or looks_like_refusal(text):
        raise ReplyProblem(f"the critique was refused or empty: {text[:160]!r}")
    return text


def revise(
    client: object,
    model: str,
    current: str,
    category: str,
    critique_text: str,
    examples: Sequence[FailingExample],
    n: int,
) -> list[str]:
    user = (
        f"Current system prompt:\n<prompt>\n{current}\n</prompt>\n\nFailure category: {category}\n\n"
        f"Critique:\n{critique_text or '(none)'}\n\nFailing examples:\n{_examples_text(examples)}\n\n"
        f"Write {n} revised system prompts."
    )
    reply = chat_json(
        client, model, _messages(REVISE_SYSTEM, user), name="revisions", schema=_PROMPTS_SCHEMA, temperature=0.7
    )
    prompts = json_object(reply).get("prompts")
    if not isinstance(prompts, list):
        raise ReplyProblem(f"the revisions are not a list under 'prompts': {reply[:160]!r}")
    return [p.strip() for p in prompts if isinstance(p, str) and p.strip()][:n]


def merge_prompts(client: object, model: str, champion: str, prompts: Sequence[str]) -> str:
    body = "\n\n".join(f"<prompt {i}>\n{p}\n</prompt {i}>" for i, p in enumerate(prompts, start=1))
    user = f"Original system prompt:\n<prompt>\n{champion}\n</prompt>\n\nRevised system prompts to merge:\n{body}"
    reply = chat_json(
        client, model, _messages(MERGE_SYSTEM, user), name="merged_prompt", schema=_MERGE_SCHEMA, temperature=0.2
    )
    merged = json_object(reply).get("prompt")
    if not isinstance(merged, str) or not merged.strip():
        raise ReplyProblem("the merged prompt is empty")
    return merged.strip()


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def combine_edits(champion: str, winners: Sequence[str]) -> str:
    """One prompt with every winner's additions, without a model: each winner is the champion plus
    changes, so what a winner added (sentences the champion does not have) is appended once, in the
    winners' order. Nothing of the champion is removed."""
    have = set(_sentences(champion))
    added: list[str] = []
    for template in winners:
        for sentence in _sentences(template):
            if sentence not in have:
                have.add(sentence)
                added.append(sentence)
    return (champion.rstrip() + " " + " ".join(added)).strip() if added else champion


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def integrity_problems(template: str, champion: str, protected: Iterable[str], settings: ImproveSettings) -> list[str]:
    """Why a revision may not be evaluated (empty when it may)."""
    problems = []
    if not template.strip():
        return ["empty prompt"]
    if template.strip() == champion.strip():
        problems.append("identical to the champion")
    lost = template_variables(champion) - template_variables(template)
    added = template_variables(template) - template_variables(champion)
    if lost:
        problems.append(f"drops template variables {sorted(lost)}")
    if added:
        problems.append(f"adds unknown template variables {sorted(added)}")
    budget = len(champion) + settings.max_prompt_growth_chars
    if len(template) > budget:
        problems.append(f"{len(template)} characters, over the budget of {budget}")
    new = _ngrams(template, settings.copy_ngram) - _ngrams(champion, settings.copy_ngram)
    for text in protected:
        if new & _ngrams(text, settings.copy_ngram):
            problems.append(f"copies {settings.copy_ngram}+ words verbatim from a golden item or user text")
            break
    return problems


class _Rollouts:
    """Screening within a product-call budget."""

    def __init__(
        self, examples: Sequence[FailingExample], run_queries: RunQueries, judge: JudgeFn, budget: int
    ) -> None:
        self.examples, self.run_queries, self.judge, self.budget = examples, run_queries, judge, budget
        self.queries = [e.query for e in examples]
        self.spent = 0

    def affordable(self) -> bool:
        return self.spent + len(self.queries) <= self.budget

    def screen(self, template: str) -> Screening:
        self.spent += len(self.queries)
        return screen(self.run_queries(template, self.queries), self.examples, self.judge)


def propose(
    *,
    cluster_id: str,
    category: str,
    champion: str,
    examples: Sequence[FailingExample],
    client: object,
    model: str,
    run_queries: RunQueries,
    judge: JudgeFn,
    protected: Sequence[str],
    settings: ImproveSettings,
) -> DraftingResult:
    """Critique, revise, check and screen in rounds; ``kept`` names the drafts worth a golden-set
    evaluation. Unusable replies of the drafting model are recorded in ``problems``."""
    if not examples:
        raise ValueError(f"cluster {cluster_id} has no consented examples to draft from")
    protected_all = list(protected) + [t for e in examples for t in (e.query, e.output, e.better or "") if t]
    rollouts = _Rollouts(examples, run_queries, judge, settings.max_rollouts)
    baseline = rollouts.screen(champion)
    result = DraftingResult(
        cluster_id=cluster_id,
        category=category,
        critique="",
        drafts=[],
        champion_screening=baseline.share,
        champion_resolved=baseline.resolved,
    )
    if baseline.share >= settings.target_resolved:  # the complaints no longer reproduce: nothing to draft
        result.stopped = (
            f"the champion already resolves {baseline.share:.0%} of the examples "
            f"(target {settings.target_resolved:.0%})"
        )
        result.rollouts = rollouts.spent
        return result
    current, focus, seen = champion, list(examples), {champion.strip()}
    for round_no in range(1, settings.rounds + 1):
        if not rollouts.affordable():
            result.stopped = f"rollout budget ({settings.max_rollouts}) spent"
            break
        result.rounds = round_no
        for template in _draft_round(client, model, current, category, focus, settings, round_no, result):
            draft = Draft(
                template=template,
                round=round_no,
                problems=integrity_problems(template, champion, protected_all, settings),
            )
            if template.strip() in seen and template.strip() != champion.strip():
                draft.problems.append("a repeat of an earlier draft")
            seen.add(template.strip())
            if not draft.problems and rollouts.affordable():
                s = rollouts.screen(template)
                draft.screening, draft.similarity = s.share, s.similarity
                draft.resolved, draft.rationales = s.resolved, s.rationales
            elif not draft.problems:
                draft.problems.append(f"not screened: rollout budget ({settings.max_rollouts}) spent")
            result.drafts.append(draft)
        best = _best(result.drafts)
        if best is not None and (best.screening or 0.0) >= settings.target_resolved:
            result.stopped = f"resolved {best.screening:.0%} of the examples (target {settings.target_resolved:.0%})"
            break
        if best is not None:  # reflect on what the best draft still fails
            current = best.template
            focus = [e for e, ok in zip(examples, best.resolved, strict=True) if not ok] or list(examples)
    else:
        result.stopped = result.stopped or f"{settings.rounds} rounds"
    result.rollouts = rollouts.spent
    best = _best(result.drafts)
    result.best_screening = best.screening if best else None
    ranked = sorted(
        (i for i, d in enumerate(result.drafts) if d.screening is not None and d.screening >= baseline.share),
        key=lambda i: (
            -(result.drafts[i].screening or 0.0),
            -(result.drafts[i].similarity or 0.0),
            result.drafts[i].round,
            len(result.drafts[i].template),
        ),
    )
    result.kept = ranked[: settings.keep_per_cluster]
    return result


def _draft_round(
    client: object,
    model: str,
    current: str,
    category: str,
    focus: Sequence[FailingExample],
    settings: ImproveSettings,
    round_no: int,
    result: DraftingResult,
) -> list[str]:
    """One round's revisions; a refused or unreadable reply becomes a recorded problem."""
    try:
        text = critique(client, model, current, category, focus)
    except ReplyProblem as exc:
        result.problems.append(f"round {round_no}: {exc}")
        text = ""
    if round_no == 1:
        result.critique = text
    try:
        return revise(client, model, current, category, text, focus, settings.drafts_per_cluster)
    except ReplyProblem as exc:
        result.problems.append(f"round {round_no}: {exc}")
        return []


def _best(drafts: Sequence[Draft]) -> Draft | None:
    screened = [d for d in drafts if d.screening is not None]
    return max(screened, key=lambda d: (d.screening or 0.0, d.similarity or 0.0)) if screened else None
