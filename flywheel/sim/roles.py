"""The simulator's roles behind one chat endpoint: product model, judge and triage classifier.

A request is routed by its shape, not its model name, so any configured model names work:
a system prompt that starts with ``JUDGE_MARKER`` goes to the judge, a ``json_schema`` response
format named ``triage_category`` to the classifier, everything else to the product model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flywheel.sim.rules import match_intent, product_answer

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


def route(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    system = " ".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    if system.lstrip().startswith(JUDGE_MARKER):
        return "judge"
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema" and (fmt.get("json_schema") or {}).get("name") == "triage_category":
        return "classifier"
    return "product"


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _text(m.get("content"))
    return ""


def product(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    answer = product_answer(system, _last_user(messages))
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


ROLES = {"product": product, "judge": judge, "classifier": classifier}


def complete(body: dict[str, Any]) -> tuple[str, str]:
    """``(role, content)`` for a chat completion request."""
    role = route(body)
    return role, ROLES[role](body)
