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
from collections.abc import Iterator
from typing import Any

import openai

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_REFUSAL = re.compile(
    r"^\s*(?:I'm sorry|I am sorry|Sorry|I can(?:no|')t|I cannot|I won't|I will not|I'm not able|I am not able|"
    r"I'm unable|I am unable|As an AI)\b",
    re.I,
)


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
_UNREACHABLE = "unreachable: the plain request either answers or raises"


def _response_format(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _rejects_format(exc: openai.BadRequestError) -> bool:
    text = str(exc).lower()
    return "response_format" in text or "json_schema" in text or "json_object" in text


class _JsonAsk:
    """One JSON reply asked for: the requests to try, from the format the endpoint accepted last down
    to a plain one, and what to remember of the one that answered. The sync and async callers share
    it, so they differ only in how they send."""

    def __init__(
        self,
        client: Any,
        model: str,
        messages: list[dict[str, str]],
        name: str,
        schema: dict[str, Any],
        temperature: float,
    ) -> None:
        self.client, self.model = client, model
        self.base = {"model": model, "messages": messages, "temperature": temperature}
        self.name, self.schema, self.mode = name, schema, "none"

    def requests(self) -> Iterator[dict[str, Any]]:
        """Keyword arguments of ``chat.completions.create``, one per mode still to try."""
        start = _MODES.index(_ACCEPTED.get(_key(self.client, self.model), "json_schema"))
        for mode in _MODES[start:]:
            self.mode = mode
            fmt = _response_format(mode, self.name, self.schema)
            yield self.base | ({"response_format": fmt} if fmt else {})

    def refused(self, exc: openai.BadRequestError) -> None:
        """Go on to a plainer request when the endpoint refused the format; otherwise re-raise."""
        if self.mode == "none" or not _rejects_format(exc):
            raise exc

    def reply(self, response: Any) -> str:
        _accepted(self.client, self.model, self.mode)
        return response.choices[0].message.content or ""


def _key(client: Any, model: str) -> tuple[str, str]:
    return str(getattr(client, "base_url", "")), model


def _accepted(client: Any, model: str, mode: str) -> None:
    with _LOCK:
        _ACCEPTED[_key(client, model)] = mode


def chat_json(
    client: Any, model: str, messages: list[dict[str, str]], *, name: str, schema: dict[str, Any], temperature: float
) -> str:
    """The reply text of a chat completion asked for JSON of ``schema`` in the best way the endpoint
    supports. Sync client."""
    ask = _JsonAsk(client, model, messages, name, schema, temperature)
    for request in ask.requests():
        try:
            return ask.reply(client.chat.completions.create(**request))
        except openai.BadRequestError as exc:
            ask.refused(exc)
    raise AssertionError(_UNREACHABLE)


async def achat_json(
    client: Any, model: str, messages: list[dict[str, str]], *, name: str, schema: dict[str, Any], temperature: float
) -> str:
    """``chat_json`` for an AsyncOpenAI client."""
    ask = _JsonAsk(client, model, messages, name, schema, temperature)
    for request in ask.requests():
        try:
            return ask.reply(await client.chat.completions.create(**request))
        except openai.BadRequestError as exc:
            ask.refused(exc)
    raise AssertionError(_UNREACHABLE)
