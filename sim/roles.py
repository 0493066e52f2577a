"""The simulator's roles behind one chat endpoint: product model, judge, resolution judge, triage
classifier, the drafting model (critique, revise, merge) and the golden-item writer.

A request is routed by its shape, not its model name, so any configured model names work:
a system prompt that starts with ``JUDGE_MARKER`` goes to the judge, one that starts with
``RESOLUTION_MARKER`` to the resolution judge, one that starts with ``DIAGNOSIS_MARKER`` to the
diagnosis of a cluster without reasons, one that starts with a drafting marker
(``DRAFT_MARKERS``) to that drafting step, one that starts with ``GOLDEN_MARKER`` to the writer of
synthetic golden items, one that starts with ``CLASSIFIER_MARKER`` or a
``json_schema`` response format named ``triage_category`` to the classifier, everything else to
the product model.

The resolution judge reads ``<query>``, ``<logged_answer>``, ``<feedback>`` and ``<fresh_answer>``
blocks from the user message and answers ``{"resolved": bool, "rationale": str}``: resolved when the
fresh answer meets the world's golden expectation for the query's intent (``rules.is_correct``).

A :class:`~sim.variation.Style` changes how roles answer, never what is right: with
``reword`` the product phrases each answer differently (same verdicts); with ``drafting="wild"``
revise, merge, golden, the golden-set judge, the triage classifier and the diagnosis (and sometimes critique and the
resolution judge) answer in real models' shapes: fenced, in prose, truncated, refused, or lossy (see
:mod:`sim.variation`). Wild shapes ignore ``response_format``, as endpoints that do not enforce it do.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from typing import Any

from flywheel.sim import variation
from flywheel.sim.rules import INTENTS, Intent, Learned, golden_expectation, is_correct, match_intent, product_answer
from flywheel.sim.variation import Style

JUDGE_MARKER = "You are an impartial judge"
RESOLUTION_MARKER = "You judge whether a user's complaint"
CLASSIFIER_MARKER = "You classify why a user was unhappy"  # triage's prompt: routes its json_object fallback
DIAGNOSIS_MARKER = "You diagnose why users were unhappy"  # the cycle's diagnosis of feedback without a reason
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


GOLDEN_MARKER = "You write golden test items"  # `flywheel golden propose --synthetic`'s drafting request
MARKERS = {
    "judge": JUDGE_MARKER,
    "resolution": RESOLUTION_MARKER,
    "classifier": CLASSIFIER_MARKER,
    "diagnosis": DIAGNOSIS_MARKER,
    **DRAFT_MARKERS,
    "golden": GOLDEN_MARKER,
}


def _system(messages: list[dict[str, Any]]) -> str:
    return "\n".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))


def route(body: dict[str, Any]) -> str:
    system = _system(body.get("messages") or []).lstrip()
    for role, marker in MARKERS.items():
        if system.startswith(marker):
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


def product(body: dict[str, Any], learned: Learned | None = None, style: Style = Style()) -> str:
    messages = body.get("messages") or []
    system, query = _system(messages), _last_user(messages)
    answer = product_answer(system, query, learned)
    if style.reword:
        answer = variation.reword(answer, style.seed, system, query)
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


def judge(body: dict[str, Any], style: Style = Style()) -> str:
    """Deterministic grading: the share of the expected answer's words found in the answer.

    Wild: the verdict in a real model's shapes (fenced, in prose, cut off, refused), and ``lossy``
    on a 0-10 scale, the grade itself still the same."""
    text = _last_user(body.get("messages") or [])
    verdict = _grade(text)
    shape = variation.pick_shape("judge", style, text)
    if shape == "lossy":
        verdict = {**verdict, "score": round(10 * verdict["score"], 1)}
    return variation.render_json("judge", shape, verdict, verdict["rationale"])


def _grade(text: str) -> dict[str, Any]:
    m = _JUDGE_BLOCKS.search(text)
    if not m:
        return {"score": 0.0, "rationale": "could not find 'Expected answer:' and 'Answer to grade:'"}
    expected = set(_WORD.findall(m.group("expected").lower()))
    answer = set(_WORD.findall(m.group("answer").lower()))
    if not expected:
        return {"score": 1.0, "rationale": "nothing was expected"}
    recall = len(expected & answer) / len(expected)
    missing = sorted(expected - answer)[:8]
    score = 1.0 if recall >= 0.8 else round(recall, 2)
    rationale = f"{recall:.0%} of the expected answer's words are present" + (
        f"; missing: {', '.join(missing)}" if missing else ""
    )
    return {"score": score, "rationale": rationale}


def classifier(body: dict[str, Any], style: Style = Style()) -> str:
    """The category of the query's intent. Wild: a real model's shapes, and ``lossy`` a category in its
    own words, outside the list it was given."""
    text = _last_user(body.get("messages") or [])
    intent = match_intent(text)
    category = intent.category if intent and intent.category != "general" else "other"
    shape = variation.pick_shape("classifier", style, text)
    if shape == "lossy":
        category = category.replace("_", "-").capitalize() + " request"
    doc = {"category": category, "rationale": f"matched intent {intent.id if intent else 'none'}"}
    return variation.render_json("classifier", shape, doc, doc["rationale"])


NOISE_CAUSE = "The answers match what the product knows; the downvotes show no failure an instruction could fix."


def diagnosis(body: dict[str, Any], style: Style = Style()) -> str:
    """The cluster's root cause from the world's rules: the most common intent among the examples'
    ``<query>`` blocks names the failure category (and the playbook's critique is the root cause); an
    intent the product always answers right (or none) is ``other``. Wild: a real model's shapes, and
    ``lossy`` a category in its own words, outside the list it was given."""
    text = _last_user(body.get("messages") or [])
    intents = Counter(i for q in re.findall(r"<query>\s*(.*?)\s*</query>", text, re.S) if (i := match_intent(q)))
    top = intents.most_common(1)[0][0] if intents else None
    category = top.category if top is not None and top.category in PLAYBOOK else "other"
    cause = PLAYBOOK[category][0] if category != "other" else NOISE_CAUSE
    shape = variation.pick_shape("diagnosis", style, text)
    if shape == "lossy":
        category = category.replace("_", " ").capitalize() + " problem"
    doc = {"category": category, "root_cause": cause}
    return variation.render_json("diagnosis", shape, doc, cause)


def _between(text: str, start: str, end: str) -> str:
    m = re.search(re.escape(start) + r"\s*(.*?)\s*" + re.escape(end), text, re.S)
    return m.group(1) if m else ""


def _category(text: str) -> str:
    m = re.search(r"Failure category:\s*(\w+)", text)
    return m.group(1) if m and m.group(1) in PLAYBOOK else "other"


def critique(body: dict[str, Any], style: Style = Style()) -> str:
    text = _last_user(body.get("messages") or [])
    return variation.render_critique(variation.pick_shape("critique", style, text), PLAYBOOK[_category(text)][0])


def revise(body: dict[str, Any], style: Style = Style()) -> str:
    """Revisions in a fixed order: precise, vague, precise plus an aside; as many as asked for.

    Wild and ``lossy``: the revisions drop the current prompt's ``{{variables}}``, or, when it has
    none, are the current prompt unchanged."""
    text = _last_user(body.get("messages") or [])
    current = _between(text, "<prompt>", "</prompt>")
    _, precise, vague = PLAYBOOK[_category(text)]
    wanted = re.search(r"Write (\d+) revised", text)
    options = [f"{current} {precise}", f"{current} {vague}", f"{current} {precise} Keep answers short."]
    prompts = options[: int(wanted.group(1)) if wanted else 3]
    shape = variation.pick_shape("revise", style, text)
    if shape == "lossy":
        stripped = variation.drop_variables(current)
        prompts = [variation.drop_variables(p) if stripped != current else current for p in prompts]
    return variation.render_json("revise", shape, {"prompts": prompts}, prompts[-1])


def _sentences(prompts: list[str]) -> str:
    """Every sentence of every prompt, in order of first appearance, each once."""
    seen: dict[str, None] = {}
    for p in prompts:
        for sentence in re.split(r"(?<=[.!?])\s+", p.strip()):
            if sentence:
                seen.setdefault(sentence, None)
    return " ".join(seen)


def merge(body: dict[str, Any], style: Style = Style()) -> str:
    """The union of the prompts' sentences.

    Wild and ``lossy``: only the first prompt's sentences survive (the other clusters' fixes are
    lost, as a careless merge loses them), and the ``{{variables}}`` are dropped."""
    text = _last_user(body.get("messages") or [])
    prompts = re.findall(r"<prompt \d+>\s*(.*?)\s*</prompt \d+>", text, re.S)
    shape = variation.pick_shape("merge", style, text)
    merged = variation.drop_variables(_sentences(prompts[:1])) if shape == "lossy" else _sentences(prompts)
    return variation.render_json("merge", shape, {"prompt": merged}, merged)


def golden_items(body: dict[str, Any], style: Style = Style()) -> str:
    """Golden items for the asked category (``Category: NAME``, ``Write N items``): questions of the
    world's intents of that category, phrased afresh, with the expectation the world's golden set
    uses. A category the world has no intent of gets no items.

    Wild and ``lossy``: every other item lacks its ``expected`` answer, as a careless model drops a field."""
    from flywheel.sim.world import make_query

    text = _last_user(body.get("messages") or [])
    category = re.search(r"Category:\s*(\w+)", text)
    wanted = re.search(r"Write (\d+) items", text)
    intents = [i for i in INTENTS if category and i.category == category.group(1)]
    rng = random.Random(variation.stable_hash("golden", style.seed, text, style.occurrence))
    items: list[dict[str, Any]] = []
    for k in range(int(wanted.group(1)) if wanted and intents else 0):
        intent = intents[k % len(intents)]
        query, slots = make_query(intent, rng)
        scorer, expected = golden_expectation(intent, slots)
        items.append({"input": query, "expected": expected, "scorer": scorer})
    shape = variation.pick_shape("golden", style, text)
    if shape == "lossy":
        items = [
            {k: v for k, v in item.items() if k != "expected"} if n % 2 == 0 else item for n, item in enumerate(items)
        ]
    if shape == "truncated" and not items:
        shape = "clean"  # nothing to cut off
    return variation.render_json("golden", shape, {"items": items}, items[-1]["input"] if items else "")


_BLOCK_NAMES = ("query", "logged_answer", "feedback", "fresh_answer")


def _block(text: str, name: str) -> str:
    """A tagged block's content; tolerant of a missing closing tag (ends at the next block)."""
    others = "|".join(n for n in _BLOCK_NAMES if n != name)
    m = re.search(rf"<{name}>\s*(.*?)\s*(?:</{name}>|<(?:{others})>|\Z)", text, re.S | re.I)
    return m.group(1) if m else ""


_APOLOGY = re.compile(r"\b(sorry|apologi[sz]e|apologies)\b", re.I)
_DECLINE = re.compile(r"\b(only (help|answer|talk)|can(?:no|')t help|cannot help|not able to help|outside)\b", re.I)


def general_verdict(query: str, feedback: str, fresh_answer: str) -> dict[str, Any]:
    """A question outside the world (another team's product): judged like a general model would, from
    the complaint's reason alone. A format complaint about JSON is resolved by an answer that parses
    as JSON, a tone complaint by an apology, an off-topic one by a polite decline."""
    reason = re.search(r"reason:\s*(\w+)", feedback)
    kind = reason.group(1) if reason else ""
    if kind == "format" and "json" in query.lower():
        try:
            json.loads(fresh_answer.strip())
        except json.JSONDecodeError:
            return {"resolved": False, "rationale": "the user wanted JSON; the answer still does not parse as JSON"}
        return {"resolved": True, "rationale": "the user wanted JSON; the answer is now only JSON"}
    if kind == "tone":
        ok = bool(_APOLOGY.search(fresh_answer))
        return {
            "resolved": ok,
            "rationale": "the answer " + ("now acknowledges" if ok else "still ignores") + " the user's frustration",
        }
    if kind == "off_topic":
        ok = bool(_DECLINE.search(fresh_answer))
        return {
            "resolved": ok,
            "rationale": "the answer " + ("now declines" if ok else "still answers") + " the off-topic request",
        }
    return {"resolved": False, "rationale": "cannot tell what the user asked"}


def resolution_verdict(query: str, fresh_answer: str, feedback: str = "") -> dict[str, Any]:
    """Resolved when the fresh answer meets the world's golden expectation for the query; a question
    from outside the world is judged from the complaint alone (``general_verdict``)."""
    intent = match_intent(query)
    if intent is None:
        return general_verdict(query, feedback, fresh_answer)
    slots = intent.slots(query)
    try:
        scorer, expected = golden_expectation(intent, slots)
    except KeyError:  # looks like a world question but lacks what the world's rule checks: judge it generally
        return general_verdict(query, feedback, fresh_answer)
    resolved = is_correct(intent, slots, fresh_answer)
    return {"resolved": resolved, "rationale": f"{intent.id}: " + _what_was_checked(intent, scorer, expected, resolved)}


def _what_was_checked(intent: Intent, scorer: str, expected: str, resolved: bool) -> str:
    if scorer == "contains":
        return f"the answer now contains {expected!r}" if resolved else f"still missing {expected!r}"
    if scorer == "json":
        return f"the answer now parses as exactly the JSON {expected}" if resolved else f"still not the JSON {expected}"
    if intent.category == "tone":
        return "the answer now apologises before the fix" if resolved else "still missing an apology before the fix"
    return f"the answer now matches {expected}" if resolved else f"still does not match {expected}"


def resolution(body: dict[str, Any], style: Style = Style()) -> str:
    text = _last_user(body.get("messages") or [])
    verdict = resolution_verdict(_block(text, "query"), _block(text, "fresh_answer"), _block(text, "feedback"))
    return variation.render_verdict(variation.pick_shape("resolution", style, text), verdict)


ROLES = {
    "judge": judge,
    "classifier": classifier,
    "diagnosis": diagnosis,
    "critique": critique,
    "revise": revise,
    "merge": merge,
    "resolution": resolution,
    "golden": golden_items,
}
STYLED_ROLES = ("critique", "revise", "merge", "resolution", "golden", "judge", "classifier", "diagnosis")


def answer(role: str, body: dict[str, Any], learned: Learned | None = None, style: Style = Style()) -> str:
    """The content ``role`` answers; a fine-tuned model (``learned``) only changes the product role."""
    if role == "product":
        return product(body, learned, style)
    if role in STYLED_ROLES:
        return ROLES[role](body, style)
    return ROLES[role](body)


def complete(body: dict[str, Any], learned: Learned | None = None, style: Style = Style()) -> tuple[str, str]:
    """``(role, content)`` for a chat completion request."""
    role = route(body)
    return role, answer(role, body, learned, style)
