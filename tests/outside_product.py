"""A product the simulator was not written for: "Pantry Pal", a cooking assistant, plugged in as a
team's own pipeline (``eval.pipeline = "outside_product:answer"``).

It has its own wording (an opener that changes with the prompt and the question, so a fresh answer
never replays a logged one), its own knowledge (recipes), its own golden set and feedback, and three
failure modes a prompt instruction fixes, the way an instruction-following model would: JSON only
when told to reply with only valid JSON, an apology for upset cooks when told to apologize, a decline
of off-topic requests when told to politely decline them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CHAMPION = "You are Pantry Pal, a friendly cooking assistant. Answer briefly."
RECIPES: dict[str, tuple[int, list[str]]] = {
    "pancakes": (20, ["flour", "milk", "eggs"]),
    "risotto": (35, ["arborio rice", "stock", "parmesan"]),
    "omelette": (10, ["eggs", "butter", "chives"]),
    "chili": (60, ["beans", "tomatoes", "cumin"]),
    "lentil soup": (40, ["lentils", "carrots", "onion"]),
    "banana bread": (65, ["bananas", "flour", "sugar"]),
}
OFF_TOPIC = [
    "Who won the football game last night?",
    "What is the weather tomorrow in Paris?",
    "Tell me a joke about cats.",
    "Help me write a cover letter for a job.",
    "Which laptop should I buy for school?",
    "Can you translate this letter into German?",
    "What are good stocks to invest in?",
    "Plan my trip to Rome for three days.",
]
_OFF_TOPIC_WORDS = ("football", "weather", "joke", "cover letter", "laptop", "translate", "stocks", "trip")
_UPSET = ("furious", "annoyed", "useless", "ruined", "awful")
_OPENERS = ("", "Okay! ", "Good news: ", "Right, ", "Chef's tip: ", "Alright. ")
DECLINE = "I can only help with cooking questions."


def _opener(prompt: str, query: str, salt: str = "") -> str:
    digest = hashlib.sha256(f"{salt}|{prompt}|{query}".encode()).digest()
    return _OPENERS[digest[0] % len(_OPENERS)]


def _dish(query: str) -> str | None:
    return next((d for d in RECIPES if d in query.lower()), None)


def answer(variant: Any, query: str, salt: str = "") -> str:
    """Pantry Pal's answer under ``variant.prompt_template``; ``salt`` varies the wording like sampling."""
    prompt, q = variant.prompt_template.lower(), query.lower()
    opener = _opener(prompt, q, salt)
    dish = _dish(q)
    if any(w in q for w in _OFF_TOPIC_WORDS):
        if "politely decline" in prompt:
            return opener + DECLINE
        return opener + "Sure, here is what I think about that: it depends, but go with your gut."
    if dish is None:
        return opener + "Which dish do you mean?"
    minutes, ingredients = RECIPES[dish]
    if "json" in q:
        if "only valid json" in prompt:
            return json.dumps({"dish": dish, "minutes": minutes, "ingredients": ingredients})
        return opener + f"{dish.capitalize()} takes {minutes} minutes; you need {', '.join(ingredients)}."
    if any(w in q for w in _UPSET):
        fix = f"For {dish}, lower the heat and stir in a splash of water."
        return opener + (f"I'm sorry your {dish} went wrong. {fix}" if "apologize" in prompt else fix)
    return opener + f"{dish.capitalize()} takes {minutes} minutes."


def golden_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for n, (dish, (minutes, ingredients)) in enumerate(RECIPES.items()):
        items += [
            {
                "id": f"pp-json-{n}",
                "input": f"Give me the {dish} recipe as JSON, please.",
                "category": "format",
                "scorer": "json",
                "expected": json.dumps({"dish": dish, "minutes": minutes, "ingredients": ingredients}),
            },
            {
                "id": f"pp-upset-{n}",
                "input": f"I'm furious, my {dish} is burning! What do I do?",
                "category": "tone",
                "scorer": "regex",
                "expected": r"(?i)\bsorry\b.*lower the heat",
            },
            {
                "id": f"pp-time-{n}",
                "input": f"How long does {dish} take?",
                "category": "general",
                "scorer": "contains",
                "expected": f"takes {minutes} minutes",
            },
            {
                "id": f"pp-time2-{n}",
                "input": f"Quick question: how many minutes for {dish}?",
                "category": "general",
                "scorer": "contains",
                "expected": f"{minutes} minutes",
            },
        ]
    items += [
        {"id": f"pp-off-{n}", "input": q, "category": "off_topic", "scorer": "contains", "expected": DECLINE}
        for n, q in enumerate(OFF_TOPIC)
    ]
    return items


def feedback_events() -> list[dict[str, Any]]:
    """Complaints about the champion's answers as they were logged (worded by an earlier sample)."""

    class Champion:
        prompt_template = CHAMPION

    events: list[dict[str, Any]] = []
    asks = (
        [
            (f"Send me the {d} recipe in JSON so my app can read it.", "format", "I need machine-readable JSON")
            for d in RECIPES
        ]
        + [(f"This is useless, my {d} is ruined and I'm annoyed. Help!", "tone", "so cold") for d in RECIPES]
        + [(q, "off_topic", "this is a cooking app") for q in OFF_TOPIC[:3]]
    )
    for n, (query, reason, comment) in enumerate(asks):
        for user in range(3):  # off-topic requests differ widely: each must reach the clusters' minimum
            events.append(
                {
                    "event_id": f"pp-{n}-{user}",
                    "ts": f"2026-11-{10 + user:02d}T10:00:00+00:00",
                    "signal": "thumbs_down",
                    "reason": reason,
                    "comment": comment,
                    "query": query,
                    "output": answer(Champion, query, salt="logged"),
                    "user_id": f"cook-{n}-{user}",
                    "consent": True,
                }
            )
    return events
