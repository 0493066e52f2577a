"""How the product answers during an evaluation or a screening: the configured pipeline (the
built-in one or the user's ``module:function``) with retrievers opened per index version."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from flywheel.config import Settings
from flywheel.evals.pipeline import Answer, builtin_pipeline, load_user_pipeline
from flywheel.evals.runner import judge_with
from flywheel.llm import make_async_client
from flywheel.runtime import runtime_for


def answer_factory(
    settings: Settings, queries: Sequence[str] = ()
) -> Callable[[], tuple[Answer, Any, Callable[[], Any]]]:
    """Builds (answer, judge, close) inside the running event loop (AsyncOpenAI binds to it).
    ``queries``: what will be asked, embedded for retrieval in one batch rather than one by one."""

    retrievers = index_retrievers(settings, queries)

    def build() -> tuple[Answer, Any, Callable[[], Any]]:
        client = make_async_client(settings, purpose="evaluation")
        if settings.eval.pipeline:
            answer = load_user_pipeline(settings.eval.pipeline)
        else:
            answer = builtin_pipeline(
                client,
                settings.prompt_variables,
                retrievers,
                temperature=settings.eval.temperature,
                max_tokens=settings.eval.max_tokens,
                k=settings.knowledge.retrieval_k,
            )
        return answer, judge_with(client, settings.judge_model), client.close

    return build


def index_retrievers(settings: Settings, queries: Sequence[str] = ()) -> Callable[[str | None], Any]:
    """Retrievers by index version, opened on first use and kept for the evaluation. The first one
    embeds ``queries`` in one batch: the cache then answers every retrieval's query embedding."""
    opened: dict[str, Any] = {}
    lock = threading.Lock()

    def get(version: str | None) -> Any:
        if version is None:
            return None
        with lock:
            if version not in opened:
                from flywheel.knowledge.index import open_index

                state = runtime_for(settings).state  # this process's (a Dask worker's own on a worker)
                opened[version] = open_index(settings, state).retriever(int(version))
                if len(opened) == 1 and queries and opened[version] is not None:
                    opened[version].index.embedder.embed(list(dict.fromkeys(queries)))
            return opened[version]

    return get
