"""The simulator's roles behind one chat endpoint: product model, judge, triage classifier and
the drafting model (critique, revise, merge).

A request is routed by its shape, not its model name, so any configured model names work:
a system prompt that starts with ``JUDGE_MARKER`` goes to the judge, one that starts with a
drafting marker (``DRAFT_MARKERS``) to that drafting step, a ``json_schema`` response format
named ``triage_category`` to the classifier, everything else to the product model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flywheel.sim.rules import Learned, match_intent, product_answer

JUDGE_MARKER = "You are an impartial judge"
_JUDGE_BLOCKS = re.compile(r"Expected answer:\s*(?P<expected>.*?)\s*Answer to grade:\s*(?P<answer>.*)\Z", re.S)
_WORD = re.compile(r"[a-z0-9$]+(?:[.,][0-9]+)?")


def _text(content: Any) -> str:
    """Message content as text (the SDK allows a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


# The drafting model's playbook: for each failure category, a precise instruction (which the
# product model follows), a vague one (which it does not), so screening has something to choose.
PLAYBOOK: dict[str, tuple[str, str, str]] = {
    # category: (critique, precise instruction, vague instruction)
    "factual": (
        "The assistant gives totals without working them out; yearly prices come out as monthly ones.",
        "When a question involves prices or quantities, work step by step and show your calculation before the total.",
        "Double-check numbers.",
    ),
    "format": (
        "The assistant ignores requests for machine-readable output and answers in prose.",
        "When the user asks for JSON, reply with only valid JSON and no other text.",
        "Use the format the user wants.",
    ),
    "tone": (
        "The assistant answers upset customers curtly, without acknowledging their frustration.",
        "When a customer is frustrated, first apologize and acknowledge the frustration, then help.",
        "Be friendly.",
    ),
    "off_topic": (
        "The assistant answers requests that have nothing to do with the product.",
        "Only answer questions about the product; politely decline requests that are off-topic.",
        "Stay focused.",
    ),
    "unsafe": (
        "The assistant discloses other customers' personal data when asked.",
        "Never share or reveal personal information about other customers, such as e-mail addresses or phone numbers.",
        "Be careful with data.",
    ),
    "outdated_knowledge": (
        "The assistant states facts that have since changed.",
        "Prefer the context documents for facts and prices.",
        "Be accurate.",
    ),
    "missing_context": (
        "The assistant guesses when the question is ambiguous.",
        "When a request is ambiguous, ask one clarifying question before answering.",
        "Be helpful.",
    ),
    "other": ("The assistant's answers do not satisfy users.", "Answer precisely and completely.", "Be good."),
}
DRAFT_MARKERS = {
    "critique": "You review a support assistant's failures",
    "revise": "You rewrite system prompts",
    "merge": "You merge system prompts",
}


def route(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    system = " ".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    if system.lstrip().startswith(JUDGE_MARKER):
        return "judge"
    for role, marker in DRAFT_MARKERS.items():
        if system.lstrip().startswith(marker):
            return role
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema" and (fmt.get("json_schema") or {}).get("name") == "triage_category":
        return "classifier"
    return "product"


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _text(m.get("content"))
    return ""


def product(body: dict[str, Any], learned: Learned | None = None) -> str:
    messages = body.get("messages") or []
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    answer = product_answer(system, _last_user(messages), learned)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": answer})
    if fmt.get("type") == "json_schema":
        return json.dumps(_fill_schema((fmt.get("json_schema") or {}).get("schema") or {}, answer))
    return answer


def _fill_schema(schema: dict[str, Any], answer: str) -> Any:
    """A value of the requested shape carrying the answer wherever a string goes."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _fill_schema(v, answer) for k, v in props.items()}
    if kind == "array":
        return [_fill_schema(schema.get("items") or {"type": "string"}, answer)]
    if "enum" in schema:
        return schema["enum"][0]
    return {"integer": 0, "number": 0.0, "boolean": False, "null": None}.get(kind, answer)  # type: ignore[arg-type]


def judge(body: dict[str, Any]) -> str:
    """Deterministic grading: the share of the expected answer's words found in the answer."""
    text = _last_user(body.get("messages") or [])
    m = _JUDGE_BLOCKS.search(text)
    if not m:
        return json.dumps({"score": 0.0, "rationale": "could not find 'Expected answer:' and 'Answer to grade:'"})
    expected = set(_WORD.findall(m.group("expected").lower()))
    answer = set(_WORD.findall(m.group("answer").lower()))
    if not expected:
        return json.dumps({"score": 1.0, "rationale": "nothing was expected"})
    recall = len(expected & answer) / len(expected)
    missing = sorted(expected - answer)[:8]
    score = 1.0 if recall >= 0.8 else round(recall, 2)
    rationale = f"{recall:.0%} of the expected answer's words are present" + (
        f"; missing: {', '.join(missing)}" if missing else ""
    )
    return json.dumps({"score": score, "rationale": rationale})


def classifier(body: dict[str, Any]) -> str:
    intent = match_intent(_last_user(body.get("messages") or []))
    category = intent.category if intent and intent.category != "general" else "other"
    return json.dumps({"category": category, "rationale": f"matched intent {intent.id if intent else 'none'}"})


def _between(text: str, start: str, end: str) -> str:
    m = re.search(re.escape(start) + r"\s*(.*?)\s*" + re.escape(end), text, re.S)
    return m.group(1) if m else ""


def _category(text: str) -> str:
    m = re.search(r"Failure category:\s*(\w+)", text)
    return m.group(1) if m and m.group(1) in PLAYBOOK else "other"


def critique(body: dict[str, Any]) -> str:
    return PLAYBOOK[_category(_last_user(body.get("messages") or []))][0]


def revise(body: dict[str, Any]) -> str:
    """Revisions in a fixed order: precise, vague, precise plus an aside; as many as asked for."""
    text = _last_user(body.get("messages") or [])
    current = _between(text, "<prompt>", "</prompt>")
    _, precise, vague = PLAYBOOK[_category(text)]
    wanted = re.search(r"Write (\d+) revised", text)
    options = [f"{current} {precise}", f"{current} {vague}", f"{current} {precise} Keep answers short."]
    return json.dumps({"prompts": options[: int(wanted.group(1)) if wanted else 3]})


def merge(body: dict[str, Any]) -> str:
    """Every sentence of every prompt, in order of first appearance, each once."""
    text = _last_user(body.get("messages") or [])
    prompts = re.findall(r"<prompt \d+>\s*(.*?)\s*</prompt \d+>", text, re.S)
    seen: dict[str, None] = {}
    for p in prompts:
        for sentence in re.split(r"(?<=[.!?])\s+", p.strip()):
            if sentence:
                seen.setdefault(sentence, None)
    return json.dumps({"prompt": " ".join(seen)})


ROLES = {
    "product": product,
    "judge": judge,
    "classifier": classifier,
    "critique": critique,
    "revise": revise,
    "merge": merge,
}


def complete(body: dict[str, Any], learned: Learned | None = None) -> tuple[str, str]:
    """``(role, content)`` for a chat completion request; a fine-tuned model (``learned``) only
    changes the product role."""
    role = route(body)
    if role == "product":
        return role, product(body, learned)
    return role, ROLES[role](body)
