"""What a process has open: the stores, the MLflow client, the LLM clients and the embedder, made
once (on first use, then kept) by the face that starts the process (a CLI command, ``flywheel
serve``, a flow run) and handed down; the steps take what they need and open nothing themselves.

The feedback store is one SQLAlchemy engine (its pool serves every thread) migrated once. The state
store is a SQLite connection, which one thread must not share with another mid-transaction, so
there is one per thread that uses it (one in a CLI command); every store is made here, by
:func:`flywheel.state.open_state` and :func:`flywheel.feedback.store.open_store`, nowhere else.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from flywheel.config import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

    from flywheel.embeddings import Embedder
    from flywheel.feedback.store import SQLFeedbackStore
    from flywheel.state import StateStore


class Runtime:
    """The process's open resources for one ``Settings``; ``close()`` releases them (a later use
    opens them again). ``openings`` counts what was made, by name, for tests and diagnostics."""

    def __init__(self, settings: Settings, *, store_timeout: float | None = None) -> None:
        self.settings = settings
        self.store_timeout = store_timeout
        self.openings: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._feedback: SQLFeedbackStore | None = None
        self._states: dict[int, StateStore] = {}
        self._mlflow: Any = None
        self._llm: OpenAI | None = None
        self._async_llm: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenAI] = weakref.WeakKeyDictionary()
        self._embedder: Embedder | None = None

    @property
    def feedback(self) -> SQLFeedbackStore:
        """The feedback store, opened and migrated on first use."""
        with self._lock:
            if self._feedback is None:
                from flywheel.feedback.engine import LOCK_TIMEOUT_SECONDS
                from flywheel.feedback.store import open_store

                timeout = LOCK_TIMEOUT_SECONDS if self.store_timeout is None else self.store_timeout
                self._feedback = open_store(self.settings.resolved_store_url, lock_timeout=timeout)
                self.openings["feedback"] += 1
            return self._feedback

    @property
    def state(self) -> StateStore:
        """The state store for the calling thread, opened (and its migrations checked) on first use."""
        key = threading.get_ident()
        with self._lock:
            store = self._states.get(key)
            if store is None:
                from flywheel.state import open_state

                self._close_states_of_ended_threads()
                store = self._states[key] = open_state(self.settings)
                self.openings["state"] += 1
            return store

    def _close_states_of_ended_threads(self) -> None:
        """A long-lived process (the warm worker, the service) sees threads come and go (each flow
        run's task threads): the stores of those that ended are closed, not kept for ever."""
        alive = {t.ident for t in threading.enumerate()}
        for ident in [i for i in self._states if i not in alive]:
            self._states.pop(ident).close()

    def borrow_state(self) -> AbstractContextManager[StateStore]:
        """The state store for ``with ... as state:`` blocks that must not close it."""
        return nullcontext(self.state)

    def borrow_feedback(self) -> AbstractContextManager[SQLFeedbackStore]:
        """The feedback store for ``with ... as store:`` blocks that must not close it."""
        return nullcontext(self.feedback)

    @property
    def mlflow(self) -> Any:
        """The MLflow client on Flywheel's tracking store and experiment (made, and the experiment
        checked, once)."""
        with self._lock:
            if self._mlflow is None:
                from flywheel.registry import use_mlflow

                self._mlflow = use_mlflow(self.settings)
                self.openings["mlflow"] += 1
            return self._mlflow

    def llm(self) -> OpenAI:
        """The synchronous OpenAI-compatible client of ``openai_base_url``."""
        with self._lock:
            if self._llm is None:
                from flywheel.llm import make_client

                self._llm = make_client(self.settings)
                self.openings["llm"] += 1
            return self._llm

    def async_llm(self) -> AsyncOpenAI:
        """The asynchronous client for the running event loop (an httpx pool belongs to one loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_llm.get(loop)
            if client is None:
                from flywheel.llm import make_async_client

                client = self._async_llm[loop] = make_async_client(self.settings)
                self.openings["async_llm"] += 1
            return client

    @property
    def embedder(self) -> Embedder:
        """The configured embedder (the local model loaded once), behind its cache."""
        with self._lock:
            if self._embedder is None:
                from flywheel.embeddings import build_embedder

                self._embedder = build_embedder(self.settings)
                self.openings["embedder"] += 1
            return self._embedder

    def close(self) -> None:
        """Release everything opened; what is used afterwards is opened again."""
        from flywheel.embeddings import CachedEmbedder

        with self._lock:
            feedback, states, llm, embedder = self._feedback, list(self._states.values()), self._llm, self._embedder
            self._feedback, self._states, self._mlflow, self._llm, self._embedder = None, {}, None, None, None
            self._async_llm = weakref.WeakKeyDictionary()
        if feedback is not None:
            feedback.close()
        for state in states:
            state.close()
        if llm is not None:
            llm.close()
        if isinstance(embedder, CachedEmbedder):
            embedder.cache.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_process: Runtime | None = None
_process_lock = threading.Lock()


def runtime_for(settings: Settings) -> Runtime:
    """This process's Runtime for ``settings``: what a face (a CLI command, a flow run) starts from.
    A second command of the same process reuses it when the stores and endpoints are the same (its
    other settings replace the Runtime's); another home or store (a test's own) closes it and makes
    another."""
    global _process
    with _process_lock:
        if _process is not None and _where(_process.settings) == _where(settings):
            _process.settings = settings  # same stores and endpoints; this command's other settings
            return _process
        if _process is not None:
            _process.close()
        _process = Runtime(settings)
        return _process


def _where(settings: Settings) -> tuple[Any, ...]:
    """What the Runtime's resources are made from: two settings alike here share them."""
    return (
        settings.home.resolve(),
        settings.resolved_store_url,
        settings.resolved_tracking_uri,
        settings.experiment,
        settings.openai_base_url,
        settings.openai_api_key,
        settings.embedding,
        settings.llm_max_retries,
        settings.llm_timeout,
    )


def process_runtime() -> Runtime | None:
    """This process's Runtime as it is, opening nothing (None before the first command or flow run)."""
    return _process


def close_process_runtime() -> None:
    """Close this process's Runtime (at exit, or when a test leaves its home)."""
    global _process
    with _process_lock:
        if _process is not None:
            _process.close()
            _process = None
