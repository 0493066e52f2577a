"""The product under improvement: a variant (prompt, index, model) answering one query.

The built-in pipeline is the default and what the demo improves: the system prompt from the
registry (its ``{{variables}}`` filled from config), the passages the active index retrieves for
the query inside ``<context>`` tags, then one chat completion. A team with its own pipeline sets
``eval.pipeline = "package.module:function"``; the function receives ``(variant, query)`` and
returns the answer, as a plain or an async function.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel

from flywheel.errors import UsageError
from flywheel.templates import render, template_variables  # noqa: F401 - part of the pipeline's interface


class Retriever(Protocol):
    version: str

    def retrieve(self, query: str, k: int) -> list[tuple[str, str]]:
        """``(document id, text)`` of the best passages for ``query``."""


class Variant(BaseModel):
    """Everything that decides an answer; its key is what evaluation results are cached by."""

    label: str  # "champion" or a candidate id
    prompt_template: str
    prompt_version: str | None = None
    model: str
    index_version: str | None = None
    pipeline: str = "builtin"

    @property
    def key(self) -> str:
        doc = {"t": self.prompt_template, "m": self.model, "i": self.index_version, "p": self.pipeline}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def context_block(passages: list[tuple[str, str]]) -> str:
    if not passages:
        return ""
    return "\n<context>\n" + "\n\n".join(f"[{doc_id}]\n{text}" for doc_id, text in passages) + "\n</context>"


Answer = Callable[[Variant, str], Awaitable[str]]


RetrieverFor = Callable[[str | None], "Retriever | None"]


def builtin_pipeline(
    client: Any,
    variables: dict[str, str],
    retriever_for: RetrieverFor | None = None,
    *,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    k: int = 3,
) -> Answer:
    """System prompt + context retrieved from the variant's index version + one chat completion on
    ``client`` (an AsyncOpenAI)."""

    async def answer(variant: Variant, query: str) -> str:
        system = render(variant.prompt_template, variables)
        retriever = retriever_for(variant.index_version) if retriever_for and variant.index_version else None
        if retriever is not None:
            passages = await asyncio.to_thread(retriever.retrieve, query, k)
            system += context_block(passages)
        body: dict[str, Any] = {
            "model": variant.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": query}],
            "temperature": temperature,
        }
        if max_tokens:
            body["max_tokens"] = max_tokens
        # The SDK's generic `post` (same auth, base URL, timeouts, retries and error types as
        # `chat.completions.create`) without its typed request transform and response model,
        # which cost ~1 ms of CPU per call and capped a 2-core evaluation near 350 calls/s.
        response = await client.post("/chat/completions", body=body, cast_to=object)
        try:
            content = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"malformed chat completion from the endpoint: {str(response)[:200]}") from exc
        if content is None:
            raise ValueError("the model returned no content")
        return str(content)

    return answer


def load_user_pipeline(spec: str) -> Answer:
    """``module:function`` -> an async answer function (a sync one runs in a worker thread)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"eval.pipeline {spec!r} must look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"eval.pipeline {spec!r} cannot be loaded: {exc}") from exc
    if inspect.iscoroutinefunction(fn):
        return fn  # type: ignore[no-any-return]

    async def answer(variant: Variant, query: str) -> str:
        return str(await asyncio.to_thread(fn, variant, query))

    return answer
