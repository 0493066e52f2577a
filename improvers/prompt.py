"""The prompt improver: reflective drafting from a cluster's failing examples (GEPA / ProTeGi style).

1. **Critique.** The drafting model reads the champion prompt and the cluster's failing examples
   (consented, PII-scrubbed: the caller only passes those) with the users' reasons, comments and
   corrections, and says what instruction is missing or wrong.
2. **Revise.** From the critique it writes several revised prompts.
3. **Integrity.** Each revision must keep the template's ``{{variables}}``, change something, stay
   within a length budget, and not copy golden items or user text verbatim (word n-grams).
4. **Screen.** Each surviving revision answers the cluster's own failing queries; the ones that
   do better than the champion there, best first, go on to the full golden-set evaluation.

``merge_prompts`` asks the drafting model for one prompt that keeps the instructions of several
clusters' winners, so that one cycle can fix several failure modes at once.

No Prefect, no MLflow: callers give an OpenAI-compatible client and a function that runs the
product on queries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from evals.pipeline import template_variables
from flywheel.config import ImproveSettings

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


@dataclass(frozen=True)
class FailingExample:
    """One consented, scrubbed negative event, as the drafting model sees it."""

    query: str
    output: str
    signal: str
    reason: str | None = None
    comment: str | None = None
    better: str | None = None  # the user's correction or edited text, when given


class Draft(BaseModel):
    template: str
    problems: list[str] = Field(default_factory=list, description="Integrity checks it failed.")
    screening: float | None = Field(None, description="Score on the cluster's own failing examples.")


class DraftingResult(BaseModel):
    cluster_id: str
    category: str
    critique: str
    champion_screening: float | None = None
    drafts: list[Draft]
    kept: list[int] = Field(default_factory=list, description="Indexes of drafts kept for the golden set, best first.")


RunQueries = Callable[[str, Sequence[str]], list[str]]


def _examples_text(examples: Sequence[FailingExample]) -> str:
    lines = []
    for n, e in enumerate(examples, start=1):
        feedback = e.signal + (f" (reason: {e.reason})" if e.reason else "") + (f' "{e.comment}"' if e.comment else "")
        lines.append(f"{n}. User: {e.query}\n   Assistant: {e.output}\n   Feedback: {feedback}")
        if e.better:
            lines.append(f"   Better answer: {e.better}")
    return "\n".join(lines)


def _chat(client: object, model: str, system: str, user: str, schema: dict | None = None, name: str = "") -> str:
    extra = {}
    if schema is not None:
        extra["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    response = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        temperature=0.7 if schema else 0.2, **extra,
    )
    return response.choices[0].message.content or ""


def _json_field(content: str, field: str) -> object:
    match = re.search(r"\{.*\}", content, re.S)
    if not match:
        raise ValueError(f"the drafting model's reply has no JSON object: {content[:200]!r}")
    return json.loads(match.group(0))[field]


def critique(client: object, model: str, champion: str, category: str, examples: Sequence[FailingExample]) -> str:
    user = (f"Current system prompt:\n<prompt>\n{champion}\n</prompt>\n\nFailure category: {category}\n\n"
            f"Failing examples:\n{_examples_text(examples)}")
    return _chat(client, model, CRITIQUE_SYSTEM, user).strip()


def revise(client: object, model: str, champion: str, category: str, critique_text: str,
           examples: Sequence[FailingExample], n: int) -> list[str]:
    user = (f"Current system prompt:\n<prompt>\n{champion}\n</prompt>\n\nFailure category: {category}\n\n"
            f"Critique:\n{critique_text}\n\nFailing examples:\n{_examples_text(examples)}\n\n"
            f"Write {n} revised system prompts.")
    prompts = _json_field(_chat(client, model, REVISE_SYSTEM, user, _PROMPTS_SCHEMA, "revisions"), "prompts")
    if not isinstance(prompts, list):
        raise ValueError("the drafting model's 'prompts' is not a list")
    return [p.strip() for p in prompts if isinstance(p, str) and p.strip()][:n]


def merge_prompts(client: object, model: str, champion: str, prompts: Sequence[str]) -> str:
    body = "\n\n".join(f"<prompt {i}>\n{p}\n</prompt {i}>" for i, p in enumerate(prompts, start=1))
    user = f"Original system prompt:\n<prompt>\n{champion}\n</prompt>\n\nRevised system prompts to merge:\n{body}"
    merged = _json_field(_chat(client, model, MERGE_SYSTEM, user, _MERGE_SCHEMA, "merged_prompt"), "prompt")
    if not isinstance(merged, str) or not merged.strip():
        raise ValueError("the drafting model returned an empty merged prompt")
    return merged.strip()


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


def screening_score(outputs: Sequence[str], examples: Sequence[FailingExample]) -> float:
    """Against the better answer when the user gave one, else: did the failure stop repeating?"""
    total = 0.0
    for out, e in zip(outputs, examples, strict=True):
        if e.better:
            total += fuzz.ratio(out, e.better) / 100.0
        else:
            total += float(" ".join(out.split()) != " ".join(e.output.split()))
    return round(total / max(1, len(examples)), 4)


def propose(
    *,
    cluster_id: str,
    category: str,
    champion: str,
    examples: Sequence[FailingExample],
    client: object,
    model: str,
    run_queries: RunQueries,
    protected: Sequence[str],
    settings: ImproveSettings,
) -> DraftingResult:
    """Critique, revise, check and screen; ``kept`` names the drafts worth a golden-set evaluation."""
    if not examples:
        raise ValueError(f"cluster {cluster_id} has no consented examples to draft from")
    text = critique(client, model, champion, category, examples)
    templates = revise(client, model, champion, category, text, examples, settings.drafts_per_cluster)
    protected_all = list(protected) + [t for e in examples for t in (e.query, e.output, e.better or "") if t]
    drafts = [Draft(template=t, problems=integrity_problems(t, champion, protected_all, settings)) for t in templates]
    queries = [e.query for e in examples]
    baseline = screening_score(run_queries(champion, queries), examples)
    for d in drafts:
        if not d.problems:
            d.screening = screening_score(run_queries(d.template, queries), examples)
    ranked = sorted(
        (i for i, d in enumerate(drafts) if d.screening is not None and d.screening > baseline),
        key=lambda i: -(drafts[i].screening or 0.0),
    )
    return DraftingResult(cluster_id=cluster_id, category=category, critique=text, champion_screening=baseline,
                          drafts=drafts, kept=ranked[: settings.keep_per_cluster])
