"""Diagnosing a cluster of feedback without a reason: what went wrong, and which category it is.

A thumbs-down without a reason is the most common negative signal a product gets, and triage can
only infer a category from it by similarity; what it cannot place ends in ``other``, which no
improver targets. Here the drafting model reads the cluster's consented, scrubbed examples (the
query, the answer, the signal with its value, the user's comment, correction or edited text) and
the counts of its signals, and names a root cause and one of the categories an improver works on.

Its reply is read like every model reply (:mod:`flywheel.replies`): fenced JSON or JSON inside
prose is found; a refusal, a cut-off reply, a missing root cause or a category outside the list is
asked again, at most ``DIAGNOSE_ATTEMPTS`` times. A model that answers ``other`` (it cannot tell)
has answered: the cluster stays ``other`` with that said. Never a made-up category.

No Prefect, no store: the caller gives the examples (consented ones only) and a client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from flywheel.improvers.screening import FailingExample
from flywheel.replies import ReplyProblem, chat_json, json_object
from flywheel.schemas import CATEGORIES, ClusterDiagnosis
from flywheel.triage import CATEGORY_DESCRIPTIONS

DIAGNOSE_ATTEMPTS = 3
# The categories a diagnosis may name: every improver-targeted one. ``other`` is the answer "cannot tell".
DIAGNOSABLE: tuple[str, ...] = tuple(c for c in CATEGORIES if c != "other")

DIAGNOSE_SYSTEM = (
    "You diagnose why users were unhappy with a support assistant's answers. The users gave negative feedback "
    "without saying why. Read the examples (the user's question, the assistant's answer, the feedback, and the "
    "user's correction or edited text when given) and name the root cause in one or two sentences, and the one "
    "category that fits it best:\n"
    + "\n".join(f"- {c}: {CATEGORY_DESCRIPTIONS[c]}" for c in DIAGNOSABLE)
    + "\n- other: the examples do not show what went wrong\n"
    'Reply with a JSON object {"category": "...", "root_cause": "..."}.'
)
DIAGNOSIS_SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": [*DIAGNOSABLE, "other"]}, "root_cause": {"type": "string"}},
    "required": ["category", "root_cause"],
    "additionalProperties": False,
}


class DiagnosisReply(BaseModel):
    """A usable reply: a category from the list (``other`` included) and a root cause."""

    category: str
    root_cause: str


def _feedback(e: FailingExample) -> str:
    text = e.signal
    if e.value is not None:
        text += f" {e.value:g}" + (" (failure)" if e.signal == "outcome" and e.value == 0 else "")
    if e.reason:
        text += f" (reason: {e.reason})"
    if e.comment:
        text += f' "{e.comment}"'
    return text


def _example_block(n: int, e: FailingExample) -> str:
    lines = [
        f'<example n="{n}">',
        f"<query>\n{e.query}\n</query>",
        f"<answer>\n{e.output}\n</answer>",
        f"<feedback>\n{_feedback(e)}\n</feedback>",
    ]
    if e.better:
        tag = "edited_text" if e.signal == "edit" else "correction"
        lines.append(f"<{tag}>\n{e.better}\n</{tag}>")
    return "\n".join([*lines, "</example>"])


def diagnosis_messages(examples: Sequence[FailingExample], signals: Mapping[str, int]) -> list[dict[str, str]]:
    """The request: the cluster's signal counts (statistics of every event, consented or not: no text)
    and its examples (consented text only; the caller selects them)."""
    counts = ", ".join(f"{name} {n}" for name, n in sorted(signals.items(), key=lambda kv: (-kv[1], kv[0])))
    user = (
        f"Negative feedback in this cluster: {counts or 'none counted'}.\n\n"
        f"Examples ({len(examples)}):\n" + "\n".join(_example_block(n, e) for n, e in enumerate(examples, 1))
    )
    return [{"role": "system", "content": DIAGNOSE_SYSTEM}, {"role": "user", "content": user}]


def parse_diagnosis(reply: str) -> DiagnosisReply:
    """The reply's category and root cause; a ReplyProblem (asked again) when refused, cut off,
    without JSON, without a root cause, or with a category outside the list."""
    doc = json_object(reply)
    category, root_cause = doc.get("category"), doc.get("root_cause")
    if category not in CATEGORIES:
        raise ReplyProblem(f"the model's category {category!r} is not one of {', '.join(CATEGORIES)}")
    if not isinstance(root_cause, str) or not root_cause.strip():
        raise ReplyProblem(f"the diagnosis names no root cause: {str(doc)[:160]!r}")
    return DiagnosisReply(category=str(category), root_cause=root_cause.strip()[:500])


def diagnose(
    client: object, model: str, examples: Sequence[FailingExample], signals: Mapping[str, int]
) -> ClusterDiagnosis:
    """Ask ``model`` for the cluster's root cause and category. Unusable replies are asked again up to
    ``DIAGNOSE_ATTEMPTS`` times; then, or when the model answers ``other``, the diagnosis says the
    category could not be named (``diagnosed`` false)."""
    messages = diagnosis_messages(examples, signals)
    problems: list[str] = []
    found: DiagnosisReply | None = None
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(ReplyProblem), stop=stop_after_attempt(DIAGNOSE_ATTEMPTS), reraise=True
        ):
            with attempt:
                reply = chat_json(
                    client, model, messages, name="cluster_diagnosis", schema=DIAGNOSIS_SCHEMA, temperature=0
                )
                try:
                    found = parse_diagnosis(reply)
                except ReplyProblem as exc:
                    problems.append(str(exc))
                    raise
    except ReplyProblem:
        found = None
    base = ClusterDiagnosis(
        diagnosed=False,
        model=model,
        examples=len(examples),
        attempts=len(problems) + (found is not None),
        problems=problems,
    )
    if found is None:
        return base.model_copy(
            update={
                "why_not": f"the diagnosis could not name a category: {len(problems)} "
                f"unusable replies from {model} (last: {problems[-1]})"
            }
        )
    if found.category == "other":
        return base.model_copy(
            update={
                "root_cause": found.root_cause,
                "why_not": f"the diagnosis could not name a category: {model} answered `other` ({found.root_cause})",
            }
        )
    return base.model_copy(update={"diagnosed": True, "category": found.category, "root_cause": found.root_cause})
