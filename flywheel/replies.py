"""Reading what a real model answers when asked for JSON, and asking it the way it can answer.

Models wrap JSON in ```json fences or in prose, stop mid-string when they run out of tokens, or
refuse. ``json_object`` finds the object in the first two cases and names the problem in the
others (a ``ReplyProblem``, which callers record against the draft, the round or the verdict it
spoiled, instead of failing the cycle). ``chat_json`` asks for structured output as the openai
SDK supports it (``json_schema``), and falls back to ``json_object`` and then to a plain request
for endpoints that reject it (some vLLM and Ollama versions answer 400), remembering what the
endpoint accepted.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import openai

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_REFUSAL = re.compile(
    r"^\s*(?:I'm sorry|I am sorry|Sorry|I can(?:no|')t|I cannot|I won't|I will not|I'm not able|I am not able|"
    r"I'm unable|I am unable|As an AI)\b", re.I)


class ReplyProblem(ValueError):
    """Why a model's reply cannot be used: refused, truncated, no JSON, wrong shape."""


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text)) and "{" not in text


def _first_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (strings and escapes respected), or None."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        return None  # opened and never closed: truncated
    return None


def json_object(reply: str) -> dict[str, Any]:
    """The JSON object in a model's reply, wherever it sits; a ReplyProblem saying why not."""
    text = reply.strip()
    if not text:
        raise ReplyProblem("the model's reply was empty")
    if looks_like_refusal(text):
        raise ReplyProblem(f"the model refused: {text[:160]!r}")
    fenced = _FENCE.search(text)
    for body in ([fenced.group(1)] if fenced else []) + [text]:
        found = _first_object(body)
        if found is not None:
            try:
                doc = json.loads(found)
            except json.JSONDecodeError as exc:
                raise ReplyProblem(f"the model's JSON does not parse ({exc.msg}): {found[:160]!r}") from exc
            if isinstance(doc, dict):
                return doc
    if "{" in text:
        raise ReplyProblem(f"the model's reply was cut off before its JSON closed: ...{text[-120:]!r}")
    raise ReplyProblem(f"the model's reply has no JSON object: {text[:160]!r}")


# What an endpoint accepted, by (base URL, model): "json_schema", "json_object" or "none".
_ACCEPTED: dict[tuple[str, str], str] = {}
_LOCK = threading.Lock()
_MODES = ("json_schema", "json_object", "none")


def _response_format(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _rejects_format(exc: openai.BadRequestError) -> bool:
    text = str(exc).lower()
    return "response_format" in text or "json_schema" in text or "json_object" in text


def _attempts(client: Any, model: str, name: str, schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(mode, extra request arguments) to try in order, from what the endpoint accepted last."""
    start = _MODES.index(_ACCEPTED.get(_key(client, model), "json_schema"))
    return [(mode, {"response_format": fmt} if (fmt := _response_format(mode, name, schema)) else {})
            for mode in _MODES[start:]]


def _key(client: Any, model: str) -> tuple[str, str]:
    return str(getattr(client, "base_url", "")), model


def _accepted(client: Any, model: str, mode: str) -> None:
    with _LOCK:
        _ACCEPTED[_key(client, model)] = mode


def _retry_plainer(mode: str, exc: openai.BadRequestError) -> bool:
    return mode != "none" and _rejects_format(exc)


def chat_json(client: Any, model: str, messages: list[dict[str, str]], *, name: str, schema: dict[str, Any],
              temperature: float) -> str:
    """The reply text of a chat completion asked for JSON of ``schema`` in the best way the endpoint
    supports. Sync client."""
    for mode, extra in _attempts(client, model, name, schema):
        try:
            response = client.chat.completions.create(model=model, messages=messages, temperature=temperature,
                                                      **extra)
        except openai.BadRequestError as exc:
            if _retry_plainer(mode, exc):
                continue
            raise
        _accepted(client, model, mode)
        return response.choices[0].message.content or ""
    raise AssertionError("unreachable: the plain request either answers or raises")


async def achat_json(client: Any, model: str, messages: list[dict[str, str]], *, name: str, schema: dict[str, Any],
                     temperature: float) -> str:
    """``chat_json`` for an AsyncOpenAI client."""
    for mode, extra in _attempts(client, model, name, schema):
        try:
            response = await client.chat.completions.create(model=model, messages=messages, temperature=temperature,
                                                            **extra)
        except openai.BadRequestError as exc:
            if _retry_plainer(mode, exc):
                continue
            raise
        _accepted(client, model, mode)
        return response.choices[0].message.content or ""
    raise AssertionError("unreachable: the plain request either answers or raises")
