"""How the simulator stops behaving like a lookup table: seeded surface variation.

Real models reword every answer and, asked for JSON, answer it inside fences, with prose around
it, cut off, with a refusal, or without the prompt's ``{{variables}}``. Flywheel has to cope with
both, so the simulator can do both, deterministically: every choice here comes from a stable hash
of the seed and the request, never from a clock or a global RNG.

- :func:`reword` varies the product's answer (an opener, a closer, a harmless phrase swap) while
  keeping every golden scorer's verdict: JSON is never touched, and no variant adds or removes an
  apology, a price, a number, a refusal or any phrase a scorer looks for.
- :func:`pick_shape` and the ``render_*`` functions give the drafting roles' answers the shapes of
  a real model that does not enforce ``response_format``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

DRAFTING_MODES = ("clean", "wild")


@dataclass(frozen=True)
class Style:
    """How a role answers: the simulator's knobs plus how often this exact request was seen."""

    seed: int = 0
    reword: bool = False
    drafting: str = "clean"
    occurrence: int = 0  # the n-th identical drafting request (0 first): retries may differ, like sampling


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process and Python version (``hash()`` is salted)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


# --- the product's rewording -------------------------------------------------------------------
# None of these may contain what a golden scorer looks for: no apology, refusal, price, number,
# unit, product phrase. The test over every intent checks the verdicts stay the same.
OPENERS = ("", "Sure. ", "Happy to help. ", "Thanks for asking! ", "Here you go: ", "Good question. ")
CLOSERS = ("", " Let me know if anything else comes up.", " Hope this helps.", " Anything else I can do?")
# Phrase swaps only add words, and away from the parts scorers check ("Reset password", "click
# Share", "ZIP archive", "Settings > Security > Two-factor", "sign back in", "can't share", prices
# and sizes): the judge scorer grades by the expected answer's words, so none may go missing.
SWAPS = (
    ("Go to Settings", "Go straight to Settings"),
    ("we email you a reset link", "we then email you a reset link"),
    ("Open the folder, click Share", "Open the folder, then click Share"),
    ("enter your teammates' email addresses", "enter your teammates' email addresses there"),
    ("Use Settings > Data > Export", "Just use Settings > Data > Export"),
    ("Turn on two-factor authentication under", "You can turn on two-factor authentication under"),
    ("Please wait a few minutes and try again.", "Please wait a few minutes and then try again."),
    ("The account owner can contact support directly.", "The account owner can always contact support directly."),
    ("and sync will restart", "and sync will restart on its own"),
    ("Could you rephrase your question", "Could you please rephrase your question"),
)


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def reword(answer: str, seed: int, system: str, query: str) -> str:
    """The answer as this sampling of the model phrases it; JSON answers stay byte-identical."""
    if _parses_as_json(answer):
        return answer
    h = stable_hash("reword", seed, system, query)
    opener = OPENERS[h % len(OPENERS)]
    closer = CLOSERS[(h // len(OPENERS)) % len(CLOSERS)]
    if opener and answer.startswith(opener.split()[0].rstrip(".!:")):
        opener = ""  # no "Sure. Sure! ..."
    if (h >> 16) % 2:
        for old, new in SWAPS:
            answer = answer.replace(old, new)
    return opener + answer + closer


# --- the drafting roles in the wild ------------------------------------------------------------
# Shares out of 100 over the request hash. fenced and prose are recoverable by a tolerant parser;
# truncated, refusal and lossy are not. With 65% usable, three rounds miss all about 4% of the time.
JSON_SHAPES: dict[str, int] = {"clean": 35, "fenced": 15, "prose": 15, "truncated": 12, "refusal": 11, "lossy": 12}
CRITIQUE_SHAPES: dict[str, int] = {"clean": 70, "preamble": 30}
RESOLUTION_SHAPES: dict[str, int] = {"clean": 50, "fenced": 25, "preamble": 25}
# The golden-set judge and the triage classifier: mostly usable, sometimes wrapped; now and then refused,
# cut off, or ``lossy``: the judge grades on a 0-10 scale although asked for 0..1, the classifier names
# a category outside the list it was given ("Off-topic request"); neither may be read as an answer.
JUDGE_SHAPES: dict[str, int] = {"clean": 55, "fenced": 15, "prose": 15, "truncated": 5, "refusal": 5, "lossy": 5}
WILD_SHAPES: dict[str, dict[str, int]] = {
    "revise": JSON_SHAPES,
    "merge": JSON_SHAPES,
    "golden": JSON_SHAPES,
    "critique": CRITIQUE_SHAPES,
    "resolution": RESOLUTION_SHAPES,
    "judge": JUDGE_SHAPES,
    "classifier": JUDGE_SHAPES,
    "diagnosis": JUDGE_SHAPES,  # one category and a sentence, like the classifier; ``lossy`` a category off the list
}


def pick_shape(role: str, style: Style, request_text: str) -> str:
    """The shape of this answer: ``clean`` unless drafting is wild, else by the request's hash."""
    shares = WILD_SHAPES.get(role)
    if style.drafting != "wild" or shares is None:
        return "clean"
    bucket = stable_hash("shape", style.seed, role, request_text, style.occurrence) % sum(shares.values())
    for shape, share in shares.items():
        if bucket < share:
            return shape
        bucket -= share
    raise AssertionError("shares cover every bucket")


PROSE = {
    "revise": ("Here are the revised prompts:\n", "\n\nLet me know if you'd like me to adjust any of them."),
    "merge": ("Here is the merged prompt:\n", "\n\nI kept every instruction; let me know if anything is missing."),
    "golden": ("Sure! Here are some test items for that category:\n", "\n\nEach one checks a single behaviour."),
    "judge": ("Here is my assessment of the answer:\n", "\n\nI compared it with the expected answer point by point."),
    "classifier": ("Based on the message, the category is:\n", "\n\nThis seems the best fit."),
    "diagnosis": ("Having read the examples, here is my diagnosis:\n", "\n\nThe examples point the same way."),
}
REFUSAL = {
    "revise": "I'm sorry, but I can't help with rewriting system prompts.",
    "merge": "I'm sorry, but I can't help with merging system prompts.",
    "golden": "I'm sorry, but I can't write test data for that.",
    "judge": "I'm sorry, but I can't grade answers to this kind of question.",
    "classifier": "I'm sorry, but I can't classify this message.",
    "diagnosis": "I'm sorry, but I can't diagnose user feedback.",
}
_VARIABLE = re.compile(r"\s*\{\{\s*[\w.]+\s*\}\}")


def drop_variables(prompt: str) -> str:
    """The prompt without its ``{{variables}}``, as a careless rewrite leaves it."""
    return _VARIABLE.sub("", prompt)


def fenced(doc: Any) -> str:
    return "```json\n" + json.dumps(doc, indent=2) + "\n```"


def truncated(doc: dict[str, Any], last: str) -> str:
    """The JSON cut off in the middle of its last string ``last``: no closing quote or brace."""
    payload = json.dumps(doc)
    encoded = json.dumps(last)
    start = payload.rfind(encoded)
    return payload[: start + max(1, len(encoded) // 2)]


def cut_off(text: str) -> bool:
    """Whether an answer is JSON that stopped mid-way (a ``truncated`` shape): real endpoints say
    so with ``finish_reason: "length"``."""
    return text.startswith("{") and not _parses_as_json(text)


def render_json(role: str, shape: str, doc: dict[str, Any], last: str) -> str:
    """``doc`` (a drafting answer) in one of the wild shapes; ``lossy`` is rendered clean, its
    damage is in ``doc`` itself."""
    if shape == "fenced":
        return fenced(doc)
    if shape == "prose":
        before, after = PROSE[role]
        return before + json.dumps(doc, indent=2) + after
    if shape == "truncated":
        return truncated(doc, last)
    if shape == "refusal":
        return REFUSAL[role]
    return json.dumps(doc)


def render_critique(shape: str, critique: str) -> str:
    if shape == "preamble":
        return f"Looking at the failing examples, here is what goes wrong:\n\n{critique}"
    return critique


def render_verdict(shape: str, verdict: dict[str, Any]) -> str:
    if shape == "fenced":
        return fenced(verdict)
    if shape == "preamble":
        return "Here is my verdict on the fresh answer.\n" + json.dumps(verdict)
    return json.dumps(verdict)
