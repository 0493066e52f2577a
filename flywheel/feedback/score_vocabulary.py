"""What the importers (MLflow traces, OTLP spans, Langfuse scores) share when they read another tool's
verdicts: the words that mean up or down, the signal and reason names, the rule for a number no
setting maps, and how a trace's input or output becomes the text a person wrote or read."""

from __future__ import annotations

import json
from typing import Any, Literal

from flywheel.schemas import Reason, Signal

SIGNALS = {s.value for s in Signal}
REASONS = {r.value for r in Reason}
UP = {"yes", "pass", "passed", "true", "good", "positive", "correct", "helpful", "up", "thumbs_up", "like"}
DOWN = {"no", "fail", "failed", "false", "bad", "negative", "incorrect", "unhelpful", "down", "thumbs_down", "dislike"}
INPUT_KEYS = ("question", "query", "input", "prompt", "message", "text")
OUTPUT_KEYS = ("answer", "output", "response", "content", "text", "result")


def thumb(label: str | None, number: float | None) -> str | None:
    """A thumb from a label that says up or down, else from the sign of a number; None when neither."""
    if label in UP:
        return "thumbs_up"
    if label in DOWN:
        return "thumbs_down"
    if number is not None:
        return "thumbs_up" if number > 0 else "thumbs_down"
    return None


def number_signal(number: float) -> Literal["expert_review", "rating"]:
    """A number no setting maps: a fraction between 0 and 1 is an expert review, else a rating."""
    return "expert_review" if 0 <= number <= 1 and not float(number).is_integer() else "rating"


def text_of(value: Any, keys: tuple[str, ...]) -> str:
    """A span's inputs or outputs as the text a person wrote or read: a string as it is, a chat
    request's last user message, a chat completion's answer, the one text of a small object (or its
    usual key); anything else as JSON, so nothing is lost."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            return text_of(value["messages"], keys)
        if isinstance(value.get("choices"), list) and value["choices"]:
            message = value["choices"][0].get("message") if isinstance(value["choices"][0], dict) else None
            if isinstance(message, dict) and isinstance(content := message.get("content"), str):
                return content
        texts = [v for v in value.values() if isinstance(v, str)]
        if len(value) == 1 and texts:
            return texts[0]
        for key in keys:
            if isinstance(text := value.get(key), str):
                return text
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        users = [m for m in value if m.get("role") == "user"] or value
        if isinstance(users[-1]["content"], str):
            return users[-1]["content"]
    return json.dumps(value, ensure_ascii=False, default=str)
